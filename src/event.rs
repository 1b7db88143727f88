//! The event model: a core/v1 `Event` as it comes off the watch, plus what enrichment adds, and the
//! `Occurrence` that flows through routing and into the sinks.
//!
//! We decode straight into our own struct (not `k8s_openapi::api::core::v1::Event`) because the
//! exported JSON must have resmoio's shape: `involvedObject` carries the looked-up labels,
//! annotations, owners and `deleted`, and `clusterName` is always present.
//!
//! Its strings are [`Text`], held inline up to 24 bytes: most of an event's ~17 strings are short
//! (namespace, resourceVersion, reason, type, kind, apiVersion, component, host), and a heap
//! `String` each meant an allocation per field on the hot path, decoding every event off the watch,
//! and a free when it was delivered. For the same reason the parts k8s-openapi has types for
//! (`ObjectMeta`, `EventSource`, `ObjectReference`, `EventSeries`) are our own [`Meta`],
//! [`Source`], [`Reference`] and [`Series`], which read and write the same JSON. Labels,
//! annotations and owner references keep `String`s and k8s-openapi's `OwnerReference`: they are
//! rare on the hot path.

mod decode;
mod json;
mod parts;
mod time;

use std::sync::{Arc, OnceLock};

pub use decode::BoxedEvent;
pub use parts::{Meta, Reference, Series, Source};

/// The event model's strings: inline up to 24 bytes (the size of a `String`), so that the short
/// ones, most of them, cost no allocation per event.
pub type Text = compact_str::CompactString;

use bytes::{Bytes, BytesMut};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(
        default,
        deserialize_with = "time::option_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_timestamp: Option<Time>,
    #[serde(
        default,
        deserialize_with = "time::option_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Text>,
    /// resmoio always writes `eventTime`, `null` when unset.
    #[serde(default, deserialize_with = "time::option_micro_time")]
    pub event_time: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<Text>,
    /// Set from `clusterName` in the config; always serialized, possibly empty (resmoio).
    #[serde(default)]
    pub cluster_name: Text,
    #[serde(default)]
    pub involved_object: InvolvedObject,
}

/// `involvedObject` with the metadata enrichment adds (resmoio's `EnhancedObjectReference`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<Text>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// The object was not found when looked up (always serialized, as resmoio does).
    #[serde(default)]
    pub deleted: bool,
}

impl Event {
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or("")
    }

    pub fn resource_version(&self) -> &str {
        self.metadata.resource_version.as_deref().unwrap_or("")
    }

    /// The occurrence number: `series.count` when the producer uses series, else `count`, at least 1.
    pub fn occurrence_count(&self) -> i32 {
        let series = self.series.as_ref().and_then(|s| s.count).unwrap_or(0);
        series.max(self.count.unwrap_or(0)).max(1)
    }

    /// `{uid}:{count}`: stable across replays, used by idempotent sinks as document id / message key.
    pub fn occurrence_key(&self) -> String {
        self.with_occurrence_key(str::to_owned)
    }

    /// The occurrence key handed to `f`, written on the stack when it fits (a UUID's does): an
    /// occurrence makes its shared key from it with one allocation, where a `String` first and
    /// then its copy took two (and `format!` grew its string twice).
    fn with_occurrence_key<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let uid = self.uid();
        let mut count = itoa::Buffer::new();
        let count = count.format(self.occurrence_count());
        let len = uid.len() + 1 + count.len();
        let mut buf = [0u8; 64];
        let Some(key) = buf.get_mut(..len) else {
            return f(&[uid, ":", count].concat());
        };
        key[..uid.len()].copy_from_slice(uid.as_bytes());
        key[uid.len()] = b':';
        key[uid.len() + 1..].copy_from_slice(count.as_bytes());
        f(std::str::from_utf8(key).expect("a str, a colon and digits are UTF-8"))
    }

    /// When the event last happened: `lastTimestamp`, else `series.lastObservedTime`, else `eventTime`,
    /// else `firstTimestamp`, else the creation time.
    pub fn last_seen(&self) -> Option<jiff::Timestamp> {
        self.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| {
                self.series
                    .as_ref()
                    .and_then(|s| s.last_observed_time.as_ref())
                    .map(|t| t.0)
            })
            .or_else(|| self.event_time.as_ref().map(|t| t.0))
            .or_else(|| self.first_timestamp.as_ref().map(|t| t.0))
            .or_else(|| self.metadata.creation_timestamp.as_ref().map(|t| t.0))
    }

    /// Replaces dots in label and annotation keys of the event and of the involved object by `_`
    /// (resmoio's `deDot`, for sinks such as Elasticsearch that treat dots as paths).
    pub fn de_dotted(&self) -> Event {
        fn de_dot(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
            map.iter()
                .map(|(k, v)| (k.replace('.', "_"), v.clone()))
                .collect()
        }
        let mut out = self.clone();
        if let Some(labels) = &self.metadata.labels {
            out.metadata.labels = Some(de_dot(labels));
        }
        if let Some(annotations) = &self.metadata.annotations {
            out.metadata.annotations = Some(de_dot(annotations));
        }
        out.involved_object.labels = de_dot(&self.involved_object.labels);
        out.involved_object.annotations = de_dot(&self.involved_object.annotations);
        out
    }
}

/// Room for a typical event's JSON (700 bytes from kube-sim), so it is written without regrowing.
const JSON_CAPACITY: usize = 1024;

