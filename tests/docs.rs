//! The operator docs against the code: every config key in docs/configuration.md exists in the
//! loader's schema and every schema key is documented; the same for metric names in
//! docs/metrics.md; the config examples in the docs load (or fail) as the docs say; and the log
//! messages docs/troubleshooting.md tells operators to search for are logged by the code.

use std::collections::BTreeSet;
use std::path::Path;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The backticked first cell of every table row (`| \`key\` | … |`).
fn first_column(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

/// Both directions at once, so one run names every mismatch.
fn assert_same(what: &str, documented: &BTreeSet<String>, actual: &BTreeSet<String>) {
    let undocumented: Vec<&String> = actual.difference(documented).collect();
    let unknown: Vec<&String> = documented.difference(actual).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{what}: in the code but not documented: {undocumented:?}; documented but not in the code: {unknown:?}"
    );
}

#[test]
fn configuration_reference_lists_exactly_the_schema_keys() {
    let documented = first_column(&doc("configuration.md"));
    let schema: BTreeSet<String> = kube_event_exporter::config::key_paths()
        .into_iter()
        .collect();
    assert!(schema.len() > 60, "key_paths() lists {} keys", schema.len());
    assert_same("config keys", &documented, &schema);
}

#[test]
fn metrics_reference_lists_exactly_the_registered_metrics() {
    // Registration names, as written in the registry's constructor: every one must be exposed.
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/metrics.rs"),
    )
    .unwrap();
    let registered: BTreeSet<String> = source
        .split("reg.register(")
        .skip(1)
        .filter_map(|s| s.split('"').nth(1).map(str::to_string))
        .collect();
    assert!(registered.len() > 20, "found {registered:?}");

    // Every family as a Prometheus scrape sees it: exposed name and type (`# TYPE name type`).
    // Labelled families are exposed once they have a sample.
    let metrics = kube_event_exporter::telemetry::Metrics::default();
    metrics.sample_every_family("r");
    let exposed: BTreeSet<(String, String)> = metrics
        .encode_prometheus()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    let exposed_names: BTreeSet<String> = exposed
        .iter()
        .map(|(n, _)| {
            n.strip_prefix("kube_event_exporter_")
                .unwrap_or_else(|| panic!("{n}: not under the default prefix"))
                .to_string()
        })
        .collect();
    for r in &registered {
        assert!(
            exposed_names.contains(r) || exposed_names.contains(&format!("{r}_total")),
            "{r} is registered but not exposed: {exposed_names:?}"
        );
    }

    // The table: `| name | type | labels | meaning |`, both name and type as exposed.
    let text = doc("metrics.md");
    let documented: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let mut cells = l.split('|').map(str::trim);
            let name = cells.next()?.trim_end_matches('`').to_string();
            let kind = cells.next()?.to_string();
            Some((name, kind))
        })
        .collect();
    let pairs = |s: &BTreeSet<(String, String)>| -> BTreeSet<String> {
        s.iter().map(|(n, k)| format!("{n} ({k})")).collect()
    };
    assert_same("metrics", &pairs(&documented), &pairs(&exposed));

    // OpenMetrics scrapes see the same samples: every sample name is documented (histograms as
    // their family, with the `_bucket`, `_sum` and `_count` series).
    let names: BTreeSet<String> = documented.into_iter().map(|(n, _)| n).collect();
    for line in metrics.encode().lines().filter(|l| !l.starts_with('#')) {
        let name = line.split([' ', '{']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| names.contains(*f))
            .unwrap_or(name);
        assert!(
            names.contains(family),
            "{name} is exposed as such but documented under another name"
        );
    }
}

/// The YAML of every fenced block preceded by `marker` (an HTML comment, invisible when rendered).
fn marked_blocks(text: &str, marker: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != marker {
            continue;
        }
        assert_eq!(lines[i + 1], "```yaml", "a yaml fence follows {marker}");
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| **l != "```")
            .copied()
            .collect();
        out.push((i + 3, body.join("\n")));
    }
    out
}

/// `${VAR}` in examples: any variable is set, as it would be in a real deployment.
fn env(_: &str) -> Option<String> {
    Some("placeholder".into())
}

