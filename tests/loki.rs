//! The Loki receiver against a faithful Loki push endpoint (fake_destinations::loki: the real wire format,
//! protobuf + snappy or JSON, decoded independently of our encoder, and Loki's validation and
//! deduplication rules): delivery compared by occurrence key, a 400 that fails only the rejected
//! entries, 429 with Retry-After, JSON, tenant and basic auth, and handovers of real exporter
//! processes with nothing lost and nothing duplicated in the store.

mod common;

use common::scenarios::{self, FAST, Load, Target};

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Delivery, Running, init};
use fake_destinations::loki::{FakeLoki, Fault, Limits, LokiOptions, StoredEntry};
use kube_event_exporter::event::Event;
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig, SimHandle};
use serde_json::json;

fn options() -> LokiOptions {
    LokiOptions {
        keep_lines: true,
        ..LokiOptions::default()
    }
}

/// The occurrence key of a stored entry, read from its line (the full event), after checking
/// that its `occurrence_key` structured metadata says the same.
fn key_of(e: &StoredEntry) -> String {
    let event: Event = serde_json::from_str(&e.line)
        .unwrap_or_else(|err| panic!("line is not an event: {err}: {}", e.line));
    let key = event.occurrence_key();
    assert_eq!(
        e.metadata.get("occurrence_key"),
        Some(&key),
        "occurrence_key metadata of {}",
        e.line
    );
    key
}

fn stored_keys(loki: &FakeLoki) -> Vec<String> {
    loki.entries().iter().map(key_of).collect()
}