/// One occurrence of an event on its way to the sinks. Shared (`Arc`) by every receiver it is routed to.
#[derive(Debug)]
pub struct Occurrence {
    /// `{uid}:{count}`, shared with every receiver's document.
    pub key: Arc<str>,
    /// Boxed as it came off the watch: about 1 KB that is not copied again on its way here.
    pub event: Box<Event>,
    json: OnceLock<Bytes>,
    value: OnceLock<serde_json::Value>,
}

impl Occurrence {
    pub fn new(event: impl Into<Box<Event>>) -> Self {
        let event = event.into();
        Self {
            key: event.with_occurrence_key(|key| Arc::from(key)),
            event,
            json: OnceLock::new(),
            value: OnceLock::new(),
        }
    }

    /// The default JSON document (no layout), serialized once per occurrence, whatever the number of
    /// receivers. No trailing newline. The bytes `serde_json::to_vec(&self.event)` makes.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            let mut out = Vec::with_capacity(JSON_CAPACITY);
            json::write_event(&mut out, &self.event);
            Bytes::from(out)
        })
    }

    /// As [`json`](Self::json), but a document not serialized yet is written at the end of
    /// `arena` and split off it: a worker writes its batch into one buffer it reuses, instead
    /// of an allocation per document. `arena` is left empty (its spare capacity kept).
    pub fn json_in(&self, arena: &mut BytesMut) -> &Bytes {
        self.json.get_or_init(|| {
            arena.clear();
            json::write_event(arena, &self.event);
            arena.split().freeze()
        })
    }

    /// The event as a JSON tree, the data that layouts and header templates render against.
    pub fn value(&self) -> &serde_json::Value {
        self.value
            .get_or_init(|| serde_json::to_value(&self.event).expect("an Event always serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_occurrence_key_is_the_uid_and_the_count_however_long_the_uid() {
        for uid in [
            String::new(),
            "6f1d2c3b-0a9e-4c7d-8b5a-1e2f3a4b5c6d".to_string(),
            "u".repeat(53),
            "u".repeat(54),
            "é".repeat(100),
        ] {
            let e = event(serde_json::json!({"metadata":{"uid":uid},"count":i32::MAX}));
            let want = format!("{uid}:{}", i32::MAX);
            assert_eq!(e.occurrence_key(), want);
            assert_eq!(&*Occurrence::new(e).key, want);
        }
    }

    #[test]
    fn occurrence_key_uses_count_then_series_then_one() {
        assert_eq!(
            event(serde_json::json!({"metadata":{"uid":"u"},"count":3})).occurrence_key(),
            "u:3"
        );
        assert_eq!(
            event(serde_json::json!({"metadata":{"uid":"u"},"series":{"count":7}}))
                .occurrence_key(),
            "u:7"
        );
        assert_eq!(
            event(serde_json::json!({"metadata":{"uid":"u"}})).occurrence_key(),
            "u:1"
        );
    }

    #[test]
    fn serializes_in_resmoio_shape() {
        let e = event(serde_json::json!({
            "metadata":{"name":"n","namespace":"ns","uid":"u","resourceVersion":"5"},
            "involvedObject":{"kind":"Pod","name":"p"},
            "reason":"Killing","count":1,"type":"Normal"
        }));
        let v: serde_json::Value = serde_json::from_slice(Occurrence::new(e).json()).unwrap();
        assert_eq!(v["clusterName"], "");
        assert_eq!(v["involvedObject"]["deleted"], false);
        assert_eq!(v["eventTime"], serde_json::Value::Null);
        assert!(v["involvedObject"].get("labels").is_none());
    }

    /// An event written through events.k8s.io/v1 with a series has no `count` in its core/v1 view:
    /// the document carries `series.count`, which is the occurrence number of its key.
    #[test]
    fn a_series_events_document_has_its_count_under_series() {
        let e = event(serde_json::json!({
            "metadata":{"uid":"u"},
            "series":{"count":7,"lastObservedTime":"2025-01-02T03:04:05.000000Z"},
            "reason":"BackOff"
        }));
        let key = e.occurrence_key();
        let v: serde_json::Value = serde_json::from_slice(Occurrence::new(e).json()).unwrap();
        assert_eq!(key, "u:7");
        assert!(v.get("count").is_none(), "{v}");
        assert_eq!(v["series"]["count"], 7);
        assert_eq!(
            format!(
                "{}:{}",
                v["metadata"]["uid"].as_str().unwrap(),
                v["series"]["count"]
            ),
            key,
            "a consumer forms the key from series.count when count is absent"
        );
    }

    #[test]
    fn json_in_an_arena_is_json_and_is_kept() {
        let e = event(serde_json::json!({"metadata":{"uid":"u"},"message":"a \"quoted\" text"}));
        let want = serde_json::to_vec(&e).unwrap();
        let mut arena = BytesMut::with_capacity(4096);
        let (a, b) = (Occurrence::new(e.clone()), Occurrence::new(e));
        let first = a.json_in(&mut arena).clone();
        let second = b.json_in(&mut arena).clone();
        assert_eq!((&first[..], &second[..]), (&want[..], &want[..]));
        assert!(arena.is_empty());
        // Written once: later calls, with or without an arena, return the same bytes.
        assert_eq!(a.json().as_ptr(), first.as_ptr());
        assert_eq!(a.json_in(&mut arena).as_ptr(), first.as_ptr());
        assert_eq!(b.json(), &want[..]);
    }

    #[test]
    fn de_dot_rewrites_label_keys_only() {
        let mut e = Event::default();
        e.involved_object
            .labels
            .insert("app.kubernetes.io/name".into(), "a.b".into());
        let d = e.de_dotted();
        assert_eq!(
            d.involved_object
                .labels
                .get("app_kubernetes_io/name")
                .map(String::as_str),
            Some("a.b")
        );
    }
}