#[test]
fn config_examples_in_the_docs_load() {
    let mut checked = 0;
    for name in ["configuration.md", "migrating-from-resmoio.md"] {
        for (line, yaml) in marked_blocks(&doc(name), "<!-- check-config -->") {
            if let Err(e) = kube_event_exporter::config::parse(&yaml, &env) {
                panic!("docs/{name}, example at line {line}, does not load:\n{e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "{checked} examples checked");
}

#[test]
fn the_failing_resmoio_example_fails_as_the_migration_guide_says() {
    let text = doc("migrating-from-resmoio.md");
    let blocks = marked_blocks(&text, "<!-- check-config: fails -->");
    assert_eq!(blocks.len(), 1);
    let (line, yaml) = &blocks[0];
    let errors = kube_event_exporter::config::parse(yaml, &env)
        .err()
        .unwrap_or_else(|| panic!("the example at line {line} loads, but the guide says it fails"));
    // The guide shows the errors in the next plain fence; each of its lines, up to "…", is the
    // start of a real error line.
    let shown: Vec<&str> = text[text.find("exporter refuses to start with:").unwrap()..]
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('…').next().unwrap())
        .collect();
    let actual = errors.to_string();
    assert_eq!(
        shown.len(),
        errors.errors.len(),
        "the guide shows {} errors, check-config reports:\n{actual}",
        shown.len()
    );
    for s in shown {
        assert!(
            actual.lines().any(|a| a.starts_with(s)),
            "the guide shows {s:?}, check-config reports:\n{actual}"
        );
    }
}

/// Quotes in docs/troubleshooting.md that are the API server's words, not ours.
const FROM_THE_API_SERVER: &[&str] = &[
    "events is forbidden: User \"system:serviceaccount:…\" cannot list resource \"events\"",
    "leases.coordination.k8s.io … is forbidden",
];

/// Backticked spans of `text` outside fenced blocks, with their whitespace (a span may wrap
/// across lines) collapsed to single spaces.
fn quoted_spans(text: &str) -> Vec<String> {
    let prose: String = text.split("```").step_by(2).collect::<Vec<_>>().join("\n");
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Every string literal in src/, whitespace collapsed and `\"` unescaped: log messages are
/// literals (or format strings) in the call that logs them.
fn source_literals() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                // The character literal '"' is not the start of a string.
                let text = std::fs::read_to_string(&path).unwrap().replace("'\"'", "");
                let mut rest = text.as_str();
                while let Some(start) = rest.find('"') {
                    let body = &rest[start + 1..];
                    let mut end = 0;
                    let mut escaped = false;
                    for (i, c) in body.char_indices() {
                        match c {
                            _ if escaped => escaped = false,
                            '\\' => escaped = true,
                            '"' => {
                                end = i;
                                break;
                            }
                            _ => {}
                        }
                    }
                    let literal = body[..end].replace("\\\"", "\"").replace("\\\n", " ");
                    out.push(literal.split_whitespace().collect::<Vec<_>>().join(" "));
                    rest = &body[end + 1..];
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Char(char),
    /// Any text: `…` or a placeholder `N`/`M` in a quote, a `{…}` format argument in a literal.
    Any,
}

fn quote_parts(quote: &str) -> Vec<Part> {
    let mut out = Vec::new();
    for (i, word) in quote.split(' ').enumerate() {
        if i > 0 {
            out.push(Part::Char(' '));
        }
        if word == "N" || word == "M" {
            out.push(Part::Any);
        } else {
            out.extend(
                word.chars()
                    .map(|c| if c == '…' { Part::Any } else { Part::Char(c) }),
            );
        }
    }
    out
}

fn literal_parts(literal: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut in_argument = false;
    for c in literal.chars() {
        match c {
            '{' if !in_argument => {
                in_argument = true;
                out.push(Part::Any);
            }
            '}' if in_argument => in_argument = false,
            _ if in_argument => {}
            c => out.push(Part::Char(c)),
        }
    }
    out
}

/// Whether `literal` starts with `quote`, either side's `Any` standing for any text.
fn starts(quote: &[Part], literal: &[Part]) -> bool {
    fn go(q: &[Part], l: &[Part], i: usize, j: usize, seen: &mut Vec<Option<bool>>) -> bool {
        if i == q.len() {
            return true;
        }
        let cell = i * (l.len() + 1) + j;
        if let Some(known) = seen[cell] {
            return known;
        }
        let result = if q[i] == Part::Any {
            go(q, l, i + 1, j, seen) || (j < l.len() && go(q, l, i, j + 1, seen))
        } else if j == l.len() {
            false
        } else if l[j] == Part::Any {
            go(q, l, i, j + 1, seen) || go(q, l, i + 1, j, seen)
        } else {
            l[j] == q[i] && go(q, l, i + 1, j + 1, seen)
        };
        seen[cell] = Some(result);
        result
    }
    let mut seen = vec![None; (quote.len() + 1) * (literal.len() + 1)];
    go(quote, literal, 0, 0, &mut seen)
}

/// Whether the code logs `quote`, or a message containing it. Its first words must be the
/// literal's own text (a format argument such as `"{}: {}"` would otherwise match anything).
fn logged_by_the_code(quote: &str, literals: &[Vec<Part>]) -> bool {
    let q = quote_parts(quote);
    let head: Vec<Part> = q
        .iter()
        .take_while(|p| **p != Part::Any)
        .take(10)
        .copied()
        .collect();
    literals
        .iter()
        .any(|l| (0..l.len()).any(|j| l[j..].starts_with(&head) && starts(&q, &l[j..])))
}

/// The troubleshooting guide tells operators which messages to search for: each quote of several
/// words is (part of) a message the code logs, unless it is a config snippet or the API
/// server's own words. It once said `standing by for the lease`, which the code never logged.
#[test]
fn messages_quoted_in_the_troubleshooting_guide_are_logged_by_the_code() {
    let text = doc("troubleshooting.md");
    let literals: Vec<Vec<Part>> = source_literals().iter().map(|l| literal_parts(l)).collect();
    // The matcher can fail: the old wording is not a message of ours.
    assert!(!logged_by_the_code("standing by for the lease", &literals));
    assert!(logged_by_the_code(
        "lost lease; stopped delivering, back to standby",
        &literals
    ));
    let config_keys: BTreeSet<String> = kube_event_exporter::config::key_paths()
        .iter()
        .map(|k| k.rsplit('.').next().unwrap().to_string())
        .collect();
    let spans = quoted_spans(&text);
    for api in FROM_THE_API_SERVER {
        assert!(
            spans.iter().any(|s| s == api),
            "{api:?} is no longer quoted"
        );
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for span in &spans {
        let first = span.split([':', ' ', '.']).next().unwrap_or("");
        if !span.contains(' ')
            || config_keys.contains(first)
            || FROM_THE_API_SERVER.contains(&span.as_str())
        {
            continue;
        }
        checked += 1;
        if !logged_by_the_code(span, &literals) {
            missing.push(span.clone());
        }
    }
    assert!(checked >= 20, "only {checked} quoted messages found");
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md quotes messages the code does not log: {missing:#?}"
    );
}
