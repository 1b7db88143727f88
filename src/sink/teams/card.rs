//! The Adaptive Card a batch becomes, and its fitting under Teams' message size limit.
//!
//! Each occurrence is a section built from its document (the whole event, or the `layout`), read
//! the way resmoio reads it: `message` (resmoio's "Event"), `reason` ("Status") and `metadata`,
//! plus `type`, the involved object and `count` when the document has them. A document without
//! any of these (a layout of other fields) is shown as JSON. The section ends with its occurrence
//! key. Several occurrences are one card: a count, then a section each.
//!
//! Teams refuses messages over about 28 KB. A card over the budget has its longest texts halved
//! until it fits (each cut marked `…`), then, if need be, its last sections left out (their keys
//! still listed), and a note at the end says what was cut: a big event is shortened, never
//! refused again and again.

use serde_json::{Value, json};

use crate::sink::render::truncate;

/// The body's budget in bytes: below Teams' documented 28 KB, which counts the message as
/// Teams renders it, and which connectors have been seen to enforce lower.
pub const DEFAULT_BUDGET: usize = 20_000;

/// Texts are not cut below this many characters.
const MIN_TEXT: usize = 64;

/// Facts shown per section at most (a document with hundreds of labels stays readable).
const MAX_FACTS: usize = 40;

/// One occurrence's section, before it becomes card elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub key: String,
    /// The headline (the event's message), if the document has one.
    pub title: Option<String>,
    /// (name, value) facts.
    pub facts: Vec<(String, String)>,
    /// The document as JSON, when it has none of the fields a section is made of.
    pub json: Option<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The section of one document.
pub fn section(key: &str, doc: &Value) -> Section {
    let Some(m) = doc.as_object() else {
        return Section {
            key: key.to_owned(),
            title: None,
            facts: Vec::new(),
            json: Some(doc.to_string()),
        };
    };
    let known = [
        "message",
        "reason",
        "metadata",
        "type",
        "involvedObject",
        "count",
    ];
    if !known.iter().any(|k| m.contains_key(*k)) {
        return Section {
            key: key.to_owned(),
            title: None,
            facts: Vec::new(),
            json: Some(serde_json::to_string_pretty(doc).unwrap_or_default()),
        };
    }
    let mut facts = Vec::new();
    let title = m.get("message").map(text).filter(|s| !s.is_empty());
    if let Some(r) = m.get("reason").map(text).filter(|s| !s.is_empty()) {
        facts.push(("Status".to_owned(), r));
    }
    if let Some(t) = m.get("type").map(text).filter(|s| !s.is_empty()) {
        facts.push(("Type".to_owned(), t));
    }
    if let Some(o) = m.get("involvedObject").and_then(Value::as_object) {
        let part = |k: &str| o.get(k).map(text).unwrap_or_default();
        let (kind, ns, name) = (part("kind"), part("namespace"), part("name"));
        let obj = match (ns.is_empty(), name.is_empty()) {
            (_, true) => kind,
            (true, false) => format!("{kind} {name}"),
            (false, false) => format!("{kind} {ns}/{name}"),
        };
        if !obj.trim().is_empty() {
            facts.push(("Object".to_owned(), obj.trim().to_owned()));
        }
    } else if let Some(o) = m.get("involvedObject").map(text).filter(|s| !s.is_empty()) {
        facts.push(("Object".to_owned(), o));
    }
    if let Some(c) = m.get("count").map(text).filter(|s| !s.is_empty()) {
        facts.push(("Count".to_owned(), c));
    }
    match m.get("metadata") {
        Some(Value::Object(meta)) => {
            for (k, v) in meta {
                let v = text(v);
                if !v.is_empty() {
                    facts.push((k.clone(), v));
                }
            }
        }
        Some(v) if !text(v).is_empty() => facts.push(("Metadata".to_owned(), text(v))),
        _ => {}
    }
    facts.truncate(MAX_FACTS);
    Section {
        key: key.to_owned(),
        title,
        facts,
        json: None,
    }
}

fn elements(s: &Section, separator: bool) -> Value {
    let mut items = Vec::new();
    if let Some(t) = &s.title {
        items.push(json!({"type": "TextBlock", "text": t, "weight": "Bolder", "wrap": true}));
    }
    if !s.facts.is_empty() {
        items.push(json!({
            "type": "FactSet",
            "facts": s.facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>(),
        }));
    }
    if let Some(j) = &s.json {
        items.push(json!({"type": "TextBlock", "text": j, "fontType": "Monospace", "wrap": true}));
    }
    items.push(json!({
        "type": "TextBlock", "text": format!("occurrence {}", s.key),
        "isSubtle": true, "size": "Small", "wrap": true,
    }));
    json!({"type": "Container", "separator": separator, "items": items})
}

