//! Property tests of the template engine (issue 14): arbitrary text, generated templates and
//! mutations of valid ones parse or fail with a located error, render or fail with an error,
//! never panic, and never build more than the engine's caps: an output or a function result
//! over `MAX_BUILT` is an error, and so is anything whose size would be out of proportion.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::funcs::MAX_BUILT;
use super::tests::K8S;
use super::{Layout, Template, TemplateError, function_names};

const MAX_INPUT: usize = 2048;
/// Error messages are logged per failing occurrence: bounded whatever the values involved.
const MAX_ERROR: usize = 1024;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn event() -> Value {
    json!({
        "metadata": {"name": "coredns.1798", "namespace": "kube-system", "uid": "4c31", "resourceVersion": "42",
                     "creationTimestamp": "2023-11-17T19:37:03Z", "labels": {"team": "dns", "app.kubernetes.io/name": "x"}},
        "reason": "Killing", "message": "Stopping container coredns",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2023-11-17T19:37:03Z", "lastTimestamp": "2023-11-17T19:37:04Z",
        "count": 3, "type": "Warning", "eventTime": null,
        "clusterName": "prod",
        "involvedObject": {"kind": "Pod", "namespace": "kube-system", "name": "coredns", "uid": "968c",
            "apiVersion": "v1", "labels": {"app": "dns", "k8s-app": "kube-dns"}, "deleted": false}
    })
}

/// The data a template may meet: a normal event, one with a large message (event fields are
/// written by whoever creates the event), and data of the wrong shape.
fn data() -> Vec<Value> {
    let mut big = event();
    big["message"] = Value::String("a%d{{ ".repeat(20_000));
    big["count"] = json!(i64::MAX);
    vec![
        event(),
        big,
        Value::Null,
        json!([1, "x", {"a": []}]),
        json!("text"),
    ]
}

fn check_error(what: &str, src: &str, e: &TemplateError) -> Result<(), TestCaseError> {
    prop_assert!(
        !e.message.trim().is_empty(),
        "{what}: empty message for {src:?}"
    );
    let shown = e.to_string();
    prop_assert!(
        shown.len() <= MAX_ERROR,
        "{what}: error of {} bytes: {shown:.300}",
        shown.len()
    );
    if e.line > 0 {
        prop_assert!(
            e.line <= src.matches('\n').count() + 1,
            "{what}: line {} past the end: {shown}",
            e.line
        );
        prop_assert!(e.column >= 1, "{what}: column 0: {shown}");
    }
    Ok(())
}

/// Parses and renders against every kind of data; checks errors and output sizes.
fn check(src: &str) -> Result<Option<Template>, TestCaseError> {
    let t = match Template::parse_with(src, &K8S) {
        Ok(t) => t,
        Err(e) => {
            prop_assert!(e.line >= 1, "parse error without a position: {e}");
            check_error("parse", src, &e)?;
            return Ok(None);
        }
    };
    prop_assert_eq!(t.source(), src);
    for d in data() {
        match t.render(&d) {
            Ok(out) => prop_assert!(
                out.len() <= MAX_BUILT,
                "output of {} bytes from {src:?}",
                out.len()
            ),
            Err(e) => check_error("render", src, &e)?,
        }
    }
    Ok(Some(t))
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Token soup: delimiters, keywords, operands and function names in random order.
fn token_soup() -> impl Strategy<Value = String> {
    let mut words: Vec<String> = function_names().iter().map(|f| format!("{f} ")).collect();
    words.extend(
        [
            "{{",
            "}}",
            "{{- ",
            " -}}",
            "{{/*",
            "*/}}",
            "(",
            ")",
            "|",
            ",",
            ":=",
            "=",
            "$",
            "$x",
            "$k",
            ".",
            ".Reason",
            ".InvolvedObject.Labels",
            ".Count",
            " ",
            "\n",
            "if ",
            "else ",
            "end",
            "range ",
            "with ",
            "define ",
            "\"",
            "`",
            "\\",
            "'",
            "1",
            "-3",
            "1e999",
            "0x1F",
            "nil",
            "true",
            "\"%d\"",
            "\"é\"",
        ]
        .map(String::from),
    );
    prop::collection::vec(prop::sample::select(words), 0..150).prop_map(|w| w.concat())
}

/// Operands: fields, variables, literals, sizes that hit the caps, and sub-pipelines.
fn operand(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(vec![
            ".", ".Reason", ".Message", ".Count", ".InvolvedObject", ".InvolvedObject.Labels",
            ".InvolvedObject.Labels.app", ".Labels", ".Metadata.Name", ".Nope.Deeper", "$",
            "$.Count", ".GetTimestampMs", ".GetTimestampISO8601", ".LastTimestamp",
        ])
        .prop_map(str::to_owned),
        1 => Just("$x".to_owned()),
        2 => prop::sample::select(vec![
            "0", "1", "-1", "3", "4096", "1048576", "16777216", "16777217", "9223372036854775807",
            "-9223372036854775808", "1.5", "-0.0", "1e300", "0x10", "'a'", "true", "false", "nil",
        ])
        .prop_map(str::to_owned),
        2 => prop::sample::select(vec![
            "\"\"", "\"a\"", "\"%d\"", "\"%s\"", "\"%9999d%9999s\"", "\"%v%v%v\"", "\"%q\"",
            "\"é\"", "\"2006-01-02\"", "\"UTC\"", "\"Europe/Paris\"", "\"\\n\"", "`raw`",
            "\"_0\"", "\"app\"",
        ])
        .prop_map(str::to_owned),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => pipeline(depth - 1).prop_map(|p| format!("({p})")),
    ]
    .boxed()
}

