//! A Go `text/template` engine (the subset operators use) with sprig functions, for `layout:` and
//! webhook headers.
//!
//! Our own implementation rather than gtmpl (passively maintained, wrong on `printf "%05d"`, `%q`
//! and `len` of maps). Three stages: `lex` (text/actions/tokens), `parse` (AST, functions resolved
//! so an unknown one is a parse error), `exec` (evaluation against `serde_json::Value`).
//!
//! The data is the event as camelCase JSON, but templates address it with Go field names
//! (`.InvolvedObject.Kind`, `.Namespace`); see [`exec::field`] for the resolution rule.
//!
//! Deliberate differences from Go: ints and floats compare numerically (`gt .Count 1.0`); a JSON
//! null behaves like a missing key (`<no value>`, and `.A.B` on a null `.A` is not an error);
//! `env`/`expandenv` do not exist; `{{define}}`/`{{template}}`/`{{block}}` are not supported.

mod exec;
mod funcs;
mod layout;
mod lex;
mod parse;
mod printf;
mod time;
mod value;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::Value;

pub use funcs::names as function_names;
pub use layout::Layout;

/// A template error: at parse time (syntax, unknown function) or at render time (bad argument
/// types, wrong arity…). `path` names the layout leaf, empty for a single template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    pub path: String,
    pub message: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.line > 0 {
            write!(f, "line {}, column {}: ", self.line, self.column)?;
        }
        f.write_str(&self.message)
    }
}

impl TemplateError {
    /// The message is cut to `MAX_MESSAGE` bytes: messages quote values (`not a time: …`), which
    /// can be as large as an event's message, and render errors are logged per occurrence.
    pub(crate) fn at(src: &str, pos: usize, msg: &str) -> TemplateError {
        const MAX_MESSAGE: usize = 512;
        let pos = pos.min(src.len());
        let before = src.get(..pos).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let message = if msg.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…", &msg[..cut])
        } else {
            msg.to_owned()
        };
        TemplateError {
            path: String::new(),
            message,
            line,
            column,
        }
    }

    /// Prefixes the path (used by `Layout` and by the config loader).
    pub fn in_path(mut self, path: &str) -> TemplateError {
        self.path = match (path.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => path.to_owned(),
            (false, false) if self.path.starts_with('[') => format!("{path}{}", self.path),
            (false, false) => format!("{path}.{}", self.path),
        };
        self
    }
}

/// A parsed template; cheap to clone and shareable between sink workers.
#[derive(Debug, Clone)]
pub struct Template {
    src: Arc<str>,
    nodes: Arc<[parse::Node]>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let items = lex::lex(src)?;
        let nodes = parse::Parser::new(src, items).parse()?;
        Ok(Template {
            src: Arc::from(src),
            nodes: Arc::from(nodes),
        })
    }

    /// Renders against `data` (the event JSON). No re-parsing; output is built in one buffer.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        // A template without actions renders to itself.
        if let [parse::Node::Text(t)] = &*self.nodes {
            return Ok(t.clone());
        }
        let mut st = exec::State {
            src: &self.src,
            vars: vec![("$", value::V::Ref(data))],
            out: String::with_capacity(self.src.len() + 32),
        };
        st.walk(&value::V::Ref(data), &self.nodes)?;
        Ok(st.out)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src
    }
}
