use std::time::Duration;

use super::*;
use crate::config;
use crate::sink::SinkConfig;

fn parse(keys: &str) -> Result<KafkaConfig, String> {
    let text = format!(
        "route:\n  routes:\n    - match:\n        - receiver: k\nreceivers:\n  - name: k\n    kafka:\n{keys}"
    );
    match config::parse(&text, &|v| {
        (v == "BROKERS").then(|| "a:9092, b:9093".to_owned())
    }) {
        Ok(c) => match &c.receivers[0].sink {
            SinkConfig::Kafka(k) => Ok(k.clone()),
            other => panic!("{other:?}"),
        },
        Err(e) => Err(e.to_string()),
    }
}

fn setting(c: &rdkafka::ClientConfig, key: &str) -> Option<String> {
    c.get(key).map(str::to_owned)
}

#[test]
fn resmoios_keys_parse_with_their_meaning() {
    let k = parse(
        "      topic: kube-events\n      brokers: [kafka-0:9092, kafka-1:9092]\n      clientId: exporter\n      compressionCodec: zstd\n      version: 2.1.0\n      tls:\n        enable: true\n        insecureSkipVerify: true\n      sasl:\n        enable: true\n        username: u\n        password: p\n        mechanism: sha512\n      layout:\n        message: \"{{ .Message }}\"\n",
    )
    .unwrap();
    assert_eq!(k.topic, "kube-events");
    assert_eq!(k.brokers, ["kafka-0:9092", "kafka-1:9092"]);
    assert_eq!(k.compression, Compression::Zstd);
    assert_eq!(k.semantics, Semantics::AtLeastOnce);
    let c = client_config("k", &k, Duration::from_secs(10));
    assert_eq!(
        setting(&c, "bootstrap.servers").unwrap(),
        "kafka-0:9092,kafka-1:9092"
    );
    assert_eq!(setting(&c, "client.id").unwrap(), "exporter");
    assert_eq!(setting(&c, "compression.codec").unwrap(), "zstd");
    assert_eq!(setting(&c, "broker.version.fallback").unwrap(), "2.1.0");
    assert_eq!(setting(&c, "security.protocol").unwrap(), "sasl_ssl");
    assert_eq!(setting(&c, "sasl.mechanism").unwrap(), "SCRAM-SHA-512");
    assert_eq!(
        setting(&c, "enable.ssl.certificate.verification").unwrap(),
        "false"
    );
    assert_eq!(setting(&c, "enable.idempotence").unwrap(), "true");
    assert_eq!(setting(&c, "acks").unwrap(), "all");
    assert_eq!(setting(&c, "message.timeout.ms").unwrap(), "9000");
    assert!(format!("{k:?}").contains("***") && !format!("{k:?}").contains("\"p\""));
}

#[test]
fn at_most_once_neither_waits_for_all_replicas_nor_retries() {
    let k = parse("      topic: t\n      brokers: [a:9092]\n      delivery: atMostOnce\n").unwrap();
    let c = client_config("k", &k, Duration::from_secs(10));
    assert_eq!(setting(&c, "enable.idempotence").unwrap(), "false");
    assert_eq!(setting(&c, "acks").unwrap(), "1");
    assert_eq!(setting(&c, "message.send.max.retries").unwrap(), "0");
    assert_eq!(setting(&c, "security.protocol").unwrap(), "plaintext");
}

#[test]
fn a_brokers_variable_may_hold_a_comma_separated_list() {
    let k = parse("      topic: t\n      brokers: [\"${BROKERS}\"]\n").unwrap();
    assert_eq!(k.brokers, ["a:9092", "b:9093"]);
}

#[test]
fn bad_values_are_errors_naming_their_key_not_silent_fallbacks() {
    for (keys, want) in [
        (
            "      topic: t\n      brokers: [a:9092]\n      compressionCodec: brotli\n",
            "receivers[0].kafka.compressionCodec: unknown codec \"brotli\" (one of none, gzip, snappy, lz4, zstd)",
        ),
        (
            "      brokers: [a:9092]\n",
            "receivers[0].kafka.topic: is required",
        ),
        (
            "      topic: t\n",
            "receivers[0].kafka.brokers: is required",
        ),
        (
            "      topic: \"a b\"\n      brokers: [a:9092]\n",
            "receivers[0].kafka.topic: \"a b\" contains ' '",
        ),
        (
            "      topic: t\n      brokers: [kafka]\n",
            "receivers[0].kafka.brokers[0]: \"kafka\" needs a port",
        ),
        (
            "      topic: t\n      brokers: [\"kafka://k:9092\"]\n",
            "is not host:port",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      version: 0.10.2\n",
            "receivers[0].kafka.version: 0.10.2: brokers before 0.11",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      version: latest\n",
            "\"latest\" is not a Kafka version",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      sasl: {enable: true, username: u, password: p, mechanism: md5}\n",
            "receivers[0].kafka.sasl.mechanism: unknown mechanism \"md5\"",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      sasl: {enable: true, username: u, password: p, mechanism: GSSAPI}\n",
            "GSSAPI is not supported by this exporter",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      sasl: {enable: true, username: u}\n",
            "receivers[0].kafka.sasl.password: is required when sasl.enable is true",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      tls: {enable: true, certFile: c.pem}\n",
            "receivers[0].kafka.tls.certFile: certFile is set without keyFile",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      tls: {enable: true, serverName: k}\n",
            "receivers[0].kafka.tls.serverName: unknown key",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      avro: {schemaID: 00112233445566778899aabbccddeeff, schema: x}\n",
            "receivers[0].kafka.avro: Avro is not supported",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      delivery: exactlyOnce\n",
            "receivers[0].kafka.delivery: exactlyOnce is not supported yet",
        ),
        (
            "      topic: t\n      brokers: [a:9092]\n      delivery: sometimes\n",
            "unknown delivery \"sometimes\"",
        ),
    ] {
        let err = parse(keys).expect_err(keys);
        assert!(err.contains(want), "{keys}\nwant: {want}\ngot: {err}");
    }
}

#[test]
fn tls_and_sasl_settings_without_enable_are_warned_about() {
    let k = parse("      topic: t\n      brokers: [a:9092]\n      tls: {caFile: /ca.pem}\n      sasl: {username: u, password: p}\n").unwrap();
    let keys: Vec<&str> = k.ignored.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["tls.enable", "sasl.enable"]);
    assert!(k.sasl.is_none() && !k.tls.enable);
}

#[test]
fn unreadable_tls_files_are_problems_by_key_only_when_tls_is_enabled() {
    let k = parse("      topic: t\n      brokers: [a:9092]\n      tls: {enable: true, caFile: /nonexistent/ca.pem}\n").unwrap();
    let problems = k.check_files();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "tls.caFile");
    assert!(
        problems[0].1.contains("/nonexistent/ca.pem"),
        "{problems:?}"
    );
}

#[test]
fn the_record_key_is_the_involved_objects_uid_else_the_events() {
    let occ = |obj_uid: Option<&str>| {
        crate::event::Occurrence::new(
            serde_json::from_value::<crate::event::Event>(serde_json::json!({
                "metadata": {"uid": "event-uid", "name": "e", "namespace": "ns"},
                "involvedObject": {"kind": "Pod", "name": "p", "uid": obj_uid},
                "count": 2,
            }))
            .unwrap(),
        )
    };
    assert_eq!(record_key(&occ(Some("pod-uid"))), "pod-uid");
    assert_eq!(record_key(&occ(None)), "event-uid");
    assert_eq!(record_key(&occ(Some(""))), "event-uid");
}
