//! Enrichment through discovery and object GETs against kube-sim, label routing on the result, and
//! the HTTP endpoints operators and Prometheus use.

mod common;

use std::time::Duration;

use common::{Running, config, init};
use kube_event_exporter::source::Start;
use kube_event_exporter::telemetry::{Health, Metrics, server};
use kube_sim::{Sim, SimConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn involved_objects_are_enriched_cached_and_missing_ones_marked_deleted() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.put_object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "front"}, "annotations": {"owner": "team-a"}}}))
        .unwrap();
    sim.put_object(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"zone": "a"}}})).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = "  routes:\n    - match:\n        - receiver: all\n    - match:\n        - labels: {tier: \"^front$\"}\n          receiver: front";
    let cfg = config(
        dir.path(),
        "kubeQPS: 1000\nleaderElection: {enabled: false}",
        route,
        &["all", "front"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let mk = |ns: &str, api: &str, kind: &str, name: &str| {
        let mut io = json!({"apiVersion": api, "kind": kind, "name": name});
        if !ns.is_empty() {
            io["namespace"] = json!(ns);
        }
        let ev_ns = if ns.is_empty() { "default" } else { ns };
        let e = sim.create_event(ev_ns, json!({"metadata": {"generateName": "e-"}, "involvedObject": io, "reason": "R", "count": 1})).unwrap();
        format!("{}:1", e["metadata"]["uid"].as_str().unwrap())
    };
    let dep1 = mk("shop", "apps/v1", "Deployment", "web");
    let dep2 = mk("shop", "apps/v1", "Deployment", "web");
    let node = mk("", "v1", "Node", "node-1");
    let gone = mk("shop", "v1", "Pod", "gone-123");
    let all = vec![dep1.clone(), dep2.clone(), node.clone(), gone.clone()];
    common::eventually(Duration::from_secs(20), "export", || {
        run.keys("all").len() == 4
    })
    .await;
    common::eventually(Duration::from_secs(20), "label route", || {
        run.keys("front").len() == 2
    })
    .await;
    let metrics = run.metrics.clone();
    let text = std::fs::read_to_string(dir.path().join("all.ndjson")).unwrap();
    let (d, _) = run.finish("all", &all, Duration::from_secs(5)).await;
    assert!(d.is_exact(), "{}", d.summary());
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_key = |k: &str| {
        docs.iter()
            .find(|d| format!("{}:1", d["metadata"]["uid"].as_str().unwrap()) == k)
            .unwrap()
            .clone()
    };
    let dep = by_key(&dep1);
    assert_eq!(
        dep["involvedObject"]["labels"],
        json!({"app": "web", "tier": "front"})
    );
    assert_eq!(
        dep["involvedObject"]["annotations"],
        json!({"owner": "team-a"})
    );
    assert_eq!(dep["involvedObject"]["deleted"], false);
    assert_eq!(
        by_key(&node)["involvedObject"]["labels"],
        json!({"zone": "a"}),
        "cluster-scoped objects are found"
    );
    assert_eq!(
        by_key(&gone)["involvedObject"]["deleted"],
        true,
        "NotFound is exported as deleted"
    );
    let front: std::collections::BTreeSet<String> =
        common::keys_in_file(&dir.path().join("front.ndjson"))
            .into_iter()
            .collect();
    assert_eq!(
        front,
        [dep1, dep2].into_iter().collect(),
        "label rules match the looked-up labels"
    );
    let text = metrics.encode();
    assert!(
        text.contains("kube_event_exporter_enrich_cache_hits_total 1"),
        "the second event about web is a cache hit:\n{text}"
    );
    let gets: u64 = sim
        .request_counts()
        .iter()
        .filter(|((verb, _), _)| verb == "get")
        .map(|(_, n)| n)
        .sum();
    assert!(
        gets <= 6,
        "discovery of 2 group/versions + 3 object GETs, no more: {gets}"
    );
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Metrics::new("kube_event_exporter_");
    let health = Health::new(Duration::from_secs(600));
    let stop = CancellationToken::new();
    let (addr, serve) = server::bind("127.0.0.1:0", metrics.clone(), health.clone(), stop.clone())
        .await
        .unwrap();
    let task = tokio::spawn(serve);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string()),
                r.text().await.unwrap(),
            )
        }
    };
    assert_eq!(
        get("/readyz").await.0,
        503,
        "not ready before config and API"
    );
    assert_eq!(get("/-/ready").await.0, 503);
    health.set_config_loaded();
    health.set_api_ok(true);
    assert_eq!(get("/readyz").await.0, 200);
    assert_eq!(get("/-/ready").await.0, 200);
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/-/healthy").await.0, 200);
    metrics.relists.inc();
    let (code, ctype, body) = get("/metrics").await;
    assert_eq!(code, 200);
    assert!(ctype.unwrap().starts_with("application/openmetrics-text"));
    assert!(
        body.contains("kube_event_exporter_relists_total 1"),
        "{body}"
    );
    assert!(body.contains("kube_event_exporter_build_info{"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"));
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// RBAC without `get` on a kind (a custom resource, say): its events are all exported, without
/// metadata, and the exporter stops spending GETs on a certain 403 after the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_lookups_export_without_metadata_and_are_not_repeated() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.forbid("apps", "deployments");
    sim.put_object(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}}}))
        .unwrap();
    sim.put_object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "kubeQPS: 1000\nleaderElection: {enabled: false}",
        common::ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let mut want = Vec::new();
    let mut pods = Vec::new();
    for i in 0..160 {
        // Distinct Deployment names, so neither the object cache nor joined lookups hide GETs.
        let (kind, api, name) = if i % 4 == 0 {
            ("Pod", "v1", "web-1".to_string())
        } else {
            ("Deployment", "apps/v1", format!("web-{i}"))
        };
        let e = sim
            .create_event("shop", json!({"metadata": {"generateName": "e-"},
                "involvedObject": {"apiVersion": api, "kind": kind, "name": name, "namespace": "shop"},
                "reason": "R", "count": 1}))
            .unwrap();
        let key = format!("{}:1", e["metadata"]["uid"].as_str().unwrap());
        if kind == "Pod" {
            pods.push(key.clone());
        }
        want.push(key);
    }
    let metrics = run.metrics.clone();
    let text_path = dir.path().join("all.ndjson");
    let (d, _) = run.finish("all", &want, Duration::from_secs(20)).await;
    assert!(d.is_exact(), "{}", d.summary());

    let gets = sim
        .request_counts()
        .get(&("get".to_string(), "deployments".to_string()))
        .copied()
        .unwrap_or(0);
    // 120 Deployment events; up to 16 lookups run at once (the pipeline's enrichment
    // concurrency), so those may be in flight when the first 403 comes back, but no more.
    assert!(
        (1..=16).contains(&gets),
        "{gets} GETs of deployments for 120 events after a 403"
    );
    let enrich_errors = common::metric(&metrics, "kube_event_exporter_enrich_errors");
    assert_eq!(enrich_errors, 120.0, "every Deployment event counted once");
    let text = std::fs::read_to_string(text_path).unwrap();
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!("{}:1", doc["metadata"]["uid"].as_str().unwrap());
        let labels = &doc["involvedObject"]["labels"];
        if pods.contains(&key) {
            assert_eq!(labels, &json!({"app": "web"}), "pods are still enriched");
        } else {
            assert!(
                labels.is_null() || labels == &json!({}),
                "forbidden kind exported without labels: {labels}"
            );
        }
    }
}

