//! The teams receiver: config, cards, fitting under the size limit.

use std::sync::Arc;

use serde_json::json;

use super::card::{DEFAULT_BUDGET, keys_of, section};
use super::*;
use crate::config::{Config, ConfigErrors};
use crate::event::{Event, Occurrence};
use crate::sink::testing;

fn config(yaml: &str) -> Result<Config, ConfigErrors> {
    testing::parse_with("teams", yaml, &|_| None)
}

fn teams(yaml: &str) -> TeamsConfig {
    testing::receiver_with(yaml, &|_| None)
}

#[test]
fn resmoios_readme_example_is_accepted_with_a_warning_about_the_retired_connector() {
    let yaml =
        "      endpoint: \"https://outlook.office.com/webhook/...\"\n      layout: # Optional\n";
    let t = teams(yaml);
    assert_eq!(t.endpoint, "https://outlook.office.com/webhook/...");
    assert!(t.encoding.layout.is_none());
    let w = config(yaml).unwrap().warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("receivers[0].teams.endpoint: is an Office 365 connector"),
        "{w:?}"
    );
    let wf = "      endpoint: https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=s\n";
    assert!(config(wf).unwrap().warnings().is_empty());
    assert!(is_connector(
        "https://contoso.webhook.office.com/webhookb2/x"
    ));
    assert!(!is_connector(
        "https://x.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/1"
    ));
}

#[test]
fn endpoint_is_required_and_headers_are_checked() {
    let e = config("      headers: {'X Bad': v}\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("receivers[0].teams.endpoint: is required"),
        "{e}"
    );
    assert!(e.contains("invalid header name"), "{e}");
}

fn occurrence(name: &str, message: &str) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.1"), "namespace": "shop", "uid": format!("uid-{name}")},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": name},
        "reason": "BackOff", "type": "Warning", "count": 2, "message": message,
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

fn doc(occ: &Arc<Occurrence>, body: Option<Value>) -> Doc {
    Doc {
        key: occ.key.clone(),
        body: body.map_or_else(
            || occ.json().clone(),
            |b| serde_json::to_vec(&b).unwrap().into(),
        ),
        occ: occ.clone(),
    }
}

#[test]
fn a_card_reads_the_document_as_resmoio_does_and_ends_with_the_key() {
    let o = occurrence("web-1", "Back-off restarting");
    let card = TeamsSink::card(&[doc(&o, None)], DEFAULT_BUDGET);
    assert_eq!(card["type"], "message");
    let att = &card["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["version"], "1.4");
    let items = &att["content"]["body"][0]["items"];
    assert_eq!(items[0]["text"], "Back-off restarting");
    let facts: Vec<(String, String)> = items[1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(facts[0], ("Status".into(), "BackOff".into()));
    assert_eq!(facts[1], ("Type".into(), "Warning".into()));
    assert_eq!(facts[2], ("Object".into(), "Pod shop/web-1".into()));
    assert_eq!(facts[3], ("Count".into(), "2".into()));
    assert!(
        facts.contains(&("uid".into(), "uid-web-1".into())),
        "metadata: {facts:?}"
    );
    assert_eq!(keys_of(&card), ["uid-web-1:2"]);
}

#[test]
fn a_layout_shapes_the_section_and_other_documents_are_shown_as_json() {
    let o = occurrence("web-1", "m");
    let s = section(
        &o.key,
        &json!({"message": "hello", "reason": "R", "metadata": "meta"}),
    );
    assert_eq!(s.title.as_deref(), Some("hello"));
    assert_eq!(
        s.facts,
        [
            ("Status".to_owned(), "R".to_owned()),
            ("Metadata".to_owned(), "meta".to_owned())
        ]
    );
    let s = section(&o.key, &json!({"text": "x"}));
    assert!(s.json.unwrap().contains("\"text\": \"x\""));
}

#[test]
fn a_batch_is_one_card_with_a_count_and_every_key() {
    let docs: Vec<Doc> = (0..3)
        .map(|i| doc(&occurrence(&format!("p{i}"), "m"), None))
        .collect();
    let card = TeamsSink::card(&docs, DEFAULT_BUDGET);
    assert_eq!(
        card["attachments"][0]["content"]["body"][0]["text"],
        "**3 events**"
    );
    assert_eq!(keys_of(&card), ["uid-p0:2", "uid-p1:2", "uid-p2:2"]);
}

#[test]
fn an_oversized_card_is_shortened_with_a_note_and_keeps_its_key() {
    let o = occurrence("web-1", &"x".repeat(100_000));
    let card = TeamsSink::card(&[doc(&o, None)], DEFAULT_BUDGET);
    let size = serde_json::to_vec(&card).unwrap().len();
    assert!(size <= DEFAULT_BUDGET, "{size}");
    let body = card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    let note = body.last().unwrap()["text"].as_str().unwrap();
    assert!(
        note.starts_with("Shortened to fit Teams' message size limit: "),
        "{note}"
    );
    let title = body[0]["items"][0]["text"].as_str().unwrap();
    assert!(
        title.ends_with('…') && title.len() > 1000,
        "the message is cut, not dropped"
    );
    assert_eq!(keys_of(&card), ["uid-web-1:2"]);
}

#[test]
fn a_batch_too_large_even_shortened_lists_the_keys_it_leaves_out() {
    let docs: Vec<Doc> = (0..200)
        .map(|i| doc(&occurrence(&format!("pod-{i}"), &"y".repeat(2000)), None))
        .collect();
    let card = TeamsSink::card(&docs, DEFAULT_BUDGET);
    let size = serde_json::to_vec(&card).unwrap().len();
    assert!(size <= DEFAULT_BUDGET, "{size}");
    let keys = keys_of(&card);
    assert_eq!(keys.len(), 200, "every key is in the card");
    let body = card["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap();
    assert!(
        body.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains(" more not shown: ")
    );
    // A tiny budget still gives a card (the fallback), never a loop or a panic.
    let small = TeamsSink::card(&docs[..1], 600);
    assert_eq!(keys_of(&small), [docs[0].key.to_string()]);
}
