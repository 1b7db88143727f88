//! The parts of an [`Event`](super::Event) that k8s-openapi has types for (`ObjectMeta`,
//! `EventSource`, `ObjectReference`, `EventSeries`), as our own structs with [`Text`] strings.
//! k8s-openapi's hold a heap `String` per field, allocated while decoding every event off the
//! watch and freed once it is delivered, though most are a few bytes (a namespace, a
//! resourceVersion, a kind, a component): two thirds of the allocator's 11% of the exporter's CPU
//! in the benchmark profile.
//!
//! They read and write the JSON k8s-openapi's types do: the same keys in the same order, unset
//! fields left out, unknown keys ignored, a repeated key's last value kept, only an object taken
//! and the same errors. `tests` holds them to k8s-openapi's.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::Text;
use super::time::{OptionMicroTime, OptionTime};

/// A struct of optional fields, written as k8s-openapi's generated code writes its own: the set
/// fields only, in the order declared (k8s-openapi's: alphabetical by key). Read as k8s-openapi
/// reads its own: an object only (anything else is an error that names `$k8s`), unknown keys
/// ignored, a repeated key's last value kept; `deserialize_into` reads into a value in place (the
/// event's metadata, in its box: `super::decode`). A field with `via` is read through that type's
/// `.0` (the fast timestamps of `super::time`).
macro_rules! k8s_struct {
    ($(#[$attr:meta])* pub struct $name:ident as $k8s:literal {
        $($(#[$fattr:meta])* $field:ident: $ty:ty = $key:literal $(via $via:ty)?,)*
    }) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $($(#[$fattr])* pub $field: Option<$ty>,)*
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let len = 0 $(+ usize::from(self.$field.is_some()))*;
                let mut state = s.serialize_struct($k8s, len)?;
                $(if let Some(value) = &self.$field {
                    state.serialize_field($key, value)?;
                })*
                state.end()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut out = $name::default();
                $name::deserialize_into(d, &mut out)?;
                Ok(out)
            }
        }

        impl $name {
            /// Reads the fields present into `out`.
            pub fn deserialize_into<'de, D: serde::Deserializer<'de>>(
                d: D,
                out: &mut $name,
            ) -> Result<(), D::Error> {
                #[allow(non_camel_case_types)]
                enum Key {
                    $($field,)*
                    Other,
                }

                impl<'de> serde::Deserialize<'de> for Key {
                    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        struct KeyVisitor;

                        impl serde::de::Visitor<'_> for KeyVisitor {
                            type Value = Key;

                            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                                f.write_str("field identifier")
                            }

                            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                                Ok(match v {
                                    $($key => Key::$field,)*
                                    _ => Key::Other,
                                })
                            }
                        }

                        d.deserialize_identifier(KeyVisitor)
                    }
                }

                struct ObjectVisitor<'a>(&'a mut $name);

                impl<'de> serde::de::Visitor<'de> for ObjectVisitor<'_> {
                    type Value = ();

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($k8s)
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<(), A::Error> {
                        let out = self.0;
                        while let Some(key) = map.next_key::<Key>()? {
                            match key {
                                $(Key::$field => {
                                    out.$field = k8s_struct!(@value map, $ty $(, $via)?)
                                })*
                                Key::Other => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(())
                    }
                }

                d.deserialize_struct($k8s, &[$($key),*], ObjectVisitor(out))
            }
        }
    };
    (@value $map:ident, $ty:ty) => {
        $map.next_value::<Option<$ty>>()?
    };
    (@value $map:ident, $ty:ty, $via:ty) => {
        $map.next_value::<$via>()?.0
    };
}

k8s_struct! {
    /// The event's `metadata`: k8s-openapi's `ObjectMeta` but for `managedFields`, skipped unread
    /// as any unknown key: it is never exported, and decoding it allocated more than the rest of
    /// the event (the API server writes an entry per writer, each with a tree of `f:` keys). Only
    /// its JSON syntax is checked, so an event is not refused for a field dropped anyway.
    pub struct Meta as "ObjectMeta" {
        annotations: BTreeMap<String, String> = "annotations",
        creation_timestamp: Time = "creationTimestamp" via OptionTime,
        deletion_grace_period_seconds: i64 = "deletionGracePeriodSeconds",
        deletion_timestamp: Time = "deletionTimestamp" via OptionTime,
        finalizers: Vec<String> = "finalizers",
        generate_name: Text = "generateName",
        generation: i64 = "generation",
        labels: BTreeMap<String, String> = "labels",
        name: Text = "name",
        namespace: Text = "namespace",
        owner_references: Vec<OwnerReference> = "ownerReferences",
        resource_version: Text = "resourceVersion",
        self_link: Text = "selfLink",
        uid: Text = "uid",
    }
}

