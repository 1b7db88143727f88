//! Property tests of the config loader (issue 14): arbitrary YAML-ish text and mutations of the
//! shipped examples load to a config or to errors, never panic; every error names a YAML path
//! that exists in the document (or whose parent does, for a missing key), or is a whole-file
//! error; messages stay proportionate to the input.

use proptest::prelude::*;

use super::node::{Kind, Node, parse_yaml};
use super::*;

const MAX_INPUT: usize = 4096;

const EXAMPLES: &[(&str, &str)] = &[
    ("stdout.yaml", include_str!("../../examples/stdout.yaml")),
    ("file.yaml", include_str!("../../examples/file.yaml")),
    ("routes.yaml", include_str!("../../examples/routes.yaml")),
    ("webhook.yaml", include_str!("../../examples/webhook.yaml")),
];

fn env(name: &str) -> Option<String> {
    match name {
        "ALERTS_TOKEN" | "TOKEN" => Some("s3cr3t".into()),
        "NUM" => Some("12".into()),
        "WEIRD" => Some("{{ .Reason".into()),
        _ => None,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// How a path resolves in the YAML tree.
enum Resolved {
    /// The path names an existing node.
    Found,
    /// Its last key is absent from an existing map (or null): a missing required key.
    Parent,
}

/// Resolves an error path (`receivers[1].webhook.headers.X-Key`) against the tree. Keys may
/// themselves contain `.` or `[` (label keys do), so every split is tried.
fn resolve(n: &Node, path: &str) -> Option<Resolved> {
    if path.is_empty() {
        return Some(Resolved::Found);
    }
    if let Some(rest) = path.strip_prefix('[') {
        let (idx, rest) = rest.split_once(']')?;
        let Kind::Seq(items) = &n.kind else {
            return None;
        };
        let item = items.get(idx.parse::<usize>().ok()?)?;
        return resolve(item, rest.strip_prefix('.').unwrap_or(rest));
    }
    match &n.kind {
        Kind::Map(entries) => {
            for super::node::Entry {
                key: k,
                value: child,
                ..
            } in entries
            {
                let Some(rest) = path.strip_prefix(k.as_str()) else {
                    continue;
                };
                let next = if rest.is_empty() || rest.starts_with('[') {
                    Some(rest)
                } else {
                    rest.strip_prefix('.')
                };
                if let Some(r) = next.and_then(|next| resolve(child, next)) {
                    return Some(r);
                }
            }
            Some(Resolved::Parent)
        }
        Kind::Null => Some(Resolved::Parent),
        _ => None,
    }
}

/// Loads `text` and checks the result; returns it for further checks.
fn check(text: &str) -> Result<Result<Config, ConfigErrors>, TestCaseError> {
    let got = parse(text, &env);
    // Deterministic: the same text gives the same result.
    prop_assert_eq!(&got, &parse(text, &env));
    let Err(errs) = &got else {
        return Ok(got);
    };
    prop_assert!(!errs.errors.is_empty(), "Err without errors");
    // YAML breaks lines at CR LF, a lone CR and LF alike (its spec's b-break), and so do the
    // parser's line numbers.
    let lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .count() as u64
        + 1;
    let tree = parse_yaml(text).ok();
    for e in &errs.errors {
        prop_assert!(
            !e.message.trim().is_empty(),
            "empty message at {:?}",
            e.path
        );
        if let Some(l) = e.line {
            prop_assert!(l >= 1 && l <= lines, "line {l} of {lines}: {e}");
        }
        if e.path.is_empty() {
            prop_assert!(
                e.message.starts_with("invalid YAML: ") || e.message.starts_with("expected a map"),
                "whole-file error that is neither syntax nor type: {e}"
            );
            continue;
        }
        let tree = tree.as_ref();
        prop_assert!(tree.is_some(), "a path ({e}) for text that does not parse");
        let tree = tree.expect("checked");
        let root = if tree.kind == Kind::Null {
            &Node {
                line: 1,
                kind: Kind::Map(Vec::new()),
            }
        } else {
            tree
        };
        prop_assert!(
            resolve(root, &e.path).is_some(),
            "error path {:?} is not in the document: {e}",
            e.path
        );
    }
    let shown = errs.to_string();
    prop_assert!(
        shown.len() <= 1024 + 64 * text.len(),
        "{} bytes of errors for {} bytes of input",
        shown.len(),
        text.len()
    );
    Ok(got)
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Scalars that stress the loader's typed getters.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("no".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e999".to_owned()),
        Just("-1e999".to_owned()),
        Just(".nan".to_owned()),
        Just(".inf".to_owned()),
        Just("0x10".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("4294967296".to_owned()),
        Just("2147483648".to_owned()),
        Just("1.5".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[a, {b: c}]".to_owned()),
        Just("\"\"".to_owned()),
        Just("''".to_owned()),
        Just("15s".to_owned()),
        Just("0s".to_owned()),
        Just("-5s".to_owned()),
        Just("99999999999999999999h".to_owned()),
        Just("1.5.5s".to_owned()),
        Just("µs".to_owned()),
        Just("1d".to_owned()),
        Just("\"(\"".to_owned()),
        Just("\"[z-a]\"".to_owned()),
        Just("\"a{99999}\"".to_owned()),
        Just("\"{{ .Reason }}\"".to_owned()),
        Just("\"{{ .Reason \"".to_owned()),
        Just("\"{{ nosuchfunc }}\"".to_owned()),
        Just("\"{{ if }}\"".to_owned()),
        Just("\"${UNSET}\"".to_owned()),
        Just("\"${NUM}\"".to_owned()),
        Just("\"${WEIRD}\"".to_owned()),
        Just("\"${\"".to_owned()),
        Just("\"$${x}\"".to_owned()),
        Just("\"${A-B}\"".to_owned()),
        Just("http://".to_owned()),
        Just("ftp://x".to_owned()),
        Just("\"http://[::1\"".to_owned()),
        Just("&a x".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary aGk=".to_owned()),
        Just("!!str 5".to_owned()),
        Just("|\n  block".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        "[a-z_]{1,12}",
        "[ -~]{0,24}",
        any_text(8),
    ]
}

/// Text built from YAML's structural pieces and the schema's own keys.
fn yamlish_text() -> impl Strategy<Value = String> {
    let mut keys: Vec<String> = key_paths()
        .iter()
        .filter_map(|p| p.rsplit('.').next())
        .map(|k| k.trim_end_matches("[]").to_owned())
        .collect();
    keys.extend(["receivers", "route", "leaderElection", "labels", "X-H"].map(String::from));
    keys.sort();
    keys.dedup();
    let piece = prop_oneof![
        3 => prop::sample::select(keys).prop_map(|k| format!("{k}: ")),
        2 => scalar(),
        2 => Just("\n".to_owned()),
        2 => prop::sample::select(vec!["  ", "    ", "- ", "  - ", "\t"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            ":", "[", "]", "{", "}", ",", "#", "---", "...", "? ", "&x ", "*x", "<<: *x", "%YAML 1.2",
            "'", "\"", "|", ">", "!", "@",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..120).prop_map(|p| p.concat())
}

/// One edit of a valid config's text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, bool),
    /// Replaces what follows the first `: ` (or `- `) of a line.
    SetValue(usize, String),
    /// Changes one character of a key (a typo).
    Typo(usize, usize, char),
    Insert(usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let i = any::<usize>();
    prop_oneof![
        1 => i.prop_map(Edit::DeleteLine),
        1 => i.prop_map(Edit::DuplicateLine),
        1 => (i, i).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => (i, any::<bool>()).prop_map(|(a, b)| Edit::Indent(a, b)),
        4 => (i, scalar()).prop_map(|(a, s)| Edit::SetValue(a, s)),
        1 => (i, i, prop::char::range('a', 'z')).prop_map(|(a, b, c)| Edit::Typo(a, b, c)),
        1 => (i, prop_oneof![scalar(), any_text(6)]).prop_map(|(a, s)| Edit::Insert(a, s)),
        1 => i.prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return text.to_owned();
    }
    let n = lines.len();
    match e {
        Edit::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Edit::DuplicateLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
        Edit::Indent(i, more) => {
            let l = &mut lines[i % n];
            if *more {
                l.insert_str(0, "  ");
            } else if let Some(s) = l.strip_prefix("  ") {
                *l = s.to_owned();
            }
        }
        Edit::SetValue(i, v) => {
            // Prefer lines that hold a value: the i-th of them.
            let with_value: Vec<usize> = (0..n)
                .filter(|&j| lines[j].contains(": ") || lines[j].trim_start().starts_with("- "))
                .collect();
            if let Some(&j) = with_value.get(i % with_value.len().max(1)) {
                let l = &lines[j];
                let at = l
                    .find(": ")
                    .map(|p| p + 2)
                    .or_else(|| l.find("- ").map(|p| p + 2))
                    .unwrap_or(l.len());
                lines[j] = format!("{}{v}", &l[..at]);
            }
        }
        Edit::Typo(i, at, c) => {
            let l = &mut lines[i % n];
            let key_end = l.find(':').unwrap_or(0);
            let start = l.len() - l.trim_start().len();
            if key_end > start {
                let mut pos = start + at % (key_end - start);
                while !l.is_char_boundary(pos) {
                    pos -= 1;
                }
                let end = pos + l[pos..].chars().next().map_or(0, char::len_utf8);
                l.replace_range(pos..end, &c.to_string());
            }
        }
        Edit::Insert(i, s) => {
            let l = &mut lines[i % n];
            let mut pos = (i / n.max(1)) % (l.len() + 1);
            while !l.is_char_boundary(pos) {
                pos -= 1;
            }
            l.insert_str(pos, s);
        }
        Edit::Truncate(i) => {
            let mut cut = i % (text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_owned();
        }
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text and YAML-shaped text: Ok or well-formed errors, never a panic.
    #[test]
    fn arbitrary_text_loads_or_errors(text in prop_oneof![any_text(MAX_INPUT), yamlish_text()]) {
        let _loaded = check(&text)?;
    }

    /// The shipped examples, edited a few times: Ok or errors naming paths in the document.
    #[test]
    fn mutated_examples_load_or_error(
        example in 0..EXAMPLES.len(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut text = EXAMPLES[example].1.to_owned();
        for e in &edits {
            text = apply(&text, e);
        }
        prop_assume!(text.len() <= 2 * MAX_INPUT);
        let _loaded = check(&text)?;
    }

    /// One wrong value at a known key of a valid config is reported at that key's path (or,
    /// for a cross-check such as `leaseDuration` > `renewDeadline`, at a sibling's).
    #[test]
    fn a_bad_value_is_reported_at_its_path(key in 0..KEYED.len(), value in scalar()) {
        let (path, template) = KEYED[key];
        let text = template.replace("VALUE", &value);
        if let Err(errs) = check(&text)? {
            let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
            let yaml_error = errs.errors.iter().all(|e| e.path.is_empty());
            prop_assert!(
                yaml_error
                    || errs.errors.iter().any(|e| e.path == path
                        || e.path.starts_with(&format!("{path}."))
                        || e.path.starts_with(&format!("{path}["))
                        || (!parent.is_empty() && e.path.starts_with(parent))),
                "{path} = {value}: {errs}"
            );
        }
    }
}

/// Configs with one `VALUE` slot, and the path of that slot.
const KEYED: &[(&str, &str)] = &[
    ("logLevel", "logLevel: VALUE\n"),
    ("maxEventAgeSeconds", "maxEventAgeSeconds: VALUE\n"),
    ("kubeQPS", "kubeQPS: VALUE\n"),
    ("kubeBurst", "kubeBurst: VALUE\n"),
    ("cacheSize", "cacheSize: VALUE\n"),
    ("eventTTL", "eventTTL: VALUE\n"),
    ("metricsNamePrefix", "metricsNamePrefix: VALUE\n"),
    ("omitLookup", "omitLookup: VALUE\n"),
    ("namespace", "namespace: VALUE\n"),
    (
        "leaderElection.leaseDuration",
        "leaderElection:\n  leaseDuration: VALUE\n",
    ),
    (
        "leaderElection.retryPeriod",
        "leaderElection:\n  retryPeriod: VALUE\n",
    ),
    (
        "route.match[0].reason",
        "route:\n  match:\n    - reason: VALUE\n      receiver: out\nreceivers:\n  - name: out\n    stdout: {}\n",
    ),
    (
        "route.match[0].labels.app.kubernetes.io/name",
        "route:\n  match:\n    - labels:\n        app.kubernetes.io/name: VALUE\n      receiver: out\nreceivers:\n  - name: out\n    stdout: {}\n",
    ),
    (
        "route.match[0].minCount",
        "route:\n  match:\n    - minCount: VALUE\n",
    ),
    (
        "receivers[0].name",
        "receivers:\n  - name: VALUE\n    stdout: {}\n",
    ),
    (
        "receivers[0].queue",
        "receivers:\n  - name: out\n    stdout: {}\n    queue: VALUE\n",
    ),
    (
        "receivers[0].retry.maxBackoff",
        "receivers:\n  - name: out\n    stdout: {}\n    retry:\n      maxBackoff: VALUE\n",
    ),
    (
        "receivers[0].batch.maxEvents",
        "receivers:\n  - name: out\n    stdout: {}\n    batch:\n      maxEvents: VALUE\n",
    ),
    (
        "receivers[0].file.path",
        "receivers:\n  - name: out\n    file:\n      path: VALUE\n",
    ),
    (
        "receivers[0].webhook.endpoint",
        "receivers:\n  - name: out\n    webhook:\n      endpoint: VALUE\n",
    ),
    (
        "receivers[0].webhook.headers.X-H",
        "receivers:\n  - name: out\n    webhook:\n      endpoint: http://x\n      headers:\n        X-H: VALUE\n",
    ),
    (
        "receivers[0].stdout.layout.msg",
        "receivers:\n  - name: out\n    stdout:\n      layout:\n        msg: VALUE\n",
    ),
];

#[test]
fn examples_load_as_shipped() {
    for (name, text) in EXAMPLES {
        if let Err(e) = parse(text, &env) {
            panic!("{name}: {e}");
        }
    }
}

/// A YAML "billion laughs" in a layout (where any tree is valid) is cut off by the parser's
/// budget instead of exhausting memory.
#[test]
fn alias_bomb_is_bounded() {
    let mut text = String::from(
        "receivers:\n  - name: out\n    stdout:\n      layout:\n        a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "        a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let errs = parse(&text, &env).expect_err("an alias bomb");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(errs.to_string().starts_with("invalid YAML"), "{errs}");
}
