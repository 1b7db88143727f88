//! The `_bulk` protocol, pure: the NDJSON request (an action line and a document per
//! occurrence) and the per-item answer, classified into what the worker needs.
//!
//! A `_bulk` answer is HTTP 200 even when items fail; each item has its own status:
//! 2xx delivered; 409 a version conflict, i.e. the document is already there (a replay of an
//! occurrence with the same `_id`, or an older occurrence than the stored one under external
//! versioning): delivered; 429, 5xx and 408 retried (`http::answer::verdict`, the rule of every
//! HTTP answer); anything else permanent, except the errors
//! that say the index is a data stream, which are resent as data-stream writes.

use serde::Deserialize;
use serde_json::Value;

use crate::sink::http::answer::{Verdict, verdict};

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `create` with `_id`: a second write of the same id is a 409, never a second document.
    Create,
    /// `index` with `_id` and an external `version`: only a higher version replaces the document.
    IndexVersioned(i64),
}

/// The metadata of one bulk item.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub op: Op,
    pub index: &'a str,
    pub id: &'a str,
    /// `_type`, for Elasticsearch 6.x/7.x clusters that still use mapping types.
    pub doc_type: Option<&'a str>,
}

/// Appends the action line of `a` (with its newline).
pub fn write_action(out: &mut Vec<u8>, a: &Action) {
    let op = match a.op {
        Op::Create => "create",
        Op::IndexVersioned(_) => "index",
    };
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\":{\"_index\":");
    write_json_string(out, a.index);
    out.extend_from_slice(b",\"_id\":");
    write_json_string(out, a.id);
    if let Some(t) = a.doc_type {
        out.extend_from_slice(b",\"_type\":");
        write_json_string(out, t);
    }
    if let Op::IndexVersioned(v) = a.op {
        out.extend_from_slice(format!(",\"version\":{v},\"version_type\":\"external\"").as_bytes());
    }
    out.extend_from_slice(b"}}\n");
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends the document (one line). With `timestamp`, an object without a top-level
/// `@timestamp` gets one (data streams require it); one that has it is kept as it is.
pub fn write_doc(out: &mut Vec<u8>, body: &[u8], timestamp: Option<&str>) {
    let body = trim_ascii(body);
    match timestamp {
        Some(ts) if body.first() == Some(&b'{') && !has_timestamp(body) => {
            out.extend_from_slice(b"{\"@timestamp\":");
            write_json_string(out, ts);
            let rest = trim_ascii(&body[1..]);
            if rest != b"}" {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
        _ => out.extend_from_slice(body),
    }
    out.push(b'\n');
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Whether the object has a top-level `@timestamp` (parsed only when the text mentions one).
fn has_timestamp(body: &[u8]) -> bool {
    if !body.windows(12).any(|w| w == b"\"@timestamp\"") {
        return false;
    }
    serde_json::from_slice::<serde_json::Map<String, Value>>(body)
        .map(|m| m.contains_key("@timestamp"))
        .unwrap_or(false)
}

/// What one item of the answer means for its occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 409: the document was already written (a replay): delivered, counted apart.
    AlreadyDelivered,
    /// 429, 5xx, 408: send this one again later.
    Retry {
        reason: String,
    },
    /// The index is a data stream and the write was not one a data stream takes: resend as
    /// `create` with `@timestamp`.
    DataStream {
        reason: String,
    },
    /// Anything else (a mapping error, an invalid index name): retrying cannot help. `cause` is
    /// the same for every document that failed for the same reason (no ids, no field values).
    Failed {
        cause: String,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<serde_json::Map<String, Value>>,
}

/// Reads a `_bulk` answer for `sent` items. With `"errors": false` every item was written.
/// An answer that is not a bulk answer, or has another number of items, is an error (the batch
/// is then retried whole: every write is idempotent).
pub fn parse_answer(body: &[u8], sent: usize) -> Result<Vec<Outcome>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a _bulk answer ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if !answer.errors && answer.items.is_empty() {
        // filter_path drops `items` when it is empty of errors on some servers: all written.
        return Ok(vec![Outcome::Delivered; sent]);
    }
    if answer.items.len() != sent {
        return Err(format!(
            "the _bulk answer has {} items for {sent} documents",
            answer.items.len()
        ));
    }
    Ok(answer.items.iter().map(item_outcome).collect())
}

fn item_outcome(item: &serde_json::Map<String, Value>) -> Outcome {
    // `{"create": {...}}`: the one value is the result, whatever the op.
    let Some(Value::Object(r)) = item.values().next() else {
        return Outcome::Retry {
            reason: "an item of the _bulk answer has no result".to_owned(),
        };
    };
    let status = r.get("status").and_then(Value::as_u64).unwrap_or(0);
    let error = r.get("error");
    let status = u16::try_from(status).unwrap_or(0);
    match (status, verdict(status)) {
        (_, Verdict::Delivered) => Outcome::Delivered,
        (409, _) => Outcome::AlreadyDelivered,
        (_, Verdict::Retry) => Outcome::Retry {
            reason: format!("{status} {}", describe(error)),
        },
        (_, Verdict::Permanent) => {
            let reason = format!("{status} {}", describe(error));
            if mentions_data_stream(error) {
                Outcome::DataStream { reason }
            } else {
                Outcome::Failed {
                    cause: format!("{status} {}", cause(error)),
                    reason,
                }
            }
        }
    }
}

/// `type: reason (caused by type: reason)` of an item's error, as the server wrote it.
pub fn describe(error: Option<&Value>) -> String {
    match error {
        None => "(no error given)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(e) => {
            let t = e.get("type").and_then(Value::as_str).unwrap_or("error");
            let r = e.get("reason").and_then(Value::as_str).unwrap_or("");
            match e.get("caused_by") {
                Some(c) if c.is_object() => format!("{t}: {r} (caused by {})", describe(Some(c))),
                _ => format!("{t}: {r}"),
            }
        }
    }
}

/// The error without what differs between documents failing for the same reason: the document
/// id, the field's value, the parser's position.
pub fn cause(error: Option<&Value>) -> String {
    let mut s = describe(error);
    for (start, end) in [
        (" in document with id '", "'"),
        (". Preview of field's value: '", "'"),
        ("[1:", "] "),
    ] {
        while let Some(i) = s.find(start) {
            let after = i + start.len();
            let Some(j) = s[after..].find(end) else { break };
            s.replace_range(i..after + j + end.len(), "");
        }
    }
    s
}

fn mentions_data_stream(error: Option<&Value>) -> bool {
    let mut e = error;
    while let Some(v) = e {
        if v.get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.contains("data stream"))
        {
            return true;
        }
        e = v.get("caused_by");
    }
    false
}

