//! Property tests of the watch-frame and list-page decoders (issue 14): arbitrary and near-valid
//! input never panics, errors are bounded in size and say what is wrong, and a well-formed event
//! survives the trip through a frame or a list page.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

/// Inputs are capped at a few KiB.
const MAX_INPUT: usize = 4096;
/// Frame errors are logged per malformed frame: bounded whatever the line.
const MAX_ERROR: usize = 1024;

/// `decode_event` and `ListPage` return serde_json's own errors, which may quote a wrongly typed
/// string whole (Debug-escaped: at most 6 bytes per input byte); they must not amplify more.
fn serde_error_bound(input: &str) -> usize {
    256 + 6 * input.len()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Any Unicode text, control characters, quotes and braces included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Text that looks like JSON: mostly JSON punctuation, keywords and frame words.
fn jsonish_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\"type\"".to_owned()),
        Just("\"object\"".to_owned()),
        Just("\"ADDED\"".to_owned()),
        Just("\"BOOKMARK\"".to_owned()),
        Just("\"ERROR\"".to_owned()),
        Just("\"metadata\"".to_owned()),
        Just("\"managedFields\":[".to_owned()),
        Just("\"items\"".to_owned()),
        Just("\"count\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("\\u0000".to_owned()),
        Just("\\ud800".to_owned()),
        "[a-zA-Z0-9 ]{0,8}",
    ];
    prop::collection::vec(piece, 0..200).prop_map(|p| p.concat())
}

/// Checks what every decoder error must be: non-empty and bounded.
fn check_error(what: &str, input: &str, msg: &str, bound: usize) -> Result<(), TestCaseError> {
    prop_assert!(!msg.is_empty(), "{what}: empty error for {input:?}");
    prop_assert!(
        msg.len() <= bound,
        "{what}: error of {} bytes for an input of {} bytes: {msg:.300}",
        msg.len(),
        input.len()
    );
    Ok(())
}

fn check_frame(line: &str) -> Result<Option<Frame>, TestCaseError> {
    // The one-pass decoder changes the work, never the outcome: frame or error, to the byte.
    prop_assert_eq!(
        format!("{:?}", decode_frame(line)),
        format!("{:?}", decode_frame_in_two_passes(line)),
        "one pass and two passes differ on {}",
        line
    );
    // A watch's decoder leaves managedFields items unread: a frame that decodes, decodes to the
    // same frame (one that does not may decode once its list is left out).
    if decode_frame(line).is_ok() {
        prop_assert_eq!(
            format!("{:?}", Decoder::default().decode(line)),
            format!("{:?}", decode_frame(line)),
            "the watch decoder differs on {}",
            line
        );
    }
    match decode_frame(line) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            let msg = e.to_string();
            check_error("decode_frame", line, &msg, MAX_ERROR)?;
            match &e {
                FrameError::Envelope(_) => {
                    prop_assert!(msg.starts_with("not a watch frame: "), "{msg}");
                    prop_assert!(msg.contains(" at line "), "unlocated: {msg}");
                }
                FrameError::Object { type_, .. } => {
                    prop_assert!(msg.starts_with(&format!("{type_} frame")), "{msg}");
                    prop_assert!(msg.contains(" at line "), "unlocated: {msg}");
                }
                FrameError::UnknownType(_) => {
                    prop_assert!(msg.starts_with("unknown watch frame type "), "{msg}")
                }
            }
            Ok(None)
        }
    }
}

fn check_page(text: &str) -> Result<Option<ListPage<'_>>, TestCaseError> {
    match serde_json::from_str::<ListPage<'_>>(text) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            check_error("ListPage", text, &e.to_string(), serde_error_bound(text))?;
            Ok(None)
        }
    }
}

/// Whether the event would export `metadata.managedFields`.
fn managed_fields_kept(e: &Event) -> bool {
    let meta = serde_json::to_value(&e.metadata).expect("metadata serializes");
    meta.get("managedFields").is_some()
}

