//! The operator docs against the code: every config key in docs/configuration.md exists in the
//! loader's schema and every schema key is documented; the same for metric names in
//! docs/metrics.md; and the config examples in the docs load (or fail) as the docs say.

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
    // Registration names, as written in the registry's constructor.
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
    // Documented with the exposed suffixes; compare the base names.
    let documented: BTreeSet<String> = first_column(&doc("metrics.md"))
        .into_iter()
        .map(|m| {
            let m = m
                .strip_prefix("kube_event_exporter_")
                .unwrap_or_else(|| panic!("{m}: not under the default prefix"));
            m.strip_suffix("_total")
                .or_else(|| m.strip_suffix("_info"))
                .unwrap_or(m)
                .to_string()
        })
        .collect();
    assert_same("metrics", &documented, &registered);

    // The suffixes in the docs are the ones exposed: render every unlabelled metric.
    let text = kube_event_exporter::telemetry::Metrics::default().encode();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split([' ', '{']).next().unwrap();
        assert!(
            first_column(&doc("metrics.md")).contains(name),
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
