//! The slack receiver: config, messages, digests, answers.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::{Config, ConfigErrors};
use crate::event::{Event, Occurrence};
use crate::sink::testing;
use crate::sink::testing::doc;

fn env(_: &str) -> Option<String> {
    None
}

fn config(slack: &str) -> Result<Config, ConfigErrors> {
    testing::parse_with("slack", slack, &env)
}

fn slack(yaml: &str) -> SlackConfig {
    testing::receiver_with(yaml, &env)
}

fn errors(yaml: &str) -> Vec<String> {
    testing::errors_with("slack", yaml, &env)
}

/// resmoio's README example, verbatim (its empty optional keys included).
const README: &str = "      token: YOUR-API-TOKEN-HERE
      channel: \"@{{ .InvolvedObject.Labels.owner }}\"
      message: \"{{ .Message }}\"
      color: # optional
      title: # optional
      author_name: # optional
      footer: # optional
      fields:
        namespace: \"{{ .Namespace }}\"
        reason: \"{{ .Reason }}\"
        object: \"{{ .Namespace }}\"
";

#[test]
fn resmoios_readme_example_is_accepted_without_warnings() {
    let c = slack(README);
    assert_eq!(
        c.mode,
        Mode::Api {
            token: crate::sink::secret::Secret("YOUR-API-TOKEN-HERE".into()),
            api_url: DEFAULT_API_URL.into()
        }
    );
    assert_eq!(
        c.channel.as_ref().unwrap().source(),
        "@{{ .InvolvedObject.Labels.owner }}"
    );
    assert!(c.color.is_none() && c.title.is_none() && c.footer.is_none());
    let names: Vec<&str> = c.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["namespace", "object", "reason"], "sorted by title");
    assert_eq!(c.min_interval, DEFAULT_MIN_INTERVAL);
    assert!(config(README).unwrap().warnings().is_empty());
    let w = config(&README.replace(
        "YOUR-API-TOKEN-HERE",
        "https://hooks.slack.com/services/T/B/x",
    ))
    .unwrap()
    .warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("receivers[0].slack.token: is a URL: an incoming webhook goes in webhook"),
        "{w:?}"
    );
}

#[test]
fn token_or_webhook_and_a_channel_with_a_token() {
    assert_eq!(
        errors("      message: x\n"),
        [
            "receivers[0].slack.token: is required: a bot token (xoxb-…) for chat.postMessage, or set webhook to an incoming webhook URL instead"
        ]
    );
    assert_eq!(
        errors("      token: xoxb-1\n"),
        [
            "receivers[0].slack.channel: is required with token: a channel ID (C0123456789) or name (#alerts), may be a template"
        ]
    );
    assert_eq!(
        errors(
            "      token: xoxb-1\n      channel: c\n      webhook: https://hooks.slack.com/services/T/B/x\n"
        ),
        [
            "receivers[0].slack.webhook: set token (chat.postMessage) or webhook (an incoming webhook URL), not both"
        ]
    );
    assert_eq!(
        errors("      webhook: hooks.slack.com/x\n"),
        [
            "receivers[0].slack.webhook: invalid URL \"hooks.slack.com/x\": relative URL without a base"
        ]
    );
    assert_eq!(
        errors("      webhook: https://hooks.slack.com/services/T/B/x\n      apiURL: http://x\n"),
        [
            "receivers[0].slack.apiURL: is the Web API's address for token; a webhook is posted to as written"
        ]
    );
    let w = slack("      webhook: https://hooks.slack.com/services/T/B/x\n");
    assert_eq!(
        w.mode,
        Mode::Webhook {
            url: "https://hooks.slack.com/services/T/B/x".into()
        }
    );
    assert!(w.channel.is_none(), "a webhook posts to its own channel");
}