fn check_event(json: &str) -> Result<Option<Event>, TestCaseError> {
    match decode_event(json) {
        Ok(e) => {
            prop_assert!(!managed_fields_kept(&e));
            Ok(Some(e))
        }
        Err(e) => {
            check_error(
                "decode_event",
                json,
                &e.to_string(),
                serde_error_bound(json),
            )?;
            Ok(None)
        }
    }
}

// ---- Generators of structured, near-valid input ----

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::from(i32::MAX) + 1),
            Just(i64::from(i32::MIN) - 1),
            Just(0i64),
            Just(-1i64),
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any_text(12).prop_map(Value::String),
        Just(Value::String("2024-01-02T03:04:05Z".into())),
        Just(Value::String("not a time".into())),
        // Long enough that an error quoting it whole would be over MAX_ERROR.
        "[a-z]{1100,1500}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A well-formed event, with what the round trip must preserve.
#[derive(Debug, Clone)]
struct GenEvent {
    uid: String,
    resource_version: String,
    count: Option<i32>,
    series_count: Option<i32>,
    reason: Option<String>,
    message: String,
    managed_fields: bool,
    labels: Vec<(String, String)>,
    extra: Vec<(String, Value)>,
}

fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        any_text(24),
        prop_oneof!["[0-9]{1,12}", any_text(8)],
        prop::option::of(any::<i32>()),
        prop::option::of(any::<i32>()),
        prop::option::of(any_text(16)),
        any_text(64),
        any::<bool>(),
        prop::collection::vec((any_text(8), any_text(8)), 0..3),
        // Unknown fields are ignored (future API versions add some).
        prop::collection::vec(("x-[a-z]{1,6}", json_value()), 0..3),
    )
        .prop_map(|t| GenEvent {
            uid: t.0,
            resource_version: t.1,
            count: t.2,
            series_count: t.3,
            reason: t.4,
            message: t.5,
            managed_fields: t.6,
            labels: t.7,
            extra: t.8,
        })
}

impl GenEvent {
    fn to_json(&self) -> Value {
        let mut metadata = json!({
            "name": "pod.17a2b",
            "namespace": "default",
            "uid": self.uid,
            "resourceVersion": self.resource_version,
            "creationTimestamp": "2024-01-02T03:04:05Z",
        });
        if !self.labels.is_empty() {
            metadata["labels"] = Value::Object(
                self.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            );
        }
        if self.managed_fields {
            metadata["managedFields"] =
                json!([{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:count": {}}}]);
        }
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": metadata,
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "pod", "uid": "p-1"},
            "message": self.message,
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-01-02T03:04:05Z",
            "lastTimestamp": "2024-01-02T03:04:06Z",
            "type": "Warning",
        });
        if let Some(c) = self.count {
            ev["count"] = json!(c);
        }
        if let Some(c) = self.series_count {
            ev["series"] = json!({"count": c, "lastObservedTime": "2024-01-02T03:04:06.000000Z"});
        }
        if let Some(r) = &self.reason {
            ev["reason"] = json!(r);
        }
        for (k, v) in &self.extra {
            ev[k] = v.clone();
        }
        ev
    }

