//! `layout:` and `deDot:`, the keys every kind that writes documents shares: parsed from YAML with
//! every template error at its leaf's path and line, and compiled once into an [`Encoder`].

use serde_json::Value;

use super::Encoder;
use crate::config::yaml::{Ctx, Fields, Kind, Node, to_json};
use crate::template::Template;

/// How occurrences become documents: the layout as written (for check-config's lint and for
/// comparing configs) and its compiled encoder.
#[derive(Clone)]
pub struct Encoding {
    pub layout: Option<Value>,
    pub de_dot: bool,
    encoder: Encoder,
}

impl Encoding {
    /// The full event (resmoio's default shape), deDotted when asked.
    pub fn event(de_dot: bool) -> Self {
        Self {
            layout: None,
            de_dot,
            encoder: if de_dot {
                Encoder::DeDotted
            } else {
                Encoder::Event
            },
        }
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// `layout` (when set) and `deDot` (when `de_dot_key` is, i.e. the kind accepts it) of `f`.
    pub fn parse(ctx: &mut Ctx, f: &Fields, de_dot_key: bool) -> Option<Self> {
        Self::parse_key(ctx, f, "layout", de_dot_key)
    }

    /// As [`Encoding::parse`], with the layout under `key` (eventbridge's `details`).
    pub fn parse_key(ctx: &mut Ctx, f: &Fields, key: &str, de_dot_key: bool) -> Option<Self> {
        let de_dot = de_dot_key && ctx.bool(f, "deDot").unwrap_or(false);
        let Some(n) = f.get(key) else {
            return Some(Self::event(de_dot));
        };
        let path = f.path(key);
        if !matches!(n.kind, Kind::Map(_)) {
            ctx.error(
                &path,
                n.line,
                format!("expected a map, found {}", n.kind.describe()),
            );
            return None;
        }
        let value = to_json(ctx, n, &path);
        // Every leaf on its own, so each bad template is reported, not only the first.
        let before = ctx.errors.len();
        check_leaves(ctx, n, &path, &value, "");
        if ctx.errors.len() != before {
            return None;
        }
        match Encoder::new(Some(&value), de_dot) {
            Ok(encoder) => Some(Self {
                layout: Some(value),
                de_dot,
                encoder,
            }),
            Err(e) => {
                ctx.error(&path, n.line, e.to_string());
                None
            }
        }
    }
}

impl Default for Encoding {
    fn default() -> Self {
        Self::event(false)
    }
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("layout", &self.layout)
            .field("de_dot", &self.de_dot)
            .finish()
    }
}

impl PartialEq for Encoding {
    fn eq(&self, other: &Self) -> bool {
        self.layout == other.layout && self.de_dot == other.de_dot
    }
}

/// Parses every string leaf of a layout that holds a template (`{{`, as `Layout::compile`),
/// reporting each error at the leaf's path and line. `rel` is the leaf's path inside the layout.
fn check_leaves(ctx: &mut Ctx, layout: &Node, path: &str, v: &Value, rel: &str) {
    match v {
        Value::String(s) if s.contains("{{") => {
            if let Err(e) = Template::parse(s) {
                let leaf = match rel {
                    "" => path.to_owned(),
                    r if r.starts_with('[') => format!("{path}{r}"),
                    r => format!("{path}.{r}"),
                };
                let line = leaf_line(layout, rel).unwrap_or(layout.line);
                ctx.error(&leaf, line, e.to_string());
            }
        }
        Value::Object(m) => {
            for (k, child) in m {
                let rel = if rel.is_empty() {
                    k.clone()
                } else {
                    format!("{rel}.{k}")
                };
                check_leaves(ctx, layout, path, child, &rel);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_leaves(ctx, layout, path, child, &format!("{rel}[{i}]"));
            }
        }
        _ => {}
    }
}

/// The line of a layout leaf given its path (`a.b[1]`), for error messages.
fn leaf_line(mut n: &Node, path: &str) -> Option<u64> {
    for part in path.split('.') {
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (
                k,
                rest.trim_end_matches(']')
                    .split("][")
                    .filter_map(|i| i.parse::<usize>().ok())
                    .collect(),
            ),
            None => (part, Vec::new()),
        };
        if !key.is_empty() {
            let Kind::Map(m) = &n.kind else { return None };
            n = &m.iter().find(|e| e.key == key)?.value;
        }
        for i in idx {
            let Kind::Seq(s) = &n.kind else { return None };
            n = s.get(i)?;
        }
    }
    Some(n.line)
}
