//! The JSON body of a Slack message: one occurrence as resmoio sends it (its text and an
//! attachment), or several folded into one digest. Both carry the occurrence keys as message
//! metadata, which `chat.postMessage` and incoming webhooks accept alike:
//!
//! ```json
//! "metadata": {"event_type": "kube_event",
//!              "event_payload": {"occurrence_keys": "0b8e…:3,77aa…:1", "events": 2}}
//! ```

use serde_json::{Map, Value, json};

use crate::sink::render::{one_line, truncate};

/// The metadata's `event_type`.
pub const EVENT_TYPE: &str = "kube_event";

/// A digest's text stays under this many characters (Slack truncates `text` at 40000 and
/// advises staying under 4000).
pub const DIGEST_TEXT_BUDGET: usize = 3500;

/// Longest line of a digest, in characters.
pub const DIGEST_LINE_MAX: usize = 300;

/// One occurrence, its templates rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub key: String,
    /// The message, as rendered (escaped when the body is built).
    pub text: String,
    /// `color`, `title`, `author_name`, `footer` and `fields`, when the receiver sets any.
    pub attachment: Option<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attachment {
    pub color: Option<String>,
    pub title: Option<String>,
    pub author_name: Option<String>,
    pub footer: Option<String>,
    /// (title, value), in title order.
    pub fields: Vec<(String, String)>,
}

/// `&`, `<` and `>` as Slack's text wants them (what resmoio's client does to the message): an
/// event message with `<none>` or `a && b` arrives as written instead of as markup.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn attachment(a: &Attachment, fallback: &str) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("color", &a.color),
        ("title", &a.title),
        ("author_name", &a.author_name),
        ("footer", &a.footer),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), Value::String(v.clone()));
        }
    }
    if !a.fields.is_empty() {
        m.insert(
            "fields".to_owned(),
            Value::Array(
                a.fields
                    .iter()
                    .map(|(t, v)| json!({"title": t, "value": v, "short": false}))
                    .collect(),
            ),
        );
    }
    m.insert(
        "fallback".to_owned(),
        Value::String(truncate(fallback, 300).into_owned()),
    );
    Value::Object(m)
}

fn metadata<'a>(keys: impl Iterator<Item = &'a str>, events: usize) -> Value {
    let keys: Vec<&str> = keys.collect();
    json!({
        "event_type": EVENT_TYPE,
        "event_payload": {"occurrence_keys": keys.join(","), "events": events},
    })
}

fn base(channel: Option<&str>, text: String, meta: Value) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(c) = channel {
        m.insert("channel".to_owned(), Value::String(c.to_owned()));
    }
    m.insert("text".to_owned(), Value::String(text));
    m.insert("metadata".to_owned(), meta);
    m
}

/// One occurrence: its message as `text`, and its attachment when the receiver has one.
pub fn single(channel: Option<&str>, r: &Rendered) -> Value {
    let mut m = base(
        channel,
        escape(&r.text),
        metadata(std::iter::once(r.key.as_str()), 1),
    );
    if let Some(a) = &r.attachment {
        m.insert(
            "attachments".to_owned(),
            Value::Array(vec![attachment(a, &r.text)]),
        );
    }
    Value::Object(m)
}

/// Several occurrences for one channel in one message: a count, then one line per occurrence
/// (its message on one line, cut to [`DIGEST_LINE_MAX`]), at most `lines` of them and
/// [`DIGEST_TEXT_BUDGET`] characters, then `… and K more`. Every key is in the metadata.
pub fn digest(channel: Option<&str>, items: &[Rendered], lines: usize) -> Value {
    let mut text = format!("*{} events*", items.len());
    let mut used = text.chars().count();
    let mut listed = 0;
    for r in items {
        if listed >= lines {
            break;
        }
        let line = format!(
            "\n• {}",
            escape(&truncate(&one_line(&r.text), DIGEST_LINE_MAX))
        );
        let n = line.chars().count();
        // Room is kept for the "and K more" line.
        if used + n + 24 > DIGEST_TEXT_BUDGET && listed > 0 {
            break;
        }
        text.push_str(&line);
        used += n;
        listed += 1;
    }
    if listed < items.len() {
        text.push_str(&format!("\n… and {} more", items.len() - listed));
    }
    Value::Object(base(
        channel,
        text,
        metadata(items.iter().map(|r| r.key.as_str()), items.len()),
    ))
}

/// The occurrence keys a message carries (tests and the in-test Slack read them back).
pub fn keys_of(body: &Value) -> Vec<String> {
    body.pointer("/metadata/event_payload/occurrence_keys")
        .and_then(Value::as_str)
        .map(|s| {
            s.split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
