//! What operators plug the exporter into. The shipped alerts:
//! `deploy/alerts/kube-event-exporter.rules.yaml` passes `promtool check rules` and its own
//! `promtool test rules` suite (`deploy/alerts/tests.yaml`: each alert fires on the series an
//! exporter in that state exposes, stays silent on a healthy one), and the Prometheus Operator
//! overlay installs exactly the same groups. The Grafana dashboard (`deploy/grafana`) takes its
//! data source as a variable. Every metric a rule or a panel queries is one a running exporter
//! exposes, and the series the suite feeds the rules are the ones a real exporter exposes (a
//! leader without `list events` is run here against kube-sim and read the same way).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::replicas::{Cluster, Timing};
use common::scenarios::{self, FAST};
use kube_sim::{Sim, SimConfig};

const RULES: &str = "deploy/alerts/kube-event-exporter.rules.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// promtool (Debian package `prometheus`), installed first if missing.
fn promtool() -> PathBuf {
    let find = || {
        let out = Command::new("promtool").arg("--version").output().ok()?;
        out.status.success().then(|| PathBuf::from("promtool"))
    };
    common::debian::ensure(
        &["prometheus"],
        "promtool-install.lock",
        "the alert tests",
        find,
    )
}

fn run(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_rules_pass_promtool_check_and_their_tests() {
    let (ok, out) = run(&["check", "rules", RULES], &repo(""));
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(&["test", "rules", "tests.yaml"], &repo("deploy/alerts"));
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert of the rule file has test cases that fire it.
#[test]
fn every_alert_is_tested_firing() {
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    let tests = std::fs::read_to_string(repo("deploy/alerts/tests.yaml")).unwrap();
    let tests: serde_json::Value = serde_saphyr::from_str(&tests).unwrap();
    let fired: Vec<String> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|c| c["alertname"].as_str().map(str::to_string))
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for name in alerts {
        assert!(fired.iter().any(|f| f == name), "no test fires {name}");
    }
}

#[test]
fn the_prometheus_operator_rule_has_the_same_groups() {
    let file: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo(RULES)).unwrap()).unwrap();
    let cr: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo(
            "deploy/overlays/prometheus-operator/prometheusrule.yaml",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cr["kind"], "PrometheusRule");
    assert_eq!(cr["spec"]["groups"], file["groups"]);
    let kustomization = std::fs::read_to_string(repo(
        "deploy/overlays/prometheus-operator/kustomization.yaml",
    ))
    .unwrap();
    assert!(kustomization.contains("- prometheusrule.yaml"));
}

/// A leader with Lease rights but no `list events` (what the issue found on a real cluster): it
/// holds the Lease and owes nothing to its receivers, but every list is forbidden. It exposes the
/// series `KubeEventExporterCannotReadEvents` and `KubeEventExporterSourceFailing` fire on (the
/// promtool suite feeds them the same): its blind time and lag grow, the forbidden lists are
/// counted by cause, and it is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_list_events_shows_it() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.forbid("", "events");
    let mut c = Cluster::new(&sim, Timing::default());
    let mut a = c.start("a").await;
    c.wait_holder(Duration::from_secs(30), |h| h == "a").await;
    let forbidden = "kube_event_exporter_source_failures_total{op=\"list\",cause=\"forbidden\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failures = a.metric(forbidden).await;
        let blind = a.metric("kube_event_exporter_source_blind_seconds").await;
        let lag = a.metric("kube_event_exporter_cursor_lag_seconds").await;
        if failures >= 2.0 && blind >= 3.0 && lag >= 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forbidden lists {failures}, blind {blind}s, lag {lag}s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.metric("kube_event_exporter_is_leader").await, 1.0);
    assert_eq!(a.metric("kube_event_exporter_relists_total").await, 0.0);
    assert_eq!(a.readyz().await, 503);
    // Once allowed, it reads again: the list completes, the watch opens, nothing is blind.
    sim.allow("", "events");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.metric("kube_event_exporter_relists_total").await < 1.0
        || a.metric("kube_event_exporter_source_blind_seconds").await != 0.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the source did not read again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.signal("TERM");
    assert_eq!(a.wait(Duration::from_secs(30)).await, Some(0));
}

/// The metric names an expression or a file queries (`kube_event_exporter_…`).
fn queried(text: &str) -> std::collections::BTreeSet<String> {
    let prefix = "kube_event_exporter_";
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

#[test]
fn the_dashboard_takes_its_data_source_as_a_variable() {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("deploy/grafana/kube-event-exporter.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert_eq!(d["uid"], "kube-event-exporter");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{vars:?}"
    );
    let panels = d["panels"].as_array().unwrap();
    let mut targets = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!queried(t["expr"].as_str().unwrap()).is_empty(), "{t}");
            targets += 1;
        }
    }
    assert!(targets >= 15, "{targets} queries");
}

/// A renamed or removed metric would leave an alert that can never fire and a panel with no
/// data: every metric they query is in a running leader's /metrics (every series exists from the
/// start, so none waits for its first increment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_query_is_exposed_by_a_running_exporter() {
    common::init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let mut c = Cluster::new(&sim, Timing::default());
    let mut a = c.start("a").await;
    c.wait_holder(Duration::from_secs(30), |h| h == "a").await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 50, 91);
    g.wait().await;
    c.wait_exported(&g.generated(), Duration::from_secs(30))
        .await;
    let text = a.metrics_text().await;
    let exposed: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut wanted = queried(&std::fs::read_to_string(repo(RULES)).unwrap());
    let dashboard =
        std::fs::read_to_string(repo("deploy/grafana/kube-event-exporter.json")).unwrap();
    wanted.extend(queried(&dashboard));
    assert!(wanted.len() >= 20, "{wanted:?}");
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| !exposed.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed: {missing:?}\n{text}"
    );
    // The API requests the dashboard shows are counted: the leader's watch and its renewals.
    for request in [
        "kube_event_exporter_api_requests_total{verb=\"watch\",resource=\"events\",code=\"200\"}",
        "kube_event_exporter_api_requests_total{verb=\"update\",resource=\"leases\",code=\"200\"}",
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a.metric(request).await < 1.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{request} never counted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    a.signal("TERM");
    assert_eq!(a.wait(Duration::from_secs(30)).await, Some(0));
}
