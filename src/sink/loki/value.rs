//! How a stream label or structured metadata value is computed per occurrence.
//!
//! A template renders against the event's JSON tree, which is built for the occurrence on first
//! use and costs more than the rest of the push (measured: about 40% of the Loki receiver's
//! CPU). The usual values are a single field (`{{ .Namespace }}`, `{{ .InvolvedObject.Kind }}`,
//! the default metadata's `{{ .Name }}`): those are read from the typed event instead, with the
//! same result (a test renders both ways). Anything else is a template.

use crate::event::Event;
use crate::template::Template;

/// A string field of the event.
type Field = fn(&Event) -> Option<&str>;

/// The fields read directly, by the template text that names them (Go field names, as resmoio's
/// templates spell them).
const FIELDS: &[(&str, Field)] = &[
    (".Namespace", |e| e.metadata.namespace.as_deref()),
    (".ObjectMeta.Namespace", |e| e.metadata.namespace.as_deref()),
    (".Name", |e| e.metadata.name.as_deref()),
    (".ObjectMeta.Name", |e| e.metadata.name.as_deref()),
    (".UID", |e| e.metadata.uid.as_deref()),
    (".Reason", |e| e.reason.as_deref()),
    (".Type", |e| e.type_.as_deref()),
    (".Action", |e| e.action.as_deref()),
    (".ReportingController", |e| e.reporting_component.as_deref()),
    (".ReportingInstance", |e| e.reporting_instance.as_deref()),
    (".ClusterName", |e| Some(e.cluster_name.as_str())),
    (".Source.Component", |e| {
        e.source.as_ref().and_then(|s| s.component.as_deref())
    }),
    (".Source.Host", |e| {
        e.source.as_ref().and_then(|s| s.host.as_deref())
    }),
    (".InvolvedObject.Kind", |e| {
        e.involved_object.kind.as_deref()
    }),
    (".InvolvedObject.Name", |e| {
        e.involved_object.name.as_deref()
    }),
    (".InvolvedObject.Namespace", |e| {
        e.involved_object.namespace.as_deref()
    }),
    (".InvolvedObject.UID", |e| e.involved_object.uid.as_deref()),
    (".InvolvedObject.APIVersion", |e| {
        e.involved_object.api_version.as_deref()
    }),
];

/// A label or metadata value.
#[derive(Clone)]
pub enum ValueSource {
    /// No template action: the same for every event.
    Fixed(String),
    /// `{{ .Field }}` of a string field.
    Field(Field),
    Template(Template),
}

impl ValueSource {
    pub fn new(template: &Template) -> Self {
        let src = template.source();
        if !src.contains("{{") {
            return ValueSource::Fixed(src.to_owned());
        }
        let inner = src
            .trim()
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .map(str::trim);
        match inner.and_then(|i| FIELDS.iter().find(|(name, _)| *name == i)) {
            Some((_, field)) => ValueSource::Field(*field),
            None => ValueSource::Template(template.clone()),
        }
    }

    /// The value for `event` (`occ_value` gives its JSON tree, built only when a template needs
    /// it). Empty when the field is absent: Go's `<no value>` is no value.
    pub fn render<'v>(
        &self,
        event: &Event,
        occ_value: impl FnOnce() -> &'v serde_json::Value,
    ) -> Result<String, crate::template::TemplateError> {
        Ok(match self {
            ValueSource::Fixed(s) => s.clone(),
            ValueSource::Field(f) => f(event).unwrap_or("").to_owned(),
            ValueSource::Template(t) => {
                let v = t.render(occ_value())?;
                if v == "<no value>" { String::new() } else { v }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Occurrence;

    fn events() -> Vec<Occurrence> {
        [
            serde_json::json!({
                "metadata": {"name": "web-1.17f3a", "namespace": "shop", "uid": "0b8e"},
                "reason": "BackOff", "message": "m", "type": "Warning", "action": "Restarting",
                "source": {"component": "kubelet", "host": "node-1"},
                "reportingComponent": "kubelet", "reportingInstance": "node-1",
                "clusterName": "c1",
                "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1",
                                   "uid": "u", "apiVersion": "v1"}
            }),
            // Cluster-scoped, nothing optional set.
            serde_json::json!({"metadata": {}, "involvedObject": {"kind": "Node"}}),
            serde_json::json!({"metadata": {"name": ""}, "source": {}, "reason": ""}),
        ]
        .into_iter()
        .map(|j| Occurrence::new(serde_json::from_value::<Event>(j).unwrap()))
        .collect()
    }

    #[test]
    fn fields_read_directly_equal_the_rendered_template() {
        for (name, _) in FIELDS {
            for src in [format!("{{{{ {name} }}}}"), format!("{{{{{name}}}}}")] {
                let t = Template::parse(&src).unwrap();
                let v = ValueSource::new(&t);
                assert!(matches!(v, ValueSource::Field(_)), "{src} is read directly");
                for occ in events() {
                    let rendered = t.render(occ.value()).unwrap();
                    let want = if rendered == "<no value>" {
                        String::new()
                    } else {
                        rendered
                    };
                    assert_eq!(
                        v.render(&occ.event, || occ.value()).unwrap(),
                        want,
                        "{src} on {:?}",
                        occ.event.metadata.name
                    );
                }
            }
        }
    }

    #[test]
    fn other_templates_are_rendered() {
        for src in [
            "{{ .Namespace | upper }}",
            "x-{{ .Name }}",
            "{{ .InvolvedObject.Labels.app }}",
        ] {
            let t = Template::parse(src).unwrap();
            assert!(
                matches!(ValueSource::new(&t), ValueSource::Template(_)),
                "{src}"
            );
        }
        let t = Template::parse("kube").unwrap();
        assert!(matches!(ValueSource::new(&t), ValueSource::Fixed(ref s) if s == "kube"));
        let occ = &events()[1];
        let t = Template::parse("{{ .InvolvedObject.Labels.app }}").unwrap();
        assert_eq!(
            ValueSource::new(&t)
                .render(&occ.event, || occ.value())
                .unwrap(),
            "",
            "<no value> is no value"
        );
    }
}
