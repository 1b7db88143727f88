//! Decoding of list pages and watch frames, item by item, so one malformed item is skipped and
//! counted instead of failing the whole page or stream.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::managed_fields::Cutter;
use crate::event::{BoxedEvent, Event};

#[derive(Deserialize)]
pub struct ListPage<'a> {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ListMeta,
    /// `"items": null` (Go's encoding of an empty slice) is an empty page, as in kube-rs.
    #[serde(borrow, default, deserialize_with = "null_as_default")]
    pub items: Vec<&'a RawValue>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
    /// KEP-5866: the shard selector the server applied (absent: it ignored ours, or none was sent).
    #[serde(default)]
    pub shard_info: Option<ShardInfo>,
}

#[derive(Deserialize, Default)]
pub struct ShardInfo {
    #[serde(default)]
    pub selector: Option<String>,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    /// Borrowed unless written with escapes (`"ADD\u0045D"` is valid JSON for `"ADDED"`).
    #[serde(rename = "type", borrow)]
    type_: Cow<'a, str>,
    #[serde(borrow)]
    object: &'a RawValue,
}

/// The parts of a `Status` a watch ERROR frame carries.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct Status {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// Only the resourceVersion of a BOOKMARK's object matters.
#[derive(Deserialize)]
struct Bookmark {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkMeta {
    resource_version: String,
}

#[derive(Debug)]
pub enum Frame {
    Added(Box<Event>),
    Modified(Box<Event>),
    Deleted(Box<Event>),
    Bookmark(String),
    Error(Status),
}

impl Frame {
    /// The watch event type, as the API writes it (the `events_received` label).
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Added(_) => "ADDED",
            Frame::Modified(_) => "MODIFIED",
            Frame::Deleted(_) => "DELETED",
            Frame::Bookmark(_) => "BOOKMARK",
            Frame::Error(_) => "ERROR",
        }
    }
}

/// Messages are bounded (they are logged for every malformed frame, and serde_json quotes a
/// wrongly typed string whole).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a watch frame: {}", Short(.0))]
    Envelope(serde_json::Error),
    #[error("{type_} frame with an undecodable object: {}", Short(.source))]
    Object {
        type_: String,
        source: serde_json::Error,
    },
    /// The type, cut to `MAX_TYPE_CHARS`.
    #[error("unknown watch frame type {0:?}")]
    UnknownType(String),
}

const MAX_TYPE_CHARS: usize = 64;
const MAX_MESSAGE_BYTES: usize = 300;

/// A serde_json error with its message cut to `MAX_MESSAGE_BYTES`, keeping the location.
struct Short<'a>(&'a serde_json::Error);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        if full.len() <= MAX_MESSAGE_BYTES {
            return f.write_str(&full);
        }
        let (message, location) = full.split_at(full.rfind(" at line ").unwrap_or(full.len()));
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{}…{location}", &message[..cut])
    }
}

/// Decodes one watch frame.
///
/// An event frame as API servers write it (`type` first, then `object`) is decoded in one pass:
/// the event straight from the line. Anything else, and any frame that does not decode that way,
/// goes the general way ([`decode_frame_in_two_passes`]), which also gives every error its
/// message: the result is the same either way, only the work differs (the general way scans the
/// object twice, once to delimit it and once to decode it).
pub fn decode_frame(line: &str) -> Result<Frame, FrameError> {
    if let Ok(Direct(frame)) = serde_json::from_str::<Direct>(line) {
        return Ok(frame);
    }
    decode_frame_in_two_passes(line)
}

/// Decodes the frames of one watch, reusing what one frame needs for the next.
///
/// A frame with `managedFields` is decoded without them ([`Cutter`]); the result is the one
/// [`decode_frame`] gives, only the work differs. When the cut frame does not decode, the frame
/// is decoded as it came, so every error is about the bytes the server sent.
#[derive(Default)]
pub struct Decoder {
    cutter: Cutter,
}

impl Decoder {
    pub fn decode(&mut self, line: &str) -> Result<Frame, FrameError> {
        if let Some(cut) = self.cutter.cut(line)
            && let Ok(frame) = decode_frame(cut)
        {
            return Ok(frame);
        }
        decode_frame(line)
    }
}

/// `{"type": "ADDED" | "MODIFIED" | "DELETED", "object": <event>, …}` in that order, decoded in
/// one pass. Fails (and the caller falls back to the general way) on any other shape: another
/// order or type, a repeated key, an undecodable event.
struct Direct(Frame);

impl<'de> Deserialize<'de> for Direct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DirectVisitor)
    }
}

struct DirectVisitor;

