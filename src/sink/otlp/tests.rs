//! The otlp receiver's config, records, JSON encoding and answer classification.

use prost::Message;
use reqwest::header::HeaderMap;

use super::proto::{AnyValue, ExportLogsServiceRequest, Value};
use super::*;
use crate::config::{Config, ConfigErrors, parse};
use crate::event::{Event, Occurrence};

fn config(otlp: &str) -> Result<Config, ConfigErrors> {
    parse(
        &format!(
            "route:\n  routes:\n    - match:\n        - receiver: o\nreceivers:\n  - name: o\n    otlp:\n{otlp}"
        ),
        &|_| None,
    )
}

fn otlp(yaml: &str) -> OtlpConfig {
    let c = config(yaml).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"));
    match &c.receivers[0].sink {
        crate::sink::SinkConfig::Otlp(o) => o.clone(),
        other => panic!("not otlp: {other:?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match config(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

#[test]
fn the_endpoint_is_a_base_url_and_v1_logs_is_appended_once() {
    for (endpoint, url) in [
        ("http://collector:4318", "http://collector:4318/v1/logs"),
        ("http://collector:4318/", "http://collector:4318/v1/logs"),
        ("https://gw/otlp", "https://gw/otlp/v1/logs"),
        ("https://gw/otlp/v1/logs", "https://gw/otlp/v1/logs"),
        ("https://gw/otlp/v1/logs/", "https://gw/otlp/v1/logs"),
    ] {
        assert_eq!(otlp(&format!("      endpoint: {endpoint}\n")).url, url);
    }
}

#[test]
fn defaults_are_protobuf_gzip_and_the_message_as_body() {
    let c = otlp("      endpoint: http://c:4318\n");
    assert_eq!((c.wire, c.gzip), (Wire::Protobuf, true));
    assert!(c.encoding.layout.is_none());
    let c = otlp("      endpoint: http://c:4318\n      encoding: json\n      compression: none\n");
    assert_eq!((c.wire, c.gzip), (Wire::Json, false));
}

#[test]
fn bad_settings_are_named_with_their_path() {
    assert_eq!(
        errors(
            "      encoding: avro\n      compression: zstd\n      resourceAttributes: {a: [1]}\n"
        ),
        [
            "receivers[0].otlp.endpoint: is required (e.g. http://otel-collector:4318)",
            "receivers[0].otlp.encoding: expected protobuf or json, found \"avro\"",
            "receivers[0].otlp.compression: expected gzip or none, found \"zstd\"",
            "receivers[0].otlp.resourceAttributes.a: expected a string, found a list",
        ]
    );
    assert_eq!(
        errors("      endpoint: collector:4318\n"),
        [
            "receivers[0].otlp.endpoint: invalid URL \"collector:4318\": scheme must be http or https"
        ]
    );
}

fn occurrence(json: serde_json::Value) -> Occurrence {
    let e: Event = serde_json::from_value(json).unwrap();
    Occurrence::new(e)
}

fn pod_event(name: &str, pod: &str, type_: &str) -> Occurrence {
    occurrence(serde_json::json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": "shop", "uid": format!("pod-{pod}")},
        "reason": "BackOff", "type": type_, "message": "m", "count": 2,
        "lastTimestamp": "2026-12-05T10:00:00Z"
    }))
}

#[test]
fn severity_follows_the_event_type_as_the_collector_reads_it() {
    assert_eq!(record::severity("Normal"), 9);
    assert_eq!(record::severity("Warning"), 13);
    assert_eq!(record::severity("Error"), 17);
    assert_eq!(record::severity("Critical"), 21);
    assert_eq!(record::severity("Surprising"), 0);
}

#[test]
fn consecutive_records_of_one_object_share_their_resource() {
    let occs = [
        pod_event("a", "web-1", "Warning"),
        pod_event("b", "web-1", "Normal"),
        pod_event("c", "web-2", "Normal"),
        pod_event("d", "web-1", "Normal"),
    ];
    let req = record::request(
        occs.iter().map(|o| (o, record::message(o))),
        jiff::Timestamp::UNIX_EPOCH,
    );
    let sizes: Vec<usize> = req
        .resource_logs
        .iter()
        .map(|r| r.scope_logs[0].log_records.len())
        .collect();
    assert_eq!(sizes, [2, 1, 1], "order is kept: web-1 twice, web-2, web-1");
    let first = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(first.time_unix_nano, 1_796_464_800_000_000_000);
    let key = first
        .attributes
        .iter()
        .find(|kv| kv.key == "k8s.event.occurrence_key")
        .and_then(|kv| kv.value.clone());
    assert_eq!(key, Some(AnyValue::string("uid-a:2")));
    // What goes on the wire decodes to the same message.
    let back = ExportLogsServiceRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn json_follows_otlp_json_int64_as_strings_and_nested_values() {
    let o = pod_event("a", "web-1", "Warning");
    let body = AnyValue::from_json(&serde_json::json!({"n": 3, "x": 1.5, "l": [true, null]}));
    let req = record::request([(&o, body)], jiff::Timestamp::UNIX_EPOCH);
    let v: serde_json::Value = serde_json::from_slice(&json::encode(&req)).unwrap();
    let r = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(r["timeUnixNano"], "1796464800000000000");
    assert_eq!(r["severityNumber"], 13);
    assert_eq!(
        r["body"],
        serde_json::json!({"kvlistValue": {"values": [
            {"key": "l", "value": {"arrayValue": {"values": [{"boolValue": true}, {}]}}},
            {"key": "n", "value": {"intValue": "3"}},
            {"key": "x", "value": {"doubleValue": 1.5}},
        ]}})
    );
    let count = r["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "k8s.event.count")
        .unwrap();
    assert_eq!(count["value"], serde_json::json!({"intValue": "2"}));
    assert!(matches!(
        AnyValue::from_json(&serde_json::json!(u64::MAX)).value,
        Some(Value::Double(_))
    ));
}

#[test]
fn a_partial_success_is_read_from_json_with_its_count_as_string_or_number() {
    let p = json::partial_success(
        br#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"bad"}}"#,
    )
    .unwrap();
    assert_eq!(
        (p.rejected_log_records, p.error_message.as_str()),
        (2, "bad")
    );
    let p = json::partial_success(br#"{"partialSuccess":{"rejectedLogRecords":3}}"#).unwrap();
    assert_eq!(p.rejected_log_records, 3);
    assert!(json::partial_success(b"{}").is_none());
}

#[test]
fn only_429_502_503_and_504_are_retried() {
    let what = "POST http://c/v1/logs";
    for status in [429, 502, 503, 504] {
        let e = failure(
            what,
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            "busy",
        );
        assert!(matches!(e, SendError::Transient { .. }), "{status}: {e:?}");
    }
    for status in [400, 401, 404, 408, 413, 500, 501] {
        let e = failure(
            what,
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            "no",
        );
        assert!(matches!(e, SendError::Permanent { .. }), "{status}: {e:?}");
    }
    let mut h = HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    assert_eq!(
        failure(what, StatusCode::SERVICE_UNAVAILABLE, &h, "busy"),
        SendError::Transient {
            reason: "POST http://c/v1/logs answered 503 Service Unavailable: busy".into(),
            retry_after: Some(std::time::Duration::from_secs(3)),
        }
    );
    assert_eq!(
        failure(what, StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), "oops"),
        SendError::Permanent {
            reason: "POST http://c/v1/logs answered 500 Internal Server Error: oops (OTLP retries only 429, 502, 503 and 504)".into(),
        }
    );
}