/// The rules Elasticsearch and OpenSearch apply to index names, so a bad name fails at load (or
/// before sending) with the reason. Date-math names (`<logs-{now/d}>`) are left to the server.
pub fn check_index_name(name: &str) -> Result<(), String> {
    if name.starts_with('<') && name.ends_with('>') {
        return Ok(());
    }
    if name.is_empty() {
        return Err("an index name cannot be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid index name"));
    }
    if let Some(c) = name.chars().next().filter(|c| matches!(c, '-' | '_' | '+')) {
        return Err(format!("index name {name:?} cannot start with {c:?}"));
    }
    if let Some(c) = name.chars().find(|c| c.is_uppercase()) {
        return Err(format!(
            "index name {name:?} must be lowercase (it has {c:?})"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!("index name {name:?} cannot contain {c:?}"));
    }
    if name.len() > 255 {
        return Err(format!(
            "index name {name:?} is longer than 255 bytes ({})",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(a: Action) -> String {
        let mut out = Vec::new();
        write_action(&mut out, &a);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn action_lines_carry_the_id_and_the_write_mode() {
        let create = action(Action {
            op: Op::Create,
            index: "kube-events",
            id: "7f3c:2",
            doc_type: None,
        });
        assert_eq!(
            create,
            "{\"create\":{\"_index\":\"kube-events\",\"_id\":\"7f3c:2\"}}\n"
        );
        let versioned = action(Action {
            op: Op::IndexVersioned(3),
            index: "ev",
            id: "7f3c",
            doc_type: Some("kube-event"),
        });
        let v: Value = serde_json::from_str(&versioned).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"index": {"_index": "ev", "_id": "7f3c", "_type": "kube-event",
                "version": 3, "version_type": "external"}})
        );
        // Names are JSON-escaped, never spliced raw.
        let odd = action(Action {
            op: Op::Create,
            index: "a\"b",
            id: "x\ny",
            doc_type: None,
        });
        assert!(serde_json::from_str::<Value>(&odd).is_ok(), "{odd}");
        assert_eq!(odd.matches('\n').count(), 1);
    }

    #[test]
    fn documents_get_a_timestamp_only_for_data_streams_and_only_when_missing() {
        let doc = |body: &str, ts: Option<&str>| {
            let mut out = Vec::new();
            write_doc(&mut out, body.as_bytes(), ts);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(doc("{\"a\":1}", None), "{\"a\":1}\n");
        assert_eq!(
            doc("{\"a\":1}", Some("2024-01-02T03:04:05.000Z")),
            "{\"@timestamp\":\"2024-01-02T03:04:05.000Z\",\"a\":1}\n"
        );
        assert_eq!(doc("{}", Some("t")), "{\"@timestamp\":\"t\"}\n");
        assert_eq!(
            doc("{\"@timestamp\":\"mine\",\"a\":1}", Some("t")),
            "{\"@timestamp\":\"mine\",\"a\":1}\n"
        );
        // Nested @timestamp is not the data stream's field.
        let nested = doc("{\"x\":{\"@timestamp\":1}}", Some("t"));
        let v: Value = serde_json::from_str(&nested).unwrap();
        assert_eq!(v["@timestamp"], "t");
        assert_eq!(v["x"]["@timestamp"], 1);
    }

    #[test]
    fn every_item_of_the_answer_is_read() {
        // osmem-server's answer (same shape as OpenSearch and Elasticsearch).
        let body = br#"{"errors":true,"took":1,"items":[
            {"create":{"_id":"a:1","_index":"ev","status":201,"result":"created"}},
            {"create":{"_id":"a:1","_index":"ev","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a:1]: version conflict, document already exists (current version [1])"}}},
            {"create":{"_id":"b:1","_index":"ev","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long] in document with id 'b:1'. Preview of field's value: 'x'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}}}},
            {"create":{"_id":"c:1","_index":"ev","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"index":{"_id":"d","_index":"ev","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"index":{"_id":"e","_index":"ev","status":200,"result":"updated"}}
        ]}"#;
        let out = parse_answer(body, 6).unwrap();
        assert_eq!(out[0], Outcome::Delivered);
        assert_eq!(out[1], Outcome::AlreadyDelivered);
        match &out[2] {
            Outcome::Failed { cause, reason } => {
                assert_eq!(
                    cause,
                    "400 mapper_parsing_exception: failed to parse field [n] of type [long] (caused by illegal_argument_exception: For input string: \"x\")"
                );
                assert!(reason.contains("'b:1'"), "{reason}");
            }
            o => panic!("{o:?}"),
        }
        assert!(
            matches!(&out[3], Outcome::Retry { reason } if reason.starts_with("429 es_rejected"))
        );
        assert!(matches!(&out[4], Outcome::Retry { reason } if reason.starts_with("503 ")));
        assert_eq!(out[5], Outcome::Delivered);
    }

    #[test]
    fn the_same_mapping_error_of_two_documents_is_one_cause() {
        let e = |id: &str, v: &str| {
            serde_json::json!({"type": "document_parsing_exception",
                "reason": format!("[1:{}] failed to parse field [n] of type [long] in document with id '{id}'. Preview of field's value: '{v}'", id.len())})
        };
        assert_eq!(cause(Some(&e("a:1", "x"))), cause(Some(&e("bb:2", "yy"))));
        assert_eq!(
            cause(Some(&e("a:1", "x"))),
            "document_parsing_exception: failed to parse field [n] of type [long]"
        );
    }

    #[test]
    fn data_stream_refusals_are_recognised() {
        let body = br#"{"errors":true,"items":[
            {"index":{"_index":"logs-k","status":400,"error":{"type":"illegal_argument_exception","reason":"only write ops with an op_type of create are allowed in data streams"}}},
            {"create":{"_index":".ds-logs-k-000001","status":400,"error":{"type":"document_parsing_exception","reason":"[1:2] failed to parse: data stream timestamp field [@timestamp] is missing","caused_by":{"type":"illegal_argument_exception","reason":"data stream timestamp field [@timestamp] is missing"}}}}
        ]}"#;
        let out = parse_answer(body, 2).unwrap();
        assert!(
            out.iter().all(|o| matches!(o, Outcome::DataStream { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn answers_that_are_not_bulk_answers_are_errors() {
        assert_eq!(
            parse_answer(br#"{"errors":false,"items":[]}"#, 3).unwrap(),
            vec![Outcome::Delivered; 3]
        );
        assert!(
            parse_answer(b"<html>", 1)
                .unwrap_err()
                .contains("not a _bulk answer")
        );
        let short = br#"{"errors":true,"items":[{"create":{"status":201}}]}"#;
        assert!(
            parse_answer(short, 2)
                .unwrap_err()
                .contains("1 items for 2")
        );
    }

    #[test]
    fn index_names_follow_the_server_rules() {
        assert!(check_index_name("kube-events-2024.01.02").is_ok());
        assert!(check_index_name("<kube-events-{now/d}>").is_ok());
        for bad in [
            "Kube", "a b", "-a", "_a", "a*", "a/b", "a,b", "a:b", ".", "", "a#",
        ] {
            assert!(check_index_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_index_name(&"a".repeat(256)).is_err());
    }
}
