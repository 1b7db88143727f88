//! Building a Loki push request from prepared entries: pure, no I/O.
//!
//! Entries are grouped by stream (their rendered label set) in the order streams first appear,
//! and sorted by timestamp within a stream (stable, so entries of one timestamp keep the batch's
//! order): Loki with `unordered_writes: false` rejects a stream whose entries go back in time,
//! and one with unordered writes still takes a sorted push more cheaply.
//!
//! Two bodies: protobuf compressed with snappy's block format (`application/x-protobuf`, what
//! Promtail and Alloy send; Loki decodes it with `util.RawSnappy`), and the JSON form
//! `{"streams":[{"stream":{…},"values":[["<unix ns>","<line>",{<structured metadata>}]]}]}`.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";

/// How the push body is encoded (`format:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Protobuf + snappy (block format).
    #[default]
    Protobuf,
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

/// A stream's label set: the pairs (sorted by name, no empty values) and their `{a="b", …}` form,
/// which identifies the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub key: String,
    pub pairs: Vec<(String, String)>,
}

impl Stream {
    /// Pairs with an empty value are left out: Loki drops them too (`WithoutEmpty`, an empty
    /// value is an absent label in Prometheus), and the stream key must be the one Loki uses.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let key = label_string(&pairs);
        Self { key, pairs }
    }
}

/// One log entry: its stream, the event's time, the encoded document, structured metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub stream: Arc<Stream>,
    pub ts: Timestamp,
    pub line: Bytes,
    pub metadata: Vec<(Arc<str>, String)>,
}