k8s_struct! {
    /// `source`: k8s-openapi's `EventSource`.
    pub struct Source as "EventSource" {
        component: Text = "component",
        host: Text = "host",
    }
}

k8s_struct! {
    /// `related`: k8s-openapi's `ObjectReference`.
    pub struct Reference as "ObjectReference" {
        api_version: Text = "apiVersion",
        field_path: Text = "fieldPath",
        kind: Text = "kind",
        name: Text = "name",
        namespace: Text = "namespace",
        resource_version: Text = "resourceVersion",
        uid: Text = "uid",
    }
}

k8s_struct! {
    /// `series`: k8s-openapi's `EventSeries`.
    pub struct Series as "EventSeries" {
        count: i32 = "count",
        last_observed_time: MicroTime = "lastObservedTime" via OptionMicroTime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSeries, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde::de::DeserializeOwned;

    fn text(s: Option<String>) -> Option<Text> {
        s.map(Text::from)
    }

    impl From<EventSource> for Source {
        fn from(s: EventSource) -> Self {
            Source {
                component: text(s.component),
                host: text(s.host),
            }
        }
    }

    impl From<ObjectReference> for Reference {
        fn from(r: ObjectReference) -> Self {
            Reference {
                api_version: text(r.api_version),
                field_path: text(r.field_path),
                kind: text(r.kind),
                name: text(r.name),
                namespace: text(r.namespace),
                resource_version: text(r.resource_version),
                uid: text(r.uid),
            }
        }
    }

    impl From<EventSeries> for Series {
        fn from(s: EventSeries) -> Self {
            Series {
                count: s.count,
                last_observed_time: s.last_observed_time,
            }
        }
    }

    /// `json` read as ours and as k8s-openapi's: the same value or the same error; and the value
    /// written back the same.
    fn same<Ours, Theirs>(json: &str)
    where
        Ours: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug + From<Theirs>,
        Theirs: DeserializeOwned + Serialize,
    {
        // Inside an Option, as the event holds them (null is None for both).
        let ours = serde_json::from_str::<Option<Ours>>(json).map_err(|e| e.to_string());
        let theirs = serde_json::from_str::<Option<Theirs>>(json).map_err(|e| e.to_string());
        let written = theirs
            .as_ref()
            .ok()
            .map(|t| serde_json::to_string(t).unwrap());
        let theirs = theirs.map(|t| t.map(Ours::from));
        assert_eq!(ours, theirs, "{json}");
        if let Ok(ours) = &ours {
            assert_eq!(
                serde_json::to_string(ours).unwrap(),
                written.unwrap(),
                "{json}"
            );
        }
    }

    const NOT_OBJECTS: &[&str] = &[r#"null"#, r#"[]"#, r#"["a","b"]"#, r#""x""#, r#"7"#, r#"{"#];

    #[test]
    fn source_reads_and_writes_as_k8s_openapis() {
        for json in [
            r#"{}"#,
            r#"{"component":"kubelet","host":"node-1"}"#,
            r#"{"host":"h","component":"c","other":{"deep":[1,null]}}"#,
            r#"{"component":"a","component":"b"}"#,
            r#"{"component":null,"host":"a very long host name, longer than 24 bytes"}"#,
            r#"{"component":"\u00e9\n\"q\""}"#,
            r#"{"component":5}"#,
            r#"{"host":["a"]}"#,
        ]
        .iter()
        .chain(NOT_OBJECTS)
        {
            same::<Source, EventSource>(json);
        }
    }

    #[test]
    fn reference_reads_and_writes_as_k8s_openapis() {
        for json in [
            r#"{}"#,
            r#"{"kind":"Node","namespace":"ns","name":"n","uid":"u","apiVersion":"v1","resourceVersion":"7","fieldPath":"spec"}"#,
            r#"{"uid":"0b8e6f4a-2c1d-4e5f-8a9b-0c1d2e3f4a5b","kind":"Pod","x":1}"#,
            r#"{"name":"a","name":"b","name":null}"#,
            r#"{"fieldPath":false}"#,
        ]
        .iter()
        .chain(NOT_OBJECTS)
        {
            same::<Reference, ObjectReference>(json);
        }
    }

    #[test]
    fn series_reads_and_writes_as_k8s_openapis() {
        for json in [
            r#"{}"#,
            r#"{"count":4,"lastObservedTime":"2024-01-02T03:04:06.000001Z"}"#,
            r#"{"lastObservedTime":"2024-01-02T03:04:06Z","count":-1}"#,
            r#"{"lastObservedTime":"2024-01-02T03:04:06+01:00"}"#,
            r#"{"lastObservedTime":null,"count":null}"#,
            r#"{"count":1,"count":2}"#,
            r#"{"count":"3"}"#,
            r#"{"count":3000000000}"#,
            r#"{"lastObservedTime":"2024-02-30T00:00:00.000000Z"}"#,
            r#"{"lastObservedTime":7}"#,
        ]
        .iter()
        .chain(NOT_OBJECTS)
        {
            same::<Series, EventSeries>(json);
        }
    }

    /// A short string is held inline, a long one on the heap, and both read and write the same.
    #[test]
    fn short_strings_are_inline() {
        let s: Source =
            serde_json::from_str(r#"{"component":"kubelet","host":"ip-10-0-12-34.ec2.internal"}"#)
                .unwrap();
        assert!(!s.component.as_ref().unwrap().is_heap_allocated());
        assert!(s.host.as_ref().unwrap().is_heap_allocated());
        assert_eq!(size_of::<Text>(), size_of::<String>());
        assert_eq!(size_of::<Option<Text>>(), size_of::<Option<String>>());
    }

    /// k8s-openapi's value as ours: the same fields, `managedFields` dropped.
    fn ours(m: ObjectMeta) -> Meta {
        Meta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: text(m.generate_name),
            generation: m.generation,
            labels: m.labels,
            name: text(m.name),
            namespace: text(m.namespace),
            owner_references: m.owner_references,
            resource_version: text(m.resource_version),
            self_link: text(m.self_link),
            uid: text(m.uid),
        }
    }

    /// Valid, odd and invalid metadata: the same value (but for `managedFields`) or the same
    /// error as k8s-openapi, and the value written back as k8s-openapi writes it without
    /// `managedFields`.
    #[test]
    fn reads_as_k8s_openapi_reads() {
        for json in [
            r#"{}"#,
            r#"{"name":"a","namespace":"b","uid":"u","resourceVersion":"7","creationTimestamp":"2024-01-02T03:04:05Z"}"#,
            r#"{"name":"a","name":"b"}"#,
            r#"{"labels":{"a":"1"},"annotations":null,"finalizers":["x"],"generation":3,"deletionGracePeriodSeconds":30,"deletionTimestamp":"2024-01-02T03:04:05+01:00"}"#,
            r#"{"managedFields":[{"manager":"kubelet","operation":"Update","fieldsV1":{"f:count":{}}}],"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":"p","uid":"q"}]}"#,
            r#"{"unknown":{"deep":[1,2,{"x":null}]},"selfLink":"/x","generateName":"g-"}"#,
            r#"{"creationTimestamp":null}"#,
            r#"{"creationTimestamp":"2024-02-30T00:00:00Z"}"#,
            r#"{"creationTimestamp":7}"#,
            r#"{"labels":{"a":1}}"#,
            r#"{"uid":5}"#,
            r#"null"#,
            r#"[]"#,
            r#"["a"]"#,
            r#""x""#,
        ] {
            let fast = serde_json::from_str::<Meta>(json).map_err(|e| e.to_string());
            let slow = serde_json::from_str::<ObjectMeta>(json).map_err(|e| e.to_string());
            if let Ok(mut slow) = slow.clone() {
                slow.managed_fields = None;
                assert_eq!(
                    serde_json::to_string(fast.as_ref().unwrap()).unwrap(),
                    serde_json::to_string(&slow).unwrap(),
                    "{json}"
                );
            }
            assert_eq!(fast, slow.map(ours), "{json}");
        }
    }

    /// `managedFields` of any shape is dropped unread: k8s-openapi refuses these, we do not.
    #[test]
    fn managed_fields_are_skipped_whatever_their_shape() {
        for managed in [
            r#""x""#,
            "7",
            r#"[{"manager":5}]"#,
            r#"{"f:count":{}}"#,
            "null",
        ] {
            let json = format!(r#"{{"name":"a","managedFields":{managed},"uid":"u"}}"#);
            let m: Meta = serde_json::from_str(&json).unwrap();
            assert_eq!(
                (m.name.as_deref(), m.uid.as_deref()),
                (Some("a"), Some("u"))
            );
            assert!(!serde_json::to_string(&m).unwrap().contains("managed"));
        }
        // Its syntax is still the document's: broken JSON is an error.
        assert!(serde_json::from_str::<Meta>(r#"{"managedFields":[1,}"#).is_err());
    }
}