/// The message for `sections`, with `note` (what was cut) at the end.
fn message(sections: &[Section], dropped: &[String], total: usize, note: Option<&str>) -> Value {
    let mut body = Vec::new();
    if total > 1 {
        body.push(json!({"type": "TextBlock", "text": format!("**{total} events**"), "size": "Medium", "wrap": true}));
    }
    for (i, s) in sections.iter().enumerate() {
        body.push(elements(s, i > 0 || total > 1));
    }
    let mut notes = Vec::new();
    if !dropped.is_empty() {
        notes.push(format!(
            "{} more not shown: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    if let Some(n) = note {
        notes.push(n.to_owned());
    }
    if !notes.is_empty() {
        body.push(json!({
            "type": "TextBlock", "text": notes.join(" "), "isSubtle": true, "size": "Small",
            "wrap": true, "separator": true,
        }));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    })
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Every text of the sections (titles, fact values, JSON).
fn texts(sections: &mut [Section]) -> impl Iterator<Item = &mut String> {
    sections.iter_mut().flat_map(|s| {
        s.title
            .iter_mut()
            .chain(s.facts.iter_mut().map(|(_, v)| v))
            .chain(s.json.iter_mut())
    })
}

/// The card for `sections`, within `budget` bytes when at all possible.
pub fn fit(mut sections: Vec<Section>, budget: usize) -> Value {
    let total = sections.len();
    let mut cut = 0usize;
    let note = |cut: usize| {
        format!("Shortened to fit Teams' message size limit: {cut} characters left out.")
    };
    let mut card = message(&sections, &[], total, None);
    // Halve the longest texts (every text over a cap that halves each round) until the card
    // fits or every text is short.
    let mut cap = texts(&mut sections)
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0);
    while size(&card) > budget && cap > MIN_TEXT {
        cap = (cap / 2).max(MIN_TEXT);
        for t in texts(&mut sections) {
            let n = t.chars().count();
            if n > cap {
                cut += n - cap;
                *t = truncate(t, cap).into_owned();
            }
        }
        card = message(&sections, &[], total, Some(&note(cut)));
    }
    // Then leave out sections from the end, listing their keys.
    let mut dropped: Vec<String> = Vec::new();
    if size(&card) > budget && sections.len() > 1 {
        let mut over = size(&card) - budget;
        while over > 0 && sections.len() > 1 {
            let s = sections.pop().expect("more than one");
            let freed = size(&elements(&s, true)) + 1;
            over = over.saturating_sub(freed.saturating_sub(s.key.len() + 2));
            dropped.insert(0, s.key);
        }
        let note = (cut > 0).then(|| note(cut));
        card = message(&sections, &dropped, total, note.as_deref());
        while size(&card) > budget && sections.len() > 1 {
            let s = sections.pop().expect("more than one");
            dropped.insert(0, s.key);
            card = message(&sections, &dropped, total, note.as_deref());
        }
    }
    // A single section with too many facts: keep the headline and the key.
    if size(&card) > budget
        && let Some(s) = sections.first_mut()
    {
        s.facts.clear();
        s.json = None;
        card = message(
            &sections,
            &dropped,
            total,
            Some("Shortened to fit Teams' message size limit: the event's fields left out."),
        );
    }
    card
}

/// The occurrence keys a card carries (tests and the in-test Teams read them back).
pub fn keys_of(card: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(body) = card
        .pointer("/attachments/0/content/body")
        .and_then(Value::as_array)
    else {
        return out;
    };
    for el in body {
        if let Some(items) = el.get("items").and_then(Value::as_array) {
            for it in items {
                if let Some(k) = it
                    .get("text")
                    .and_then(Value::as_str)
                    .and_then(|t| t.strip_prefix("occurrence "))
                {
                    out.push(k.to_owned());
                }
            }
        } else if let Some(rest) = el
            .get("text")
            .and_then(Value::as_str)
            .and_then(|t| t.split_once(" more not shown: "))
        {
            let list = rest.1.split(" Shortened").next().unwrap_or("");
            out.extend(
                list.split(", ")
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}
