//! elasticsearch / opensearch receivers against a real OpenSearch-API server: osmem-server from
//! PyPI (installed by the tests into target/test-servers, see common/pyservers.rs), which answers
//! `_bulk` per item with 201/409/400 like OpenSearch. Data streams, which osmem-server does not
//! have, and the request headers are checked against an in-test receiver that speaks the same
//! protocol and enforces Elasticsearch's data-stream rules.
//!
//! Every delivery test compares the occurrence keys sent (or generated) with the documents the
//! server holds, by `_id` and by the `{uid}:{count}` of each stored document.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pyservers::{PyPackage, Ready, Server, ServerSpec};
use kube_event_exporter::config::{self, ReceiverConfig};
use kube_event_exporter::event::{Event, Occurrence};
use kube_event_exporter::progress::{Position, Tracker};
use kube_event_exporter::sink::{Delivery, Receivers};
use kube_event_exporter::telemetry::Metrics;
use serde_json::{Value, json};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

const OSMEM: PyPackage = PyPackage {
    spec: "osmem-server==0.1.6",
    binary: "osmem-server",
};

fn osmem() -> ServerSpec {
    let parent = std::process::id().to_string();
    ServerSpec::new(
        OSMEM.install(),
        &[
            "-addr",
            "127.0.0.1:{port}",
            "-no-stdin-watch",
            "-no-ja",
            "-parent-pid",
            &parent,
        ],
        Ready::Http("/"),
    )
}

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    common::init();
}

