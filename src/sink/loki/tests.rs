//! The Loki receiver's config, entries and reply classification.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{Config, ConfigErrors};
use crate::event::{Event, Occurrence};
use crate::sink::secret::Secret;
use crate::sink::testing;
use crate::sink::testing::doc;

fn env(name: &str) -> Option<String> {
    (name == "LOKI_PASSWORD").then(|| "pa55".to_owned())
}

fn config(loki: &str) -> Result<Config, ConfigErrors> {
    testing::parse_with("loki", loki, &env)
}

fn loki(yaml: &str) -> LokiConfig {
    testing::receiver_with(yaml, &env)
}

fn errors(yaml: &str) -> Vec<String> {
    testing::errors_with("loki", yaml, &env)
}

fn warnings(yaml: &str) -> Vec<String> {
    config(yaml).unwrap().warnings()
}

const URL: &str = "      url: http://127.0.0.1:3100/loki/api/v1/push\n";

#[test]
fn resmoio_readme_example_is_accepted() {
    let c = loki(
        "      headers: # optional\n        X-Scope-OrgID: tennantID\n      streamLabels:\n        foo: bar\n      url: http://127.0.0.1:3100/loki/api/v1/push\n",
    );
    assert_eq!(c.url, "http://127.0.0.1:3100/loki/api/v1/push");
    assert_eq!(c.stream_labels.len(), 1);
    assert_eq!(c.stream_labels[0].name, "foo");
    assert_eq!(c.headers[0].name, "x-scope-orgid");
    assert_eq!(c.format, Format::Protobuf);
    assert_eq!(c.structured_metadata.len(), DEFAULT_METADATA.len());
    assert!(
        warnings(
            "      streamLabels: {foo: bar}\n      url: http://127.0.0.1:3100/loki/api/v1/push\n"
        )
        .is_empty()
    );
}

#[test]
fn every_key_is_parsed() {
    let c = loki(&format!(
        "{URL}      streamLabels: {{job: kube, ns: '{{{{ .Namespace }}}}'}}\n      structuredMetadata: {{reason: '{{{{ .Reason }}}}'}}\n      tenant: team-a\n      username: u\n      password: ${{LOKI_PASSWORD}}\n      format: json\n      layout: {{msg: '{{{{ .Message }}}}'}}\n      tls: {{insecureSkipVerify: true}}\n"
    ));
    assert_eq!(c.tenant.as_deref(), Some("team-a"));
    assert_eq!(c.username.as_deref(), Some("u"));
    assert_eq!(c.password, Some(Secret("pa55".into())));
    assert_eq!(format!("{:?}", c.password), "Some(***)");
    assert_eq!(c.format, Format::Json);
    assert!(c.encoding.layout.is_some());
    assert!(c.tls.insecure_skip_verify);
    let names: Vec<&str> = c
        .structured_metadata
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["reason"],
        "structuredMetadata replaces the defaults"
    );
}

#[test]
fn bad_settings_are_errors_with_their_paths() {
    let e = errors(URL);
    assert!(
        e[0].starts_with("receivers[0].loki.streamLabels: is required"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{URL}      streamLabels: {{app.kubernetes.io/name: x, __x: y, ok: '{{{{ .Nope'}}\n"
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.contains("streamLabels.app.kubernetes.io/name")
                && m.contains("app_kubernetes_io_name")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("reserved")), "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.starts_with("receivers[0].loki.streamLabels.ok")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{URL}      streamLabels: {{a: b}}\n      structuredMetadata: {{occurrence_key: x}}\n"
    ));
    assert!(e[0].contains("cannot be replaced"), "{e:?}");
    let e = errors(&format!(
        "{URL}      streamLabels: {{a: b}}\n      tenant: t\n      headers: {{X-Scope-OrgID: u}}\n"
    ));
    assert!(
        e[0].starts_with("receivers[0].loki.tenant: is sent as X-Scope-OrgID"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{URL}      streamLabels: {{a: b}}\n      password: p\n"
    ));
    assert_eq!(e, ["receivers[0].loki.password: is set without username"]);
    let e = errors(&format!(
        "{URL}      streamLabels: {{a: b}}\n      format: xml\n"
    ));
    assert_eq!(
        e,
        ["receivers[0].loki.format: expected protobuf or json, found \"xml\""]
    );
    let e = errors("      streamLabels: {a: b}\n      url: ftp://x\n");
    assert!(
        e[0].starts_with("receivers[0].loki.url: invalid URL"),
        "{e:?}"
    );
    let e = errors(&format!("{URL}      streamLabels: [a]\n"));
    assert_eq!(
        e,
        ["receivers[0].loki.streamLabels: expected a map, found a list"]
    );
}

#[test]
fn check_config_warns_about_per_event_labels() {
    let w = warnings(&format!(
        "{URL}      streamLabels: {{job: kube, pod: '{{{{ .InvolvedObject.Name }}}}', ev: '{{{{ .Name }}}}', ns: '{{{{ .Namespace }}}}'}}\n"
    ));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().any(|m| m.starts_with(
            "receivers[0].loki.streamLabels: label ev: depends on the event's name (.Name)"
        )),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("label pod: depends on the involved object's name")),
        "{w:?}"
    );
    let w = warnings(&format!(
        "{URL}      streamLabels: {{ns: '{{{{ .Namespace }}}}'}}\n"
    ));
    assert!(w[0].contains("every label is a template"), "{w:?}");
    let w = warnings("      url: http://loki:3100\n      streamLabels: {a: b}\n");
    assert!(
        w[0].contains("Loki's push API is /loki/api/v1/push"),
        "{w:?}"
    );
}