    fn check(&self, e: &Event) -> Result<(), TestCaseError> {
        prop_assert_eq!(e.uid(), self.uid.as_str());
        prop_assert_eq!(e.resource_version(), self.resource_version.as_str());
        prop_assert_eq!(e.count, self.count);
        prop_assert_eq!(e.series.as_ref().and_then(|s| s.count), self.series_count);
        prop_assert_eq!(e.reason.as_deref(), self.reason.as_deref());
        prop_assert_eq!(e.message.as_deref(), Some(self.message.as_str()));
        let want = self
            .series_count
            .unwrap_or(0)
            .max(self.count.unwrap_or(0))
            .max(1);
        prop_assert_eq!(e.occurrence_key(), format!("{}:{want}", self.uid));
        prop_assert!(!managed_fields_kept(e), "managedFields kept");
        prop_assert_eq!(
            e.metadata.labels.as_ref().map_or(0, |l| l.len()),
            self.labels
                .iter()
                .map(|(k, _)| k)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        Ok(())
    }
}

/// Paths of typed fields of an event, where a mutation puts a value of an arbitrary type.
const TYPED_PATHS: &[&[&str]] = &[
    &["metadata"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "labels"],
    &["metadata", "creationTimestamp"],
    &["metadata", "managedFields"],
    &["count"],
    &["series"],
    &["series", "count"],
    &["firstTimestamp"],
    &["eventTime"],
    &["involvedObject"],
    &["involvedObject", "labels"],
    &["involvedObject", "deleted"],
    &["involvedObject", "ownerReferences"],
    &["reason"],
    &["message"],
    &["type"],
    &["source"],
    &["clusterName"],
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace (or create) the value at a typed path.
    Set(usize, Value),
    /// Remove the field at a typed path.
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..TYPED_PATHS.len(), json_value()).prop_map(|(p, v)| Mutation::Set(p, v)),
        (0..TYPED_PATHS.len()).prop_map(Mutation::Remove),
    ]
}

fn apply(ev: &mut Value, m: &Mutation) {
    let (p, value) = match m {
        Mutation::Set(p, v) => (*p, Some(v.clone())),
        Mutation::Remove(p) => (*p, None),
    };
    let path = TYPED_PATHS[p];
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = ev;
    for k in parents {
        if !cur.get(*k).is_some_and(Value::is_object) {
            if value.is_none() {
                return;
            }
            cur[*k] = json!({});
        }
        cur = &mut cur[*k];
    }
    let obj = cur.as_object_mut().expect("parent is an object");
    match value {
        Some(v) => {
            obj.insert((*last).to_owned(), v);
        }
        None => {
            obj.remove(*last);
        }
    }
}

/// The `type` of a generated frame: the real ones, and wrong ones.
fn frame_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop_oneof![
            Just("ADDED"),
            Just("MODIFIED"),
            Just("DELETED"),
            Just("BOOKMARK"),
            Just("ERROR"),
        ]
        .prop_map(Value::from),
        1 => prop_oneof![Just("added"), Just("SYNC"), Just(""), Just("ADDED "), Just("ADDED\"x")]
            .prop_map(Value::from),
        1 => any_text(16).prop_map(Value::String),
        1 => "[A-Z]{1100,1500}".prop_map(Value::String),
        1 => json_scalar(),
    ]
}

/// A frame's object: an event (well-formed or mutated), a bookmark, a Status, or anything.
fn frame_object() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (gen_event(), prop::collection::vec(mutation(), 0..3)).prop_map(|(e, ms)| {
            let mut v = e.to_json();
            for m in &ms {
                apply(&mut v, m);
            }
            v
        }),
        1 => prop_oneof![
            any_text(12).prop_map(Value::String),
            json_scalar(),
        ]
        .prop_map(|rv| json!({"kind": "Event", "metadata": {"resourceVersion": rv}})),
        1 => (any::<u32>(), any_text(12), any_text(40)).prop_map(|(code, reason, message)| {
            json!({"kind": "Status", "code": code, "reason": reason, "message": message})
        }),
        1 => json_value(),
    ]
}

/// How a generated line reaches the decoder: whole, truncated, or re-encoded.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Cut at this fraction (per mille) of its length, on a char boundary.
    Truncate(u16),
    /// Every ASCII letter in strings written as a `\uXXXX` escape (valid JSON, same value).
    EscapeLetters,
    /// Garbage appended after the JSON value.
    Trailing(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => Just(Damage::None),
        2 => (0u16..1000).prop_map(Damage::Truncate),
        1 => Just(Damage::EscapeLetters),
        1 => prop_oneof![Just("}".to_owned()), Just(" x".to_owned()), any_text(4)]
            .prop_map(Damage::Trailing),
    ]
}

fn damaged(line: String, d: &Damage) -> String {
    match d {
        Damage::None => line,
        Damage::Truncate(per_mille) => {
            let mut cut = line.len() * usize::from(*per_mille) / 1000;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line[..cut].to_owned()
        }
        Damage::EscapeLetters => escape_letters(&line),
        Damage::Trailing(t) => line + t,
    }
}

