//! An occurrence as an OTLP log record, following what the OpenTelemetry Collector's
//! `k8s_events` receiver emits for a Kubernetes event, so dashboards and queries written for it
//! work on what this exporter sends:
//!
//! - the record: the event's time, the time it was observed (now), the severity from the event's
//!   type (Normal → INFO 9, Warning → WARN 13; Error → ERROR 17, Critical → FATAL 21, as the
//!   receiver reads event types of events.k8s.io), the message as body (or the receiver's
//!   `layout`, as a key-value list), and the attributes `k8s.event.reason`, `.action`,
//!   `.start_time`, `.name`, `.uid`, `.count`, and `k8s.namespace.name`; ours besides:
//!   `k8s.event.type` and `k8s.event.occurrence_key` (`{uid}:{count}`, what a consumer
//!   deduplicates a replay with);
//! - its resource: `k8s.node.name` (the event's source host) and the involved object's
//!   `k8s.object.kind`, `.name`, `.uid`, `.fieldpath`, `.api_version`, `.resource_version`;
//!   ours besides: `k8s.cluster.name` from `clusterName`.
//!
//! Records of one resource (one involved object, consecutive in a batch) share one
//! `ResourceLogs`.

use jiff::Timestamp;

use super::proto::{
    AnyValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, LogRecord, Resource,
    ResourceLogs, SEVERITY_ERROR, SEVERITY_FATAL, SEVERITY_INFO, SEVERITY_WARN, ScopeLogs,
};
use crate::event::{Event, Occurrence, Text};

/// The instrumentation scope of every record.
pub const SCOPE: &str = "kube-event-exporter";

/// The severity number of an event type (0, unspecified, for a type the receiver does not know).
pub fn severity(type_: &str) -> i32 {
    match type_.to_ascii_lowercase().as_str() {
        "normal" => SEVERITY_INFO,
        "warning" => SEVERITY_WARN,
        "error" => SEVERITY_ERROR,
        "critical" => SEVERITY_FATAL,
        _ => 0,
    }
}

fn nanos(t: Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

/// The record of one occurrence, with `body` (the message, or the receiver's layout).
pub fn log_record(occ: &Occurrence, body: AnyValue, observed: Timestamp) -> LogRecord {
    let e = &occ.event;
    let type_ = e.type_.as_deref().unwrap_or_default();
    let str_ = |s: &Option<Text>| s.as_deref().unwrap_or_default().to_owned();
    let mut attributes = vec![
        KeyValue::string("k8s.event.reason", str_(&e.reason)),
        KeyValue::string("k8s.event.action", str_(&e.action)),
        KeyValue::string(
            "k8s.event.start_time",
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        ),
        KeyValue::string("k8s.event.name", str_(&e.metadata.name)),
        KeyValue::string("k8s.event.uid", e.uid()),
        KeyValue::string("k8s.namespace.name", str_(&e.involved_object.namespace)),
        KeyValue::int("k8s.event.count", i64::from(e.occurrence_count())),
        KeyValue::string("k8s.event.type", type_),
        KeyValue::string("k8s.event.occurrence_key", occ.key.to_string()),
    ];
    attributes.retain(|kv| !matches!(&kv.value, Some(AnyValue { value: Some(super::proto::Value::String(s)) }) if s.is_empty()));
    LogRecord {
        time_unix_nano: e.last_seen().map(nanos).unwrap_or(0),
        observed_time_unix_nano: nanos(observed),
        severity_number: severity(type_),
        severity_text: type_.to_owned(),
        body: Some(body),
        attributes,
        event_name: String::new(),
    }
}

/// The resource of an event: where it happened and what it is about.
pub fn resource(e: &Event) -> Vec<KeyValue> {
    let o = &e.involved_object;
    let str_ = |s: &Option<Text>| s.as_deref().unwrap_or_default().to_owned();
    let mut attrs = vec![
        KeyValue::string("k8s.cluster.name", e.cluster_name.as_str()),
        KeyValue::string(
            "k8s.node.name",
            e.source
                .as_ref()
                .and_then(|s| s.host.as_deref())
                .unwrap_or_default(),
        ),
        KeyValue::string("k8s.object.kind", str_(&o.kind)),
        KeyValue::string("k8s.object.name", str_(&o.name)),
        KeyValue::string("k8s.object.uid", str_(&o.uid)),
        KeyValue::string("k8s.object.fieldpath", str_(&o.field_path)),
        KeyValue::string("k8s.object.api_version", str_(&o.api_version)),
        KeyValue::string("k8s.object.resource_version", str_(&o.resource_version)),
    ];
    attrs.retain(|kv| !matches!(&kv.value, Some(AnyValue { value: Some(super::proto::Value::String(s)) }) if s.is_empty()));
    attrs
}

/// The body of a record without a layout: the event's message.
pub fn message(occ: &Occurrence) -> AnyValue {
    AnyValue::string(occ.event.message.as_deref().unwrap_or_default())
}

/// One export request for occurrences and their bodies, in order: consecutive records of one
/// resource share it.
pub fn request<'a>(
    records: impl IntoIterator<Item = (&'a Occurrence, AnyValue)>,
    observed: Timestamp,
) -> ExportLogsServiceRequest {
    let scope = InstrumentationScope {
        name: SCOPE.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    for (occ, body) in records {
        let attrs = resource(&occ.event);
        let record = log_record(occ, body, observed);
        let same = resource_logs
            .last()
            .is_some_and(|r| r.resource.as_ref().is_some_and(|r| r.attributes == attrs));
        if !same {
            resource_logs.push(ResourceLogs {
                resource: Some(Resource { attributes: attrs }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope.clone()),
                    log_records: Vec::new(),
                }],
                schema_url: String::new(),
            });
        }
        if let Some(r) = resource_logs.last_mut() {
            r.scope_logs[0].log_records.push(record);
        }
    }
    ExportLogsServiceRequest { resource_logs }
}
