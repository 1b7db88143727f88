//! Loki's push messages (`pkg/push/push.proto`, package `logproto`), derived by hand with prost:
//! no build script, no protoc. Field numbers as in the .proto file:
//!
//! ```text
//! PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
//! StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//! EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
//!                    repeated LabelPairAdapter structuredMetadata = 3; }
//! LabelPairAdapter { string name = 1; string value = 2; }
//! Timestamp        { int64 seconds = 1; int32 nanos = 2; }
//! ```
//!
//! `format` (loki/otlp, set by Loki itself) and `hash` (filled in by the distributor) are left
//! unset, as Promtail and Grafana Alloy leave them. `line` is a proto3 `string`; it is held as
//! bytes here (same wire type, no copy of the encoded document) and is always UTF-8 JSON.

use bytes::Bytes;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `{name="value", …}`: the stream's labels in Prometheus/LogQL syntax.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// Non-nullable in Loki (gogoproto): always sent.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// 0..=999_999_999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_jiff(t: jiff::Timestamp) -> Self {
        Self {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        }
    }

    /// Nanoseconds since the epoch, as the JSON push format writes them.
    pub fn unix_nanos(self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The bytes are written out by hand from the wire format (tag = field << 3 | wire type), so
    /// a wrong field number or type in the derives above fails here, not only against Loki.
    #[test]
    fn field_numbers_and_wire_types_match_push_proto() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{a=\"b\"}".into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1,
                        nanos: 2,
                    }),
                    line: Bytes::from_static(b"x"),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                }],
                hash: 0,
            }],
        };
        let entry: &[u8] = &[
            0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, // 1: timestamp {1: seconds, 2: nanos}
            0x12, 0x01, b'x', // 2: line
            0x1a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // 3: {1: name, 2: value}
        ];
        let mut stream = vec![0x0a, 0x07];
        stream.extend_from_slice(b"{a=\"b\"}"); // 1: labels
        stream.extend_from_slice(&[0x12, entry.len() as u8]); // 2: entries
        stream.extend_from_slice(entry);
        let mut want = vec![0x0a, stream.len() as u8]; // 1: streams
        want.extend_from_slice(&stream);
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(PushRequest::decode(&want[..]).unwrap(), req);
    }

    #[test]
    fn a_zero_timestamp_is_still_sent() {
        let e = EntryAdapter {
            timestamp: Some(Timestamp::default()),
            line: Bytes::new(),
            structured_metadata: vec![],
        };
        assert_eq!(e.encode_to_vec(), [0x0a, 0x00]);
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t: jiff::Timestamp = "2025-01-02T03:04:05.123456789Z".parse().unwrap();
        let ts = Timestamp::from_jiff(t);
        assert_eq!(ts.seconds, t.as_second());
        assert_eq!(ts.nanos, 123_456_789);
        assert_eq!(ts.unix_nanos(), t.as_nanosecond());
    }
}