/// Rewrites ASCII letters inside JSON strings as `\u00XX`: the same JSON value, spelled differently.
fn escape_letters(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 3);
    let mut in_string = false;
    let mut escaped = false;
    // Hex digits of a `\uXXXX` escape still to copy as they are.
    let mut hex = 0;
    for c in json.chars() {
        if in_string {
            if hex > 0 {
                hex -= 1;
                out.push(c);
            } else if escaped {
                escaped = false;
                if c == 'u' {
                    hex = 4;
                }
                out.push(c);
            } else if c == '\\' {
                escaped = true;
                out.push(c);
            } else if c == '"' {
                in_string = false;
                out.push(c);
            } else if c.is_ascii_alphabetic() {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// What a frame of this type and object must decode to when the line is intact.
fn expect_frame(type_: &Value, object: &Value, line: &str) -> Result<(), TestCaseError> {
    let got = check_frame(line)?;
    let Some(t) = type_.as_str() else {
        prop_assert!(got.is_none(), "non-string type accepted: {line}");
        return Ok(());
    };
    let event_ok = decode_event(&object.to_string()).is_ok();
    match (t, got) {
        ("ADDED", Some(Frame::Added(_)))
        | ("MODIFIED", Some(Frame::Modified(_)))
        | ("DELETED", Some(Frame::Deleted(_))) => {
            prop_assert!(event_ok, "accepted an undecodable event: {line}")
        }
        ("ADDED" | "MODIFIED" | "DELETED", None) => {
            prop_assert!(!event_ok, "rejected a decodable event: {line}");
            prop_assert!(
                matches!(decode_frame(line), Err(FrameError::Object { type_, .. }) if type_ == t),
                "{line}"
            );
        }
        ("BOOKMARK", got) => {
            let rv = object.pointer("/metadata/resourceVersion");
            match (got, rv) {
                (Some(Frame::Bookmark(got)), Some(Value::String(want))) => {
                    prop_assert_eq!(&got, want)
                }
                (None, Some(Value::String(_))) => {
                    prop_assert!(
                        false,
                        "bookmark with a string resourceVersion rejected: {line}"
                    )
                }
                (Some(f), rv) => {
                    prop_assert!(false, "bookmark without a string rv ({rv:?}) gave {f:?}")
                }
                (None, _) => {}
            }
        }
        ("ERROR", Some(Frame::Error(s))) => {
            prop_assert!(s.message.len() <= MAX_ERROR, "ERROR message unbounded");
            if let Some(code) = object.get("code").and_then(Value::as_u64)
                && code <= u64::from(u16::MAX)
            {
                // A code that fits is kept unless another field has the wrong type.
                let other_ok = ["reason", "message"]
                    .iter()
                    .all(|k| object.get(*k).is_none_or(Value::is_string));
                if other_ok {
                    prop_assert_eq!(u64::from(s.code), code);
                }
            }
        }
        ("ERROR", got) => prop_assert!(false, "ERROR frame not decoded as Error: {got:?}"),
        (other, got) => {
            prop_assert!(got.is_none(), "type {other:?} accepted");
            match decode_frame(line) {
                Err(FrameError::UnknownType(name)) => {
                    prop_assert_eq!(name, other.chars().take(MAX_TYPE_CHARS).collect::<String>())
                }
                e => prop_assert!(false, "type {other:?}: {e:?}"),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text: every decoder returns Ok or a bounded error, never panics.
    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![any_text(MAX_INPUT), jsonish_text()]) {
        check_frame(&text)?;
        check_page(&text)?;
        check_event(&text)?;
    }

    /// Arbitrary bytes, invalid UTF-8 included: a page decoded from bytes (`from_slice`) is Ok
    /// or an error, and a lossily decoded line behaves like any other text.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..MAX_INPUT),
            // Near-valid: a page or frame with raw invalid UTF-8 inside a string.
            (prop::collection::vec(128u8..=255, 1..8), any::<bool>()).prop_map(|(bad, page)| {
                let mut b = if page {
                    br#"{"metadata":{"resourceVersion":"1"},"items":[{"message":""#.to_vec()
                } else {
                    br#"{"type":"ADDED","object":{"message":""#.to_vec()
                };
                b.extend(bad);
                b.extend_from_slice(if page { br#""}]}"# } else { br#""}}"# });
                b
            }),
        ]
    ) {
        let lossy = String::from_utf8_lossy(&bytes);
        match serde_json::from_slice::<ListPage<'_>>(&bytes) {
            Ok(p) => {
                // Invalid UTF-8 may sit in an ignored field, never in an item (a `str`).
                for item in &p.items {
                    check_event(item.get())?;
                }
            }
            Err(e) => check_error("ListPage from bytes", &lossy, &e.to_string(), serde_error_bound(&lossy))?,
        }
        if bytes.starts_with(br#"{"metadata":{"resourceVersion":"1"},"items":[{"message":""#)
            && std::str::from_utf8(&bytes).is_err()
        {
            let e = serde_json::from_slice::<ListPage<'_>>(&bytes).err();
            prop_assert!(
                e.as_ref().is_some_and(|e| e.to_string().contains("unicode")),
                "invalid UTF-8 in an item: {e:?}"
            );
        }
        check_frame(&lossy)?;
    }

    /// Structured, near-valid frames: real and wrong types, well-formed and mutated events,
    /// bookmarks, Status objects, then truncated, re-escaped or followed by garbage.
    #[test]
    fn near_valid_frames(
        type_ in prop::option::of(frame_type()),
        object in prop::option::of(frame_object()),
        extra in prop::collection::vec(("[a-z]{1,5}", json_scalar()), 0..2),
        d in damage(),
    ) {
        let mut frame = Map::new();
        if let Some(t) = &type_ {
            frame.insert("type".into(), t.clone());
        }
        if let Some(o) = &object {
            frame.insert("object".into(), o.clone());
        }
        for (k, v) in extra {
            if k != "type" && k != "object" {
                frame.insert(k, v);
            }
        }
        let intact = Value::Object(frame).to_string();
        prop_assume!(intact.len() <= MAX_INPUT);
        let line = damaged(intact.clone(), &d);
        check_frame(&line)?;
        match (&d, &type_, &object) {
            // The same JSON, however spelled, decodes the same.
            (Damage::None | Damage::EscapeLetters, Some(t), Some(o)) => expect_frame(t, o, &line)?,
            (Damage::None | Damage::EscapeLetters, _, _) => {
                prop_assert!(
                    matches!(decode_frame(&line), Err(FrameError::Envelope(_))),
                    "frame without type or object: {line}"
                );
            }
            (Damage::Truncate(_), _, _) if line.len() < intact.len() => {
                prop_assert!(
                    matches!(decode_frame(&line), Err(FrameError::Envelope(_))),
                    "truncated line accepted: {line}"
                );
            }
            (Damage::Trailing(t), _, _) if !t.trim().is_empty() => {
                prop_assert!(
                    matches!(decode_frame(&line), Err(FrameError::Envelope(_))),
                    "trailing garbage accepted: {line}"
                );
            }
            _ => {}
        }
    }

    /// Frames as API servers write them, `type` before `object` (what the one-pass decoder
    /// takes; a JSON map puts `object` first), then damaged: the same outcome as two passes,
    /// and a well-formed event frame decodes.
    #[test]
    fn type_first_frames(
        type_ in frame_type(),
        object in frame_object(),
        extra in prop::collection::vec((prop_oneof![Just("type".to_owned()), Just("object".to_owned()), "[a-z]{1,5}".prop_map(String::from)], json_scalar()), 0..2),
        d in damage(),
    ) {
        let mut intact = format!(r#"{{"type":{type_},"object":{object}"#);
        for (k, v) in &extra {
            intact.push_str(&format!(",{}:{v}", Value::from(k.as_str())));
        }
        intact.push('}');
        prop_assume!(intact.len() <= MAX_INPUT);
        let line = damaged(intact, &d);
        check_frame(&line)?;
        if matches!(d, Damage::None | Damage::EscapeLetters) && extra.is_empty() {
            expect_frame(&type_, &object, &line)?;
        }
    }

    /// Structured, near-valid list pages: metadata and items of every type, mutated events.
    #[test]
    fn near_valid_pages(
        metadata in prop_oneof![
            2 => (prop::option::of(json_scalar()), prop::option::of(json_scalar())).prop_map(|(rv, c)| {
                let mut m = Map::new();
                if let Some(rv) = rv { m.insert("resourceVersion".into(), rv); }
                if let Some(c) = c { m.insert("continue".into(), c); }
                Value::Object(m)
            }),
            1 => json_value(),
        ],
        items in prop_oneof![
            4 => prop::collection::vec(
                (gen_event(), prop::collection::vec(mutation(), 0..2)).prop_map(|(e, ms)| {
                    let mut v = e.to_json();
                    for m in &ms {
                        apply(&mut v, m);
                    }
                    v
                }),
                0..4,
            ).prop_map(Value::Array),
            // What API servers send for an empty list.
            1 => Just(Value::Null),
            1 => json_value(),
        ],
        omit in 0u8..4,
        d in damage(),
    ) {
        let mut page = json!({"kind": "EventList", "apiVersion": "v1"});
        if omit & 1 == 0 {
            page["metadata"] = metadata.clone();
        }
        if omit & 2 == 0 {
            page["items"] = items.clone();
        }
        let intact = page.to_string();
        prop_assume!(intact.len() <= MAX_INPUT);
        let text = damaged(intact.clone(), &d);
        let got = check_page(&text)?;
        if let Some(p) = &got {
            for item in &p.items {
                check_event(item.get())?;
            }
        }
        if matches!(d, Damage::None | Damage::EscapeLetters) {
            let meta_ok = omit & 1 == 1
                || metadata.is_null()
                || metadata.as_object().is_some_and(|m| {
                    ["resourceVersion", "continue"]
                        .iter()
                        .all(|k| m.get(*k).is_none_or(|v| v.is_string() || v.is_null()))
                });
            let items_ok = omit & 2 == 2 || items.is_array() || items.is_null();
            // serde also reads a struct from a JSON array of its fields in order: a quirk, harmless.
            if omit & 1 == 1 || !metadata.is_array() {
                prop_assert_eq!(got.is_some(), meta_ok && items_ok, "{}", text);
            }
            if let (Some(p), Some(list)) = (&got, items.as_array().filter(|_| omit & 2 == 0)) {
                prop_assert_eq!(p.items.len(), list.len());
                for (raw, want) in p.items.iter().zip(list) {
                    // Both sides parsed by serde_json (its float parsing is not exact).
                    let back: Value = serde_json::from_str(raw.get()).expect("a raw item is JSON");
                    let want: Value = serde_json::from_str(&want.to_string()).expect("JSON");
                    prop_assert_eq!(back, want);
                }
            }
        }
    }

    /// Round trip: a well-formed event, in a watch frame of each event type and as a list
    /// item, decodes to the same uid, count, series count, resourceVersion and occurrence key.
    #[test]
    fn well_formed_events_round_trip(ev in gen_event(), ty in 0usize..3, escape in any::<bool>()) {
        let json = ev.to_json();
        let t = ["ADDED", "MODIFIED", "DELETED"][ty];
        let mut line = json!({"type": t, "object": json}).to_string();
        if escape {
            line = escape_letters(&line);
        }
        let frame = decode_frame(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        let decoded = match (t, frame) {
            ("ADDED", Frame::Added(e)) | ("MODIFIED", Frame::Modified(e)) | ("DELETED", Frame::Deleted(e)) => e,
            (_, other) => return Err(TestCaseError::fail(format!("{t} decoded as {other:?}"))),
        };
        ev.check(&decoded)?;

        let page = json!({
            "metadata": {"resourceVersion": ev.resource_version, "continue": "c"},
            "items": [json, {"metadata": {"uid": "other"}}],
        })
        .to_string();
        let p: ListPage<'_> = serde_json::from_str(&page).map_err(|e| TestCaseError::fail(format!("{e}: {page}")))?;
        prop_assert_eq!(p.metadata.resource_version.as_deref(), Some(ev.resource_version.as_str()));
        prop_assert_eq!(p.items.len(), 2);
        let listed = decode_event(p.items[0].get()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        ev.check(&listed)?;
        prop_assert_eq!(&listed, &*decoded);

        // What we export decodes back to the same event.
        let exported = serde_json::to_string(&listed).expect("an Event serializes");
        let again = decode_event(&exported).map_err(|e| TestCaseError::fail(format!("{e}: {exported}")))?;
        prop_assert_eq!(&again, &listed);
    }
}

#[test]
fn null_items_and_metadata_are_an_empty_page() {
    let p: ListPage<'_> = serde_json::from_str(
        r#"{"kind":"EventList","metadata":{"resourceVersion":"7"},"items":null}"#,
    )
    .expect("items: null");
    assert!(p.items.is_empty());
    assert_eq!(p.metadata.resource_version.as_deref(), Some("7"));
    let p: ListPage<'_> = serde_json::from_str(r#"{"metadata":null}"#).expect("metadata: null");
    assert!(p.metadata.resource_version.is_none() && p.items.is_empty());
}

/// `"ADD\u0045D"` is `"ADDED"`: a type written with escapes (a re-encoding proxy) is decoded.
#[test]
fn escaped_frame_type_is_decoded() {
    let line = r#"{"type":"ADD\u0045D","object":{"metadata":{"uid":"u"},"count":2}}"#;
    match decode_frame(line) {
        Ok(Frame::Added(e)) => assert_eq!(e.occurrence_key(), "u:2"),
        other => panic!("{other:?}"),
    }
    match decode_frame(r#"{"type":"W\u0041T","object":{}}"#) {
        Err(FrameError::UnknownType(t)) => assert_eq!(t, "WAT"),
        other => panic!("{other:?}"),
    }
}

/// serde_json quotes a wrongly typed string whole; the frame error does not.
#[test]
fn frame_errors_are_bounded_and_keep_their_location() {
    let long = "x".repeat(100_000);
    for line in [
        format!(r#"{{"type":"{long}","object":{{}}}}"#),
        format!(r#"{{"type":"ADDED","object":{{"count":"{long}"}}}}"#),
        format!(
            r#"{{"type":"BOOKMARK","object":{{"metadata":{{"resourceVersion":["{long}"]}}}}}}"#
        ),
        format!(r#"{{"type":"{long}"}}"#),
        format!(r#"["{long}"]"#),
    ] {
        let e = decode_frame(&line).expect_err("malformed");
        let msg = e.to_string();
        assert!(msg.len() <= MAX_ERROR, "{} bytes: {msg:.200}", msg.len());
        if !matches!(e, FrameError::UnknownType(_)) {
            assert!(msg.contains(" at line 1 column "), "{msg:.400}");
        }
    }
}

/// JSON nested far deeper than serde_json's recursion limit is an error, not a stack overflow.
#[test]
fn deep_nesting_is_an_error() {
    for depth in [127, 128, 129, 1000, 20_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let line = format!(r#"{{"type":"ADDED","object":{deep}}}"#);
        assert!(decode_frame(&line).is_err(), "depth {depth}");
        let line = format!(r#"{{"type":"ADDED","object":{{"metadata":{{"labels":{deep}}}}}}}"#);
        assert!(decode_frame(&line).is_err(), "depth {depth}");
        let page = format!(r#"{{"items":[{deep}]}}"#);
        if let Ok(p) = serde_json::from_str::<ListPage<'_>>(&page) {
            assert!(decode_event(p.items[0].get()).is_err());
        }
    }
}