impl<'de> serde::de::Visitor<'de> for DirectVisitor {
    type Value = Direct;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event watch frame, type first")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Direct, A::Error> {
        use serde::de::Error;
        let other = || A::Error::custom("not the one-pass shape");
        if map.next_key::<Text<'de>>()?.as_deref() != Some("type") {
            return Err(other());
        }
        let type_ = map.next_value::<Text<'de>>()?;
        let wrap: fn(Box<Event>) -> Frame = match &*type_ {
            "ADDED" => Frame::Added,
            "MODIFIED" => Frame::Modified,
            "DELETED" => Frame::Deleted,
            _ => return Err(other()),
        };
        if map.next_key::<Text<'de>>()?.as_deref() != Some("object") {
            return Err(other());
        }
        let event = map.next_value_seed(BoxedEvent)?;
        // Unknown keys are ignored, as in `RawFrame`; a repeated one is its error.
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if key == "type" || key == "object" {
                return Err(other());
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(Direct(wrap(event)))
    }
}

/// A string borrowed from the line unless written with escapes (serde's own `Cow<str>` always
/// allocates).
struct Text<'de>(Cow<'de, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> serde::de::Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }

        d.deserialize_str(TextVisitor)
    }
}

/// The general decoder: the envelope with the object as raw JSON, then the object by type.
pub fn decode_frame_in_two_passes(line: &str) -> Result<Frame, FrameError> {
    let raw: RawFrame<'_> = serde_json::from_str(line).map_err(FrameError::Envelope)?;
    let object = |type_: &str| -> Result<Box<Event>, FrameError> {
        decode_event(raw.object.get())
            .map(Box::new)
            .map_err(|source| FrameError::Object {
                type_: type_.to_string(),
                source,
            })
    };
    Ok(match &*raw.type_ {
        "ADDED" => Frame::Added(object("ADDED")?),
        "MODIFIED" => Frame::Modified(object("MODIFIED")?),
        "DELETED" => Frame::Deleted(object("DELETED")?),
        "BOOKMARK" => {
            let b: Bookmark =
                serde_json::from_str(raw.object.get()).map_err(|source| FrameError::Object {
                    type_: "BOOKMARK".into(),
                    source,
                })?;
            Frame::Bookmark(b.metadata.resource_version)
        }
        "ERROR" => {
            Frame::Error(
                serde_json::from_str(raw.object.get()).unwrap_or_else(|_| Status {
                    message: raw.object.get().chars().take(200).collect(),
                    ..Status::default()
                }),
            )
        }
        other => {
            return Err(FrameError::UnknownType(
                other.chars().take(MAX_TYPE_CHARS).collect(),
            ));
        }
    })
}

/// Decodes one event; what we never export (managedFields) is not kept.
pub fn decode_event(json: &str) -> Result<Event, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
#[path = "frames_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_frame_type() {
        let ev = r#"{"metadata":{"uid":"u","resourceVersion":"7","managedFields":[{"manager":"x"}]},"count":2}"#;
        match decode_frame(&format!(r#"{{"type":"MODIFIED","object":{ev}}}"#)).unwrap() {
            Frame::Modified(e) => {
                assert_eq!(e.occurrence_key(), "u:2");
                let meta = serde_json::to_value(&e.metadata).unwrap();
                assert!(meta.get("managedFields").is_none(), "{meta}");
            }
            other => panic!("{other:?}"),
        }
        match decode_frame(
            r#"{"type":"BOOKMARK","object":{"kind":"Event","metadata":{"resourceVersion":"9"}}}"#,
        )
        .unwrap()
        {
            Frame::Bookmark(rv) => assert_eq!(rv, "9"),
            other => panic!("{other:?}"),
        }
        match decode_frame(r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#).unwrap() {
            Frame::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn event_frames_type_first_take_one_pass() {
        let ev = r#"{"metadata":{"uid":"u","resourceVersion":"7"},"count":2}"#;
        for t in ["ADDED", "MODIFIED", "DELETED"] {
            let line = format!(r#"{{"type":"{t}","object":{ev}}}"#);
            assert!(serde_json::from_str::<Direct>(&line).is_ok(), "{line}");
            let swapped = format!(r#"{{"object":{ev},"type":"{t}"}}"#);
            assert!(
                serde_json::from_str::<Direct>(&swapped).is_err(),
                "{swapped}"
            );
            assert_eq!(
                format!("{:?}", decode_frame(&swapped)),
                format!("{:?}", decode_frame(&line))
            );
        }
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        assert!(matches!(
            decode_frame("{not json"),
            Err(FrameError::Envelope(_))
        ));
        assert!(matches!(
            decode_frame(r#"{"type":"ADDED","object":{"count":"x"}}"#),
            Err(FrameError::Object { .. })
        ));
        assert!(matches!(
            decode_frame(r#"{"type":"WHAT","object":{}}"#),
            Err(FrameError::UnknownType(_))
        ));
    }
}