async fn wait_stored(loki: &FakeLoki, want: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let have: BTreeSet<String> = stored_keys(loki).into_iter().collect();
        let missing = want.iter().filter(|k| !have.contains(*k)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, Loki still lacks {missing} of {} entries; rejected: {:?}",
            want.len(),
            loki.rejected().iter().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An exporter in this process (no leader election) with one Loki receiver `loki`.
async fn exporter(
    sim: &SimHandle,
    dir: &std::path::Path,
    receiver: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Running {
    let text = format!(
        "omitLookup: true\nmaxEventAgeSeconds: 86400\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: loki\nreceivers:\n{receiver}"
    );
    let cfg = kube_event_exporter::config::parse(&text, env)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir).await;
    common::until_watching(sim).await;
    run
}

fn receiver(url: &str, delivery: &str, extra: &str) -> String {
    format!(
        "  - name: loki\n{delivery}    loki:\n      url: {url}\n      streamLabels: {{job: kube-events, namespace: '{{{{ .Namespace }}}}'}}\n{extra}"
    )
}

const FAST_RETRY: &str = "    retry: {initialBackoff: 50ms, maxBackoff: 2s}\n";

fn metric(run: &kube_event_exporter::telemetry::Metrics, name: &str) -> f64 {
    common::metric(run, &format!("kube_event_exporter_{name}"))
}

/// An event created now (or at `at`) with a message of `message_len` characters; its key.
fn event(sim: &SimHandle, ns: &str, at: jiff::Timestamp, message_len: usize) -> String {
    let ts = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let e = sim
        .create_event(
            ns,
            json!({"metadata": {"generateName": "ev-"},
                   "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns, "apiVersion": "v1"},
                   "reason": "BackOff", "type": "Warning", "count": 1,
                   "message": "m".repeat(message_len.max(1)),
                   "firstTimestamp": ts, "lastTimestamp": ts}),
        )
        .unwrap();
    format!("{}:1", e["metadata"]["uid"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_arrive_once_each_with_the_events_time_labels_and_key() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(options()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &receiver(
            &loki.url(),
            "    batch: {maxEvents: 100, maxWait: 50ms}\n",
            "",
        ),
        &|_| None,
    )
    .await;
    let metrics = run.metrics.clone();
    let g = scenarios::generate(&sim, FAST, 800, 21);
    g.wait().await;
    let want = g.generated();
    wait_stored(&loki, &want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(5)).await;
    let d = Delivery::compare(&want, &stored_keys(&loki));
    eprintln!(
        "loki delivery: {}; requests {}",
        d.summary(),
        loki.requests().len()
    );
    assert!(d.is_exact(), "{}", d.summary());
    for e in loki.entries() {
        let event: Event = serde_json::from_str(&e.line).unwrap();
        assert_eq!(e.labels.get("job").map(String::as_str), Some("kube-events"));
        assert_eq!(
            e.labels.get("namespace").map(String::as_str),
            event.metadata.namespace.as_deref(),
            "the templated label"
        );
        assert_eq!(
            e.ts,
            event.last_seen().unwrap().as_nanosecond(),
            "the entry's timestamp is the event's own time"
        );
        assert_eq!(
            e.metadata.get("event_uid").map(String::as_str),
            Some(event.uid())
        );
    }
    let requests = loki.requests();
    assert!(requests.iter().all(|r| r.status == 204), "all pushes 204");
    assert!(requests.iter().all(
        |r| r.content_type.as_deref() == Some("application/x-protobuf")
            && r.content_encoding.is_none()
    ));
    assert!(
        requests.iter().any(|r| r.entries > 1),
        "occurrences are batched"
    );
    assert_eq!(metric(&metrics, "sink_failed"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_fails_only_the_rejected_entries_and_later_ones_still_arrive() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(LokiOptions {
        limits: Limits {
            max_line_size: 4000,
            ..Limits::default()
        },
        ..options()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &receiver(
            &loki.url(),
            &format!("{FAST_RETRY}    batch: {{maxEvents: 50, maxWait: 300ms}}\n"),
            "",
        ),
        &|_| None,
    )
    .await;
    let metrics = run.metrics.clone();
    let now = jiff::Timestamp::now;
    // The stream's newest entry is now: an entry two hours older is behind Loki's window.
    let first: Vec<String> = (0..3).map(|_| event(&sim, "shop", now(), 10)).collect();
    wait_stored(&loki, &first, Duration::from_secs(20)).await;
    let mut good = first;
    let mut batch: Vec<String> = (0..4).map(|_| event(&sim, "shop", now(), 10)).collect();
    let too_long = event(&sim, "shop", now(), 5000);
    let too_old = event(
        &sim,
        "shop",
        now() - jiff::SignedDuration::from_hours(2),
        10,
    );
    batch.extend((0..4).map(|_| event(&sim, "shop", now(), 10)));
    good.extend(batch);
    wait_stored(&loki, &good, Duration::from_secs(20)).await;
    // Later entries are not held up by the rejected ones.
    let later: Vec<String> = (0..3).map(|_| event(&sim, "shop", now(), 10)).collect();
    wait_stored(&loki, &later, Duration::from_secs(20)).await;
    good.extend(later);
    common::eventually(Duration::from_secs(10), "both failures counted", || {
        metric(&metrics, "sink_failed") >= 2.0
    })
    .await;
    run.stop(Duration::from_secs(5)).await;
    let stored = stored_keys(&loki);
    let d = Delivery::compare(&good, &stored);
    eprintln!("loki 400: {}; rejected {:?}", d.summary(), loki.rejected());
    assert!(d.is_exact(), "{}", d.summary());
    assert!(!stored.contains(&too_long) && !stored.contains(&too_old));
    assert_eq!(
        metric(&metrics, "sink_failed"),
        2.0,
        "only the two rejected entries count as failed"
    );
    assert_eq!(metric(&metrics, "sink_sent"), good.len() as f64);
    let rejected = loki.rejected().join("\n");
    assert!(
        rejected.contains("max entry size '4000' bytes exceeded"),
        "{rejected}"
    );
    assert!(rejected.contains("entry too far behind"), "{rejected}");
    assert!(
        loki.requests()
            .iter()
            .any(|r| r.status == 400 && r.entries > 2),
        "the rejected entries shared a push with valid ones: {:?}",
        loki.requests()
            .iter()
            .map(|r| (r.status, r.entries))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(options()).await.unwrap();
    loki.inject([
        Fault::rate_limited(1),
        Fault::rate_limited(1),
        Fault::status(503),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &receiver(
            &loki.url(),
            &format!("{FAST_RETRY}    batch: {{maxEvents: 100, maxWait: 100ms}}\n"),
            "",
        ),
        &|_| None,
    )
    .await;
    let metrics = run.metrics.clone();
    let want: Vec<String> = (0..20)
        .map(|_| event(&sim, "shop", jiff::Timestamp::now(), 10))
        .collect();
    wait_stored(&loki, &want, Duration::from_secs(30)).await;
    run.stop(Duration::from_secs(5)).await;
    let d = Delivery::compare(&want, &stored_keys(&loki));
    assert!(d.is_exact(), "{}", d.summary());
    let r = loki.requests();
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [429, 429, 503], "{statuses:?}");
    for pair in r[..3].windows(2) {
        if pair[0].status == 429 {
            let waited = pair[1].at.duration_since(pair[0].at);
            assert!(
                waited >= Duration::from_millis(990),
                "retried {waited:?} after a 429 with Retry-After: 1"
            );
        }
    }
    assert!(metric(&metrics, "sink_retried") >= 3.0);
    assert_eq!(metric(&metrics, "sink_failed"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_delivers_the_same_entries() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(options()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = exporter(
        &sim,
        dir.path(),
        &receiver(
            &loki.url(),
            "    batch: {maxEvents: 100, maxWait: 50ms}\n",
            "      format: json\n      structuredMetadata: {reason: '{{ .Reason }}', host: '{{ .Source.Host }}'}\n",
        ),
        &|_| None,
    )
    .await;
    let metrics = run.metrics.clone();
    let g = scenarios::generate(&sim, FAST, 300, 22);
    g.wait().await;
    let want = g.generated();
    wait_stored(&loki, &want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(5)).await;
    let d = Delivery::compare(&want, &stored_keys(&loki));
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(metric(&metrics, "sink_failed"), 0.0);
    assert!(
        loki.requests()
            .iter()
            .all(|r| r.content_type.as_deref() == Some("application/json"))
    );
    for e in loki.entries() {
        let event: Event = serde_json::from_str(&e.line).unwrap();
        let names: Vec<&str> = e.metadata.keys().map(String::as_str).collect();
        assert_eq!(names, ["host", "occurrence_key", "reason"]);
        assert_eq!(
            e.metadata.get("reason").map(String::as_str),
            event.reason.as_deref()
        );
        assert_eq!(e.ts, event.last_seen().unwrap().as_nanosecond());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_basic_auth_and_a_templated_tenant_reach_loki() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // Multi-tenant Loki behind a gateway that wants basic auth; a second one without the gateway.
    let guarded = FakeLoki::start(LokiOptions {
        multi_tenant: true,
        basic_auth: Some(("exporter".into(), "s3cret".into())),
        ..options()
    })
    .await
    .unwrap();
    let per_ns = FakeLoki::start(LokiOptions {
        multi_tenant: true,
        ..options()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let receivers = format!(
        "{}{}",
        receiver(
            &guarded.url(),
            "    batch: {maxEvents: 100, maxWait: 50ms}\n",
            "      tenant: team-a\n      username: exporter\n      password: ${LOKI_PASSWORD}\n",
        ),
        receiver(
            &per_ns.url(),
            "    batch: {maxEvents: 100, maxWait: 50ms}\n",
            "      headers:\n        X-Scope-OrgID: '{{ .Namespace }}'\n",
        )
        .replacen("name: loki", "name: loki-per-ns", 1)
    );
    let text = format!(
        "omitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: loki\n        - receiver: loki-per-ns\nreceivers:\n{receivers}"
    );
    let env = |name: &str| (name == "LOKI_PASSWORD").then(|| "s3cret".to_owned());
    let cfg = kube_event_exporter::config::parse(&text, &env).unwrap();
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 200, 23);
    g.wait().await;
    let want = g.generated();
    wait_stored(&guarded, &want, Duration::from_secs(60)).await;
    wait_stored(&per_ns, &want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(5)).await;
    for loki in [&guarded, &per_ns] {
        let d = Delivery::compare(&want, &stored_keys(loki));
        assert!(d.is_exact(), "{}", d.summary());
        assert!(
            loki.requests().iter().all(|r| r.status == 204),
            "no push refused: {:?}",
            loki.requests()
                .iter()
                .map(|r| (r.status, r.reply.clone()))
                .collect::<Vec<_>>()
        );
    }
    assert!(guarded.entries().iter().all(|e| e.tenant == "team-a"));
    assert!(
        guarded
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Basic ZXhwb3J0ZXI6czNjcmV0"))
    );
    let mut tenants = BTreeSet::new();
    for e in per_ns.entries() {
        let event: Event = serde_json::from_str(&e.line).unwrap();
        assert_eq!(Some(e.tenant.as_str()), event.metadata.namespace.as_deref());
        tenants.insert(e.tenant.clone());
    }
    assert!(
        tenants.len() > 1,
        "several namespaces, several tenants: {tenants:?}"
    );
}

#[tokio::test]
async fn the_test_server_refuses_what_loki_refuses() {
    init();
    let loki = FakeLoki::start(options()).await.unwrap();
    let client = reqwest::Client::new();
    let post = |ct: &'static str, body: Vec<u8>| {
        let req = client
            .post(loki.url())
            .header("content-type", ct)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A minimal valid push, written out by hand: stream {a="b"}, one entry at 1 s.
    let push = |labels: &str, seconds: u8| -> Vec<u8> {
        let ts = [0x08, seconds];
        let mut entry = vec![0x0a, ts.len() as u8];
        entry.extend_from_slice(&ts);
        entry.extend_from_slice(&[0x12, 0x01, b'x']);
        let mut stream = vec![0x0a, labels.len() as u8];
        stream.extend_from_slice(labels.as_bytes());
        stream.extend_from_slice(&[0x12, entry.len() as u8]);
        stream.extend_from_slice(&entry);
        let mut req = vec![0x0a, stream.len() as u8];
        req.extend_from_slice(&stream);
        req
    };
    let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    let proto = "application/x-protobuf";
    // Too old (1970): valid encoding, rejected entry.
    let (status, body) = post(proto, snappy(&push("{a=\"b\"}", 1))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("timestamp too old"), "{body}");
    // Uncompressed protobuf, or snappy's framed format instead of the block format.
    let (status, body) = post(proto, push("{a=\"b\"}", 1)).await;
    assert_eq!(status, 400, "{body}");
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut framed, &push("{a=\"b\"}", 1)).unwrap();
    let (status, body) = post(proto, framed.into_inner().unwrap()).await;
    assert_eq!(status, 400, "{body}");
    // Label syntax, no labels.
    for labels in ["{a=b}", "{a.b=\"c\"}", "a=\"b\"", "{}", "{a=\"\"}"] {
        let (status, body) = post(proto, snappy(&push(labels, 1))).await;
        assert_eq!(status, 400, "{labels}: {body}");
        assert!(
            body.contains("error parsing labels") || body.contains("at least one label"),
            "{labels}: {body}"
        );
    }
    // JSON: the timestamp must be a string of nanoseconds.
    let (status, _) = post(
        "application/json",
        br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post("application/json", br#"{"streams":[]}"#.to_vec()).await;
    assert_eq!(status, 422);
    let now = jiff::Timestamp::now().as_nanosecond();
    let ok =
        format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{now}","x",{{"k":"v"}}]]}}]}}"#);
    let (status, body) = post("application/json", ok.clone().into_bytes()).await;
    assert_eq!(status, 204, "{body}");
    // The same entry again is dropped as identical; the same time with another line is kept.
    let (status, _) = post("application/json", ok.into_bytes()).await;
    assert_eq!(status, 204);
    assert_eq!(loki.duplicates_dropped(), 1);
    let other = format!(r#"{{"streams":[{{"stream":{{"a":"b"}},"values":[["{now}","y"]]}}]}}"#);
    assert_eq!(post("application/json", other.into_bytes()).await.0, 204);
    assert_eq!(loki.entry_count(), 2);
}

/// The scenarios' Loki receiver (every replica has one, routed every occurrence).
fn handover_receiver(loki: &FakeLoki) -> String {
    receiver(
        &loki.url(),
        "    batch: {maxEvents: 100, maxWait: 50ms}\n",
        "",
    )
}

fn eight_seconds() -> Load {
    Load {
        seconds: 8.0,
        ..Load::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handover_stores_every_occurrence_once_in_loki() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(options()).await.unwrap();
    let yaml = handover_receiver(&loki);
    let stored = || stored_keys(&loki);
    let target = Target::Receiver {
        yaml: &yaml,
        name: "loki",
        exported: &stored,
    };
    let o = scenarios::rolling_update(&sim, target, eight_seconds(), 1, 31).await;
    eprintln!(
        "loki graceful handover: {}; identical entries Loki dropped {}",
        o.delivery.summary(),
        loki.duplicates_dropped()
    );
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)]);
    assert!(loki.rejected().is_empty(), "{:?}", loki.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_nothing_and_loki_keeps_no_duplicate() {
    init();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let loki = FakeLoki::start(options()).await.unwrap();
    let yaml = handover_receiver(&loki);
    let stored = || stored_keys(&loki);
    let target = Target::Receiver {
        yaml: &yaml,
        name: "loki",
        exported: &stored,
    };
    let o = scenarios::sigkill(&sim, target, eight_seconds(), 32).await;
    let file = &o.archive;
    let replayed = file.exported - (file.generated - file.lost.len());
    eprintln!(
        "loki SIGKILL: {}; replayed occurrences (file receiver) {replayed}; identical entries Loki dropped {}",
        o.delivery.summary(),
        loki.duplicates_dropped()
    );
    // A replay is the identical entry, which Loki drops: exact in the store.
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert!(loki.rejected().is_empty(), "{:?}", loki.rejected());
}