#[test]
fn template_errors_are_load_errors_at_their_key() {
    let e = errors(
        "      token: xoxb-1\n      channel: '{{ .Namespace'\n      message: '{{ .Message }'\n      fields:\n        ns: '{{ if }}'\n      digestLines: 0\n",
    );
    let paths: Vec<&str> = e.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "receivers[0].slack.channel",
            "receivers[0].slack.message",
            "receivers[0].slack.fields.ns",
            "receivers[0].slack.digestLines"
        ],
        "{e:#?}"
    );
}

#[test]
fn a_template_failing_on_the_sample_event_is_a_check_config_warning() {
    let w = config("      token: xoxb-1\n      channel: c\n      title: '{{ .Resaon }}'\n      fields:\n        n: '{{ index .Count 1 }}'\n")
        .unwrap()
        .warnings();
    assert!(
        w.iter()
            .any(|l| l.starts_with("receivers[0].slack.title: .Resaon")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|l| l.starts_with("receivers[0].slack.fields.n: fails on a sample event")),
        "{w:#?}"
    );
}

fn occurrence(ns: &str, name: &str, count: i64, message: &str) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.1"), "namespace": ns, "uid": format!("uid-{name}")},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name,
                           "labels": {"owner": "U123"}},
        "reason": "BackOff", "type": "Warning", "count": count, "message": message,
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

fn sink(yaml: &str) -> SlackSink {
    testing::sink_with(yaml, &env, SlackSink::build)
}

#[test]
fn one_occurrence_is_resmoios_message_with_its_attachment_and_key() {
    let mut s = sink(README);
    let o = occurrence("shop", "web-1", 3, "Back-off <restarting> failed & co");
    let r = s.render(&doc(&o));
    let body = message::single(Some("@U123"), &r);
    assert_eq!(
        body,
        json!({
            "channel": "@U123",
            "text": "Back-off &lt;restarting&gt; failed &amp; co",
            "attachments": [{
                "fields": [
                    {"title": "namespace", "value": "shop", "short": false},
                    {"title": "object", "value": "shop", "short": false},
                    {"title": "reason", "value": "BackOff", "short": false},
                ],
                "fallback": "Back-off <restarting> failed & co",
            }],
            "metadata": {"event_type": "kube_event",
                         "event_payload": {"occurrence_keys": "uid-web-1:3", "events": 1}},
        })
    );
    assert_eq!(message::keys_of(&body), ["uid-web-1:3"]);
}

#[test]
fn without_any_attachment_key_only_the_text_is_sent_and_the_default_message_says_what_happened() {
    let mut s = sink("      webhook: http://127.0.0.1:9/x\n");
    let r = s.render(&doc(&occurrence("shop", "web-1", 1, "m")));
    assert_eq!(r.text, "Warning BackOff Pod shop/web-1: m");
    let body = message::single(None, &r);
    assert!(body.get("attachments").is_none() && body.get("channel").is_none());
    // color alone is enough for an attachment (resmoio needs fields for any of them).
    let mut s = sink(
        "      webhook: http://127.0.0.1:9/x\n      color: '{{ if eq .Type \"Warning\" }}danger{{ else }}good{{ end }}'\n",
    );
    let r = s.render(&doc(&occurrence("shop", "web-1", 1, "m")));
    assert_eq!(r.attachment.unwrap().color.as_deref(), Some("danger"));
}

fn rendered(n: usize, text: &str) -> Vec<Rendered> {
    (0..n)
        .map(|i| Rendered {
            key: format!("u{i}:1"),
            text: format!("{text} {i}"),
            attachment: None,
        })
        .collect()
}

#[test]
fn a_digest_lists_each_occurrence_on_a_line_and_carries_every_key() {
    let items = rendered(3, "line\nbreak <x>");
    let body = message::digest(Some("#ops"), &items, 20);
    assert_eq!(
        body["text"],
        "*3 events*\n• line break &lt;x&gt; 0\n• line break &lt;x&gt; 1\n• line break &lt;x&gt; 2"
    );
    assert_eq!(body["channel"], "#ops");
    assert_eq!(message::keys_of(&body), ["u0:1", "u1:1", "u2:1"]);
    assert_eq!(body["metadata"]["event_payload"]["events"], 3);
}

