//! Which index a document goes to: `index` (a fixed name) or `indexFormat`, where `{…}` holds a
//! Go time layout formatted with the **event's** time (resmoio formats the send time, so a replay
//! after midnight lands in another index and duplicates) and `{{ … }}` is a Go template over the
//! event (resmoio's OpenSearch form: `kube-events-{{ .InvolvedObject.Namespace }}-{2006-01-02}`).

use jiff::Timestamp;
use serde_json::Value;

use super::bulk::check_index_name;
use super::golayout::GoLayout;
use crate::template::Template;

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Template(Template),
    Time(GoLayout),
}

/// A parsed `index`/`indexFormat`.
#[derive(Debug, Clone)]
pub struct IndexPattern {
    source: String,
    parts: Vec<Part>,
}

impl PartialEq for IndexPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl IndexPattern {
    /// A fixed index name, checked against the server's naming rules.
    pub fn fixed(name: &str) -> Result<IndexPattern, String> {
        check_index_name(name)?;
        Ok(IndexPattern {
            source: name.to_owned(),
            parts: vec![Part::Literal(name.to_owned())],
        })
    }

    /// `indexFormat`. Every `{…}` must close; templates must parse; what the pattern renders
    /// besides template output (literal text and the formatted time) must be a valid name.
    pub fn format(src: &str) -> Result<IndexPattern, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = src;
        while let Some(i) = rest.find('{') {
            if rest[i..].starts_with("{{") {
                let end = rest[i..]
                    .find("}}")
                    .ok_or_else(|| format!("{src:?}: a template action {{{{ is not closed"))?;
                text.push_str(&rest[..i + end + 2]);
                rest = &rest[i + end + 2..];
                continue;
            }
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| format!("{src:?}: a time layout {{ is not closed"))?;
            text.push_str(&rest[..i]);
            push_text(&mut parts, std::mem::take(&mut text))?;
            parts.push(Part::Time(GoLayout::parse(&rest[i + 1..i + end])));
            rest = &rest[i + end + 1..];
        }
        text.push_str(rest);
        push_text(&mut parts, text)?;
        let pattern = IndexPattern {
            source: src.to_owned(),
            parts,
        };
        pattern.check_static()?;
        Ok(pattern)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The templates of the pattern, for check-config's lint.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.parts.iter().filter_map(|p| match p {
            Part::Template(t) => Some(t),
            _ => None,
        })
    }

    /// True when every document goes to the same index.
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The index of one event: its JSON (for templates; asked for only when the pattern has
    /// one) and its time (for layouts).
    pub fn render<'v>(
        &self,
        event: impl Fn() -> &'v Value,
        at: Timestamp,
    ) -> Result<String, String> {
        if let [Part::Literal(name)] = self.parts.as_slice() {
            // A fixed name, checked at load.
            return Ok(name.clone());
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Time(l) => out.push_str(&l.format(at)),
                Part::Template(t) => out.push_str(
                    &t.render(event())
                        .map_err(|e| format!("indexFormat {:?}: {e}", self.source))?,
                ),
            }
        }
        check_index_name(&out).map_err(|why| format!("indexFormat {:?}: {why}", self.source))?;
        Ok(out)
    }

    /// Renders with a sample time and `x` for each template: a literal part that can never make a
    /// valid name (upper case, a space, `{Jan}`) fails at load instead of on every document.
    fn check_static(&self) -> Result<(), String> {
        let at: Timestamp = "2006-01-02T15:04:05Z".parse().expect("a valid timestamp");
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Time(l) => out.push_str(&l.format(at)),
                Part::Template(_) => out.push('x'),
            }
        }
        check_index_name(&out).map_err(|why| {
            if self.is_fixed() {
                why
            } else {
                format!("{why} (rendered with a sample time as {out:?})")
            }
        })
    }
}

fn push_text(parts: &mut Vec<Part>, text: String) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if text.contains("{{") {
        let t = Template::parse(&text).map_err(|e| e.to_string())?;
        parts.push(Part::Template(t));
    } else {
        parts.push(Part::Literal(text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        serde_json::json!({"metadata": {"namespace": "kube-system"}, "type": "Warning",
            "involvedObject": {"namespace": "web", "kind": "Pod"}})
    }

    fn at() -> Timestamp {
        "2024-02-29T23:59:59.5Z".parse().unwrap()
    }

    #[test]
    fn a_time_layout_is_formatted_with_the_event_time() {
        let ev = event();
        let p = IndexPattern::format("kube-events-{2006-01-02}").unwrap();
        assert_eq!(p.render(|| &ev, at()).unwrap(), "kube-events-2024-02-29");
        let two = IndexPattern::format("ev-{2006}.{01}-{02}").unwrap();
        assert_eq!(two.render(|| &ev, at()).unwrap(), "ev-2024.02-29");
        assert!(!p.is_fixed());
    }

    #[test]
    fn templates_and_layouts_mix_as_in_resmoio_opensearch() {
        let ev = event();
        let p = IndexPattern::format("kube-events-{{ .InvolvedObject.Namespace }}-{2006-01-02}")
            .unwrap();
        assert_eq!(
            p.render(|| &ev, at()).unwrap(),
            "kube-events-web-2024-02-29"
        );
        assert_eq!(p.templates().count(), 1);
        let q = IndexPattern::format("{{ .Namespace }}-{2006.01.02}-{{ .Type | lower }}").unwrap();
        assert_eq!(
            q.render(|| &ev, at()).unwrap(),
            "kube-system-2024.02.29-warning"
        );
    }

    #[test]
    fn names_that_cannot_be_valid_fail_at_load_and_rendered_ones_when_sent() {
        let ev = event();
        assert!(
            IndexPattern::fixed("Kube")
                .unwrap_err()
                .contains("lowercase")
        );
        let e = IndexPattern::format("events-{Jan}").unwrap_err();
        assert!(e.contains("lowercase") && e.contains("events-Jan"), "{e}");
        assert!(
            IndexPattern::format("events-{2006")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(IndexPattern::format("events-{{ .Type").is_err());
        // Upper case out of a template is known only per event.
        let p = IndexPattern::format("ev-{{ .Type }}").unwrap();
        let e = p.render(|| &ev, at()).unwrap_err();
        assert!(e.contains("ev-Warning") && e.contains("lowercase"), "{e}");
    }
}
