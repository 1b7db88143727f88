//! The kafka receiver against a real Kafka-protocol broker: tansu 0.6 (tests/common/tansu.rs),
//! read back by an independent client (kafka-python), never by our own code. Every delivery test
//! compares the `Idempotency-Key` headers in the topic with the generated occurrence keys and
//! checks each record: key = the involved object's uid, value = the event with that occurrence
//! key. Scenarios: delivery with per-object order, every compression codec, the broker killed
//! and started again, atMostOnce, TLS (with a client certificate) through a TLS terminator in
//! front of tansu (tansu 0.6's own TLS listener cannot be configured from its command line), a
//! broker that demands SASL, a graceful handover and a SIGKILL with real exporter processes.

mod common;

use common::scenarios::{self, FAST};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tansu::{Reader, Record, Tansu};
use common::{Delivery, Running};
use kube_event_exporter::config;
use kube_event_exporter::event::{Event, Occurrence, Text};
use kube_event_exporter::sink::kafka::{KafkaConfig, KafkaSink};
use kube_event_exporter::sink::{Doc, SendError, Sink, SinkConfig};
use kube_event_exporter::source::Start;
use kube_sim::{Sim, SimConfig};

const TOPIC: &str = "kube-events";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    common::init();
}

/// A receiver list item named `kafka` with these keys under `kafka:` (indented by 6).
fn receiver(keys: &str) -> String {
    format!(
        "  - name: kafka\n    timeout: 5s\n    retry: {{initialBackoff: 50ms, maxBackoff: 500ms}}\n    kafka:\n      topic: {TOPIC}\n{keys}"
    )
}

fn brokers(addr: &str) -> String {
    format!("      brokers: [\"{addr}\"]\n")
}

