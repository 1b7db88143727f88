//! The hand-written schema: walks the YAML tree, fills the typed `Config` with defaults, and
//! collects every error with its path instead of stopping at the first one.

use std::collections::BTreeMap;
use std::time::Duration;

use super::env;
use super::error::ConfigError;
use super::node::{Entry, Kind, Node};
use super::{Regex, duration};

/// Walk state: collected errors and the environment used for `${VAR}`.
pub struct Ctx<'e> {
    pub errors: Vec<ConfigError>,
    /// What loads but deserves a word (`path: message`), shown by check-config and at start.
    pub warnings: Vec<String>,
    pub env: &'e dyn Fn(&str) -> Option<String>,
}

/// The entries of one YAML map, whose keys have already been checked against the schema.
pub struct Fields<'n> {
    pub path: String,
    pub line: u64,
    entries: &'n [Entry],
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'n> Fields<'n> {
    /// The value of `key`; an explicit `null` (`key:` with nothing after it) counts as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
            .filter(|v| v.kind != Kind::Null)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Every key, including those with a null value (`stdout:` alone selects the kind).
    pub fn keys(&self) -> impl Iterator<Item = &'n str> {
        self.entries.iter().map(|e| e.key.as_str())
    }
}

impl Ctx<'_> {
    pub fn error(&mut self, path: &str, line: u64, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            message: message.into(),
            line: (line > 0).then_some(line),
        });
    }

    fn type_error(&mut self, path: &str, node: &Node, expected: &str) {
        self.error(
            path,
            node.line,
            format!("expected {expected}, found {}", node.kind.describe()),
        );
    }

    /// Checks that `node` is a map whose keys are all in `allowed`. Unknown keys are errors with
    /// a "did you mean" suggestion; the known ones are returned for the typed getters.
    pub fn map<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            if node.kind != Kind::Null {
                self.type_error(path, node, "a map");
            }
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                let msg = match suggest(&e.key, allowed) {
                    Some(s) => format!("unknown key (did you mean {s:?}?)"),
                    None => "unknown key".to_owned(),
                };
                // The key's line: a map or list under it starts on the next one.
                self.error(&join(path, &e.key), e.line, msg);
            }
        }
        Some(Fields {
            path: path.to_owned(),
            line: node.line,
            entries,
        })
    }

    /// A list; a missing or null value is an empty list.
    pub fn seq<'n>(&mut self, f: &Fields<'n>, key: &str) -> &'n [Node] {
        match f.get(key) {
            None => &[],
            Some(Node {
                kind: Kind::Seq(items),
                ..
            }) => items,
            Some(n) => {
                self.type_error(&f.path(key), n, "a list");
                &[]
            }
        }
    }

    /// Expands `${VAR}` in a string found at `path`.
    pub fn expand(&mut self, path: &str, line: u64, s: &str) -> Option<String> {
        for name in env::unbraced_set(s, self.env) {
            self.warnings.push(format!(
                "{path}: ${name} is sent as written (line {line}); resmoio replaced it with the environment variable {name}, which is set here: write ${{{name}}} to use the variable"
            ));
        }
        match env::expand(s, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, line, e);
                None
            }
        }
    }

    /// A string value. Numbers are accepted and stringified (`identity: 1`), bools are not.
    pub fn string(&mut self, f: &Fields, key: &str) -> Option<String> {
        let n = f.get(key)?;
        let path = f.path(key);
        match &n.kind {
            Kind::Str(s) => self.expand(&path, n.line, s),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(x) => Some(x.to_string()),
            _ => {
                self.type_error(&path, n, "a string");
                None
            }
        }
    }

    /// A string that means "unset" when empty.
    pub fn opt_string(&mut self, f: &Fields, key: &str) -> Option<String> {
        self.string(f, key).filter(|s| !s.is_empty())
    }

    /// Scalars written as `${VAR}` are expanded before being read as a number or bool.
    fn expanded_scalar(&mut self, path: &str, n: &Node) -> Option<String> {
        match &n.kind {
            Kind::Str(s) if s.contains("${") => self.expand(path, n.line, s),
            _ => None,
        }
    }

    pub fn int(&mut self, f: &Fields, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = f.get(key)?;
        let path = f.path(key);
        let v = match &n.kind {
            Kind::Int(i) => *i,
            _ => match self
                .expanded_scalar(&path, n)
                .map(|s| s.trim().parse::<i64>())
            {
                Some(Ok(i)) => i,
                _ => {
                    self.type_error(&path, n, "an integer");
                    return None;
                }
            },
        };
        if v < min || v > max {
            let msg = if max == i64::MAX {
                format!("must be at least {min}, found {v}")
            } else {
                format!("must be between {min} and {max}, found {v}")
            };
            self.error(&path, n.line, msg);
            return None;
        }
        Some(v)
    }

    pub fn float(&mut self, f: &Fields, key: &str) -> Option<f64> {
        let n = f.get(key)?;
        let path = f.path(key);
        match &n.kind {
            Kind::Int(i) => Some(*i as f64),
            Kind::Float(x) => Some(*x),
            _ => match self
                .expanded_scalar(&path, n)
                .map(|s| s.trim().parse::<f64>())
            {
                Some(Ok(x)) => Some(x),
                _ => {
                    self.type_error(&path, n, "a number");
                    None
                }
            },
        }
    }

    pub fn bool(&mut self, f: &Fields, key: &str) -> Option<bool> {
        let n = f.get(key)?;
        let path = f.path(key);
        match &n.kind {
            Kind::Bool(b) => Some(*b),
            _ => match self.expanded_scalar(&path, n).as_deref().map(str::trim) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => {
                    self.type_error(&path, n, "true or false");
                    None
                }
            },
        }
    }

    pub fn duration(&mut self, f: &Fields, key: &str) -> Option<Duration> {
        let n = f.get(key)?;
        let path = f.path(key);
        let text = match &n.kind {
            Kind::Str(s) => self.expand(&path, n.line, s)?,
            Kind::Int(i) if *i == 0 => return Some(Duration::ZERO),
            Kind::Int(i) => {
                self.error(
                    &path,
                    n.line,
                    format!("invalid duration {i}: add a unit, e.g. {i}s"),
                );
                return None;
            }
            _ => {
                self.type_error(&path, n, "a duration such as 15s");
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(&path, n.line, e);
                None
            }
        }
    }

    /// A regex; empty means "don't care". Invalid regexes are errors (resmoio ignores them).
    pub fn regex(&mut self, path: &str, n: &Node) -> Option<Regex> {
        let s = match &n.kind {
            Kind::Str(s) => self.expand(path, n.line, s)?,
            Kind::Int(i) => i.to_string(),
            Kind::Null => return None,
            _ => {
                self.type_error(path, n, "a regular expression string");
                return None;
            }
        };
        if s.is_empty() {
            return None;
        }
        match Regex::new(&s) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(
                    path,
                    n.line,
                    format!("invalid regex {s:?}: {}", regex_reason(&e)),
                );
                None
            }
        }
    }

    /// A map of string values (header templates, label regexes…), each passed to `each`.
    pub fn string_map<T>(
        &mut self,
        f: &Fields,
        key: &str,
        mut each: impl FnMut(&mut Self, &str, &Node) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        let Some(n) = f.get(key) else { return out };
        let path = f.path(key);
        let Kind::Map(entries) = &n.kind else {
            self.type_error(&path, n, "a map");
            return out;
        };
        for e in entries {
            if let Some(t) = each(self, &join(&path, &e.key), &e.value) {
                out.insert(e.key.clone(), t);
            }
        }
        out
    }
}

/// The one-line reason of a regex error (the crate's Display spans several lines with a caret).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_owned())
}

/// The closest allowed key, if close enough to be a typo.
pub(crate) fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    allowed
        .iter()
        .map(|a| {
            (
                a,
                if a.to_lowercase() == lower {
                    0
                } else {
                    levenshtein(&lower, &a.to_lowercase())
                },
            )
        })
        .filter(|(a, d)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(a, _)| *a)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Converts a YAML subtree to JSON (for `layout:`), expanding `${VAR}` in string leaves.
pub fn to_json(ctx: &mut Ctx, n: &Node, path: &str) -> serde_json::Value {
    use serde_json::Value;
    match &n.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => Value::from(*i),
        Kind::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Kind::Str(s) => Value::String(ctx.expand(path, n.line, s).unwrap_or_default()),
        Kind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| to_json(ctx, x, &format!("{path}[{i}]")))
                .collect(),
        ),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(ctx, &e.value, &join(path, &e.key))))
                .collect(),
        ),
    }
}
