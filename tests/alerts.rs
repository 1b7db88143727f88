//! The shipped alerts: `deploy/alerts/kube-event-exporter.rules.yaml` passes `promtool check
//! rules` and its own `promtool test rules` suite (`deploy/alerts/tests.yaml`: each alert fires on
//! the series an exporter in that state exposes, stays silent on a healthy one), and the
//! Prometheus Operator overlay installs exactly the same groups. The series the suite feeds the
//! rules are the ones a real exporter exposes: a leader without `list events` is run here against
//! kube-sim and read the same way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::replicas::{Cluster, Timing};
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
