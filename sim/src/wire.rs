//! Objects written as a real API server writes them: fields in the order of the Go structs (Go's
//! encoding/json follows the struct), not sorted as serde_json's map sorts them.
//!
//! The order is what a client meets on a real cluster: an event's metadata comes before its
//! involvedObject, message and timestamps, and its `managedFields` last in the metadata. A client
//! that reads frames front to back (as ours does to cut managedFields) would otherwise be measured
//! against a layout no API server sends. Maps (labels, annotations, fieldsV1) stay sorted: Go
//! sorts map keys too. Fields a struct does not list (none, in what kube-sim stores) come after
//! the listed ones, sorted.

use serde_json::Value;

/// The field order of each struct kube-sim writes. `Other` lists nothing: a map, or a part whose
/// order does not matter to anyone.
#[derive(Clone, Copy)]
enum Shape {
    /// A top-level object, by its kind.
    Object,
    Meta,
    Reference,
    EventSource,
    Series,
    ManagedEntry,
    LeaseSpec,
    Map,
}

/// core/v1 Event (k8s.io/api/core/v1 types.go).
const EVENT: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

/// events.k8s.io/v1 Event.
const EVENTS_V1: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "eventTime",
    "series",
    "reportingController",
    "reportingInstance",
    "action",
    "reason",
    "regarding",
    "related",
    "note",
    "type",
    "deprecatedSource",
    "deprecatedFirstTimestamp",
    "deprecatedLastTimestamp",
    "deprecatedCount",
];

/// metav1.Status.
const STATUS: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "status",
    "message",
    "reason",
    "details",
    "code",
];

/// Any other object: type meta, metadata, spec, status.
const OBJECT: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status"];

const META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const REFERENCE: &[&str] = &[
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
];

const EVENT_SOURCE: &[&str] = &["component", "host"];
const SERIES: &[&str] = &["count", "lastObservedTime"];
const MANAGED_ENTRY: &[&str] = &[
    "manager",
    "operation",
    "apiVersion",
    "time",
    "fieldsType",
    "fieldsV1",
    "subresource",
];
const LEASE_SPEC: &[&str] = &[
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
    "strategy",
    "preferredHolder",
];

/// `value` as the API server writes it.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write(&mut out, value, Shape::Object);
    out
}

fn order(shape: Shape, object: &serde_json::Map<String, Value>) -> &'static [&'static str] {
    match shape {
        Shape::Object => {
            let api = object.get("apiVersion").and_then(Value::as_str);
            match object.get("kind").and_then(Value::as_str) {
                Some("Event") if api == Some("events.k8s.io/v1") => EVENTS_V1,
                Some("Event") => EVENT,
                Some("Status") => STATUS,
                _ => OBJECT,
            }
        }
        Shape::Meta => META,
        Shape::Reference => REFERENCE,
        Shape::EventSource => EVENT_SOURCE,
        Shape::Series => SERIES,
        Shape::ManagedEntry => MANAGED_ENTRY,
        Shape::LeaseSpec => LEASE_SPEC,
        Shape::Map => &[],
    }
}

/// The shape of the value of `key` in an object of `shape`.
fn field(shape: Shape, key: &str) -> Shape {
    match (shape, key) {
        // A list's items are objects of their own.
        (Shape::Object, "items") => Shape::Object,
        (Shape::Object, "metadata") => Shape::Meta,
        (Shape::Object, "involvedObject" | "regarding" | "related") => Shape::Reference,
        (Shape::Object, "source" | "deprecatedSource") => Shape::EventSource,
        (Shape::Object, "series") => Shape::Series,
        (Shape::Object, "spec") => Shape::LeaseSpec,
        (Shape::Meta, "managedFields") => Shape::ManagedEntry,
        _ => Shape::Map,
    }
}

fn write(out: &mut Vec<u8>, value: &Value, shape: Shape) {
    match value {
        Value::Object(object) => {
            let listed = order(shape, object);
            let keys = listed
                .iter()
                .copied()
                .filter(|k| object.contains_key(*k))
                .chain(
                    object
                        .keys()
                        .map(String::as_str)
                        .filter(|k| !listed.contains(k)),
                );
            out.push(b'{');
            for (i, key) in keys.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("a string serializes");
                out.push(b':');
                write(out, &object[key], field(shape, key));
            }
            out.push(b'}');
        }
        // A list of entries keeps the shape of its items (managedFields).
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, shape);
            }
            out.push(b']');
        }
        leaf => serde_json::to_writer(&mut *out, leaf).expect("a JSON value serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_is_written_in_the_order_of_the_go_struct() {
        let event = json!({
            "type": "Warning", "count": 2, "message": "m", "reason": "r",
            "source": {"host": "n", "component": "kubelet"},
            "involvedObject": {"uid": "p", "name": "pod", "kind": "Pod", "namespace": "ns"},
            "metadata": {
                "uid": "u", "name": "e", "namespace": "ns", "resourceVersion": "7",
                "labels": {"b": "2", "a": "1"},
                "managedFields": [{"time": "t", "manager": "kubelet", "fieldsV1": {"f:type": {}, "f:count": {}}}],
            },
            "apiVersion": "v1", "kind": "Event",
        });
        assert_eq!(
            String::from_utf8(to_vec(&event)).unwrap(),
            concat!(
                r#"{"kind":"Event","apiVersion":"v1","metadata":{"name":"e","namespace":"ns","uid":"u","#,
                r#""resourceVersion":"7","labels":{"a":"1","b":"2"},"managedFields":[{"manager":"kubelet","#,
                r#""time":"t","fieldsV1":{"f:count":{},"f:type":{}}}]},"involvedObject":{"kind":"Pod","#,
                r#""namespace":"ns","name":"pod","uid":"p"},"reason":"r","message":"m","#,
                r#""source":{"component":"kubelet","host":"n"},"count":2,"type":"Warning"}"#
            )
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&to_vec(&event)).unwrap(),
            event
        );
    }

    #[test]
    fn unlisted_fields_follow_the_listed_ones_sorted() {
        let lease = json!({"spec": {"renewTime": "r", "holderIdentity": "h", "zzz": 1, "aaa": 2},
                           "metadata": {"name": "l"}, "kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "extra": true});
        assert_eq!(
            String::from_utf8(to_vec(&lease)).unwrap(),
            r#"{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"l"},"spec":{"holderIdentity":"h","renewTime":"r","aaa":2,"zzz":1},"extra":true}"#
        );
    }
}
