//! `receivers[].loki`: resmoio's keys (`url`, `streamLabels`, `headers`, `layout`, `tls`) with
//! their meaning, plus ours: `structuredMetadata`, `tenant`, `username`/`password`, `format`.
//!
//! Differences from resmoio: `streamLabels` values are templates (resmoio sends them as
//! written; its issue #185), label names are checked against Loki's syntax at load, and a
//! configuration without any stream label is an error (Loki rejects every such push).

use serde_json::Value;

use super::push::Format;
use crate::config::yaml::{Ctx, Fields, Kind, Node};
use crate::event::{Event, Occurrence};
use crate::sink::Problem;
use crate::sink::http::{HeaderTemplate, check_header_value, parse_headers, parse_url};
use crate::sink::layout::Encoding;
use crate::sink::secret::Secret;
use crate::sink::tls::TlsConfig;
use crate::template::Template;

/// The structured metadata name of the occurrence key, on every entry.
pub const OCCURRENCE_KEY: &str = "occurrence_key";

/// Loki's default `max_label_names_per_series`.
const MAX_LABEL_NAMES: usize = 15;

/// Structured metadata when `structuredMetadata` is not set: per-event fields that would make
/// poor labels (one stream per event) but are handy to filter on without parsing the line.
pub const DEFAULT_METADATA: &[(&str, &str)] = &[
    ("event_name", "{{ .Name }}"),
    ("event_uid", "{{ .UID }}"),
    ("object_name", "{{ .InvolvedObject.Name }}"),
    ("object_uid", "{{ .InvolvedObject.UID }}"),
];

/// A stream label or a structured metadata field: its name and its value's template.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTemplate {
    pub name: String,
    pub template: Template,
}

impl LabelTemplate {
    /// A template without actions: the same value for every event.
    pub fn is_static(&self) -> bool {
        !self.template.source().contains("{{")
    }
}

/// `receivers[].loki`.
#[derive(Debug, Clone, PartialEq)]
pub struct LokiConfig {
    /// The push endpoint, e.g. `http://loki:3100/loki/api/v1/push`.
    pub url: String,
    /// Sorted by name.
    pub stream_labels: Vec<LabelTemplate>,
    /// Sorted by name; `occurrence_key` comes on top of these.
    pub structured_metadata: Vec<LabelTemplate>,
    pub headers: Vec<HeaderTemplate>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub format: Format,
    pub encoding: Encoding,
    pub tls: TlsConfig,
}

pub const KEYS: &[&str] = &[
    "url",
    "streamLabels",
    "structuredMetadata",
    "headers",
    "tenant",
    "username",
    "password",
    "format",
    "layout",
    "tls",
];

