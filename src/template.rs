//! Templates over the exported event: the `kee-template` engine (template/, a Go `text/template`
//! with sprig functions) with the event's [`Dialect`], for `layout:` and webhook headers.
//!
//! The data is the event as camelCase JSON (`Occurrence::value`), addressed with the Go field
//! names of resmoio's event (`.InvolvedObject.Kind`, `.Namespace`). The engine maps Go names to
//! JSON keys; this module says what the JSON cannot: `ObjectMeta` is embedded (so `.Namespace`
//! is `metadata.namespace`), labels and annotations are maps (their keys are literal), two
//! fields are spelled differently, and resmoio's timestamp methods.

use jiff::Timestamp;
use kee_template::Dialect;
use serde_json::{Map, Value};

pub use kee_template::{TemplateError, function_names};

/// How templates read the exported event.
pub static EVENT: Dialect = Dialect {
    // Go field names that do not follow the lower-camel rule, and resmoio's embedded ObjectMeta.
    aliases: &[
        ("ReportingController", "reportingComponent"),
        ("ObjectMeta", "metadata"),
    ],
    embedded: &["metadata"],
    maps: &["Labels", "Annotations"],
    methods: &[
        ("GetTimestampMs", timestamp_ms),
        ("GetTimestampISO8601", timestamp_iso8601),
    ],
};

/// A template parsed with the event's dialect; cheap to clone and shareable between sink workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(kee_template::Template);

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        kee_template::Template::parse_with(src, &EVENT).map(Template)
    }

    /// Renders against the event JSON.
    pub fn render(&self, event: &Value) -> Result<String, TemplateError> {
        self.0.render(event)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        self.0.source()
    }
}

/// A `layout:` compiled with the event's dialect (see [`kee_template::Layout`]).
#[derive(Debug, Clone)]
pub struct Layout(kee_template::Layout);

impl Layout {
    /// Compiles every string leaf. The error's `path` names the leaf (`details.msg`, `tags[1]`).
    pub fn compile(layout: &Value) -> Result<Layout, TemplateError> {
        kee_template::Layout::compile_with(layout, &EVENT).map(Layout)
    }

    pub fn render(&self, event: &Value) -> Result<Value, TemplateError> {
        self.0.render(event)
    }
}

/// resmoio's `GetTimestampMs`.
fn timestamp_ms(event: &Map<String, Value>) -> Value {
    Value::from(event_timestamp(event).as_millisecond())
}

/// resmoio's `GetTimestampISO8601`: `Format("2006-01-02T15:04:05.000Z")`, written out, as it
/// runs per event.
fn timestamp_iso8601(event: &Map<String, Value>) -> Value {
    let dt = jiff::tz::Offset::UTC.to_datetime(event_timestamp(event));
    Value::String(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1_000_000
    ))
}

/// The timestamp behind both methods: `firstTimestamp`, else `eventTime`, else Go's zero time
/// (0001-01-01T00:00:00Z), as resmoio.
fn event_timestamp(event: &Map<String, Value>) -> Timestamp {
    let pick = |k: &str| {
        event
            .get(k)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok())
    };
    pick("firstTimestamp")
        .or_else(|| pick("eventTime"))
        .unwrap_or_else(go_zero_time)
}

fn go_zero_time() -> Timestamp {
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{Layout, Template};

    fn event() -> Value {
        json!({
            "metadata": {"name": "coredns.1798", "namespace": "kube-system", "uid": "4c31", "resourceVersion": "42",
                         "creationTimestamp": "2023-11-17T19:37:03Z", "labels": {"team": "dns"},
                         "annotations": {"Owner": "sre"}},
            "reason": "Killing", "message": "Stopping container coredns",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2023-11-17T19:37:03Z", "lastTimestamp": "2023-11-17T19:37:04Z",
            "count": 3, "type": "Warning", "eventTime": null,
            "reportingComponent": "kubelet", "reportingInstance": "node-1",
            "involvedObject": {"kind": "Pod", "namespace": "kube-system", "name": "coredns", "uid": "968c",
                "apiVersion": "v1", "labels": {"app": "dns", "k8s-app": "kube-dns"}, "deleted": false}
        })
    }

    fn r(src: &str) -> String {
        r_on(src, &event())
    }

    fn r_on(src: &str, data: &Value) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("parse {src:?}: {e}"))
            .render(data)
            .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
    }

    #[test]
    fn go_field_names_of_the_event() {
        assert_eq!(
            r(
                "{{ .InvolvedObject.Kind }}/{{ .InvolvedObject.APIVersion }}/{{ .InvolvedObject.UID }}"
            ),
            "Pod/v1/968c"
        );
        // ObjectMeta is embedded: its fields are the event's, and it is there by name too.
        assert_eq!(
            r(
                "{{ .Namespace }} {{ .Name }} {{ .UID }} {{ .ResourceVersion }} {{ .CreationTimestamp }}"
            ),
            "kube-system coredns.1798 4c31 42 2023-11-17T19:37:03Z"
        );
        assert_eq!(r("{{ .ObjectMeta.Name }}"), "coredns.1798");
        assert_eq!(
            r("{{ .ReportingController }} {{ .ReportingInstance }}"),
            "kubelet node-1"
        );
    }

    #[test]
    fn labels_and_annotations_are_maps() {
        assert_eq!(
            r("{{ .Labels.team }} {{ .InvolvedObject.Labels.app }}"),
            "dns dns"
        );
        assert_eq!(
            r("{{ .Annotations.Owner }} {{ .annotations.Owner }}"),
            "sre sre"
        );
        // Map keys are literal and case-sensitive, unlike field names.
        assert_eq!(r("{{ .InvolvedObject.Labels.App }}"), "<no value>");
        assert_eq!(r("{{ .Annotations.owner }}"), "<no value>");
        assert_eq!(r("{{ .Source.Component }}"), "kubelet");
    }

    #[test]
    fn timestamp_methods() {
        assert_eq!(r("{{ .GetTimestampMs }}"), "1700249823000");
        assert_eq!(r("{{ .GetTimestampISO8601 }}"), "2023-11-17T19:37:03.000Z");
        // No firstTimestamp: eventTime (MicroTime); neither: Go's zero time.
        let mut e = event();
        e["firstTimestamp"] = Value::Null;
        e["eventTime"] = json!("2024-02-29T10:11:12.345678Z");
        assert_eq!(
            r_on("{{ .GetTimestampISO8601 }}", &e),
            "2024-02-29T10:11:12.345Z"
        );
        e["eventTime"] = Value::Null;
        assert_eq!(
            r_on("{{ .GetTimestampISO8601 }} {{ .GetTimestampMs }}", &e),
            "0001-01-01T00:00:00.000Z -62135596800000"
        );
    }

    #[test]
    fn layout_uses_the_event_dialect() {
        let l = Layout::compile(
            &json!({"ns": "{{ .Namespace }}", "at": "{{ .GetTimestampMs }}", "n": 1}),
        )
        .unwrap();
        assert_eq!(
            l.render(&event()).unwrap(),
            json!({"ns": "kube-system", "at": "1700249823000", "n": 1})
        );
    }
}