#[test]
fn a_long_digest_is_capped_with_a_count_of_the_rest_but_keeps_every_key() {
    let items = rendered(50, "m");
    let body = message::digest(None, &items, 20);
    let text = body["text"].as_str().unwrap();
    assert_eq!(text.lines().count(), 1 + 20 + 1, "{text}");
    assert!(text.ends_with("\n… and 30 more"), "{text}");
    assert_eq!(message::keys_of(&body).len(), 50);
    // The character budget caps long lines before the line count does.
    let items = rendered(40, &"x".repeat(1000));
    let body = message::digest(None, &items, 100);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.chars().count() <= message::DIGEST_TEXT_BUDGET,
        "{}",
        text.len()
    );
    let listed = text.lines().filter(|l| l.starts_with('•')).count();
    assert!(listed >= 10, "{listed}");
    assert!(text.ends_with(&format!("… and {} more", 40 - listed)));
    assert!(
        text.lines()
            .all(|l| l.chars().count() <= message::DIGEST_LINE_MAX + 2)
    );
}

fn answer(body: &str) -> Result<(), (SendError, bool)> {
    api_answer("slack chat.postMessage to #c", body, &HeaderMap::new())
}

#[test]
fn ok_false_is_an_error_with_slacks_reason_permanent_or_retried() {
    assert!(answer(r#"{"ok":true,"channel":"C1","ts":"1.2"}"#).is_ok());
    match answer(r#"{"ok":false,"error":"channel_not_found"}"#) {
        Err((SendError::Permanent { reason }, false)) => {
            assert!(reason.contains("error channel_not_found"), "{reason}");
            assert!(reason.contains("invite the app"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    for e in [
        "invalid_auth",
        "not_in_channel",
        "is_archived",
        "no_text",
        "whatever",
    ] {
        assert!(
            matches!(
                answer(&format!(r#"{{"ok":false,"error":"{e}"}}"#)),
                Err((SendError::Permanent { .. }, false))
            ),
            "{e}"
        );
    }
    for e in [
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    ] {
        assert!(
            matches!(
                answer(&format!(r#"{{"ok":false,"error":"{e}"}}"#)),
                Err((SendError::Transient { .. }, false))
            ),
            "{e}"
        );
    }
    assert!(matches!(
        answer(r#"{"ok":false,"error":"ratelimited"}"#),
        Err((SendError::Transient { .. }, true))
    ));
    match answer("<html>proxy</html>") {
        Err((SendError::Permanent { reason }, _)) => {
            assert!(reason.contains("not Slack's"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match answer(
        r#"{"ok":false,"error":"invalid_arguments","response_metadata":{"messages":["[ERROR] missing required field: channel"]}}"#,
    ) {
        Err((SendError::Permanent { reason }, _)) => {
            assert!(reason.contains("missing required field"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_channel_rendering_empty_fails_that_occurrence_with_a_token_but_uses_the_webhooks_own() {
    let mut s = sink("      token: xoxb-1\n      channel: '{{ .InvolvedObject.Labels.team }}'\n");
    match s.channel(&doc(&occurrence("a", "b", 1, "m"))) {
        Err(SendError::Permanent { reason }) => assert!(reason.contains("no channel"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let mut s = sink(
        "      webhook: http://127.0.0.1:9/x\n      channel: '{{ .InvolvedObject.Labels.team }}'\n",
    );
    assert_eq!(
        s.channel(&doc(&occurrence("a", "b", 1, "m"))).unwrap(),
        None
    );
}

#[test]
fn min_interval_must_stay_below_the_timeout() {
    let cfg = config("      token: xoxb-1\n      channel: c\n      minInterval: 10s\n").unwrap();
    let e = crate::sink::check(&cfg.receivers).unwrap_err().to_string();
    assert!(
        e.contains("receivers[0].slack.minInterval: 10s is not below the receiver's timeout (10s)"),
        "{e}"
    );
}