/// `{a="b", c="d"}` for pairs already sorted by name, values escaped as Prometheus' parser
/// (which Loki uses for the `labels` field) reads them.
pub fn label_string(pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        2 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 5)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_into(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

/// Escapes a label value for a double-quoted PromQL string: backslash, quote, and control
/// characters (a raw newline ends the string for the lexer; the others are written as `\uXXXX`,
/// which both the lexer and Go's `strconv.Unquote` accept).
fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// The entries grouped by stream, in order of first appearance, each group sorted by time.
pub fn group<'a>(entries: &[&'a Entry]) -> Vec<(&'a Stream, Vec<&'a Entry>)> {
    let mut streams: Vec<(&Stream, Vec<&Entry>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in entries {
        let i = *index.entry(e.stream.key.as_str()).or_insert_with(|| {
            streams.push((&e.stream, Vec::new()));
            streams.len() - 1
        });
        streams[i].1.push(e);
    }
    for (_, es) in &mut streams {
        es.sort_by_key(|e| e.ts);
    }
    streams
}

/// The request body for `entries` in `format`.
pub fn encode(entries: &[&Entry], format: Format) -> Result<Vec<u8>, String> {
    let streams = group(entries);
    match format {
        Format::Protobuf => encode_protobuf(&streams),
        Format::Json => Ok(encode_json(&streams)),
    }
}

fn encode_protobuf(streams: &[(&Stream, Vec<&Entry>)]) -> Result<Vec<u8>, String> {
    let req = PushRequest {
        streams: streams
            .iter()
            .map(|(stream, entries)| StreamAdapter {
                labels: stream.key.clone(),
                entries: entries
                    .iter()
                    .map(|e| EntryAdapter {
                        timestamp: Some(e.ts),
                        line: e.line.clone(),
                        structured_metadata: e
                            .metadata
                            .iter()
                            .map(|(name, value)| LabelPairAdapter {
                                name: name.to_string(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map_err(|e| format!("snappy: {e}"))
}

fn encode_json(streams: &[(&Stream, Vec<&Entry>)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        serde_json::to_writer(&mut *out, s).expect("a string serializes into a Vec");
    }
    let size: usize = streams
        .iter()
        .flat_map(|(_, es)| es.iter())
        .map(|e| e.line.len() + 64)
        .sum();
    let mut out = Vec::with_capacity(size + 32);
    out.extend_from_slice(br#"{"streams":["#);
    for (i, (stream, entries)) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"stream":{"#);
        for (j, (name, value)) in stream.pairs.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            string(&mut out, name);
            out.push(b':');
            string(&mut out, value);
        }
        out.extend_from_slice(br#"},"values":["#);
        for (j, e) in entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("[\"{}\",", e.ts.unix_nanos()).as_bytes());
            // Lines are encoded documents: JSON, so UTF-8.
            string(&mut out, &String::from_utf8_lossy(&e.line));
            if !e.metadata.is_empty() {
                out.extend_from_slice(b",{");
                for (k, (name, value)) in e.metadata.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    string(&mut out, name);
                    out.push(b':');
                    string(&mut out, value);
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: &Arc<Stream>, secs: i64, line: &str, key: &str) -> Entry {
        Entry {
            stream: stream.clone(),
            ts: Timestamp {
                seconds: secs,
                nanos: 5,
            },
            line: Bytes::copy_from_slice(line.as_bytes()),
            metadata: vec![("occurrence_key".into(), key.into())],
        }
    }

    fn stream(pairs: &[(&str, &str)]) -> Arc<Stream> {
        Arc::new(Stream::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    #[test]
    fn labels_are_sorted_escaped_and_empty_values_left_out() {
        let s = Stream::new(vec![
            ("ns".into(), "a\"b\\c\nd\te\u{1}".into()),
            ("app".into(), "web".into()),
            ("empty".into(), String::new()),
        ]);
        assert_eq!(s.key, r#"{app="web", ns="a\"b\\c\nd\te\u0001"}"#);
        assert_eq!(s.pairs.len(), 2);
        assert_eq!(label_string(&[]), "{}");
        // Non-ASCII text is kept as it is (UTF-8 is valid inside the string).
        assert_eq!(
            Stream::new(vec![("a".into(), "é☃".into())]).key,
            "{a=\"é☃\"}"
        );
    }

    #[test]
    fn entries_are_grouped_by_stream_in_first_seen_order_and_sorted_by_time() {
        let (a, b) = (stream(&[("s", "a")]), stream(&[("s", "b")]));
        let es = [
            entry(&b, 3, "b3", "k1"),
            entry(&a, 2, "a2", "k2"),
            entry(&b, 1, "b1", "k3"),
            entry(&a, 2, "a2'", "k4"),
            entry(&a, 1, "a1", "k5"),
        ];
        let refs: Vec<&Entry> = es.iter().collect();
        let g = group(&refs);
        let lines: Vec<(String, Vec<&[u8]>)> = g
            .iter()
            .map(|(s, es)| (s.key.clone(), es.iter().map(|e| &e.line[..]).collect()))
            .collect();
        assert_eq!(
            lines,
            [
                ("{s=\"b\"}".to_string(), vec![&b"b1"[..], &b"b3"[..]]),
                (
                    "{s=\"a\"}".to_string(),
                    vec![&b"a1"[..], &b"a2"[..], &b"a2'"[..]]
                ),
            ]
        );
    }

    #[test]
    fn protobuf_body_is_snappy_block_compressed_and_decodes_back() {
        let a = stream(&[("job", "kube"), ("ns", "x\"y")]);
        let es = [
            entry(&a, 20, "{\"m\":2}", "u:2"),
            entry(&a, 10, "{\"m\":1}", "u:1"),
        ];
        let refs: Vec<&Entry> = es.iter().collect();
        let body = encode(&refs, Format::Protobuf).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = PushRequest::decode(&raw[..]).unwrap();
        assert_eq!(req.streams.len(), 1);
        let s = &req.streams[0];
        assert_eq!(s.labels, r#"{job="kube", ns="x\"y"}"#);
        assert_eq!(s.hash, 0);
        type Got<'a> = (i64, i32, &'a [u8], Vec<(&'a str, &'a str)>);
        let got: Vec<Got> = s
            .entries
            .iter()
            .map(|e| {
                let ts = e.timestamp.unwrap();
                (
                    ts.seconds,
                    ts.nanos,
                    &e.line[..],
                    e.structured_metadata
                        .iter()
                        .map(|p| (p.name.as_str(), p.value.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (10, 5, &b"{\"m\":1}"[..], vec![("occurrence_key", "u:1")]),
                (20, 5, &b"{\"m\":2}"[..], vec![("occurrence_key", "u:2")]),
            ]
        );
    }

    #[test]
    fn json_body_has_loki_push_shape() {
        let a = stream(&[("job", "kube")]);
        let b = stream(&[("job", "other")]);
        let mut e = entry(&b, 1, "{\"m\":\"q\\\"\"}", "u:1");
        e.metadata.push(("object_name".into(), "web-1".into()));
        let mut plain = entry(&a, 7, "line", "u:2");
        plain.metadata.clear();
        let es = [e, plain];
        let refs: Vec<&Entry> = es.iter().collect();
        let body = encode(&refs, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"streams": [
                {"stream": {"job": "other"},
                 "values": [["1000000005", "{\"m\":\"q\\\"\"}", {"occurrence_key": "u:1", "object_name": "web-1"}]]},
                {"stream": {"job": "kube"}, "values": [["7000000005", "line"]]}
            ]})
        );
    }
}
