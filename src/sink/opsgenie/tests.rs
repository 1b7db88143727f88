//! The opsgenie receiver: config, alerts, limits.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::{Config, ConfigErrors};
use crate::event::{Event, Occurrence};
use crate::sink::testing;
use crate::sink::testing::doc;

fn env(name: &str) -> Option<String> {
    (name == "OPSGENIE_API_KEY").then(|| "k-123".to_owned())
}

fn config(yaml: &str) -> Result<Config, ConfigErrors> {
    testing::parse_with("opsgenie", yaml, &env)
}

fn opsgenie(yaml: &str) -> OpsgenieConfig {
    testing::receiver_with(yaml, &env)
}

fn errors(yaml: &str) -> Vec<String> {
    testing::errors_with("opsgenie", yaml, &env)
}

/// resmoio's README example, verbatim.
const README: &str = "      apiKey: xxx
      priority: \"P3\"
      message: \"Event {{ .Reason }} for {{ .InvolvedObject.Namespace }}/{{ .InvolvedObject.Name }} on K8s cluster\"
      alias: \"{{ .UID }}\"
      description: \"<pre>{{ toPrettyJson . }}</pre>\"
      tags:
        - \"event\"
        - \"{{ .Reason }}\"
        - \"{{ .InvolvedObject.Kind }}\"
        - \"{{ .InvolvedObject.Name }}\"
";

#[test]
fn resmoios_readme_example_is_accepted_without_warnings() {
    let c = opsgenie(README);
    assert_eq!(c.url, DEFAULT_URL);
    assert_eq!(c.priority, Priority::Fixed("P3"));
    assert_eq!(c.alias.as_ref().unwrap().source(), "{{ .UID }}");
    assert_eq!(c.tags.len(), 4);
    assert!(config(README).unwrap().warnings().is_empty());
}

#[test]
fn url_is_resmoios_host_or_a_full_url() {
    assert_eq!(
        opsgenie("      apiKey: k\n      URL: api.eu.opsgenie.com\n").url,
        "https://api.eu.opsgenie.com"
    );
    assert_eq!(
        opsgenie("      apiKey: k\n      URL: http://127.0.0.1:8080/\n").url,
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        errors("      apiKey: k\n      url: api.eu.opsgenie.com\n"),
        ["receivers[0].opsgenie.url: unknown key (did you mean \"URL\"?)"]
    );
}

#[test]
fn api_key_and_a_valid_priority_are_required() {
    assert_eq!(
        errors("      message: m\n"),
        [
            "receivers[0].opsgenie.apiKey: is required: the key of an API integration (Opsgenie: Teams → Integrations → API), e.g. ${OPSGENIE_API_KEY}"
        ]
    );
    assert_eq!(
        errors("      apiKey: k\n      priority: high\n"),
        [
            "receivers[0].opsgenie.priority: expected P1, P2, P3, P4 or P5 (or a template rendering one), found \"high\""
        ]
    );
    assert_eq!(
        opsgenie("      apiKey: k\n      priority: p1\n").priority,
        Priority::Fixed("P1")
    );
    assert_eq!(
        opsgenie("      apiKey: k\n").priority,
        Priority::Fixed("P3"),
        "resmoio's default"
    );
    assert_eq!(
        errors("      apiKey: k\n      details: {occurrence_key: x}\n"),
        [
            "receivers[0].opsgenie.details.occurrence_key: occurrence_key is set by the exporter on every alert ({uid}:{count}) and cannot be replaced"
        ]
    );
}

#[test]
fn responders_name_a_team_user_escalation_or_schedule() {
    let c = opsgenie(
        "      apiKey: k\n      responders:\n        - {type: team, name: 'ops-{{ .Namespace }}'}\n        - {type: user, username: a@b.c}\n        - {type: schedule, id: 4513b7ea}\n",
    );
    assert_eq!(c.responders.len(), 3);
    assert_eq!(c.responders[1].by.0, "username");
    let e = errors(
        "      apiKey: k\n      responders:\n        - {type: team}\n        - {type: group, name: x}\n        - {type: team, username: x}\n        - {type: user, id: a, username: b}\n",
    );
    assert_eq!(
        e,
        [
            "receivers[0].opsgenie.responders[0]: a team is named by exactly one of id or name",
            "receivers[0].opsgenie.responders[1].type: expected team, user, escalation or schedule, found \"group\"",
            "receivers[0].opsgenie.responders[2]: a team is named by exactly one of id or name",
            "receivers[0].opsgenie.responders[3]: a user is named by exactly one of id or username",
        ]
    );
}

