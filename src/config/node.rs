//! A generic YAML tree that remembers the line of every value.
//!
//! We do not deserialize straight into the typed config: serde stops at the first error, and its
//! errors do not carry a YAML path. Instead the document becomes this tree (via serde-saphyr with
//! `Spanned` for line numbers), and `schema.rs` walks it by hand, collecting every error.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order; non-string scalar keys are stringified.
    Map(Vec<Entry>),
}

/// One key of a map and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    /// The key's own line, for errors about the key: a block map or list under it starts on the
    /// next line, which is the value's line.
    pub line: u64,
    pub value: Node,
}

impl Kind {
    /// How a value is described in a type error: scalars verbatim, collections by kind.
    pub fn describe(&self) -> String {
        match self {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a map".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Kind> = Spanned::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line(),
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(i64::try_from(v)
            .map(Kind::Int)
            .unwrap_or(Kind::Float(v as f64)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(i64::try_from(v)
            .map(Kind::Int)
            .unwrap_or(Kind::Float(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Kind, E> {
        Ok(i64::try_from(v)
            .map(Kind::Int)
            .unwrap_or(Kind::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Kind::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut out = Vec::new();
        // Keys are read as strings: the scalar exactly as written (`n:` stays "n", `1:` is "1").
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            out.push(Entry {
                line: key.referenced.line(),
                key: key.value,
                value,
            });
        }
        Ok(Kind::Map(out))
    }
}

/// Parses YAML text into a tree. An empty document is an empty map.
pub(crate) fn parse_yaml(text: &str) -> Result<Node, serde_saphyr::Error> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Node {
            line: 1,
            kind: Kind::Map(Vec::new()),
        });
    }
    // YAML 1.2 booleans only: `no`, `on`, `y` stay strings (a reason or label value `No` must
    // not become `false`), as in Go's YAML libraries.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(text, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_with_lines() {
        let n = parse_yaml("a: 1\nb:\n  - x\n  - {c: true}\nd: 1.5\ne:\n").unwrap();
        let Kind::Map(m) = n.kind else { panic!() };
        assert_eq!(m[0].key, "a");
        assert_eq!(m[0].value.kind, Kind::Int(1));
        assert_eq!(m[0].value.line, 1);
        let Kind::Seq(s) = &m[1].value.kind else {
            panic!()
        };
        assert_eq!(s[0].line, 3);
        assert_eq!(s[0].kind, Kind::Str("x".into()));
        assert_eq!(m[2].value.kind, Kind::Float(1.5));
        assert_eq!(m[3].value.kind, Kind::Null);
        let n = parse_yaml("n: no\ny: on\n1: x\n").unwrap();
        let Kind::Map(m) = n.kind else { panic!() };
        assert_eq!(
            m[0],
            Entry {
                key: "n".to_owned(),
                line: 1,
                value: Node {
                    line: 1,
                    kind: Kind::Str("no".into())
                }
            }
        );
        assert_eq!(m[1].key, "y");
        assert_eq!(m[1].value.kind, Kind::Str("on".into()));
        assert_eq!(m[2].key, "1");
    }

    #[test]
    fn a_key_has_its_own_line_and_a_block_value_the_next() {
        let n = parse_yaml("a:\n  b:\n    - 1\n  c: {d: 2}\n").unwrap();
        let Kind::Map(m) = n.kind else { panic!() };
        assert_eq!((m[0].line, m[0].value.line), (1, 2));
        let Kind::Map(inner) = &m[0].value.kind else {
            panic!()
        };
        assert_eq!((inner[0].line, inner[0].value.line), (2, 3));
        assert_eq!((inner[1].line, inner[1].value.line), (4, 4));
    }
}

#[cfg(test)]
mod deep_tests {
    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(super::parse_yaml(&deep).is_err());
    }
}
