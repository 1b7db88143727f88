//! Decoding of list pages and watch frames, item by item, so one malformed item is skipped and
//! counted instead of failing the whole page or stream.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::event::Event;

#[derive(Deserialize)]
pub struct ListPage<'a> {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(borrow, default)]
    pub items: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
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

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a watch frame: {0}")]
    Envelope(serde_json::Error),
    #[error("{type_} frame with an undecodable object: {source}")]
    Object {
        type_: String,
        source: serde_json::Error,
    },
    #[error("unknown watch frame type {0:?}")]
    UnknownType(String),
}

pub fn decode_frame(line: &str) -> Result<Frame, FrameError> {
    let raw: RawFrame<'_> = serde_json::from_str(line).map_err(FrameError::Envelope)?;
    let object = |type_: &str| -> Result<Box<Event>, FrameError> {
        decode_event(raw.object.get())
            .map(Box::new)
            .map_err(|source| FrameError::Object {
                type_: type_.to_string(),
                source,
            })
    };
    Ok(match raw.type_ {
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
        other => return Err(FrameError::UnknownType(other.to_string())),
    })
}

/// Decodes one event and strips what we never export (managedFields).
pub fn decode_event(json: &str) -> Result<Event, serde_json::Error> {
    let mut event: Event = serde_json::from_str(json)?;
    event.metadata.managed_fields = None;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_frame_type() {
        let ev = r#"{"metadata":{"uid":"u","resourceVersion":"7","managedFields":[{"manager":"x"}]},"count":2}"#;
        match decode_frame(&format!(r#"{{"type":"MODIFIED","object":{ev}}}"#)).unwrap() {
            Frame::Modified(e) => {
                assert_eq!(e.occurrence_key(), "u:2");
                assert!(e.metadata.managed_fields.is_none());
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
