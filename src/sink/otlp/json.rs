//! OTLP/JSON: the protobuf messages in the proto3 JSON mapping with OTLP's rules: field names in
//! lowerCamelCase, enums as their numbers, 64-bit integers as decimal strings (timestamps,
//! `intValue`).

use serde_json::{Value as Json, json};

use super::proto::{
    AnyValue, ExportLogsPartialSuccess, ExportLogsServiceRequest, KeyValue, LogRecord, Value,
};

fn any(v: &AnyValue) -> Json {
    match &v.value {
        Some(Value::String(s)) => json!({"stringValue": s}),
        Some(Value::Bool(b)) => json!({"boolValue": b}),
        Some(Value::Int(i)) => json!({"intValue": i.to_string()}),
        Some(Value::Double(d)) => json!({"doubleValue": d}),
        Some(Value::Array(a)) => {
            json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}})
        }
        Some(Value::KvList(l)) => json!({"kvlistValue": {"values": attributes(&l.values)}}),
        None => json!({}),
    }
}

fn attributes(kvs: &[KeyValue]) -> Json {
    Json::Array(
        kvs.iter()
            .map(|kv| json!({"key": kv.key, "value": kv.value.as_ref().map(any).unwrap_or(json!({}))}))
            .collect(),
    )
}

fn record(r: &LogRecord) -> Json {
    let mut o = json!({
        "timeUnixNano": r.time_unix_nano.to_string(),
        "observedTimeUnixNano": r.observed_time_unix_nano.to_string(),
        "severityNumber": r.severity_number,
        "attributes": attributes(&r.attributes),
    });
    if !r.severity_text.is_empty() {
        o["severityText"] = json!(r.severity_text);
    }
    if let Some(b) = &r.body {
        o["body"] = any(b);
    }
    o
}

/// The request as OTLP/JSON.
pub fn encode(req: &ExportLogsServiceRequest) -> Vec<u8> {
    let resource_logs: Vec<Json> = req
        .resource_logs
        .iter()
        .map(|rl| {
            let scope_logs: Vec<Json> = rl
                .scope_logs
                .iter()
                .map(|sl| {
                    let scope = sl.scope.as_ref().map(|s| json!({"name": s.name, "version": s.version}));
                    json!({
                        "scope": scope.unwrap_or(json!({})),
                        "logRecords": sl.log_records.iter().map(record).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "resource": {"attributes": attributes(rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]))},
                "scopeLogs": scope_logs,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceLogs": resource_logs })).expect("a JSON value serializes")
}

/// The `partialSuccess` of an OTLP/JSON answer (`rejectedLogRecords` as a string or a number);
/// None when absent or empty.
pub fn partial_success(body: &[u8]) -> Option<ExportLogsPartialSuccess> {
    let v: Json = serde_json::from_slice(body).ok()?;
    let p = v.get("partialSuccess")?;
    let rejected = match p.get("rejectedLogRecords") {
        Some(Json::String(s)) => s.parse().ok()?,
        Some(Json::Number(n)) => n.as_i64()?,
        _ => 0,
    };
    Some(ExportLogsPartialSuccess {
        rejected_log_records: rejected,
        error_message: p
            .get("errorMessage")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}