fn exporter_config(receiver: &str) -> config::Config {
    let text = format!(
        "clusterName: test-cluster\nomitLookup: true\nleaderElection: {{enabled: false}}\nroute:\n  routes:\n    - match:\n        - receiver: kafka\nreceivers:\n{receiver}"
    );
    config::parse(&text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn kafka_config(keys: &str) -> KafkaConfig {
    match &exporter_config(&receiver(keys)).receivers[0].sink {
        SinkConfig::Kafka(c) => c.clone(),
        other => panic!("{other:?}"),
    }
}

/// The record is the event it names: one `Idempotency-Key`, the event's occurrence key; the
/// record key is the involved object's uid (the event's own when the object has none).
fn assert_well_formed(r: &Record) {
    let e: Event = serde_json::from_str(&r.value)
        .unwrap_or_else(|err| panic!("the value is not an event: {err}: {r:?}"));
    assert_eq!(r.idempotency_key(), e.occurrence_key(), "{r:?}");
    let object = e
        .involved_object
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(e.metadata.uid.as_deref());
    assert_eq!(r.key.as_deref(), object, "{r:?}");
}

/// Every record of one object is on one partition, and one event's occurrences are in count
/// order there.
fn assert_per_object_order(records: &[Record]) {
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    let mut last: BTreeMap<Text, (i64, i64)> = BTreeMap::new();
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        let key = r.key.as_deref().expect("every record has a key");
        let p = *partition_of.entry(key).or_insert(r.partition);
        assert_eq!(p, r.partition, "object {key} on two partitions");
        let e: Event = serde_json::from_str(&r.value).unwrap();
        let uid = e.metadata.uid.clone().unwrap_or_default();
        let count = i64::from(e.count.unwrap_or(1));
        if let Some((prev, offset)) = last.insert(uid.clone(), (count, r.offset)) {
            assert!(
                prev <= count,
                "event {uid}: count {count} at offset {} after count {prev} at offset {offset}",
                r.offset
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_occurrence_reaches_tansu_once_keyed_by_its_object_in_order_with_its_idempotency_key()
{
    init();
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(&brokers(&tansu.addr())));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;
    let g = scenarios::generate(&sim, FAST, 600, 11);
    g.wait().await;
    let want = g.generated();
    reader.wait_for_keys(&want, Duration::from_secs(60)).await;
    run.stop(Duration::from_secs(10)).await;
    let records = reader.records();
    let d = Delivery::compare(
        &want,
        &records
            .iter()
            .map(|r| r.idempotency_key().to_owned())
            .collect::<Vec<_>>(),
    );
    eprintln!("kafka (tansu): {}", d.summary());
    assert!(d.is_exact(), "{}", d.summary());
    records.iter().for_each(assert_well_formed);
    assert_per_object_order(&records);
    let partitions: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(
        partitions.len(),
        3,
        "objects spread over the 3 partitions: {partitions:?}"
    );
}

/// Direct documents for sink-level tests (no exporter around them).
fn docs(n: usize, tag: &str) -> Vec<Doc> {
    (0..n)
        .map(|i| {
            let occ = Arc::new(Occurrence::new(
                serde_json::from_value::<Event>(serde_json::json!({
                    "metadata": {"uid": format!("{tag}-{i}"), "namespace": "ns", "name": format!("e{i}")},
                    "involvedObject": {"kind": "Pod", "namespace": "ns", "name": format!("p{}", i % 4), "uid": format!("pod-{tag}-{}", i % 4)},
                    "reason": "Direct", "type": "Normal", "count": 1,
                    "message": "x".repeat(200),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_delivers_records_an_independent_consumer_decodes() {
    init();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    let mut want = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let cfg = kafka_config(&format!(
            "{}      compressionCodec: {codec}\n",
            brokers(&tansu.addr())
        ));
        let mut sink = KafkaSink::build("kafka", &cfg, Duration::from_secs(5)).unwrap();
        let batch = docs(50, codec);
        sink.send(&batch)
            .await
            .unwrap_or_else(|e| panic!("{codec}: {e:?}"));
        want.extend(keys_of(&batch));
    }
    reader.wait_for_keys(&want, Duration::from_secs(30)).await;
    let records = reader.records();
    let d = Delivery::compare(
        &want,
        &records
            .iter()
            .map(|r| r.idempotency_key().to_owned())
            .collect::<Vec<_>>(),
    );
    assert!(d.is_exact(), "{}", d.summary());
    records.iter().for_each(assert_well_formed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_killed_and_started_again_loses_nothing_and_replays_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let cfg = exporter_config(&receiver(&brokers(&tansu.addr())));
    let run = Running::start(&cfg, sim.kube_config(), Start::Cold, dir.path()).await;
    common::until_watching(&sim).await;

    let before = scenarios::generate(&sim, FAST, 200, 21);
    before.wait().await;
    let want_before = before.generated();
    let first = Reader::follow(&tansu.addr(), TOPIC);
    first
        .wait_for_keys(&want_before, Duration::from_secs(60))
        .await;
    // Everything acknowledged so far is read; tansu keeps records in memory, so they are
    // taken now: the broker that comes back starts empty.
    let read_before = first.keys();
    drop(first);

    tansu.kill();
    let sent_before = run.metric("kube_event_exporter_sink_sent");
    let during = scenarios::generate(&sim, FAST, 200, 22);
    during.wait().await;
    let want_during = during.generated();
    common::eventually(
        Duration::from_secs(30),
        "the exporter to retry while the broker is down",
        || run.metric("kube_event_exporter_sink_retried") >= 1.0,
    )
    .await;
    assert_eq!(
        run.metric("kube_event_exporter_sink_sent"),
        sent_before,
        "nothing can be acknowledged while the broker is down"
    );

    tansu.restart();
    tansu.create_topic(TOPIC, 3);
    let second = Reader::follow(&tansu.addr(), TOPIC);
    second
        .wait_for_keys(&want_during, Duration::from_secs(90))
        .await;
    run.stop(Duration::from_secs(10)).await;
    let records = second.records();
    let mut exported = read_before;
    exported.extend(records.iter().map(|r| r.idempotency_key().to_owned()));
    let mut want = want_before;
    want.extend(want_during);
    let d = Delivery::compare(&want, &exported);
    eprintln!("kafka broker down then up: {}", d.summary());
    assert!(d.is_exact(), "{}\n{}", d.summary(), tansu.log_tail());
    records.iter().for_each(assert_well_formed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_acknowledges_on_enqueue_and_never_resends() {
    init();
    let mut tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    let cfg = kafka_config(&format!(
        "{}      delivery: atMostOnce\n",
        brokers(&tansu.addr())
    ));
    let mut sink = KafkaSink::build("kafka", &cfg, Duration::from_secs(3)).unwrap();
    let delivered = docs(30, "up");
    sink.send(&delivered).await.unwrap();
    reader
        .wait_for_keys(&keys_of(&delivered), Duration::from_secs(30))
        .await;
    drop(reader);

    // With the broker gone, a send still returns at once: nothing waits for an acknowledgement.
    tansu.kill();
    let lost = docs(30, "down");
    let started = Instant::now();
    sink.send(&lost).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "atMostOnce waited {:?}",
        started.elapsed()
    );
    // The client gives the records up after message.timeout (90% of 3 s) and does not resend them
    // to the broker that comes back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    tansu.restart();
    tansu.create_topic(TOPIC, 3);
    let after = docs(5, "after");
    sink.send(&after).await.unwrap();
    drop(sink); // flushes what is queued
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    reader
        .wait_for_keys(&keys_of(&after), Duration::from_secs(30))
        .await;
    let have: BTreeSet<String> = reader.keys().into_iter().collect();
    let resent = keys_of(&lost)
        .into_iter()
        .filter(|k| have.contains(k))
        .count();
    assert_eq!(resent, 0, "atMostOnce resent records of the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_delivers_and_a_wrong_ca_is_retried_naming_the_failure() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = common::rsyslog::pki(&dir.path().join("pki"));
    let [other_ca, ..] = common::rsyslog::pki(&dir.path().join("other"));
    // A TLS terminator that requires a client certificate from `ca`; tansu advertises it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let advertised = format!("localhost:{tls_port}");
    let tansu = Tansu::start_advertising(&advertised);
    tansu.create_topic(TOPIC, 3);
    let handshakes = common::tansu::tls_terminator(listener, &ca, &cert, &key, tansu.addr());

    let tls = |ca: &std::path::Path| {
        format!(
            "{}      tls:\n        enable: true\n        caFile: {}\n        certFile: {}\n        keyFile: {}\n",
            brokers(&advertised),
            ca.display(),
            client.display(),
            client_key.display()
        )
    };
    let mut wrong = KafkaSink::build(
        "kafka",
        &kafka_config(&tls(&other_ca)),
        Duration::from_secs(3),
    )
    .unwrap();
    match wrong.send(&docs(2, "wrong-ca")).await {
        Err(SendError::Transient { reason, .. }) => {
            assert!(reason.contains("certificate verify failed"), "{reason}")
        }
        other => panic!("not a transient failure: {other:?}"),
    }
    assert!(
        handshakes.failed() >= 1,
        "the client refused the broker's certificate"
    );
    drop(wrong);

    let cfg = kafka_config(&tls(&ca));
    let mut sink = KafkaSink::build("kafka", &cfg, Duration::from_secs(10)).unwrap();
    let batch = docs(40, "tls");
    sink.send(&batch).await.unwrap();
    assert!(handshakes.succeeded() >= 1);
    let reader = Reader::follow_tls(&advertised, TOPIC, &ca, &client, &client_key);
    reader
        .wait_for_keys(&keys_of(&batch), Duration::from_secs(30))
        .await;
    let d = Delivery::compare(&keys_of(&batch), &reader.keys());
    assert!(d.is_exact(), "{}", d.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_demands_sasl_the_client_cannot_pass_fails_the_batch_as_transient() {
    init();
    // tansu 0.6 with --authentication and memory storage knows no users (its `user create`
    // must itself authenticate first), so the SCRAM exchange that librdkafka starts is refused:
    // the batch is retried, never acknowledged, and the reason says why.
    let tansu = Tansu::start_authenticating();
    let cfg = kafka_config(&format!(
        "{}      sasl:\n        enable: true\n        username: exporter\n        password: secret\n        mechanism: sha512\n",
        brokers(&tansu.addr())
    ));
    let mut sink = KafkaSink::build("kafka", &cfg, Duration::from_secs(3)).unwrap();
    match sink.send(&docs(3, "sasl")).await {
        Err(SendError::Transient { reason, .. }) => assert!(
            reason.contains("SASL SCRAM authentication failed: broker responded with unknown-user"),
            "the reason names the SASL exchange tansu refused: {reason}"
        ),
        other => panic!("not a transient failure: {other:?}"),
    }
}

/// The receiver of the handover scenarios.
fn handover_receiver(addr: &str) -> String {
    receiver(&brokers(addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_handover_to_tansu_loses_and_duplicates_nothing() {
    init();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::graceful_handover(
        &sim,
        &handover_receiver(&tansu.addr()),
        "kafka",
        &|| reader.keys(),
        41,
    )
    .await;
    eprintln!("kafka graceful handover: {}", o.delivery.summary());
    assert!(o.delivery.is_exact(), "{}", o.delivery.summary());
    assert_eq!(o.exits, [Some(0)], "the old leader exits 0");
    let records = reader.records();
    records.iter().for_each(assert_well_formed);
    assert_per_object_order(&records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_with_tansu_loses_nothing_and_every_duplicate_carries_the_same_idempotency_key()
 {
    init();
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, 3);
    let reader = Reader::follow(&tansu.addr(), TOPIC);
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let o = common::scenarios::sigkill_of_the_leader(
        &sim,
        &handover_receiver(&tansu.addr()),
        "kafka",
        &|| reader.keys(),
        42,
    )
    .await;
    o.assert_no_loss_and_bounded_duplicates("kafka SIGKILL", Duration::from_millis(200));
    // A consumer drops a replay by its Idempotency-Key: every copy of a key is the same event.
    let records = reader.records();
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        assert_well_formed(r);
        by_key.entry(r.idempotency_key()).or_default().push(r);
    }
    for (key, copies) in by_key.iter().filter(|(_, c)| c.len() > 1) {
        let first: Event = serde_json::from_str(&copies[0].value).unwrap();
        for c in &copies[1..] {
            let e: Event = serde_json::from_str(&c.value).unwrap();
            assert_eq!(e.occurrence_key(), *key);
            assert_eq!(c.key, copies[0].key, "{key}: same record key");
            assert_eq!(
                (&e.metadata.uid, e.count, &e.message),
                (&first.metadata.uid, first.count, &first.message),
                "{key}: the replay is the same occurrence"
            );
        }
    }
    assert_eq!(
        by_key.len(),
        o.delivery.generated,
        "distinct Idempotency-Keys = generated occurrences"
    );
}

fn check_config(dir: &std::path::Path, yaml: &str) -> (i32, String) {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .current_dir(dir)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn resmoios_readme_example_and_ours_pass_check_config_with_no_broker_running() {
    let dir = tempfile::tempdir().unwrap();
    // The README's relative TLS paths, resolved from the working directory as resmoio does.
    let [ca, _, _, client, client_key] = common::rsyslog::pki(&dir.path().join("pki"));
    for (from, to) in [
        (&ca, "kafka-ca.crt"),
        (&client, "kafka-client.crt"),
        (&client_key, "kafka-client.key"),
    ] {
        std::fs::copy(from, dir.path().join(to)).unwrap();
    }
    // resmoio's README, verbatim under a route (nothing listens on localhost:9092).
    let (code, err) = check_config(
        dir.path(),
        r#"route:
  routes:
    - match:
        - receiver: "kafka"
receivers:
  - name: "kafka"
    kafka:
      clientId: "kubernetes"
      topic: "kube-event"
      brokers:
        - "localhost:9092"
      compressionCodec: "snappy"
      tls:
        enable: true
        certFile: "kafka-client.crt"
        keyFile: "kafka-client.key"
        caFile: "kafka-ca.crt"
      sasl:
        enable: true
        username: "kube-event-producer"
        password: "kube-event-producer-password"
        mechanism: "sha512"
      layout: #optional
        kind: "{{ .InvolvedObject.Kind }}"
        namespace: "{{ .InvolvedObject.Namespace }}"
        name: "{{ .InvolvedObject.Name }}"
        reason: "{{ .Reason }}"
        message: "{{ .Message }}"
        type: "{{ .Type }}"
        createdAt: "{{ .GetTimestampISO8601 }}"
"#,
    );
    assert_eq!(code, 0, "{err}");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kafka.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kube-event-exporter"))
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_ca_file_and_an_unknown_codec_fail_check_config_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = check_config(
        dir.path(),
        "route:\n  routes:\n    - match:\n        - receiver: k\nreceivers:\n  - name: k\n    kafka:\n      topic: t\n      brokers: [localhost:9092]\n      compressionCodec: snapy\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("receivers[0].kafka.compressionCodec: unknown codec \"snapy\""),
        "{err}"
    );
    let (code, err) = check_config(
        dir.path(),
        "route:\n  routes:\n    - match:\n        - receiver: k\nreceivers:\n  - name: k\n    kafka:\n      topic: t\n      brokers: [localhost:9092]\n      tls: {enable: true, caFile: missing-ca.pem}\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("receivers[0].kafka.tls.caFile") && err.contains("missing-ca.pem"),
        "{err}"
    );
}
