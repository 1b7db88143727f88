//! An [`Event`] read straight into its box, field by field. The derived `Deserialize` builds every
//! field in a local, moves them into the struct and the struct into the caller's box: about 1 KB
//! copied three times per event, 4% of the exporter's CPU in the benchmark profile (memmove).
//!
//! Only the shape the API server writes is taken here (each field once). Anything else, a repeated
//! field or any error, is left to the derived decoder, whose value or error the caller uses:
//! `source::frames` falls back to it, and its property tests hold the two to the same outcome.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, Visitor};

use super::time::{OptionMicroTime, OptionTime};
use super::{Event, Meta};

/// Decodes an event into a new box; `managedFields` is not kept.
pub struct BoxedEvent;

impl<'de> DeserializeSeed<'de> for BoxedEvent {
    type Value = Box<Event>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Box<Event>, D::Error> {
        d.deserialize_struct("Event", FIELDS, EventVisitor)
    }
}

const FIELDS: &[&str] = &[
    "metadata",
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
    "clusterName",
    "involvedObject",
];

/// A field's index in `FIELDS`, or None for a key the event does not have (ignored, as derived).
struct Field(Option<usize>);

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;

        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Field, E> {
                // A match, not a search of `FIELDS`: it compiles to a switch on the length and
                // one comparison (16 comparisons in the worst case, a key at a time).
                Ok(Field(Some(match v {
                    "metadata" => 0,
                    "reason" => 1,
                    "message" => 2,
                    "source" => 3,
                    "firstTimestamp" => 4,
                    "lastTimestamp" => 5,
                    "count" => 6,
                    "type" => 7,
                    "eventTime" => 8,
                    "series" => 9,
                    "action" => 10,
                    "related" => 11,
                    "reportingComponent" => 12,
                    "reportingInstance" => 13,
                    "clusterName" => 14,
                    "involvedObject" => 15,
                    _ => return Ok(Field(None)),
                })))
            }
        }

        d.deserialize_identifier(FieldVisitor)
    }
}

/// `metadata`, read into the event's own [`Meta`].
struct MetaInPlace<'a>(&'a mut Meta);

impl<'de> DeserializeSeed<'de> for MetaInPlace<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        Meta::deserialize_into(d, self.0)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Box<Event>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Box<Event>, A::Error> {
        let mut e = Box::<Event>::default();
        let mut seen = 0u32;
        while let Some(Field(field)) = map.next_key()? {
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen & (1 << i) != 0 {
                return Err(A::Error::custom(
                    "repeated field: left to the derived decoder",
                ));
            }
            seen |= 1 << i;
            match i {
                0 => map.next_value_seed(MetaInPlace(&mut e.metadata))?,
                1 => e.reason = map.next_value()?,
                2 => e.message = map.next_value()?,
                3 => e.source = map.next_value()?,
                4 => e.first_timestamp = map.next_value::<OptionTime>()?.0,
                5 => e.last_timestamp = map.next_value::<OptionTime>()?.0,
                6 => e.count = map.next_value()?,
                7 => e.type_ = map.next_value()?,
                8 => e.event_time = map.next_value::<OptionMicroTime>()?.0,
                9 => e.series = map.next_value()?,
                10 => e.action = map.next_value()?,
                11 => e.related = map.next_value()?,
                12 => e.reporting_component = map.next_value()?,
                13 => e.reporting_instance = map.next_value()?,
                14 => e.cluster_name = map.next_value()?,
                _ => e.involved_object = map.next_value()?,
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(json: &str) -> Result<Event, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        let e = BoxedEvent.deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(*e)
    }

    fn derived(json: &str) -> Result<Event, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn every_field_reads_as_the_derived_decoder_reads_it() {
        let json = r#"{"metadata":{"name":"n","namespace":"ns","uid":"u","resourceVersion":"7",
            "creationTimestamp":"2024-01-02T03:04:05Z","managedFields":[{"manager":"m"}]},
            "reason":"BackOff","message":"m \"q\" \u00e9","source":{"component":"kubelet","host":"h"},
            "firstTimestamp":"2024-01-02T03:04:05Z","lastTimestamp":"2024-01-02T03:05:05Z","count":3,
            "type":"Warning","eventTime":"2024-01-02T03:04:05.123456Z",
            "series":{"count":4,"lastObservedTime":"2024-01-02T03:04:06.000001Z"},"action":"a",
            "related":{"kind":"Node","name":"x"},"reportingComponent":"rc","reportingInstance":"ri",
            "clusterName":"c","unknown":[1,{"x":null}],
            "involvedObject":{"kind":"Pod","namespace":"ns","name":"p","uid":"pu","apiVersion":"v1",
            "resourceVersion":"9","fieldPath":"spec.containers{x}","labels":{"a":"b"}}}"#;
        let got = boxed(json).unwrap();
        assert_eq!(got, derived(json).unwrap());
        assert_eq!(got.occurrence_key(), "u:4");
        let written = serde_json::to_string(&got).unwrap();
        assert!(!written.contains("managedFields"), "{written}");
    }

    #[test]
    fn the_field_names_are_the_ones_matched() {
        for (i, name) in FIELDS.iter().enumerate() {
            let de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name);
            let Field(got) = serde::Deserialize::deserialize(de).unwrap();
            assert_eq!(got, Some(i), "{name}");
        }
    }

    #[test]
    fn what_it_does_not_take_the_derived_decoder_decides() {
        // A repeated field: the derived decoder refuses it; so does this one, and the caller
        // then reports the derived error.
        let repeated = r#"{"reason":"a","reason":"b"}"#;
        assert!(boxed(repeated).is_err());
        assert!(derived(repeated).is_err());
        // Wrong types are refused by both; what this one takes, it reads the same.
        for json in [
            r#"{"count":"3"}"#,
            r#"{"metadata":null}"#,
            r#"{"firstTimestamp":"not a time"}"#,
            r#"{"source":["kubelet","h"]}"#,
            r#"{"series":{"count":"1"}}"#,
        ] {
            assert!(boxed(json).is_err(), "{json}");
            assert!(derived(json).is_err(), "{json}");
        }
        for json in [
            r#"{"reason":null,"source":null,"firstTimestamp":null,"eventTime":null}"#,
            r#"{"metadata":{"name":"a","name":"b"}}"#,
            r#"{"source":{"host":"a","host":"b"},"related":{"kind":"Pod","x":[1]}}"#,
            r#"{}"#,
        ] {
            assert_eq!(boxed(json).unwrap(), derived(json).unwrap(), "{json}");
        }
    }
}
