//! A compiled `layout:` tree.
//!
//! Differs from resmoio on purpose: resmoio turns every non-string leaf into `null` and renders
//! only strings, so `count: 1` came out as `null`. Here string leaves are templates rendering to
//! strings, while numbers, bools and nulls stay as written; maps and lists recurse.

use serde_json::{Map, Value};

use super::{Dialect, GO, Template, TemplateError};

#[derive(Debug, Clone)]
enum Node {
    Template(Template),
    Static(Value),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

/// A compiled layout; cheap to clone (templates are shared).
#[derive(Debug, Clone)]
pub struct Layout {
    root: Node,
}

impl Layout {
    /// Compiles every string leaf with Go's field-name rules alone ([`Dialect::GO`]). The
    /// error's `path` names the leaf (`details.msg`, `tags[1]`).
    pub fn compile(layout: &Value) -> Result<Layout, TemplateError> {
        Layout::compile_with(layout, &GO)
    }

    /// Compiles every string leaf with the data's [`Dialect`].
    pub fn compile_with(
        layout: &Value,
        dialect: &'static Dialect,
    ) -> Result<Layout, TemplateError> {
        Ok(Layout {
            root: compile(layout, "", dialect)?,
        })
    }

    pub fn render(&self, data: &Value) -> Result<Value, TemplateError> {
        render(&self.root, data, "")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn compile(v: &Value, path: &str, dialect: &'static Dialect) -> Result<Node, TemplateError> {
    Ok(match v {
        Value::String(s) if s.contains("{{") => {
            Node::Template(Template::parse_with(s, dialect).map_err(|e| e.in_path(path))?)
        }
        Value::Object(m) => Node::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), compile(v, &join(path, k), dialect)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        Value::Array(a) => Node::List(
            a.iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{path}[{i}]"), dialect))
                .collect::<Result<_, _>>()?,
        ),
        other => Node::Static(other.clone()),
    })
}

fn render(n: &Node, data: &Value, path: &str) -> Result<Value, TemplateError> {
    Ok(match n {
        Node::Template(t) => Value::String(t.render(data).map_err(|e| e.in_path(path))?),
        Node::Static(v) => v.clone(),
        Node::Map(entries) => {
            let mut m = Map::new();
            for (k, child) in entries {
                // Paths are only built on the error path, to keep rendering cheap.
                let v = render(child, data, "").map_err(|e| e.in_path(&join(path, k)))?;
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
        Node::List(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, c)| render(c, data, "").map_err(|e| e.in_path(&format!("{path}[{i}]"))))
                .collect::<Result<_, _>>()?,
        ),
    })
}