/// A command: a function with arguments, or a lone operand.
fn command(depth: u32) -> BoxedStrategy<String> {
    let names = function_names();
    prop_oneof![
        4 => (prop::sample::select(names), prop::collection::vec(operand(depth), 0..4))
            .prop_map(|(f, args)| {
                let mut s = f.to_owned();
                for a in args {
                    s.push(' ');
                    s.push_str(&a);
                }
                s
            }),
        1 => operand(depth),
    ]
    .boxed()
}

fn pipeline(depth: u32) -> BoxedStrategy<String> {
    prop::collection::vec(command(depth), 1..3)
        .prop_map(|c| c.join(" | "))
        .boxed()
}

/// A template body: text, actions, declarations and control structures.
fn body(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        2 => "[a-z =%{}]{0,6}",
        4 => pipeline(1).prop_map(|p| format!("{{{{ {p} }}}}")),
        1 => pipeline(1).prop_map(|p| format!("{{{{ $x = {p} }}}}")),
        1 => pipeline(1).prop_map(|p| format!("{{{{- {p} -}}}}")),
        1 => Just("{{/* c */}}".to_owned()),
    ];
    if depth == 0 {
        return prop::collection::vec(leaf, 0..4)
            .prop_map(|v| v.concat())
            .boxed();
    }
    let inner = body(depth - 1);
    let control = prop_oneof![
        (pipeline(1), inner.clone(), prop::option::of(inner.clone())).prop_map(|(p, b, e)| {
            match e {
                Some(e) => format!("{{{{ if {p} }}}}{b}{{{{ else }}}}{e}{{{{ end }}}}"),
                None => format!("{{{{ if {p} }}}}{b}{{{{ end }}}}"),
            }
        }),
        (pipeline(1), inner.clone())
            .prop_map(|(p, b)| format!("{{{{ with {p} }}}}{b}{{{{ end }}}}")),
        // Range over small things only: nested ranges of 2^20 would multiply the work (time,
        // not memory); `range_is_capped` covers big counts.
        (
            prop::sample::select(vec![
                "3",
                "0",
                ".InvolvedObject.Labels",
                ".Metadata",
                "list 1 2 3",
                ".Message",
                "splitList \" \" .Message",
                "$x",
                ".Count",
                "nil",
            ]),
            prop::sample::select(vec!["", "$v := ", "$k, $v := "]),
            inner.clone(),
            prop::option::of(inner),
        )
            .prop_map(|(p, decl, b, e)| {
                let uses = if decl.is_empty() { "" } else { "{{ $v }}" };
                match e {
                    Some(e) => {
                        format!("{{{{ range {decl}{p} }}}}{uses}{b}{{{{ else }}}}{e}{{{{ end }}}}")
                    }
                    None => format!("{{{{ range {decl}{p} }}}}{uses}{b}{{{{ end }}}}"),
                }
            }),
    ];
    prop::collection::vec(prop_oneof![2 => body(0), 1 => control], 1..4)
        .prop_map(|v| v.concat())
        .boxed()
}

