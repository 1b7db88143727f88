//! Route trees and receivers end to end: events created in kube-sim, exported through the route
//! semantics of the Go exporter into several receivers; a webhook that is down, then up.

mod common;

use kube_event_exporter::shutdown::Outcome;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, config, init};
use kube_event_exporter::source::Start;
use kube_sim::{GeneratorConfig, Sim, SimConfig, SimHandle};
use serde_json::json;

fn event(sim: &SimHandle, ns: &str, kind: &str, reason: &str, type_: &str) -> String {
    let e = sim
        .create_event(
            ns,
            json!({"metadata": {"generateName": "ev-"}, "involvedObject": {"kind": kind, "name": "x", "namespace": ns, "apiVersion": "v1"},
                   "reason": reason, "type": type_, "count": 1, "message": "m", "lastTimestamp": "2026-01-01T00:00:00Z"}),
        )
        .unwrap();
    format!("{}:1", e["metadata"]["uid"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_tree_drop_beats_match_subtrees_and_several_receivers() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The Go exporter's GH issue 51 route, a subtree that inherits the parent's matches, a sibling
    // that does not see the parent's drop, and one event reaching several receivers.
    let route = r#"  routes:
    - drop:
        - type: "Normal"
      match:
        - reason: "FailedCreatePodContainer"
          receiver: elastic
      routes:
        - match:
            - namespace: "^prod$"
              receiver: prod-failures
    - match:
        - kind: "Pod"
          receiver: pods
    - match:
        - namespace: "^kube-"
      routes:
        - drop:
            - reason: "^Pulled$"
          match:
            - receiver: kube
"#;
    let cfg = config(
        dir.path(),
        "omitLookup: true\nleaderElection: {enabled: false}",
        route,
        &["elastic", "prod-failures", "pods", "kube"],
    );
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let failed_prod = event(&sim, "prod", "Pod", "FailedCreatePodContainer", "Warning");
    let failed_dev = event(&sim, "dev", "Pod", "FailedCreatePodContainer", "Warning");
    let failed_short = event(&sim, "prod", "Pod", "FailedCreate", "Warning");
    let normal = event(&sim, "prod", "Pod", "FailedCreatePodContainer", "Normal");
    let node_pulled = event(&sim, "kube-system", "Node", "Pulled", "Normal");
    let node_started = event(&sim, "kube-system", "Node", "Started", "Normal");
    let all = [
        &failed_prod,
        &failed_dev,
        &failed_short,
        &normal,
        &node_pulled,
        &node_started,
    ];
    let expect =
        |keys: &[&String]| -> BTreeSet<String> { keys.iter().map(|k| k.to_string()).collect() };
    let want = [
        ("elastic", expect(&[&failed_prod, &failed_dev])),
        ("prod-failures", expect(&[&failed_prod])),
        (
            "pods",
            expect(&[&failed_prod, &failed_dev, &failed_short, &normal]),
        ),
        ("kube", expect(&[&node_started])),
    ];
    common::eventually(Duration::from_secs(20), "routing", || {
        want.iter()
            .all(|(r, keys)| run.keys(r).into_iter().collect::<BTreeSet<_>>() == *keys)
    })
    .await;
    let outcome = run.stop(Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Done);
    for (receiver, keys) in &want {
        let got = common::keys_in_file(&dir.path().join(format!("{receiver}.ndjson")));
        assert_eq!(
            got.len(),
            keys.len(),
            "{receiver} got each routed event once: {got:?}"
        );
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            *keys,
            "{receiver}"
        );
    }
    assert_eq!(all.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_down_then_up_loses_nothing_and_keys_are_idempotency_keys() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "omitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: hook\nreceivers:\n  - name: hook\n    retry: {{initialBackoff: 50ms, maxBackoff: 500ms}}\n    batch: {{maxEvents: 20, maxWait: 50ms}}\n    webhook:\n      endpoint: http://127.0.0.1:{port}/events\n"
    );
    let cfg = kube_event_exporter::config::parse(&text, &|_| None).unwrap();
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = sim.generate(GeneratorConfig {
        rate_per_sec: 200.0,
        total: Some(300),
        ..GeneratorConfig::default()
    });
    let metrics = run.metrics.clone();
    common::eventually(
        Duration::from_secs(20),
        "retries while the webhook is down",
        || {
            metrics.encode().lines().any(|l| {
                l.starts_with("kube_event_exporter_sink_retried_total{receiver=\"hook\"}")
                    && !l.ends_with(" 0")
                    && !l.ends_with(" 1")
            })
        },
    )
    .await;
    // Now the webhook comes up.
    let received: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let r = r.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                r.lock()
                    .unwrap()
                    .push((key, serde_json::from_str(&body).unwrap()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    g.wait().await;
    let want = g.generated();
    let keys_now = || -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| {
                body.as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![body.clone()])
            })
            .map(|doc| {
                serde_json::from_value::<kube_event_exporter::event::Event>(doc)
                    .unwrap()
                    .occurrence_key()
            })
            .collect()
    };
    common::eventually(Duration::from_secs(30), "delivery after the outage", || {
        let have: BTreeSet<String> = keys_now().into_iter().collect();
        want.iter().all(|k| have.contains(k))
    })
    .await;
    run.stop(Duration::from_secs(5)).await;
    let d = common::Delivery::compare(&want, &keys_now());
    assert!(d.is_exact(), "{}", d.summary());
    for (key, body) in received.lock().unwrap().iter() {
        let docs = body
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![body.clone()]);
        let first = serde_json::from_value::<kube_event_exporter::event::Event>(docs[0].clone())
            .unwrap()
            .occurrence_key();
        assert!(
            key.starts_with(&first),
            "Idempotency-Key {key} starts with the first occurrence key {first}"
        );
    }
}
