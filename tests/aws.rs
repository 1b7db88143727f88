//! The AWS receivers against moto in server mode (tests/common/moto.rs), read back by boto3,
//! never by our own code. Every delivery test compares the occurrence keys that reached the
//! service with the generated ones and checks each message: its body is the event its key
//! names. Scenarios: delivery through a running exporter, batches over the APIs' limits, entries
//! of a 200 answer that failed and are resent alone (through a proxy in front of moto that fails
//! chosen entries), FIFO deduplication of replays, a graceful handover and a SIGKILL with real
//! exporter processes, and resmoio's README examples through check-config.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::moto::{self, Message, Reader, admin};
use common::replicas::Timing;
use common::scenarios::{self, FAST, Load, RATE, Target};
use common::{Delivery, Running};
use kube_event_exporter::config;
use kube_event_exporter::event::{Event, Occurrence};
use kube_event_exporter::sink::aws::sqs::SqsSink;
use kube_event_exporter::sink::{BuildEnv, Doc, SendError, Sink, SinkConfig};
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig};
use serde_json::{Value, json};

/// moto first: it puts the AWS environment in place before anything else runs.
fn init() {
    moto::moto();
    common::init();
}

/// A name no other test of this run uses.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A receiver list item named `aws` with `kind:` and these keys (indented by 6).
fn receiver(kind: &str, keys: &str) -> String {
    format!(
        "  - name: aws\n    timeout: 30s\n    retry: {{initialBackoff: 50ms, maxBackoff: 500ms}}\n    batch: {{maxWait: 50ms}}\n    {kind}:\n{keys}"
    )
}

fn exporter_config(receiver: &str) -> config::Config {
    let text = format!(
        "clusterName: test-cluster\nomitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: aws\nreceivers:\n{receiver}"
    );
    config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Documents for sink-level tests: `n` events of 4 objects, `pad` bytes of message each.
fn docs(n: usize, tag: &str, pad: usize) -> Vec<Doc> {
    (0..n)
        .map(|i| {
            let occ = Arc::new(Occurrence::new(
                serde_json::from_value::<Event>(json!({
                    "metadata": {"uid": format!("{tag}-{i}"), "namespace": "ns", "name": format!("e{i}")},
                    "involvedObject": {"kind": "Pod", "namespace": "ns", "name": format!("p{}", i % 4), "uid": format!("pod-{tag}-{}", i % 4)},
                    "reason": "Direct", "type": "Normal", "count": 1,
                    "message": "x".repeat(pad),
                    "lastTimestamp": "2026-01-01T00:00:00Z",
                    "clusterName": "test-cluster",
                }))
                .unwrap(),
            ));
            Doc {
                key: occ.key.clone(),
                body: occ.json().clone(),
                occ,
            }
        })
        .collect()
}

fn keys_of(batch: &[Doc]) -> Vec<String> {
    batch.iter().map(|d| d.key.to_string()).collect()
}

/// The involved object's uid, else the event's.
fn object_uid(e: &Event) -> String {
    e.involved_object
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| e.uid())
        .to_owned()
}

// ---- handover scenarios ----

/// The load of the handover scenarios here: moto is one Python process whose SQS costs grow with
/// a queue's length; on a loaded 2-core machine it takes about a hundred messages a second, so
/// the default rate (200/s, a 5 s drain) would measure moto's backlog rather than the handover.
fn moto_load() -> Load {
    Load {
        rate: RATE * 0.4,
        timing: Timing {
            // Room for moto's backlog: the drain ends when the queue is empty, not at this bound.
            drain: Duration::from_secs(30),
            ..Timing::default()
        },
        ..Load::default()
    }
}

/// Every occurrence to `receiver` (a list item named `aws`), `exported` reading what reached the
/// service.
fn to_aws<'a>(receiver: &'a str, exported: &'a dyn Fn() -> Vec<String>) -> Target<'a> {
    Target::Receiver {
        yaml: receiver,
        name: "aws",
        exported,
    }
}

// ---- SQS ----

fn sqs_keys(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.occurrence_key().to_owned())
        .collect()
}

