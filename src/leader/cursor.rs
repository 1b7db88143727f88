//! The delivery cursor as stored in a Lease annotation: where a successor resumes.

use serde::{Deserialize, Serialize};

use crate::progress::Position;

pub const ANNOTATION: &str = "kube-event-exporter.io/cursor";

/// `{"resourceVersion":"123","eventTime":"2026-…Z","checkedAt":"2026-…Z","epoch":4}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCursor {
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<jiff::Timestamp>,
    /// `Position::checked_at`: how far the API's history had been read (absent in cursors written
    /// by versions before it; `eventTime` is then the best known bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<jiff::Timestamp>,
    /// `leaseTransitions` of the holder that wrote it.
    pub epoch: i32,
}

impl StoredCursor {
    pub fn new(position: &Position, epoch: i32) -> Self {
        Self {
            resource_version: position.resource_version.to_string(),
            event_time: position.event_time,
            checked_at: position.checked_at,
            epoch,
        }
    }

    pub fn position(&self) -> Position {
        Position {
            resource_version: self.resource_version.as_str().into(),
            event_time: self.event_time,
            checked_at: self.checked_at.or(self.event_time),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a cursor always serializes")
    }

    /// A malformed annotation is reported, never a panic: the caller falls back to a cold start.
    pub fn decode(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let c = StoredCursor {
            resource_version: "42".into(),
            event_time: Some("2026-11-22T10:00:00Z".parse().unwrap()),
            checked_at: Some("2026-11-22T10:04:50Z".parse().unwrap()),
            epoch: 3,
        };
        assert_eq!(StoredCursor::decode(&c.encode()).unwrap(), c);
        // A cursor of an earlier version has no checkedAt: its event time bounds it.
        let old = StoredCursor::decode(
            r#"{"resourceVersion":"42","eventTime":"2026-11-22T10:00:00Z","epoch":3}"#,
        )
        .unwrap();
        assert_eq!(old.position().checked_at, c.event_time);
        assert!(StoredCursor::decode("{\"resourceVersion\":").is_err());
    }
}