/// Secrets are not looked up: `get` on secrets in the ClusterRole would read every Secret in the
/// cluster. An event about a Secret is exported without its labels and without any request for
/// it, while the other events are still enriched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_about_secrets_are_exported_without_a_lookup() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.put_object(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}}}))
        .unwrap();
    sim.put_object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}}}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "kubeQPS: 1000\nleaderElection: {enabled: false}",
        common::ROUTE_ALL,
        &["all"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let mut keys = Vec::new();
    for (kind, name) in [("Secret", "db"), ("Pod", "db-0"), ("Secret", "db")] {
        let e = sim
            .create_event("shop", json!({"metadata": {"generateName": "e-"},
                "involvedObject": {"apiVersion": "v1", "kind": kind, "name": name, "namespace": "shop"},
                "reason": "R", "count": 1}))
            .unwrap();
        keys.push((
            kind,
            format!("{}:1", e["metadata"]["uid"].as_str().unwrap()),
        ));
    }
    let want: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
    let metrics = run.metrics.clone();
    let text_path = dir.path().join("all.ndjson");
    let (d, _) = run.finish("all", &want, Duration::from_secs(20)).await;
    assert!(d.is_exact(), "{}", d.summary());
    let text = std::fs::read_to_string(text_path).unwrap();
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!("{}:1", doc["metadata"]["uid"].as_str().unwrap());
        let kind = keys.iter().find(|(_, k)| *k == key).unwrap().0;
        let labels = &doc["involvedObject"]["labels"];
        if kind == "Pod" {
            assert_eq!(labels, &json!({"app": "db"}), "the pod is enriched");
        } else {
            assert!(
                labels.is_null() || labels == &json!({}),
                "a Secret's labels are not looked up: {labels}"
            );
        }
    }
    let secret_requests: Vec<_> = sim
        .accesses()
        .into_iter()
        .filter(
            |a| matches!(a, kube_sim::Access::Resource { resource, .. } if resource == "secrets"),
        )
        .collect();
    assert!(
        secret_requests.is_empty(),
        "no request for secrets: {secret_requests:?}"
    );
    assert_eq!(
        common::metric(&metrics, "kube_event_exporter_enrich_errors"),
        0.0,
        "not looking a Secret up is no error"
    );
}