/// The message is the event its `occurrence_key` attribute names; on a FIFO queue its group is
/// the involved object and its deduplication id the key.
fn assert_sqs_message(m: &Message, fifo: bool) {
    let e: Event = serde_json::from_str(&m.body)
        .unwrap_or_else(|err| panic!("the body is not an event: {err}: {m:?}"));
    assert_eq!(m.occurrence_key(), e.occurrence_key(), "{m:?}");
    if fifo {
        assert_eq!(m.group.as_deref(), Some(object_uid(&e).as_str()), "{m:?}");
        assert_eq!(m.dedup.as_deref(), Some(m.occurrence_key()), "{m:?}");
    }
}

/// A queue named `name` (`.fifo`: a FIFO queue); its URL.
fn queue(name: &str) -> String {
    admin(json!([{"op": "queue", "name": name}]))[name]
        .as_str()
        .unwrap()
        .to_owned()
}

fn sqs_sink(keys: &str, vars: &dyn Fn(&str) -> Option<String>) -> SqsSink {
    let cfg = exporter_config(&receiver("sqs", keys));
    let SinkConfig::Sqs(c) = &cfg.receivers[0].sink else {
        unreachable!()
    };
    let stdout = || -> kube_event_exporter::sink::stdout::Writer { Box::new(tokio::io::sink()) };
    let metrics = kube_event_exporter::telemetry::Metrics::default();
    let env = BuildEnv {
        receiver: "aws",
        delivery: &cfg.receivers[0].delivery,
        stdout: &stdout,
        metrics: &metrics,
    };
    SqsSink::build(c, &env, vars).unwrap_or_else(|p| panic!("{p:?}"))
}

fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_an_sqs_queue_once_with_its_occurrence_key() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("events");
    let reader = Reader::sqs(&queue(&name));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver("sqs", &format!("      queueName: {name}\n")));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 11);
    g.wait().await;
    let want = g.generated();
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(60))
        .await;
    let failed = run.metric("kube_event_exporter_sink_failed_total");
    run.stop(Duration::from_secs(10)).await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &sqs_keys(&messages));
    eprintln!("sqs (moto): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    messages.iter().for_each(|m| assert_sqs_message(m, false));
    assert_eq!(failed, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_ten_messages_and_256_kib_is_split_and_delivered_whole() {
    init();
    let name = unique("big");
    let reader = Reader::sqs(&queue(&name));
    let mut sink = sqs_sink(&format!("      queueName: {name}\n"), &process_env);
    // 45 messages of about 30 KB: over both limits of one SendMessageBatch.
    let batch = docs(45, "big", 30_000);
    sink.send(&batch).await.unwrap();
    let want = keys_of(&batch);
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(30))
        .await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &sqs_keys(&messages));
    assert!(d.is_exact(), "{}", d.summary());
    messages.iter().for_each(|m| assert_sqs_message(m, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_drops_replays_by_occurrence_key_and_keeps_each_objects_order() {
    init();
    let name = format!("{}.fifo", unique("fifo"));
    let url = queue(&name);
    let mut sink = sqs_sink(&format!("      queueName: {name}\n"), &process_env);
    let batch = docs(30, "fifo", 100);
    sink.send(&batch).await.unwrap();
    // A successor replaying what was delivered before a crash: the same occurrence keys.
    sink.send(&batch).await.unwrap();
    sink.send(&batch[10..20]).await.unwrap();
    // Read only now: moto deduplicates against messages still in the queue (SQS, for five
    // minutes, also against deleted ones).
    let reader = Reader::sqs(&url);
    let want = keys_of(&batch);
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(30))
        .await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &sqs_keys(&messages));
    assert!(d.is_exact(), "replays must be dropped: {}", d.summary());
    messages.iter().for_each(|m| assert_sqs_message(m, true));
    // Each object's occurrences arrive in the order they were sent.
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &messages {
        by_group
            .entry(m.group.clone().unwrap())
            .or_default()
            .push(m.occurrence_key().to_owned());
    }
    for (group, got) in by_group {
        let sent: Vec<String> = batch
            .iter()
            .filter(|d| object_uid(&d.occ.event) == group)
            .map(|d| d.key.to_string())
            .collect();
        assert_eq!(got, sent, "order of group {group}");
    }
}

/// A proxy in front of moto that fails chosen entries of SendMessageBatch once, as SQS does
/// under load: they are left out of what moto gets and answered in `Failed` with
/// `SenderFault: false`, next to moto's `Successful` for the rest.
async fn flaky_sqs_proxy(fail_once: HashSet<String>) -> String {
    use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
    #[derive(Clone)]
    struct S {
        moto: String,
        fail: Arc<Mutex<HashSet<String>>>,
        client: reqwest::Client,
    }
    async fn handle(
        State(s): State<S>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (axum::http::StatusCode, String) {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        let mut injected = Vec::new();
        if target == "AmazonSQS.SendMessageBatch" {
            let entries = v["Entries"].as_array().unwrap().clone();
            let mut fail = s.fail.lock().unwrap();
            let (failed, kept): (Vec<Value>, Vec<Value>) = entries.into_iter().partition(|e| {
                fail.remove(
                    e["MessageAttributes"]["occurrence_key"]["StringValue"]
                        .as_str()
                        .unwrap(),
                )
            });
            injected = failed
                .iter()
                .map(|e| json!({"Id": e["Id"], "SenderFault": false, "Code": "InternalError", "Message": "injected"}))
                .collect();
            v["Entries"] = json!(kept);
        }
        let mut answer: Value = if v["Entries"].as_array().is_some_and(|e| e.is_empty()) {
            json!({"Successful": []})
        } else {
            let resp = s
                .client
                .post(&s.moto)
                .header("x-amz-target", &target)
                .header("content-type", "application/x-amz-json-1.0")
                .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0")
                .body(v.to_string())
                .send()
                .await
                .unwrap();
            assert!(
                resp.status().is_success(),
                "moto answered {}",
                resp.status()
            );
            resp.json().await.unwrap()
        };
        if !injected.is_empty() {
            answer["Failed"] = json!(injected);
        }
        (axum::http::StatusCode::OK, answer.to_string())
    }
    let app = Router::new().route("/", post(handle)).with_state(S {
        moto: format!("{}/", moto::moto()),
        fail: Arc::new(Mutex::new(fail_once)),
        client: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_failed_in_a_200_answer_are_resent_alone_and_arrive_once() {
    init();
    let name = unique("partial");
    let reader = Reader::sqs(&queue(&name));
    let batch = docs(25, "partial", 100);
    let fail: HashSet<String> = [3, 12, 24]
        .iter()
        .map(|i| batch[*i].key.to_string())
        .collect();
    let proxy = flaky_sqs_proxy(fail.clone()).await;
    let vars = move |k: &str| match k {
        "AWS_ENDPOINT_URL" => Some(proxy.clone()),
        _ => std::env::var(k).ok(),
    };
    let mut sink = sqs_sink(&format!("      queueName: {name}\n"), &vars);
    // What the worker does with a per-document answer: resend only the transient failures.
    let failed = match sink.send(&batch).await {
        Err(SendError::Partial(list)) => list,
        other => panic!("expected a per-entry answer, got {other:?}"),
    };
    let resend: Vec<usize> = failed
        .iter()
        .map(|(i, e)| {
            assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
            *i
        })
        .collect();
    assert_eq!(resend, [3, 12, 24]);
    let want = keys_of(&batch);
    let others: Vec<String> = want
        .iter()
        .filter(|k| !fail.contains(*k))
        .cloned()
        .collect();
    reader
        .wait_for(sqs_keys, &others, Duration::from_secs(30))
        .await;
    let again: Vec<Doc> = resend
        .iter()
        .map(|i| Doc {
            key: batch[*i].key.clone(),
            body: batch[*i].body.clone(),
            occ: batch[*i].occ.clone(),
        })
        .collect();
    sink.send(&again).await.unwrap();
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(30))
        .await;
    let d = Delivery::compare(&want, &sqs_keys(&reader.messages()));
    assert!(d.is_exact(), "{}", d.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handover_to_sqs_loses_and_duplicates_nothing() {
    init();
    let name = unique("handover");
    let reader = Reader::sqs(&queue(&name));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let yaml = receiver("sqs", &format!("      queueName: {name}\n"));
    let exported = || sqs_keys(&reader.messages());
    let o = scenarios::rolling_update(&sim, to_aws(&yaml, &exported), moto_load(), 1, 41).await;
    eprintln!("sqs graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    reader
        .messages()
        .iter()
        .for_each(|m| assert_sqs_message(m, false));
}

/// After a SIGKILL every occurrence is in the queue, and every copy of one carries the same
/// `MessageDeduplicationId` (its occurrence key) and group: SQS drops a copy sent within five
/// minutes of the first, even once that was received and deleted. moto drops it only while the
/// first is still in the queue, and the reader deletes what it reads, so copies can show here;
/// the replay-is-dropped half is `a_fifo_queue_drops_replays_…`, where nothing is read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_with_a_fifo_queue_loses_nothing_and_every_replay_has_the_original_deduplication_id()
 {
    init();
    let name = format!("{}.fifo", unique("kill"));
    let reader = Reader::sqs(&queue(&name));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let yaml = receiver("sqs", &format!("      queueName: {name}\n"));
    let exported = || sqs_keys(&reader.messages());
    let o = scenarios::sigkill(&sim, to_aws(&yaml, &exported), moto_load(), 42).await;
    let d = &o.delivery;
    eprintln!(
        "sqs FIFO SIGKILL: {}; duplicated occurrences {} (moto forgets deleted ids)",
        d.summary(),
        o.duplicated_occurrences
    );
    assert!(
        d.lost.is_empty() && d.unexpected.is_empty(),
        "{}",
        d.summary()
    );
    let mut ids: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for m in reader.messages() {
        assert_sqs_message(&m, true);
        let id = (m.dedup.clone(), m.group.clone());
        if let Some(first) = ids.insert(m.occurrence_key().to_owned(), id.clone()) {
            assert_eq!(first, id, "{}: a replay with other ids", m.occurrence_key());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_with_a_standard_queue_loses_nothing_and_every_copy_carries_its_key()
{
    init();
    let name = unique("kill-std");
    let reader = Reader::sqs(&queue(&name));
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let yaml = receiver("sqs", &format!("      queueName: {name}\n"));
    let exported = || sqs_keys(&reader.messages());
    let o = scenarios::sigkill(&sim, to_aws(&yaml, &exported), moto_load(), 43).await;
    // Plus one batch (100 messages) delivered but not yet acknowledged when the process died.
    o.assert_no_loss_and_at_most("sqs SIGKILL", o.duplicate_bound(Duration::ZERO) + 100);
    // A consumer drops a replay by its occurrence_key: every copy is the same occurrence.
    let messages = reader.messages();
    let mut by_key: BTreeMap<&str, Vec<&Message>> = BTreeMap::new();
    for m in &messages {
        assert_sqs_message(m, false);
        by_key.entry(m.occurrence_key()).or_default().push(m);
    }
    for (key, copies) in by_key.iter().filter(|(_, c)| c.len() > 1) {
        let first: Event = serde_json::from_str(&copies[0].body).unwrap();
        for c in &copies[1..] {
            let e: Event = serde_json::from_str(&c.body).unwrap();
            assert_eq!(
                (&e.metadata.uid, e.count, &e.message),
                (&first.metadata.uid, first.count, &first.message),
                "{key}: the replay is the same occurrence"
            );
        }
    }
}

// ---- Kinesis ----

/// The occurrence key of each record: Kinesis has no attributes, the event carries it.
fn body_keys(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Event>(&m.body)
                .unwrap_or_else(|e| panic!("not an event: {e}: {m:?}"))
                .occurrence_key()
        })
        .collect()
}

/// Every record of an object has the object's uid as partition key, so it is on one shard.
fn assert_kinesis_records(messages: &[Message]) {
    let mut shard_of: BTreeMap<String, String> = BTreeMap::new();
    for m in messages {
        let e: Event = serde_json::from_str(&m.body).unwrap();
        assert_eq!(
            m.partition_key.as_deref(),
            Some(object_uid(&e).as_str()),
            "{m:?}"
        );
        let shard = m.shard.clone().unwrap();
        let first = shard_of.entry(object_uid(&e)).or_insert(shard.clone());
        assert_eq!(*first, shard, "object {} on two shards", object_uid(&e));
    }
}

fn stream(name: &str) {
    admin(json!([{"op": "stream", "name": name, "shards": 2}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_a_kinesis_stream_once_keyed_by_its_object() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("stream");
    stream(&name);
    let reader = Reader::kinesis(&name);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver("kinesis", &format!("      streamName: {name}\n")));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 21);
    g.wait().await;
    let want = g.generated();
    reader
        .wait_for(body_keys, &want, Duration::from_secs(60))
        .await;
    run.stop(Duration::from_secs(10)).await;
    let records = reader.messages();
    let d = Delivery::compare(&want, &body_keys(&records));
    eprintln!("kinesis (moto): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    assert_kinesis_records(&records);
    let shards: HashSet<String> = records.iter().filter_map(|m| m.shard.clone()).collect();
    assert_eq!(shards.len(), 2, "objects spread over both shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_batch_over_500_records_and_5_mib_is_split_and_delivered_whole() {
    init();
    let name = unique("big-stream");
    stream(&name);
    let reader = Reader::kinesis(&name);
    let cfg = exporter_config(&receiver("kinesis", &format!("      streamName: {name}\n")));
    let SinkConfig::Kinesis(c) = &cfg.receivers[0].sink else {
        unreachable!()
    };
    let stdout = || -> kube_event_exporter::sink::stdout::Writer { Box::new(tokio::io::sink()) };
    let metrics = kube_event_exporter::telemetry::Metrics::default();
    let env = BuildEnv {
        receiver: "aws",
        delivery: &cfg.receivers[0].delivery,
        stdout: &stdout,
        metrics: &metrics,
    };
    let mut sink =
        kube_event_exporter::sink::aws::kinesis::KinesisSink::build(c, &env, &process_env)
            .unwrap_or_else(|p| panic!("{p:?}"));
    // 700 records of about 9 KB: over 500 records and over 5 MiB.
    let batch = docs(700, "kin", 9_000);
    sink.send(&batch).await.unwrap();
    let want = keys_of(&batch);
    reader
        .wait_for(body_keys, &want, Duration::from_secs(60))
        .await;
    let records = reader.messages();
    let d = Delivery::compare(&want, &body_keys(&records));
    assert!(d.is_exact(), "{}", d.summary());
    assert_kinesis_records(&records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_with_kinesis_loses_nothing_and_a_replay_keeps_its_shard() {
    init();
    let name = unique("kill-stream");
    stream(&name);
    let reader = Reader::kinesis(&name);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let yaml = receiver("kinesis", &format!("      streamName: {name}\n"));
    let exported = || body_keys(&reader.messages());
    let o = scenarios::sigkill(&sim, to_aws(&yaml, &exported), moto_load(), 44).await;
    // Plus one batch (500 records) delivered but not yet acknowledged when the process died.
    o.assert_no_loss_and_at_most("kinesis SIGKILL", o.duplicate_bound(Duration::ZERO) + 500);
    // A replayed record has the same partition key, so it lands on the same shard, after the
    // original: a consumer keeping the last count per event drops it.
    assert_kinesis_records(&reader.messages());
}

// ---- SNS ----

/// A topic (`.fifo`: FIFO) with a queue subscribed with raw delivery (the message attributes
/// kept as SQS attributes); the topic's ARN and the queue's URL.
fn topic_with_queue(name: &str) -> (String, String) {
    let queue_name = format!(
        "{}-sub{}",
        name.trim_end_matches(".fifo"),
        if name.ends_with(".fifo") { ".fifo" } else { "" }
    );
    let made = admin(json!([{"op": "topic", "name": name}, {"op": "queue", "name": queue_name}]));
    let topic = made[name].as_str().unwrap().to_owned();
    admin(
        json!([{"op": "subscribe", "topic": topic, "queue_arn": made[format!("{queue_name}:arn")]}]),
    );
    (topic, made[&queue_name].as_str().unwrap().to_owned())
}

fn sns_sink(keys: &str) -> kube_event_exporter::sink::aws::sns::SnsSink {
    let cfg = exporter_config(&receiver("sns", keys));
    let SinkConfig::Sns(c) = &cfg.receivers[0].sink else {
        unreachable!()
    };
    let stdout = || -> kube_event_exporter::sink::stdout::Writer { Box::new(tokio::io::sink()) };
    let metrics = kube_event_exporter::telemetry::Metrics::default();
    let env = BuildEnv {
        receiver: "aws",
        delivery: &cfg.receivers[0].delivery,
        stdout: &stdout,
        metrics: &metrics,
    };
    kube_event_exporter::sink::aws::sns::SnsSink::build(c, &env, &process_env)
        .unwrap_or_else(|p| panic!("{p:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_an_sns_topic_once_and_its_subscriber_gets_the_key() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (topic, queue_url) = topic_with_queue(&unique("topic"));
    let reader = Reader::sqs(&queue_url);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver("sns", &format!("      topicARN: {topic}\n")));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 400, 31);
    g.wait().await;
    let want = g.generated();
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(60))
        .await;
    run.stop(Duration::from_secs(10)).await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &sqs_keys(&messages));
    eprintln!("sns (moto): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    messages.iter().for_each(|m| assert_sqs_message(m, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_topic_drops_replays_by_occurrence_key_and_a_batch_over_ten_is_split() {
    init();
    let (topic, queue_url) = topic_with_queue(&format!("{}.fifo", unique("ftopic")));
    let mut sink = sns_sink(&format!("      topicARN: {topic}\n"));
    let batch = docs(25, "ftopic", 100);
    sink.send(&batch).await.unwrap();
    // The replay after a crash: the same deduplication ids.
    sink.send(&batch).await.unwrap();
    // Read only now: moto deduplicates against messages still in the queue.
    let reader = Reader::sqs(&queue_url);
    let want = keys_of(&batch);
    reader
        .wait_for(sqs_keys, &want, Duration::from_secs(30))
        .await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &sqs_keys(&messages));
    assert!(d.is_exact(), "replays must be dropped: {}", d.summary());
    messages.iter().for_each(|m| assert_sqs_message(m, false));
}

// ---- EventBridge ----

/// The occurrence key of each EventBridge event delivered to a queue (its `detail`).
fn detail_keys(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_str(&m.body).unwrap();
            serde_json::from_value::<Event>(envelope["detail"].clone())
                .unwrap_or_else(|e| panic!("the detail is not an event: {e}: {m:?}"))
                .occurrence_key()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_an_event_bus_once_with_its_time_and_rendered_detail_type() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bus = unique("bus");
    let queue_name = unique("bus-target");
    let made = admin(json!([{"op": "bus", "name": bus}, {"op": "queue", "name": queue_name}]));
    admin(
        json!([{"op": "rule", "name": unique("rule"), "bus": bus, "source": "kube-event-exporter",
                  "queue_arn": made[format!("{queue_name}:arn")]}]),
    );
    let reader = Reader::sqs(made[&queue_name].as_str().unwrap());
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(
        "eventbridge",
        &format!(
            "      eventBusName: {bus}\n      source: kube-event-exporter\n      detailType: \"{{{{ .Type }}}} {{{{ .Reason }}}}\"\n"
        ),
    ));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 300, 51);
    g.wait().await;
    let want = g.generated();
    reader
        .wait_for(detail_keys, &want, Duration::from_secs(60))
        .await;
    run.stop(Duration::from_secs(10)).await;
    let messages = reader.messages();
    let d = Delivery::compare(&want, &detail_keys(&messages));
    eprintln!("eventbridge (moto): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    for m in &messages {
        let envelope: Value = serde_json::from_str(&m.body).unwrap();
        let e: Event = serde_json::from_value(envelope["detail"].clone()).unwrap();
        assert_eq!(envelope["source"], "kube-event-exporter");
        assert_eq!(
            envelope["detail-type"],
            format!(
                "{} {}",
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default()
            )
        );
        // The event's own time, to the second: a replay is the same event.
        let t: jiff::Timestamp = envelope["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(t.as_second(), e.last_seen().unwrap().as_second(), "{m:?}");
    }
}

// ---- Firehose ----

/// The occurrence keys of the NDJSON objects Firehose wrote to S3: one line per record.
fn object_keys(objects: &[Message]) -> Vec<String> {
    objects
        .iter()
        .flat_map(|o| o.body.split_terminator('\n'))
        .map(|line| {
            serde_json::from_str::<Event>(line)
                .unwrap_or_else(|e| panic!("a line is not an event: {e}: {line:?}"))
                .occurrence_key()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_s3_through_firehose_once_as_one_line() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let bucket = unique("firehose-bucket");
    let stream = unique("delivery");
    admin(
        json!([{"op": "bucket", "name": bucket}, {"op": "firehose", "name": stream, "bucket": bucket}]),
    );
    let reader = Reader::s3(&bucket);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(
        "firehose",
        &format!("      deliveryStreamName: {stream}\n      deDot: true\n"),
    ));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 61);
    g.wait().await;
    let want = g.generated();
    reader
        .wait_for(object_keys, &want, Duration::from_secs(60))
        .await;
    run.stop(Duration::from_secs(10)).await;
    let objects = reader.messages();
    let d = Delivery::compare(&want, &object_keys(&objects));
    eprintln!("firehose (moto, S3): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    for o in &objects {
        assert!(
            o.body.ends_with('\n'),
            "each record ends with a newline: {o:?}"
        );
    }
}

// ---- check-config ----

fn check_config(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&path)
        // No endpoint, no credentials: check-config must not need them, nor connect.
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// examples/{name}.yaml passes check-config with no AWS environment.
fn example_passes_check_config(name: &str) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.yaml"));
    let (code, err) = check_config(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(code, 0, "examples/{name}.yaml: {err}");
}

#[test]
fn resmoios_readme_examples_and_ours_pass_check_config_without_connecting() {
    // resmoio's README, verbatim under a route.
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "sqs"
receivers:
  - name: "sqs"
    sqs:
      queueName: "/tmp/dump"
      region: us-west-2
      layout: # Optional
"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("receivers[0].sqs.queueName: \"/tmp/dump\" is not an SQS queue name"),
        "{err}"
    );
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "kinesis"
        - receiver: pipe
receivers:
  - name: "kinesis"
    kinesis:
      streamName: "events-pipeline"
      region: us-west-2
      layout: # Optional
  - name: pipe
    kinesis:
      region: us-west-2
      streamName: event-pipeline
      layout:
        region: "us-west-2"
        eventType: "kubernetes-event"
        createdAt: "{{ .GetTimestampMs }}"
        details:
          message: "{{ .Message }}"
          reason: "{{ .Reason }}"
          type: "{{ .Type }}"
          count: "{{ .Count }}"
          kind: "{{ .InvolvedObject.Kind }}"
          name: "{{ .InvolvedObject.Name }}"
          namespace: "{{ .Namespace }}"
          component: "{{ .Source.Component }}"
          host: "{{ .Source.Host }}"
          labels: "{{ toJson .InvolvedObject.Labels}}"
"#,
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "sns"
receivers:
  - name: "sns"
    sns:
      topicARN: "arn:aws:sns:us-east-1:1234567890123456:mytopic"
      region: "us-west-2"
      layout: # Optional
"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("receivers[0].sns.region: the topic is in us-east-1"),
        "{err}"
    );
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "firehose"
receivers:
  - name: "firehose"
    firehose:
      deliveryStreamName: "events-pipeline"
      region: us-west-2
      layout: # Optional
"#,
    );
    assert_eq!(code, 0, "{err}");
    // resmoio's OpsCenter example is not YAML; as YAML (docs/migrating-from-resmoio.md), with a
    // priority OpsCenter takes, it passes with a warning for its region.
    let (code, err) = check_config(
        r#"route:
  routes:
    - match:
        - receiver: "alerts"
receivers:
  - name: "alerts"
    opscenter:
      title: "{{ .Message }}"
      category: "{{ .Reason }}" # Optional
      description: "Event {{ .Reason }} for {{ .InvolvedObject.Namespace }}/{{ .InvolvedObject.Name }} on K8s cluster"
      notifications: # Optional: SNS ARN
        - "sns1"
        - "sns2"
      operationalData: # Optional
        Reason: "{{ .Reason }}"
      priority: "5" # Optional
      region: "us-east1"
      relatedOpsItems: # Optional: OpsItems ARN
        - "ops1"
        - "ops2"
      severity: "6" # Optional
      source: "production"
      tags: # Optional
        ENV: "{{ .InvolvedObject.Namespace }}"
"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "receivers[0].opscenter.region: \"us-east1\" does not look like an AWS region"
        ),
        "{err}"
    );
    for example in [
        "sqs",
        "kinesis",
        "sns",
        "eventbridge",
        "firehose",
        "opscenter",
    ] {
        example_passes_check_config(example);
    }
}

#[test]
fn check_config_names_a_missing_queue_name_and_an_unusable_endpoint() {
    let (code, err) = check_config(
        "route:\n  routes:\n    - match:\n        - receiver: q\nreceivers:\n  - name: q\n    sqs:\n      region: eu-west-1\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("receivers[0].sqs.queueName: is required"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "route:\n  routes:\n    - match:\n        - receiver: q\nreceivers:\n  - name: q\n    sqs:\n      queueName: q\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ENDPOINT_URL_SQS", "localhost:4566")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("receivers[0].sqs.region: SQS endpoint: AWS_ENDPOINT_URL_SQS: invalid URL"),
        "{err}"
    );
}