/// Loki's (Prometheus') label name syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name with every character Loki does not accept replaced by `_`, as a suggestion.
fn sanitized(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

pub fn parse(ctx: &mut Ctx, f: &Fields) -> Option<LokiConfig> {
    let url = parse_url(ctx, f, "url");
    let tls = TlsConfig::parse(ctx, f);
    if let (Some(_), Some(u)) = (&tls.server_name, &url)
        && let Ok(parsed) = reqwest::Url::parse(u)
        && parsed.scheme() != "https"
    {
        ctx.error(
            &format!("{}.serverName", f.path("tls")),
            f.get("tls").map_or(f.line, |n| n.line),
            format!("needs an https:// url, not {}://", parsed.scheme()),
        );
    }
    let stream_labels = label_map(ctx, f, "streamLabels");
    if stream_labels.as_ref().is_some_and(Vec::is_empty) {
        ctx.error(
            &f.path("streamLabels"),
            f.get("streamLabels").map_or(f.line, |n| n.line),
            "is required: Loki rejects a stream without labels (e.g. streamLabels: {job: kube-events})",
        );
    }
    let structured_metadata = if f.has("structuredMetadata") {
        let m = label_map(ctx, f, "structuredMetadata");
        if let Some(m) = &m
            && let Some(l) = m.iter().find(|l| l.name == OCCURRENCE_KEY)
        {
            ctx.error(
                &format!("{}.{}", f.path("structuredMetadata"), l.name),
                f.get("structuredMetadata").map_or(f.line, |n| n.line),
                format!("{OCCURRENCE_KEY} is set by the exporter on every entry ({{uid}}:{{count}}) and cannot be replaced"),
            );
        }
        m
    } else {
        Some(
            DEFAULT_METADATA
                .iter()
                .map(|(name, src)| LabelTemplate {
                    name: (*name).to_owned(),
                    template: Template::parse(src).expect("the default templates parse"),
                })
                .collect(),
        )
    };
    let headers = parse_headers(ctx, f);
    let tenant = ctx.opt_string(f, "tenant");
    if let Some(t) = &tenant {
        let line = f.get("tenant").map_or(f.line, |n| n.line);
        if let Err(why) = check_header_value(t) {
            ctx.error(&f.path("tenant"), line, why);
        }
        if headers.iter().any(|h| h.name == "x-scope-orgid") {
            ctx.error(
                &f.path("tenant"),
                line,
                "is sent as X-Scope-OrgID, which headers also sets: keep one of them",
            );
        }
    }
    let username = ctx.opt_string(f, "username");
    let password = ctx.opt_string(f, "password").map(Secret);
    if password.is_some() && username.is_none() {
        ctx.error(
            &f.path("password"),
            f.get("password").map_or(f.line, |n| n.line),
            "is set without username",
        );
    }
    if username.is_some() && headers.iter().any(|h| h.name == "authorization") {
        ctx.error(
            &f.path("username"),
            f.get("username").map_or(f.line, |n| n.line),
            "basic auth sets Authorization, which headers also sets: keep one of them",
        );
    }
    if let Some(u) = &username
        && u.contains(':')
    {
        ctx.error(
            &f.path("username"),
            f.get("username").map_or(f.line, |n| n.line),
            "cannot contain ':' (HTTP basic auth separates username and password with it)",
        );
    }
    let format = match ctx.opt_string(f, "format").as_deref() {
        None | Some("protobuf") => Some(Format::Protobuf),
        Some("json") => Some(Format::Json),
        Some(other) => {
            ctx.error(
                &f.path("format"),
                f.get("format").map_or(f.line, |n| n.line),
                format!("expected protobuf or json, found {other:?}"),
            );
            None
        }
    };
    let encoding = Encoding::parse(ctx, f, false);
    let stream_labels = stream_labels.filter(|l| !l.is_empty());
    Some(LokiConfig {
        url: url?,
        stream_labels: stream_labels?,
        structured_metadata: structured_metadata?,
        headers,
        tenant,
        username,
        password,
        format: format?,
        encoding: encoding?,
        tls,
    })
}

/// A map of label names to value templates (`streamLabels`, `structuredMetadata`): names in
/// Loki's syntax, values strings (numbers and bools as written) that parse as templates. An
/// absent key is an empty list; None when any entry is wrong.
fn label_map(ctx: &mut Ctx, f: &Fields, key: &str) -> Option<Vec<LabelTemplate>> {
    let before = ctx.errors.len();
    if let Some(n) = f.get(key)
        && !matches!(n.kind, Kind::Map(_))
    {
        ctx.error(
            &f.path(key),
            n.line,
            format!("expected a map, found {}", n.kind.describe()),
        );
        return None;
    }
    let prefix = format!("{}.", f.path(key));
    let map = ctx.string_map(f, key, |ctx, p, v: &Node| {
        let name = p.strip_prefix(&prefix).unwrap_or(p);
        if !valid_label_name(name) {
            ctx.error(
                p,
                v.line,
                format!(
                    "{name:?} is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*); e.g. {:?}",
                    sanitized(name)
                ),
            );
            return None;
        }
        if name.starts_with("__") {
            ctx.error(
                p,
                v.line,
                format!("{name:?}: names starting with __ are reserved for Loki's own use"),
            );
            return None;
        }
        let src = match &v.kind {
            Kind::Str(s) => ctx.expand(p, v.line, s)?,
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => v.kind.describe(),
            other => {
                ctx.error(
                    p,
                    v.line,
                    format!("expected a string, found {}", other.describe()),
                );
                return None;
            }
        };
        match Template::parse(&src) {
            Ok(template) => Some(LabelTemplate {
                name: name.to_owned(),
                template,
            }),
            Err(e) => {
                ctx.error(p, v.line, e.to_string());
                None
            }
        }
    });
    (ctx.errors.len() == before).then(|| map.into_values().collect())
}

/// Non-fatal problems, as (key under the kind, message; the label's name leads it): stream labels that take a value per
/// event (each value is a stream of its own in Loki: high cardinality), label sets that may
/// render empty, more labels than Loki accepts by default, and a URL without the push path.
pub fn warnings(cfg: &LokiConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let sample = sample_event();
    for l in &cfg.stream_labels {
        if let Some(w) = cardinality(&sample, &l.template) {
            out.push(("streamLabels", format!("label {}: {w}", l.name)));
        }
    }
    if !cfg.stream_labels.is_empty() && cfg.stream_labels.iter().all(|l| !l.is_static()) {
        out.push((
            "streamLabels",
            "every label is a template: an event for which all of them render empty has no labels, and Loki rejects it (add a fixed label such as job: kube-events)".to_owned(),
        ));
    }
    if cfg.stream_labels.len() > MAX_LABEL_NAMES {
        out.push((
            "streamLabels",
            format!(
                "{} labels: Loki rejects streams with more than {MAX_LABEL_NAMES} by default (limits_config.max_label_names_per_series)",
                cfg.stream_labels.len()
            ),
        ));
    }
    if let Ok(u) = reqwest::Url::parse(&cfg.url)
        && matches!(u.path(), "" | "/")
    {
        out.push((
            "url",
            format!(
                "has no path: Loki's push API is /loki/api/v1/push (requests go to {} as written)",
                cfg.url
            ),
        ));
    }
    out
}

/// Fields of an event that differ from one event (or object) to the next, as JSON pointers into
/// the exported event, with how the warning names them.
const PER_EVENT: &[(&str, &str)] = &[
    ("/metadata/name", "the event's name (.Name)"),
    ("/metadata/uid", "the event's uid (.UID)"),
    (
        "/metadata/resourceVersion",
        "the event's resourceVersion (.ResourceVersion)",
    ),
    (
        "/metadata/creationTimestamp",
        "the event's creation time (.CreationTimestamp)",
    ),
    ("/message", "the message (.Message)"),
    ("/count", "the count (.Count)"),
    ("/series/count", "the series count (.Series.Count)"),
    (
        "/firstTimestamp",
        "the first timestamp (.FirstTimestamp, .GetTimestampMs)",
    ),
    ("/lastTimestamp", "the last timestamp (.LastTimestamp)"),
    ("/eventTime", "the event time (.EventTime)"),
    (
        "/series/lastObservedTime",
        "the series' last observed time (.Series.LastObservedTime)",
    ),
    (
        "/involvedObject/name",
        "the involved object's name (.InvolvedObject.Name)",
    ),
    (
        "/involvedObject/uid",
        "the involved object's uid (.InvolvedObject.UID)",
    ),
    (
        "/involvedObject/resourceVersion",
        "the involved object's resourceVersion (.InvolvedObject.ResourceVersion)",
    ),
];

/// Whether a label's value changes with a per-event field: rendered against the sample and
/// against the sample with that one field changed. A template that fails on the sample is the
/// template lint's business, not this one's.
fn cardinality(sample: &Value, template: &Template) -> Option<String> {
    if !template.source().contains("{{") {
        return None;
    }
    let base = template.render(sample).ok()?;
    if template.render(sample).ok().is_some_and(|v| v != base) {
        return Some(
            "changes from one rendering to the next (now, rand…): each value opens a Loki stream of its own (high cardinality: slow queries, max_streams_per_user); put such values in structuredMetadata instead".to_owned(),
        );
    }
    let mut fields = Vec::new();
    for (pointer, what) in PER_EVENT {
        let mut changed = sample.clone();
        let Some(slot) = changed.pointer_mut(pointer) else {
            continue;
        };
        *slot = match slot {
            Value::Number(n) => Value::from(n.as_i64().unwrap_or(0) + 1),
            Value::String(s) if s.parse::<jiff::Timestamp>().is_ok() => {
                Value::String("2031-07-08T09:10:11.123456Z".to_owned())
            }
            Value::String(s) => Value::String(format!("{s}-other")),
            _ => continue,
        };
        if template.render(&changed).ok().is_some_and(|v| v != base) {
            fields.push(*what);
        }
    }
    let fields = match fields.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => return None,
    };
    Some(format!(
        "depends on {fields}, which change from one event to the next: each value opens a Loki stream of its own (high cardinality: slow queries, max_streams_per_user); put such fields in structuredMetadata instead"
    ))
}

