//! The event's [`Meta`] read as k8s-openapi reads its `ObjectMeta` (the same fields, unknown keys
//! ignored, a repeated key's last value kept, the same errors), except that its strings are
//! [`Text`](super::Text), its timestamps take the fast path of [`super::time`] (every event
//! carries a `creationTimestamp`), and `managedFields` is skipped unread: it is never exported,
//! and decoding it allocated more than the rest of the event (the API server writes an entry per
//! writer, each with a tree of `f:` keys). Only its JSON syntax is checked, so an event is not
//! refused for a field that is dropped anyway.

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Meta;
use super::time::OptionTime;

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut m = Meta::default();
        deserialize_into(d, &mut m)?;
        Ok(m)
    }
}

/// Reads the fields present into `m` (an event decoded in its box, `super::decode`).
pub fn deserialize_into<'de, D: Deserializer<'de>>(d: D, m: &mut Meta) -> Result<(), D::Error> {
    d.deserialize_struct("ObjectMeta", FIELDS, MetaVisitor(m))
}

const FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

enum Field {
    Annotations,
    CreationTimestamp,
    DeletionGracePeriodSeconds,
    DeletionTimestamp,
    Finalizers,
    GenerateName,
    Generation,
    Labels,
    ManagedFields,
    Name,
    Namespace,
    OwnerReferences,
    ResourceVersion,
    SelfLink,
    Uid,
    Other,
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;

        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "annotations" => Field::Annotations,
                    "creationTimestamp" => Field::CreationTimestamp,
                    "deletionGracePeriodSeconds" => Field::DeletionGracePeriodSeconds,
                    "deletionTimestamp" => Field::DeletionTimestamp,
                    "finalizers" => Field::Finalizers,
                    "generateName" => Field::GenerateName,
                    "generation" => Field::Generation,
                    "labels" => Field::Labels,
                    "managedFields" => Field::ManagedFields,
                    "name" => Field::Name,
                    "namespace" => Field::Namespace,
                    "ownerReferences" => Field::OwnerReferences,
                    "resourceVersion" => Field::ResourceVersion,
                    "selfLink" => Field::SelfLink,
                    "uid" => Field::Uid,
                    _ => Field::Other,
                })
            }
        }

        d.deserialize_identifier(FieldVisitor)
    }
}

struct MetaVisitor<'a>(&'a mut Meta);

impl<'de> Visitor<'de> for MetaVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectMeta")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let m = self.0;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Annotations => m.annotations = map.next_value()?,
                Field::CreationTimestamp => {
                    m.creation_timestamp = map.next_value::<OptionTime>()?.0
                }
                Field::DeletionGracePeriodSeconds => {
                    m.deletion_grace_period_seconds = map.next_value()?
                }
                Field::DeletionTimestamp => {
                    m.deletion_timestamp = map.next_value::<OptionTime>()?.0
                }
                Field::Finalizers => m.finalizers = map.next_value()?,
                Field::GenerateName => m.generate_name = map.next_value()?,
                Field::Generation => m.generation = map.next_value()?,
                Field::Labels => m.labels = map.next_value()?,
                Field::ManagedFields => {
                    map.next_value::<IgnoredAny>()?;
                }
                Field::Name => m.name = map.next_value()?,
                Field::Namespace => m.namespace = map.next_value()?,
                Field::OwnerReferences => m.owner_references = map.next_value()?,
                Field::ResourceVersion => m.resource_version = map.next_value()?,
                Field::SelfLink => m.self_link = map.next_value()?,
                Field::Uid => m.uid = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn text(s: Option<String>) -> Option<crate::event::Text> {
        s.map(Into::into)
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
