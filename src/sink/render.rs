//! Rendering what a receiver builds from templates: resmoio's templated keys (parsed at load,
//! rendered per occurrence), the text limits of the services they go to, and the one-line form
//! of a text for digests and reasons. Shared by the notification receivers (`slack`, `teams`,
//! `opsgenie`) and the AWS kinds with templated fields (`eventbridge`, `opscenter`).
//!
//! A template that fails to parse is a load error; one that fails on check-config's sample event
//! is a warning there (the lint of `ReceiverKind::templates`); one that still fails on a real
//! event is rendered as its fallback and logged, once per key at warn level, so an occurrence is
//! never dropped for it.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use crate::config::yaml::{Ctx, Fields, Kind, Node};
use crate::template::Template;

/// The text of an occurrence when `message` is not set: what happened to which object.
pub const DEFAULT_MESSAGE: &str = "{{ .Type }} {{ .Reason }} {{ .InvolvedObject.Kind }} {{ with .InvolvedObject.Namespace }}{{ . }}/{{ end }}{{ .InvolvedObject.Name }}: {{ .Message }}";

/// A string key holding a template (`message: "{{ .Message }}"`); None when absent, null or
/// empty. Parse errors are reported at the key's path.
pub fn opt_template(ctx: &mut Ctx, f: &Fields, key: &str) -> Option<Template> {
    let src = ctx.opt_string(f, key)?;
    parse_template(
        ctx,
        &f.path(key),
        f.get(key).map_or(f.line, |n| n.line),
        &src,
    )
}

/// A template key the service cannot do without: absent or empty is an error saying `why`.
pub fn required_template(ctx: &mut Ctx, f: &Fields, key: &str, why: &str) -> Option<Template> {
    let before = ctx.errors.len();
    let t = opt_template(ctx, f, key);
    if t.is_none() && ctx.errors.len() == before {
        ctx.error(
            &f.path(key),
            f.get(key).map_or(f.line, |n| n.line),
            format!("is required ({why})"),
        );
    }
    t
}

pub fn parse_template(ctx: &mut Ctx, path: &str, line: u64, src: &str) -> Option<Template> {
    match Template::parse(src) {
        Ok(t) => Some(t),
        Err(e) => {
            ctx.error(path, line, e.to_string());
            None
        }
    }
}

/// A scalar list item or map value as template source: strings (with `${VAR}`), numbers and
/// bools as written; None (with an error) for anything else, or a null.
pub fn scalar_source(ctx: &mut Ctx, path: &str, v: &Node) -> Option<String> {
    match &v.kind {
        Kind::Str(s) => ctx.expand(path, v.line, s),
        Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => Some(v.kind.describe()),
        other => {
            ctx.error(
                path,
                v.line,
                format!("expected a string, found {}", other.describe()),
            );
            None
        }
    }
}

/// A map of names to templates (`fields`, `details`), in the order of the names.
pub fn template_map(ctx: &mut Ctx, f: &Fields, key: &str) -> Vec<(String, Template)> {
    let prefix = format!("{}.", f.path(key));
    ctx.string_map(f, key, |ctx, p, v| {
        let src = scalar_source(ctx, p, v)?;
        let name = p.strip_prefix(&prefix).unwrap_or(p).to_owned();
        parse_template(ctx, p, v.line, &src).map(|t| (name, t))
    })
    .into_values()
    .collect()
}

/// A list of templates (`tags`).
pub fn template_list(ctx: &mut Ctx, f: &Fields, key: &str) -> Vec<Template> {
    let items = ctx.seq(f, key);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path(key));
        if let Some(src) = scalar_source(ctx, &path, item)
            && let Some(t) = parse_template(ctx, &path, item.line, &src)
        {
            out.push(t);
        }
    }
    out
}

/// The sources of the templates that are set, by key, for `ReceiverKind::templates` (the lint
/// of check-config).
pub fn named<'a>(
    templates: impl IntoIterator<Item = (&'a str, Option<&'a Template>)>,
) -> impl Iterator<Item = (String, &'a str)> {
    templates
        .into_iter()
        .filter_map(|(key, t)| Some((key.to_owned(), t?.source())))
}

/// A map of templates (`fields`, `details`), by key `{key}.{name}`.
pub fn keyed<'a>(
    key: &'a str,
    map: &'a [(String, Template)],
) -> impl Iterator<Item = (String, &'a str)> {
    map.iter()
        .map(move |(name, t)| (format!("{key}.{name}"), t.source()))
}

/// A list of templates (`tags`), by key `{key}[{i}]`.
pub fn listed<'a>(key: &'a str, list: &'a [Template]) -> impl Iterator<Item = (String, &'a str)> {
    list.iter()
        .enumerate()
        .map(move |(i, t)| (format!("{key}[{i}]"), t.source()))
}

/// At most `max` characters of `s`, the last of them `…` when it was cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if max == 0 {
        return Cow::Borrowed("");
    }
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) => {
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &s[..end]))
        }
    }
}

/// Line breaks and other control characters as spaces, runs of them as one: a digest line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_control() || c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

/// Renders templates for one receiver, remembering which keys already failed so each is logged
/// at warn once (then at debug): a template that fails for one event usually fails for many.
/// A lane's clone remembers on its own.
#[derive(Clone)]
pub struct Renderer {
    receiver: String,
    failed: HashSet<String>,
}

impl Renderer {
    pub fn new(receiver: &str) -> Self {
        Self {
            receiver: receiver.to_owned(),
            failed: HashSet::new(),
        }
    }

    /// `template` rendered for `data`; on failure `fallback`, logged.
    pub fn render(
        &mut self,
        key: &str,
        template: &Template,
        data: &Value,
        occurrence: &str,
        fallback: impl FnOnce() -> String,
    ) -> String {
        match template.render(data) {
            Ok(s) => s,
            Err(e) => {
                if self.failed.len() < 256 && self.failed.insert(key.to_owned()) {
                    tracing::warn!(receiver = %self.receiver, key, occurrence, error = %e, "template failed to render; sent its fallback instead (further failures of this key are logged at debug)");
                } else {
                    tracing::debug!(receiver = %self.receiver, key, occurrence, error = %e, "template failed to render; sent its fallback instead");
                }
                fallback()
            }
        }
    }

    /// An optional template: None when unset or rendered empty; its failure renders empty.
    pub fn render_opt(
        &mut self,
        key: &str,
        template: Option<&Template>,
        data: &Value,
        occurrence: &str,
    ) -> Option<String> {
        let t = template?;
        Some(self.render(key, t, data, occurrence, String::new)).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 4), "ééé…");
        assert_eq!(truncate("x", 0), "");
        assert_eq!(truncate("", 5), "");
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line(" a\nb\r\n\tc  d "), "a b c d");
    }
}