fn receivers(yaml: &str) -> Vec<ReceiverConfig> {
    let text = format!("route:\n  routes: []\nreceivers:\n{yaml}");
    config::parse(&text, &|_| None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .receivers
}

/// An event `uid` at occurrence `count`, last seen at `at`.
fn occurrence(uid: &str, count: i32, at: &str, message: &str) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(json!({
        "metadata": {"uid": uid, "resourceVersion": "1", "namespace": "web", "name": format!("{uid}.17")},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "web",
            "labels": {"app.kubernetes.io/name": "web"}},
        "reason": "BackOff", "message": message, "count": count, "type": "Warning",
        "firstTimestamp": at, "lastTimestamp": at,
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

fn occurrences(n: usize, prefix: &str) -> Vec<Arc<Occurrence>> {
    (0..n)
        .map(|i| {
            occurrence(
                &format!("{prefix}-{i}"),
                1 + (i % 3) as i32,
                "2024-05-06T07:08:09Z",
                "Back-off restarting failed container",
            )
        })
        .collect()
}

/// Receivers started in-process, fed by `send`, stopped (drained) by `finish`.
struct Rig {
    receivers: Option<Receivers>,
    tasks: TaskTracker,
    tracker: Tracker,
    metrics: Metrics,
    seq: u64,
}

impl Rig {
    async fn start(yaml: &str) -> Rig {
        let metrics = Metrics::default();
        let tasks = TaskTracker::new();
        let receivers =
            Receivers::start(&receivers(yaml), &metrics, &tasks, CancellationToken::new())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        Rig {
            receivers: Some(receivers),
            tasks,
            tracker: Tracker::new(None),
            metrics,
            seq: 0,
        }
    }

    async fn send(&mut self, name: &str, occs: &[Arc<Occurrence>]) {
        for occ in occs {
            self.seq += 1;
            let ticket = self.tracker.begin(Some(Position {
                resource_version: self.seq.to_string().into(),
                event_time: None,
                checked_at: None,
            }));
            let r = self.receivers.as_ref().unwrap().get(name).unwrap();
            r.send(Delivery {
                occ: occ.clone(),
                ack: ticket.ack(),
            })
            .await;
            ticket.release();
        }
    }

    /// Closes the queues and waits for the workers to drain (bounded).
    async fn finish(&mut self) {
        if let Some(r) = self.receivers.take() {
            r.close();
        }
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(60), self.tasks.wait())
            .await
            .expect("receivers drained within 60 s");
    }

    fn metric(&self, name: &str) -> f64 {
        common::metric(&self.metrics, name)
    }

    /// Every occurrence handed over was acknowledged (delivered, or failed for good).
    fn all_acked(&self) -> bool {
        self.tracker.cursor().seq == self.seq
    }
}

fn keys(occs: &[Arc<Occurrence>]) -> Vec<String> {
    occs.iter().map(|o| o.key.to_string()).collect()
}

/// The documents of `index`: `_id` → `_source`.
async fn documents(url: &str, index: &str) -> BTreeMap<String, Value> {
    let resp = reqwest::Client::new()
        .post(format!("{url}/{index}/_search"))
        .json(&json!({"size": 10000, "query": {"match_all": {}}}))
        .send()
        .await
        .expect("search");
    if resp.status() == 404 {
        return BTreeMap::new();
    }
    let v: Value = resp.json().await.expect("search answer");
    v["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_owned(), h["_source"].clone()))
        .collect()
}

/// What the index holds compared with `want`: every key exactly once (by `_id`, and by the
/// `{uid}:{count}` of each stored document).
async fn compare_index(url: &str, index: &str, want: &[String]) -> common::Delivery {
    let docs = documents(url, index).await;
    for (id, source) in &docs {
        let key = format!(
            "{}:{}",
            source["metadata"]["uid"].as_str().unwrap_or("?"),
            source["count"]
        );
        assert_eq!(&key, id, "document {id} holds occurrence {key}");
    }
    let stored: Vec<String> = docs.keys().cloned().collect();
    common::Delivery::compare(want, &stored)
}

async fn wait_for_index(url: &str, index: &str, want: &[String], limit: Duration) {
    let want: BTreeSet<&String> = want.iter().collect();
    let deadline = Instant::now() + limit;
    loop {
        let have = documents(url, index).await;
        let missing = want.iter().filter(|k| !have.contains_key(**k)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, {index} lacks {missing} of {} documents",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn opensearch_receiver(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    retry: {{initialBackoff: 20ms, maxBackoff: 200ms}}\n    batch: {{maxEvents: 100, maxWait: 50ms}}\n    opensearch:\n      hosts: [\"{url}\"]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delivery_writes_every_occurrence_once_in_few_requests() {
    init();
    let server = osmem().start();
    let url = server.url();
    let mut rig = Rig::start(&opensearch_receiver(
        "os",
        &url,
        "      index: kube-events\n",
    ))
    .await;
    let occs = occurrences(450, "bulk");
    rig.send("os", &occs).await;
    rig.finish().await;
    let d = compare_index(&url, "kube-events", &keys(&occs)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(rig.metric("kube_event_exporter_sink_sent_total"), 450.0);
    let requests = rig.metric("kube_event_exporter_batch_size_count");
    assert!(
        (1.0..=20.0).contains(&requests),
        "{requests} _bulk requests for 450 occurrences: batched, never one per event"
    );
    assert!(rig.all_acked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_answered_409_and_counted_as_already_delivered() {
    init();
    let server = osmem().start();
    let url = server.url();
    let yaml = opensearch_receiver("os", &url, "      index: kube-events\n");
    let occs = occurrences(120, "replay");
    let mut first = Rig::start(&yaml).await;
    first.send("os", &occs[..80]).await;
    first.finish().await;
    // A successor replays from an older cursor: 80 already there, 40 new.
    let mut second = Rig::start(&yaml).await;
    second.send("os", &occs).await;
    second.finish().await;
    let d = compare_index(&url, "kube-events", &keys(&occs)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(
        second.metric("kube_event_exporter_sink_already_delivered_total"),
        80.0
    );
    assert_eq!(second.metric("kube_event_exporter_sink_sent_total"), 120.0);
    assert_eq!(second.metric("kube_event_exporter_sink_failed_total"), 0.0);
    assert_eq!(second.metric("kube_event_exporter_sink_retried_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_error_is_permanent_while_the_rest_of_the_batch_is_delivered() {
    init();
    let server = osmem().start();
    let url = server.url();
    // `n` is a number in the index; three occurrences carry text there.
    let created = reqwest::Client::new()
        .put(format!("{url}/shaped"))
        .json(&json!({"mappings": {"properties": {"n": {"type": "long"}}}}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let yaml = opensearch_receiver(
        "os",
        &url,
        "      index: shaped\n      layout:\n        metadata: {uid: \"{{ .UID }}\"}\n        count: \"{{ .Count }}\"\n        n: \"{{ .Message }}\"\n",
    );
    let mut occs = Vec::new();
    let mut bad = Vec::new();
    for i in 0..40 {
        let message = if i % 13 == 5 {
            format!("not a number {i}")
        } else {
            i.to_string()
        };
        let o = occurrence(&format!("m-{i}"), 1, "2024-05-06T07:08:09Z", &message);
        if i % 13 == 5 {
            bad.push(o.key.to_string());
        }
        occs.push(o);
    }
    let mut rig = Rig::start(&yaml).await;
    rig.send("os", &occs).await;
    rig.finish().await;
    let good: Vec<String> = keys(&occs)
        .into_iter()
        .filter(|k| !bad.contains(k))
        .collect();
    let docs = documents(&url, "shaped").await;
    let stored: Vec<String> = docs.keys().cloned().collect();
    let d = common::Delivery::compare(&good, &stored);
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(bad.len(), 3);
    assert_eq!(rig.metric("kube_event_exporter_sink_failed_total"), 3.0);
    assert_eq!(rig.metric("kube_event_exporter_sink_sent_total"), 37.0);
    assert_eq!(
        rig.metric("kube_event_exporter_sink_retried_total"),
        0.0,
        "a mapping error is never retried"
    );
    assert!(rig.all_acked(), "the failed ones are acknowledged too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_then_up_gets_everything() {
    init();
    let spec = osmem();
    let port = common::pyservers::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut rig = Rig::start(&opensearch_receiver(
        "os",
        &url,
        "      index: kube-events\n",
    ))
    .await;
    let occs = occurrences(150, "outage");
    rig.send("os", &occs[..100]).await;
    common::eventually(
        Duration::from_secs(20),
        "retries while the server is down",
        || rig.metric("kube_event_exporter_sink_retried_total") >= 2.0,
    )
    .await;
    assert!(
        !rig.all_acked(),
        "nothing is acknowledged while the server is down"
    );
    let server = spec.start_on(port);
    rig.send("os", &occs[100..]).await;
    wait_for_index(
        &server.url(),
        "kube-events",
        &keys(&occs),
        Duration::from_secs(30),
    )
    .await;
    rig.finish().await;
    let d = compare_index(&server.url(), "kube-events", &keys(&occs)).await;
    assert!(d.is_exact(), "{}", d.summary());
    assert!(rig.all_acked());
    assert_eq!(rig.metric("kube_event_exporter_sink_failed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_event_id_keeps_one_document_per_event_at_its_latest_count() {
    init();
    let server = osmem().start();
    let url = server.url();
    let yaml = opensearch_receiver(
        "os",
        &url,
        "      index: per-event\n      useEventID: true\n",
    );
    let a = |count: i32| occurrence("ev-a", count, "2024-05-06T07:08:09Z", "m");
    let b = |count: i32| occurrence("ev-b", count, "2024-05-06T07:08:09Z", "m");
    let mut rig = Rig::start(&yaml).await;
    rig.send("os", &[a(1), a(2), a(3), b(1)]).await;
    rig.finish().await;
    // A replay of older occurrences (a successor resuming from an older cursor) comes later.
    let mut replay = Rig::start(&yaml).await;
    replay.send("os", &[a(2), a(1), b(1), b(2)]).await;
    replay.finish().await;
    let docs = documents(&url, "per-event").await;
    assert_eq!(
        docs.keys().cloned().collect::<Vec<_>>(),
        ["ev-a", "ev-b"],
        "one document per event, _id = the event's uid"
    );
    assert_eq!(
        docs["ev-a"]["count"], 3,
        "an older occurrence never overwrites a newer one"
    );
    assert_eq!(
        docs["ev-b"]["count"], 2,
        "a newer occurrence replaces the document"
    );
    let version: Value = reqwest::get(format!("{url}/per-event/_doc/ev-a"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["_version"], 3, "external version = the count");
    assert_eq!(
        replay.metric("kube_event_exporter_sink_already_delivered_total"),
        3.0,
        "a:2, a:1 and b:1 were already superseded or stored"
    );
    assert_eq!(replay.metric("kube_event_exporter_sink_failed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_format_uses_the_event_time_and_templates() {
    init();
    let server = osmem().start();
    let url = server.url();
    let yaml = opensearch_receiver(
        "os",
        &url,
        "      indexFormat: \"kube-events-{{ .InvolvedObject.Namespace }}-{2006.01.02}\"\n      index: ignored-when-indexformat-is-set\n",
    );
    let day1 = occurrence("d-1", 1, "2024-02-29T23:59:59Z", "m");
    let day2 = occurrence("d-2", 1, "2024-03-01T00:00:01Z", "m");
    let mut rig = Rig::start(&yaml).await;
    rig.send("os", &[day1.clone(), day2.clone()]).await;
    rig.finish().await;
    let d1 = documents(&url, "kube-events-web-2024.02.29").await;
    let d2 = documents(&url, "kube-events-web-2024.03.01").await;
    assert_eq!(d1.keys().collect::<Vec<_>>(), [&day1.key.to_string()]);
    assert_eq!(d2.keys().collect::<Vec<_>>(), [&day2.key.to_string()]);
}

// ---- an in-test receiver speaking the _bulk protocol, with Elasticsearch's data-stream rules ----

#[derive(Default)]
struct Recorded {
    /// (index, _id, document) of every document written.
    docs: Vec<(String, String, Value)>,
    /// Headers of every request.
    headers: Vec<axum::http::HeaderMap>,
    /// Ops of every item, as received: ("create"|"index", index).
    ops: Vec<(String, String)>,
}

#[derive(Clone)]
struct Fake {
    /// Names that are data streams (as an index template would make them).
    streams: Arc<Vec<String>>,
    rec: Arc<Mutex<Recorded>>,
    /// Items still to refuse: every other one with 429 (a full write queue), the rest with 503.
    throttle: Arc<std::sync::atomic::AtomicUsize>,
}

async fn fake_bulk(
    axum::extract::State(fake): axum::extract::State<Fake>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let text = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut s)
            .expect("a gzip body");
        s
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    let mut rec = fake.rec.lock().unwrap();
    rec.headers.push(headers);
    let mut lines = text.lines();
    let mut items = Vec::new();
    let mut errors = false;
    while let (Some(action), Some(doc)) = (lines.next(), lines.next()) {
        let action: Value = serde_json::from_str(action).unwrap();
        let (op, meta) = action.as_object().unwrap().iter().next().unwrap();
        let index = meta["_index"].as_str().unwrap().to_owned();
        let id = meta["_id"].as_str().unwrap().to_owned();
        let doc: Value = serde_json::from_str(doc).unwrap();
        rec.ops.push((op.clone(), index.clone()));
        let stream = fake.streams.contains(&index);
        let throttled = fake
            .throttle
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .ok();
        let item = if let Some(n) = throttled {
            if n % 2 == 0 {
                json!({"status": 429, "error": {"type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation"}})
            } else {
                json!({"status": 503, "error": {"type": "unavailable_shards_exception",
                    "reason": "primary shard is not active"}})
            }
        } else if stream && op != "create" {
            json!({"status": 400, "error": {"type": "illegal_argument_exception",
                "reason": "only write ops with an op_type of create are allowed in data streams"}})
        } else if stream && doc.get("@timestamp").is_none() {
            json!({"status": 400, "error": {"type": "document_parsing_exception",
                "reason": "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing",
                "caused_by": {"type": "illegal_argument_exception",
                    "reason": "data stream timestamp field [@timestamp] is missing"}}})
        } else if rec.docs.iter().any(|(i, d, _)| *i == index && *d == id) {
            json!({"status": 409, "error": {"type": "version_conflict_engine_exception",
                "reason": format!("[{id}]: version conflict, document already exists")}})
        } else {
            rec.docs.push((index.clone(), id.clone(), doc));
            let backing = if stream {
                format!(".ds-{index}-2024.05.06-000001")
            } else {
                index
            };
            json!({"_index": backing, "_id": id, "status": 201, "result": "created"})
        };
        errors |= item["status"] != 201;
        items.push(json!({ op.clone(): item }));
    }
    axum::Json(json!({"took": 1, "errors": errors, "items": items}))
}

async fn fake_server(streams: &[&str]) -> (String, Arc<Mutex<Recorded>>) {
    fake_server_throttling(streams, 0).await
}

/// As `fake_server`, refusing the first `throttle` items with 429 or 503.
async fn fake_server_throttling(
    streams: &[&str],
    throttle: usize,
) -> (String, Arc<Mutex<Recorded>>) {
    let fake = Fake {
        streams: Arc::new(streams.iter().map(|s| s.to_string()).collect()),
        rec: Arc::default(),
        throttle: Arc::new(throttle.into()),
    };
    let rec = fake.rec.clone();
    let app = axum::Router::new()
        .route("/_bulk", axum::routing::post(fake_bulk))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_are_detected_and_written_with_create_and_the_event_time() {
    init();
    let (url, rec) = fake_server(&["logs-kube-events"]).await;
    // useEventID asks for `index` ops: the stream refuses them, the receiver notices and creates.
    let yaml = format!(
        "  - name: es\n    retry: {{initialBackoff: 10ms, maxBackoff: 50ms}}\n    batch: {{maxEvents: 50, maxWait: 20ms}}\n    elasticsearch:\n      hosts: [\"{url}\"]\n      index: logs-kube-events\n      useEventID: true\n"
    );
    let occs: Vec<_> = (0..30)
        .map(|i| occurrence(&format!("s-{i}"), 1, "2024-05-06T07:08:09Z", "m"))
        .collect();
    let mut rig = Rig::start(&yaml).await;
    rig.send("es", &occs).await;
    rig.finish().await;
    let rec = rec.lock().unwrap();
    let stored: Vec<String> = rec.docs.iter().map(|(_, id, _)| id.clone()).collect();
    let d = common::Delivery::compare(&keys(&occs), &stored);
    assert!(d.is_exact(), "{}", d.summary());
    for (_, _, doc) in &rec.docs {
        assert_eq!(
            doc["@timestamp"], "2024-05-06T07:08:09.000Z",
            "the event's time"
        );
    }
    assert!(
        rec.ops.iter().any(|(op, _)| op == "index"),
        "first tried as asked"
    );
    assert_eq!(
        rec.ops
            .iter()
            .rev()
            .take(30)
            .filter(|(op, _)| op == "create")
            .count(),
        30,
        "then created"
    );
    assert_eq!(rig.metric("kube_event_exporter_sink_failed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_stream_true_creates_with_timestamp_from_the_first_request_and_replays_are_409() {
    init();
    let (url, rec) = fake_server(&["logs-k"]).await;
    let yaml = format!(
        "  - name: es\n    batch: {{maxEvents: 50, maxWait: 20ms}}\n    elasticsearch:\n      hosts: [\"{url}\"]\n      index: logs-k\n      dataStream: true\n      layout:\n        msg: \"{{{{ .Message }}}}\"\n        \"@timestamp\": \"{{{{ .LastTimestamp }}}}\"\n"
    );
    let occs = occurrences(20, "ds");
    let mut rig = Rig::start(&yaml).await;
    rig.send("es", &occs).await;
    rig.send("es", &occs).await;
    rig.finish().await;
    let rec = rec.lock().unwrap();
    assert_eq!(rec.ops.len(), 40, "no request was refused");
    assert_eq!(rec.docs.len(), 20);
    assert_eq!(
        rig.metric("kube_event_exporter_sink_already_delivered_total"),
        20.0
    );
    // The layout's own @timestamp is kept.
    assert!(rec.docs.iter().all(|(_, _, d)| d["@timestamp"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_headers_and_gzip_are_sent() {
    init();
    let (url, rec) = fake_server(&[]).await;
    let yaml = format!(
        "  - name: es\n    elasticsearch:\n      hosts: [\"{url}\"]\n      index: ev\n      username: elastic\n      password: changeme\n      headers:\n        X-Tenant: blue\n  - name: keyed\n    elasticsearch:\n      hosts: [\"{url}\"]\n      index: ev2\n      apiKey: a2V5OnNlY3JldA==\n      gzip: false\n"
    );
    let mut rig = Rig::start(&yaml).await;
    rig.send("es", &occurrences(3, "h")).await;
    rig.send("keyed", &occurrences(3, "k")).await;
    rig.finish().await;
    let rec = rec.lock().unwrap();
    let basic = rec
        .headers
        .iter()
        .find(|h| h.get("x-tenant").is_some())
        .expect("a request with the configured header");
    assert_eq!(basic["authorization"], "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    assert_eq!(basic["content-encoding"], "gzip");
    assert_eq!(basic["content-type"], "application/x-ndjson");
    let keyed = rec
        .headers
        .iter()
        .find(|h| h.get("x-tenant").is_none())
        .unwrap();
    assert_eq!(keyed["authorization"], "ApiKey a2V5OnNlY3JldA==");
    assert!(keyed.get("content-encoding").is_none());
    assert_eq!(rec.docs.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_items_are_resent_alone_with_backoff() {
    init();
    let (url, rec) = fake_server_throttling(&[], 5).await;
    let yaml = format!(
        "  - name: es\n    retry: {{initialBackoff: 10ms, maxBackoff: 50ms}}\n    batch: {{maxEvents: 20, maxWait: 1s}}\n    elasticsearch:\n      hosts: [\"{url}\"]\n      index: ev\n"
    );
    let occs = occurrences(20, "t");
    let mut rig = Rig::start(&yaml).await;
    rig.send("es", &occs).await;
    rig.finish().await;
    let rec = rec.lock().unwrap();
    let stored: Vec<String> = rec.docs.iter().map(|(_, id, _)| id.clone()).collect();
    let d = common::Delivery::compare(&keys(&occs), &stored);
    assert!(d.is_exact(), "{}", d.summary());
    assert_eq!(
        rec.ops.len(),
        25,
        "the batch of 20 once, then only the 5 refused items"
    );
    assert_eq!(
        rec.headers.len(),
        2,
        "one request for the batch, one for the refused"
    );
    assert_eq!(rig.metric("kube_event_exporter_sink_retried_total"), 1.0);
    assert_eq!(rig.metric("kube_event_exporter_sink_failed_total"), 0.0);
    assert_eq!(rig.metric("kube_event_exporter_sink_sent_total"), 20.0);
}

#[test]
fn tls_files_are_checked_before_start() {
    init();
    let cfgs = receivers(
        "  - name: os\n    opensearch:\n      hosts: [\"https://127.0.0.1:9200\"]\n      index: ev\n      tls: {caFile: /nonexistent/ca.crt}\n",
    );
    let err = kube_event_exporter::sink::check(&cfgs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("receivers[0].opensearch.tls.caFile") && err.contains("/nonexistent/ca.crt"),
        "{err}"
    );
}

// ---- config ----

#[test]
fn resmoio_readme_examples_load() {
    init();
    // resmoio's README, with its `true|false` placeholders written as a value.
    let es = r#"
route:
  routes:
    - match:
        - receiver: "dump"
receivers:
  - name: "dump"
    elasticsearch:
      hosts:
        - http://localhost:9200
      index: kube-events
      # Ca be used optionally for time based indices, accepts Go time formatting directives
      indexFormat: "kube-events-{2006-01-02}"
      username: # optional
      password: # optional
      cloudID: # optional
      apiKey: # optional
      headers: # optional，Can be used to append the additional key/value pairs into the request headers
      # If set to true, it allows updating the same document in ES (might be useful handling count)
      useEventID: true
      # Type should be only used for clusters Version 6 and lower.
      # type: kube-event
      # If set to true, all dots in labels and annotation keys are replaced by underscores. Defaults false
      deDot: true
      layout: # Optional
      tls: # optional, advanced options for tls
        insecureSkipVerify: false # optional, if set to true, the tls cert won't be verified
        serverName: # optional, the domain, the certificate was issued for, in case it doesn't match the hostname used for the connection
        caFile: # optional, path to the CA file of the trusted authority the cert was signed with
"#;
    let os = r#"
route:
  routes:
    - match:
        - receiver: "dump"
receivers:
  - name: "dump"
    opensearch:
      hosts:
        - http://localhost:9200
      index: kube-events
      # Can be used optionally for time based indices, accepts templates and Go time formatting directives
      indexFormat: "kube-events-{{ .InvolvedObject.Namespace }}-{2006-01-02}"
      username: # optional
      password: # optional
      # If set to true, it allows updating the same document in ES (might be useful handling count)
      useEventID: false
      # Type should be only used for clusters Version 6 and lower.
      # type: kube-event
      # If set to true, all dots in labels and annotation keys are replaced by underscores. Defaults false
      deDot: false
      layout: # Optional
      tls: # optional, advanced options for tls
        insecureSkipVerify: true # optional, if set to true, the tls cert won't be verified
        serverName: # optional, the domain, the certificate was issued for, in case it doesn't match the hostname used for the connection
        caFile: # optional, path to the CA file of the trusted authority the cert was signed with
"#;
    for text in [es, os] {
        let cfg = config::parse(text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.receivers.len(), 1);
        kube_event_exporter::sink::check(&cfg.receivers).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn config_mistakes_are_errors_with_their_path() {
    let text = "receivers:\n  - name: es\n    elasticsearch:\n      hosts: [\"ftp://x\"]\n      index: Kube\n      password: p\n      dataStream: true\n      useEventID: true\n      aws: {service: lambda}\n  - name: os\n    opensearch:\n      indexFormat: \"ev-{Jan}\"\n      cloudID: nonsense\n";
    let err = config::parse(text, &|_| None).unwrap_err().to_string();
    for want in [
        "receivers[0].elasticsearch.hosts[0]: invalid URL \"ftp://x\": scheme must be http or https",
        "receivers[0].elasticsearch.index: index name \"Kube\" must be lowercase",
        "receivers[0].elasticsearch.password: is set without username",
        "receivers[0].elasticsearch.useEventID: a data stream is append-only",
        "receivers[0].elasticsearch.aws.service: \"lambda\"",
        "receivers[1].opensearch.indexFormat: index name \"ev-Jan\" must be lowercase",
        "receivers[1].opensearch.cloudID: not a Cloud ID",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

// ---- real exporter processes: SIGKILL of the leader and a graceful handover ----

mod handover {
    use super::*;
    use common::scenarios::{self, Load, Outcome, Target};
    use kube_sim::{Sim, SimConfig};

    fn search_receiver(url: &str) -> String {
        format!(
            "  - name: search\n    retry: {{initialBackoff: 20ms, maxBackoff: 500ms}}\n    batch: {{maxEvents: 200, maxWait: 100ms}}\n    opensearch:\n      hosts: [\"{url}\"]\n      index: kube-events\n"
        )
    }

    /// Two replicas export to osmem-server, the leader killed or given SIGTERM; returns the
    /// scenario's outcome (the index's document ids as its target, read every 100 ms) and the
    /// index checked document by document.
    async fn scenario(kill: bool, seed: u64) -> (Outcome, common::Delivery) {
        let server: Server = osmem().start();
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let (url, mirror) = (server.url(), ids.clone());
        let reader = tokio::spawn(async move {
            loop {
                let docs = documents(&url, "kube-events").await;
                *mirror.lock().unwrap() = docs.keys().cloned().collect();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let yaml = search_receiver(&server.url());
        let exported = || ids.lock().unwrap().clone();
        let target = Target::Receiver {
            yaml: &yaml,
            name: "search",
            exported: &exported,
        };
        let o = if kill {
            scenarios::sigkill(&sim, target, Load::default(), seed).await
        } else {
            scenarios::rolling_update(&sim, target, Load::default(), 1, seed).await
        };
        reader.abort();
        let index = compare_index(&server.url(), "kube-events", &o.generated).await;
        (o, index)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_of_the_leader_leaves_each_occurrence_once_in_the_index() {
        init();
        let (o, index) = scenario(true, 11).await;
        let archive = &o.archive;
        let replayed = archive.exported - (archive.generated - archive.lost.len());
        let already = o.successor_metric("kube_event_exporter_sink_already_delivered_total");
        eprintln!(
            "SIGKILL: index {}; the file receiver got {replayed} replayed occurrences; the successor's 409s: {already}",
            index.summary()
        );
        assert!(index.is_exact(), "{}", index.summary());
        assert!(archive.lost.is_empty(), "{}", archive.summary());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graceful_handover_loses_nothing_and_the_index_holds_each_occurrence_once() {
        init();
        let (o, index) = scenario(false, 12).await;
        eprintln!("SIGTERM: index {}", index.summary());
        assert!(index.is_exact(), "{}", index.summary());
        assert!(o.archive.is_exact(), "{}", o.archive.summary());
        assert_eq!(o.exits, [Some(0)]);
    }
}

// ---- SigV4 with web identity (IRSA), end to end: the exporter binary, an in-test STS, and a
// _bulk receiver that checks each request's signature against what arrived on the wire ----

mod sigv4 {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    use kube_sim::exporter_process::ExporterProcess;
    use kube_sim::{GeneratorConfig, Sim, SimConfig};

    const ACCESS: &str = "ASIATESTWEBIDENTITY";
    const SECRET: &str = "c2VjcmV0LWZyb20tc3Rz";
    const TOKEN: &str = "session-token-from-sts";

    #[derive(Default)]
    struct Seen {
        /// Form bodies of the STS calls.
        sts: Vec<String>,
        /// Requests whose signature did not verify, with why.
        bad: Vec<String>,
        signed: usize,
    }

    async fn sts(
        axum::extract::State(seen): axum::extract::State<Arc<Mutex<Seen>>>,
        body: String,
    ) -> ([(&'static str, &'static str); 1], String) {
        seen.lock().unwrap().sts.push(body);
        let expiry = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
        (
            [("content-type", "text/xml")],
            format!(
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{ACCESS}</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey><SessionToken>{TOKEN}</SessionToken><Expiration>{expiry}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
            ),
        )
    }

    /// The Authorization a request with these headers and body must carry, signed with the
    /// credentials STS handed out at the time the request says (`x-amz-date`).
    fn expected_authorization(
        method: &str,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<String, String> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Authorization")?;
        let signed: Vec<&str> = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .ok_or("no SignedHeaders")?
            .split(';')
            .collect();
        let date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or("no x-amz-date")?;
        let at: jiff::Timestamp = jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", date)
            .and_then(|t| t.to_datetime())
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|z| z.timestamp())
            .map_err(|e| format!("x-amz-date {date}: {e}"))?;
        let generated = ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];
        let pairs: Vec<(String, String)> = signed
            .iter()
            .filter(|h| !generated.contains(h))
            .map(|h| {
                let v = headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (h.to_string(), v)
            })
            .collect();
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .ok_or("no Host")?;
        let url = format!(
            "http://{host}{}",
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let identity = Credentials::new(ACCESS, SECRET, Some(TOKEN.into()), None, "test").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("es")
            .time(std::time::SystemTime::from(at))
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        instructions
            .headers()
            .find(|(k, _)| *k == "authorization")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| "the signer made no Authorization".to_owned())
    }

    async fn bulk(
        axum::extract::State((seen, fake)): axum::extract::State<(Arc<Mutex<Seen>>, Fake)>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let verdict =
            expected_authorization(method.as_str(), &uri, &headers, &body).and_then(|want| {
                let got = headers["authorization"].to_str().unwrap_or("");
                if got == want {
                    Ok(())
                } else {
                    Err(format!("signature mismatch: got {got}, want {want}"))
                }
            });
        let token_ok = headers
            .get("x-amz-security-token")
            .is_some_and(|t| t == TOKEN);
        match verdict {
            Ok(()) if token_ok => {
                seen.lock().unwrap().signed += 1;
                fake_bulk(axum::extract::State(fake), headers, body)
                    .await
                    .into_response()
            }
            other => {
                seen.lock()
                    .unwrap()
                    .bad
                    .push(format!("{other:?}, session token ok: {token_ok}"));
                (
                    axum::http::StatusCode::FORBIDDEN,
                    axum::Json(
                        json!({"message": "The request signature we calculated does not match"}),
                    ),
                )
                    .into_response()
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn web_identity_credentials_sign_every_request_with_sigv4() {
        init();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fake = Fake {
            streams: Arc::new(Vec::new()),
            rec: Arc::default(),
            throttle: Arc::default(),
        };
        let rec = fake.rec.clone();
        let app = axum::Router::new()
            .route("/", axum::routing::post(sts))
            .with_state(seen.clone());
        let sts_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sts_url = format!("http://{}", sts_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(sts_listener, app).await });
        let app = axum::Router::new()
            .route("/_bulk", axum::routing::post(bulk))
            .with_state((seen.clone(), fake));
        let es_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let es_url = format!("http://{}", es_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(es_listener, app).await });

        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        let token = dir.path().join("token");
        std::fs::write(
            &token,
            "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token\n",
        )
        .unwrap();
        let config = format!(
            "leaderElection: {{enabled: false}}\nmaxEventAgeSeconds: 3600\nroute:\n  routes:\n    - match:\n        - receiver: search\nreceivers:\n  - name: search\n    batch: {{maxEvents: 100, maxWait: 100ms}}\n    retry: {{initialBackoff: 50ms, maxBackoff: 500ms}}\n    opensearch:\n      hosts: [\"{es_url}\"]\n      index: kube-events\n      aws: {{region: eu-west-1}}\n"
        );
        let process = ExporterProcess::new(
            env!("CARGO_BIN_EXE_kube-event-exporter"),
            dir.path(),
            "irsa",
            &kubeconfig,
        );
        let mut cmd = process.command(&config).unwrap();
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env(
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/kube-event-exporter",
            )
            .env("AWS_ROLE_SESSION_NAME", "irsa-test")
            .env("AWS_ENDPOINT_URL_STS", &sts_url);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        common::until_watching(&sim).await;
        let g = sim.generate(GeneratorConfig {
            rate_per_sec: 300.0,
            total: Some(300),
            repeat_ratio: 0.3,
            namespaces: 3,
            seed: 5,
        });
        g.wait().await;
        let want = g.generated();
        let log = process.log();
        common::eventually(
            Duration::from_secs(60),
            "every occurrence in the index",
            || {
                let stored: BTreeSet<String> = rec
                    .lock()
                    .unwrap()
                    .docs
                    .iter()
                    .map(|(_, id, _)| id.clone())
                    .collect();
                want.iter().all(|k| stored.contains(k)) || !seen.lock().unwrap().bad.is_empty()
            },
        )
        .await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let seen = seen.lock().unwrap();
        assert!(
            seen.bad.is_empty(),
            "unsigned or badly signed requests: {:?}\n{}",
            seen.bad,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(seen.signed >= 1);
        assert_eq!(seen.sts.len(), 1, "credentials are fetched once and cached");
        let form = &seen.sts[0];
        for part in [
            "Action=AssumeRoleWithWebIdentity",
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fkube-event-exporter",
            "RoleSessionName=irsa-test",
            "WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.projected-service-account-token",
        ] {
            assert!(form.contains(part), "{part} not in {form}");
        }
        let stored: Vec<String> = rec
            .lock()
            .unwrap()
            .docs
            .iter()
            .map(|(_, id, _)| id.clone())
            .collect();
        let d = common::Delivery::compare(&want, &stored);
        assert!(d.is_exact(), "{}", d.summary());
    }
}
