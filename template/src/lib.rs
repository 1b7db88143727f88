//! A Go `text/template` engine (the subset operators use) with the common sprig functions,
//! evaluated against `serde_json::Value` data. kube-event-exporter renders `layout:` and webhook
//! headers with it; nothing in here knows about Kubernetes events.
//!
//! Our own implementation rather than gtmpl (passively maintained, wrong on `printf "%05d"`, `%q`
//! and `len` of maps). Three stages: `lex` (text/actions/tokens), `parse` (AST, functions and
//! field names resolved, so an unknown function is a parse error), `exec` (evaluation, borrowing
//! from the data wherever it can).
//!
//! # Field names
//!
//! The data is JSON as Go's `encoding/json` writes a Go struct (camelCase keys), but templates
//! address it with Go field names: `.InvolvedObject.Kind` reads the key `involvedObject`, then
//! `kind` (`APIVersion` → `apiVersion`, `UID` → `uid`); a key spelled exactly as written wins.
//! What the JSON cannot say about the Go type is the caller's [`Dialect`], given at parse time
//! ([`Template::parse_with`], [`Layout::compile_with`]): field names whose key does not follow
//! the rule, embedded structs whose fields are promoted, which fields are maps (keys after them
//! are literal), and methods. [`Template::parse`] uses [`Dialect::GO`], which has none of these.
//!
//! # Deliberate differences from Go
//!
//! Ints and floats compare numerically (`gt .Count 1.0`); a JSON null behaves like a missing key
//! (`<no value>`, and `.A.B` on a null `.A` is not an error); `env`/`expandenv` do not exist (a
//! template must not read the process's secrets); `{{define}}`/`{{template}}`/`{{block}}` are not
//! supported. Output and every value a template builds are capped (an error, not an exhausted
//! memory), and error messages are cut to a bounded length.

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

use serde_json::{Map, Value};

pub use funcs::names as function_names;
pub use layout::Layout;

/// A method of the data's Go type (`.GetTimestampMs`): computed from the object it is called
/// on, when that object has no field of the name.
pub type Method = fn(&Map<String, Value>) -> Value;

/// What the data's Go types say that their JSON does not: given at parse time and resolved
/// into each field name there, so rendering does not search these tables. A caller's dialect
/// is usually a `static`.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Go field names whose JSON key does not follow the lower-camel rule: `(go, json)`, tried
    /// after every other spelling (and only when the object has that key).
    pub aliases: &'static [(&'static str, &'static str)],
    /// Keys of embedded structs (Go's anonymous fields): their fields are promoted, so with
    /// `"metadata"`, `.Namespace` reads `metadata.namespace` when the object has no `namespace`.
    pub embedded: &'static [&'static str],
    /// Go names of map fields (their JSON spelling counts too): names after one are literal,
    /// case-sensitive map keys, as Go indexes a map (`.Labels.app`, not `.Labels.App`).
    pub maps: &'static [&'static str],
    /// Methods by Go name, called when the object has no field of the name.
    pub methods: &'static [(&'static str, Method)],
}

impl Dialect {
    /// Go's rules alone: no aliases, embedded structs, map fields or methods.
    pub const GO: Dialect = Dialect {
        aliases: &[],
        embedded: &[],
        maps: &[],
        methods: &[],
    };
}

/// [`Dialect::GO`] at one address, so that templates parsed with it compare equal.
static GO: Dialect = Dialect::GO;

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

/// A parsed template; cheap to clone and shareable between threads.
#[derive(Debug, Clone)]
pub struct Template {
    src: Arc<str>,
    nodes: Arc<[parse::Node]>,
    dialect: &'static Dialect,
}

impl Template {
    /// Parses with Go's field-name rules alone ([`Dialect::GO`]).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        Template::parse_with(src, &GO)
    }

    /// Parses with the data's [`Dialect`].
    pub fn parse_with(src: &str, dialect: &'static Dialect) -> Result<Template, TemplateError> {
        let items = lex::lex(src)?;
        let nodes = parse::Parser::new(src, dialect, items).parse()?;
        Ok(Template {
            src: Arc::from(src),
            nodes: Arc::from(nodes),
            dialect,
        })
    }

    /// Renders against `data`. No re-parsing; output is built in one buffer.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        // A template without actions renders to itself.
        if let [parse::Node::Text(t)] = &*self.nodes {
            return Ok(t.clone());
        }
        let mut st = exec::State {
            src: &self.src,
            dialect: self.dialect,
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

/// Same source and same dialect (the same `static`).
impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src && std::ptr::eq(self.dialect, other.dialect)
    }
}