#[test]
fn a_fixed_alias_is_warned_about() {
    let w = config("      apiKey: k\n      alias: kube\n")
        .unwrap()
        .warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("all of them become one alert"), "{w:?}");
}

fn occurrence(count: i64, message: &str) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": "web-1.1", "namespace": "shop", "uid": "uid-1"},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1"},
        "reason": "BackOff", "type": "Warning", "count": count, "message": message,
    }))
    .unwrap();
    Arc::new(Occurrence::new(e))
}

fn sink(yaml: &str) -> OpsgenieSink {
    testing::sink_with(yaml, &env, OpsgenieSink::build)
}

#[test]
fn the_readme_alert_has_its_priority_alias_tags_and_the_occurrence_key() {
    let mut s = sink(&README.replace("\"P3\"", "\"P1\""));
    let a = s.alert(&doc(&occurrence(3, "Back-off")));
    assert_eq!(
        a["priority"], "P1",
        "priority is applied (resmoio's issue #71)"
    );
    assert_eq!(a["message"], "Event BackOff for shop/web-1 on K8s cluster");
    assert_eq!(a["alias"], "uid-1");
    assert_eq!(a["tags"], json!(["event", "BackOff", "Pod", "web-1"]));
    assert_eq!(a["details"], json!({"occurrence_key": "uid-1:3"}));
    assert!(a["description"].as_str().unwrap().starts_with("<pre>{\n"));
    assert!(a.get("responders").is_none() && a.get("entity").is_none());
}

#[test]
fn the_default_alias_is_the_occurrence_key_and_texts_fit_opsgenies_limits() {
    let mut s = sink(
        "      apiKey: k\n      description: '{{ .Message }}'\n      details: {a: '{{ .Message }}', b: '{{ .Message }}', ns: '{{ .Namespace }}'}\n      tags: ['{{ .Message }}', '{{ .Message }}', '', x]\n      entity: '{{ .Message }}'\n",
    );
    let long = "m".repeat(20000);
    let a = s.alert(&doc(&occurrence(2, &long)));
    assert_eq!(a["alias"], "uid-1:2");
    assert_eq!(a["message"].as_str().unwrap().chars().count(), MESSAGE_MAX);
    assert!(a["message"].as_str().unwrap().ends_with('…'));
    assert_eq!(
        a["description"].as_str().unwrap().chars().count(),
        DESCRIPTION_MAX
    );
    assert_eq!(a["entity"].as_str().unwrap().chars().count(), ENTITY_MAX);
    let tags = a["tags"].as_array().unwrap();
    assert_eq!(
        tags.len(),
        2,
        "empty and repeated tags are left out: {tags:?}"
    );
    assert_eq!(tags[0].as_str().unwrap().chars().count(), TAG_MAX);
    let d = a["details"].as_object().unwrap();
    let total: usize = d
        .iter()
        .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
        .sum();
    assert!(total <= DETAILS_MAX, "{total}");
    assert_eq!(d["ns"], "shop", "short values are kept");
    assert_eq!(d["occurrence_key"], "uid-1:2");
    assert_eq!(a["priority"], "P3");
}

#[test]
fn a_long_alias_stays_deterministic_and_distinct() {
    let a = "a".repeat(600);
    let b = format!("{}b", "a".repeat(599));
    assert_eq!(bounded_alias(&a).chars().count(), ALIAS_MAX);
    assert_eq!(bounded_alias(&a), bounded_alias(&a));
    assert_ne!(bounded_alias(&a), bounded_alias(&b));
    assert_eq!(bounded_alias("short"), "short");
}

#[test]
fn a_templated_priority_is_applied_and_an_invalid_rendering_is_p3() {
    let mut s = sink(
        "      apiKey: k\n      priority: '{{ if eq .Type \"Warning\" }}P2{{ else }}urgent{{ end }}'\n",
    );
    assert_eq!(s.alert(&doc(&occurrence(1, "m")))["priority"], "P2");
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": "n", "namespace": "shop", "uid": "u"}, "type": "Normal", "count": 1,
    }))
    .unwrap();
    let o = Arc::new(Occurrence::new(e));
    assert_eq!(s.alert(&doc(&o))["priority"], "P3");
}

#[test]
fn opsgenie_error_bodies_become_one_line() {
    assert_eq!(
        error_text(
            r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.001,"requestId":"r-1"}"#
        ),
        "Request body is not processable. Please check the errors.; message: Message can not be empty. (requestId r-1)"
    );
    assert_eq!(error_text("plain\ntext"), "plain text");
}