fn occurrence(json: serde_json::Value) -> Arc<Occurrence> {
    let e: Event = serde_json::from_value(json).unwrap();
    Arc::new(Occurrence::new(e))
}

fn sink(yaml: &str) -> LokiSink {
    let _ = rustls::crypto::ring::default_provider().install_default();
    LokiSink::build(&loki(yaml), Duration::from_secs(5)).unwrap()
}

#[test]
fn an_entry_has_the_events_time_its_labels_and_metadata() {
    let s = sink(&format!(
        "{URL}      streamLabels: {{job: kube, ns: '{{{{ .Namespace }}}}', kind: '{{{{ .InvolvedObject.Kind }}}}'}}\n"
    ));
    let occ = occurrence(serde_json::json!({
        "metadata": {"name": "e1", "namespace": "shop", "uid": "u1"},
        "count": 2, "lastTimestamp": "2025-03-04T05:06:07Z",
        "involvedObject": {"kind": "Pod", "name": "web-1", "uid": "p1"}
    }));
    let mut streams = HashMap::new();
    let e = s.entry(&doc(&occ), &mut streams).unwrap();
    assert_eq!(e.stream.key, r#"{job="kube", kind="Pod", ns="shop"}"#);
    let t: jiff::Timestamp = "2025-03-04T05:06:07Z".parse().unwrap();
    assert_eq!(e.ts, Timestamp::from_jiff(t));
    assert_eq!(e.line, *occ.json());
    let md: Vec<(&str, &str)> = e.metadata.iter().map(|(k, v)| (&**k, v.as_str())).collect();
    assert_eq!(
        md,
        [
            ("occurrence_key", "u1:2"),
            ("event_name", "e1"),
            ("event_uid", "u1"),
            ("object_name", "web-1"),
            ("object_uid", "p1"),
        ]
    );
    // A cluster-scoped event: the empty namespace label is left out, as Loki would.
    let occ = occurrence(serde_json::json!({
        "metadata": {"name": "e2", "uid": "u2"}, "involvedObject": {"kind": "Node"}
    }));
    let e = s.entry(&doc(&occ), &mut streams).unwrap();
    assert_eq!(e.stream.key, r#"{job="kube", kind="Node"}"#);
    let names: Vec<&str> = e.metadata.iter().map(|(k, _)| &**k).collect();
    assert_eq!(
        names,
        ["occurrence_key", "event_name", "event_uid"],
        "empty values are left out"
    );
}

#[test]
fn an_entry_without_any_label_or_with_a_failing_label_is_a_permanent_failure() {
    let s = sink(&format!(
        "{URL}      streamLabels: {{ns: '{{{{ .Namespace }}}}'}}\n"
    ));
    let occ = occurrence(serde_json::json!({"metadata": {"uid": "u"}, "reason": "BackOff"}));
    let mut streams = HashMap::new();
    let Err(SendError::Permanent { reason: why }) = s.entry(&doc(&occ), &mut streams) else {
        panic!("expected a permanent failure")
    };
    assert!(why.contains("every stream label rendered empty"), "{why}");
    let s = sink(&format!(
        "{URL}      streamLabels: {{a: '{{{{ .Reason.Text }}}}'}}\n"
    ));
    let Err(SendError::Permanent { reason: why }) = s.entry(&doc(&occ), &mut streams) else {
        panic!("expected a permanent failure")
    };
    assert!(why.starts_with("streamLabels.a failed to render"), "{why}");
}

#[test]
fn an_event_without_any_time_is_stamped_now() {
    let s = sink(&format!("{URL}      streamLabels: {{a: b}}\n"));
    let occ = occurrence(serde_json::json!({"metadata": {"uid": "u"}}));
    let before = jiff::Timestamp::now();
    let e = s.entry(&doc(&occ), &mut HashMap::new()).unwrap();
    assert!(e.ts >= Timestamp::from_jiff(before));
}

#[test]
fn replies_are_classified_like_loki_means_them() {
    let c = |status, body: &str, ra: Option<&str>| {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(ra) = ra {
            headers.insert(reqwest::header::RETRY_AFTER, ra.parse().unwrap());
        }
        let answer = Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::from(body.to_owned()),
        };
        reply("POST u", &answer)
    };
    assert_eq!(c(204, "", None), Reply::Delivered);
    assert!(
        matches!(c(400, "entry too far behind", None), Reply::Rejected(r) if r.contains("entry too far behind"))
    );
    assert!(matches!(c(413, "too large", None), Reply::Rejected(_)));
    let Reply::Rejected(r) = c(
        400,
        "stream '{a=\"b\"}' includes structured metadata, but this feature is disallowed. Please see …",
        None,
    ) else {
        panic!()
    };
    assert!(r.contains("allow_structured_metadata"), "{r}");
    assert_eq!(
        c(429, "rate", Some("3")),
        Reply::Fail(SendError::Transient {
            reason: "POST u answered 429 Too Many Requests: rate".into(),
            retry_after: Some(Duration::from_secs(3))
        })
    );
    assert!(matches!(
        c(503, "", None),
        Reply::Fail(SendError::Transient { .. })
    ));
    assert!(matches!(
        c(408, "", None),
        Reply::Fail(SendError::Transient { .. })
    ));
    assert!(
        matches!(c(401, "no org id", None), Reply::Fail(SendError::Permanent { reason }) if reason.contains("no org id"))
    );
}