/// An event with every per-event field set, as the sinks render it.
fn sample_event() -> Value {
    let event: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1.17f3a", "namespace": "shop", "uid": "0b8e-uid",
                     "resourceVersion": "1234", "creationTimestamp": "2025-01-01T00:00:00Z",
                     "labels": {"l": "v"}, "annotations": {"a": "v"}},
        "reason": "BackOff", "message": "Back-off restarting failed container",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:01Z",
        "count": 3, "type": "Warning", "eventTime": "2025-01-01T00:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2025-01-01T00:00:01.000000Z"},
        "action": "Restarting", "reportingComponent": "kubelet", "reportingInstance": "node-1",
        "clusterName": "cluster",
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u",
                           "apiVersion": "v1", "resourceVersion": "1",
                           "fieldPath": "spec.containers{web}", "labels": {"app": "web"}}
    }))
    .expect("the sample event decodes");
    Occurrence::new(event).value().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str) -> Template {
        Template::parse(src).unwrap()
    }

    #[test]
    fn label_names_follow_loki_syntax() {
        for ok in ["job", "_x", "a1_B"] {
            assert!(valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "app.kubernetes.io/name", "a-b", "é"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
        assert_eq!(
            sanitized("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(sanitized("1x"), "_1x");
    }

    #[test]
    fn per_event_fields_in_a_label_are_named() {
        let s = sample_event();
        let w = cardinality(&s, &t("{{ .Name }}")).unwrap();
        assert!(w.contains("the event's name (.Name)"), "{w}");
        let w = cardinality(&s, &t("{{ .InvolvedObject.UID }}")).unwrap();
        assert!(w.contains("involved object's uid"), "{w}");
        let w = cardinality(&s, &t("{{ .ObjectMeta.Name }}-{{ .Count }}")).unwrap();
        assert!(w.contains(".Name") && w.contains(".Count"), "{w}");
        let w = cardinality(&s, &t("{{ .GetTimestampMs }}")).unwrap();
        assert!(w.contains("first timestamp"), "{w}");
        let w = cardinality(&s, &t("{{ now }}")).unwrap();
        assert!(w.contains("changes from one rendering"), "{w}");
    }

    #[test]
    fn bounded_fields_are_not_flagged() {
        let s = sample_event();
        for src in [
            "kube-events",
            "{{ .Namespace }}",
            "{{ .InvolvedObject.Kind }}",
            "{{ .Reason }}",
            "{{ .Type | lower }}",
            "{{ .Source.Host }}",
            "{{ .ClusterName }}",
            "{{ .InvolvedObject.Labels.app }}",
        ] {
            assert_eq!(cardinality(&s, &t(src)), None, "{src}");
        }
    }
}