/// A generated template; `$x` is declared first so that assignments and uses parse.
fn generated() -> impl Strategy<Value = String> {
    (pipeline(1), body(2)).prop_map(|(p, b)| format!("{{{{ $x := {p} }}}}{b}"))
}

/// Valid templates (the shapes layouts use), to mutate.
const VALID: &[&str] = &[
    "{{ .Reason }}: {{ .Message }}",
    "{{ .InvolvedObject.Kind }}/{{ .InvolvedObject.Namespace }}/{{ .InvolvedObject.Name }}",
    r#"{{ if eq .Type "Warning" }}high{{ else }}low{{ end }}"#,
    "{{ range $k, $v := .InvolvedObject.Labels }}{{ $k }}={{ $v }} {{ end }}",
    "{{ .GetTimestampISO8601 }} {{ .GetTimestampMs }}",
    r#"{{ printf "%q=%05d" .Reason .Count | upper }}"#,
    r#"{{- with .InvolvedObject.Labels -}}{{ index . "k8s-app" }}{{- end -}}"#,
    r#"{{ toJson (dict "a" .Count "b" (list 1 2 .Reason)) }}"#,
    r#"{{ date "2006-01-02T15:04:05Z07:00" .LastTimestamp }}"#,
    r#"{{ $x := default "none" .Nope }}{{ $x = upper $x }}{{ $x | quote }}"#,
    r#"{{ range $i, $e := splitList "," "a,b,c" }}{{ $i }}:{{ trunc 1 $e }}{{ end }}"#,
    r#"{{/* comment */}}{{ repeat 3 "ab" | indent 2 | b64enc | b64dec }}"#,
    r#"{{ replace "o" "0" .Message | title | substr 0 5 }}"#,
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Replace(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "{{",
            "}}",
            "{{end}}",
            "{{else}}",
            "(",
            ")",
            "|",
            "$",
            "$x",
            ".",
            "\"",
            "`",
            "-",
            " ",
            ":=",
            "16777216",
            "9223372036854775807",
            "range ",
            "if ",
        ])
        .prop_map(str::to_owned),
        any_text(3),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), piece.clone()).prop_map(|(a, p)| Edit::Insert(a, p)),
        (any::<usize>(), 1usize..12).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (any::<usize>(), piece).prop_map(|(a, p)| Edit::Replace(a, p)),
    ]
}

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(src: &str, e: &Edit) -> String {
    let mut s = src.to_owned();
    match e {
        Edit::Delete(at, n) | Edit::Duplicate(at, n) => {
            let a = boundary(&s, *at);
            let b = boundary(&s, (a + n).min(s.len()));
            let b = b.max(a);
            if matches!(e, Edit::Delete(..)) {
                s.replace_range(a..b, "");
            } else {
                let piece = s[a..b].to_owned();
                s.insert_str(b, &piece);
            }
        }
        Edit::Insert(at, p) => {
            let a = boundary(&s, *at);
            s.insert_str(a, p);
        }
        Edit::Replace(at, p) => {
            let a = boundary(&s, *at);
            let b = boundary(&s, (a + p.len().max(1)).min(s.len())).max(a);
            s.replace_range(a..b, p);
        }
    }
    s
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text and token soup: parse or a located error; render or an error.
    #[test]
    fn arbitrary_text(src in prop_oneof![any_text(MAX_INPUT), token_soup()]) {
        check(&src)?;
    }

    /// Generated templates (every function, caps-sized numbers, control structures).
    #[test]
    fn generated_templates(src in generated()) {
        prop_assume!(src.len() <= MAX_INPUT);
        check(&src)?;
    }

    /// Valid templates with a few edits.
    #[test]
    fn mutated_valid_templates(
        which in 0..VALID.len(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut src = VALID[which].to_owned();
        for e in &edits {
            src = apply(&src, e);
        }
        check(&src)?;
    }

    /// A layout of generated leaves compiles or names the failing leaf.
    #[test]
    fn layouts_name_the_failing_leaf(a in generated(), b in generated()) {
        let layout = json!({"a": a, "n": [1, {"b": b}], "k": true});
        match Layout::compile_with(&layout, &K8S) {
            Ok(l) => {
                for d in data() {
                    if let Err(e) = l.render(&d) {
                        prop_assert!(e.path == "a" || e.path == "n[1].b", "path {:?}", e.path);
                        check_error("layout render", "", &TemplateError { line: 0, ..e })?;
                    }
                }
            }
            Err(e) => prop_assert!(e.path == "a" || e.path == "n[1].b", "path {:?}", e.path),
        }
    }
}

fn render_err(src: &str) -> String {
    match Template::parse_with(src, &K8S).expect(src).render(&event()) {
        Ok(out) => panic!("{src}: rendered {} bytes", out.len()),
        Err(e) => e.to_string(),
    }
}

/// Templates that would build far more than the caps (each of these exhausted memory or ran for
/// hours before the caps): an error, quickly.
#[test]
fn amplification_is_capped() {
    for src in [
        // Output: many results each under the cap.
        r#"{{ range 1048576 }}{{ repeat 4096 "a" }}{{ end }}"#,
        r#"{{ $a := repeat 8388608 "a" }}{{ $a }}{{ $a }}{{ $a }}"#,
        // A function result built from results under the cap.
        r#"{{ $a := repeat 8388608 "a" }}{{ $b := print $a $a $a }}"#,
        r#"{{ $a := repeat 16777216 "a" }}{{ $b := printf "%s%s" $a $a }}"#,
        // Super-linear functions.
        r#"{{ replace "a" (repeat 65536 "b") (repeat 65536 "a") }}"#,
        r#"{{ join (repeat 65536 "b") (splitList "" (repeat 65536 "a")) }}"#,
        r#"{{ splitList "" (repeat 16777216 "a") }}"#,
        r#"{{ split "" (repeat 16777216 "a") }}"#,
        // Nested lists and dicts doubling at each step.
        r#"{{ $a := list 1 2 3 4 5 6 7 8 }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}{{ $a = list $a $a $a $a $a $a $a $a }}"#,
        r#"{{ $a := dict "k" (repeat 4194304 "a") }}{{ $a = dict "a" $a "b" $a "c" $a "d" $a "e" $a }}"#,
    ] {
        let started = std::time::Instant::now();
        let e = render_err(src);
        assert!(e.contains("too large"), "{src}: {e}");
        assert!(e.len() <= MAX_ERROR, "{src}: {e}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{src}: {:?}",
            started.elapsed()
        );
    }
}

/// Error messages quote values (`not a time: …`): bounded however large the value.
#[test]
fn error_messages_are_bounded() {
    for src in [
        r#"{{ date "2006" (repeat 100000 "x") }}"#,
        r#"{{ toDate "2006" (repeat 100000 "x") }}"#,
        r#"{{ range (repeat 100000 "x") }}{{ end }}"#,
        r#"{{ dateInZone "2006" .LastTimestamp (repeat 100000 "x") }}"#,
    ] {
        let e = render_err(src);
        assert!(e.len() <= MAX_ERROR, "{src}: {} bytes", e.len());
    }
    let long = format!("{{{{ {} }}}}", "f".repeat(100_000));
    let e = Template::parse(&long).expect_err("unknown function");
    assert!(
        e.to_string().len() <= MAX_ERROR,
        "{} bytes",
        e.to_string().len()
    );
}

/// A range over a huge count is clamped; over a huge list it is as long as the list.
#[test]
fn range_is_capped() {
    let t = Template::parse("{{ range 9223372036854775807 }}{{ end }}x").expect("parses");
    assert_eq!(t.render(&event()).expect("renders"), "x");
}
