//! Evaluator: walks the AST against a JSON value, borrowing from the data wherever it can.

use serde_json::Value;

use super::funcs::{MAX_BUILT, weight};
use super::parse::{Arg, Cmd, Name, Node, Pipe};
use super::value::{V, to_go_string, truth, type_name, write_go};
use super::{Dialect, TemplateError};

pub(crate) struct State<'a> {
    pub src: &'a str,
    pub dialect: &'static Dialect,
    pub vars: Vec<(&'a str, V<'a>)>,
    pub out: String,
}

type R<T> = Result<T, TemplateError>;

impl<'a> State<'a> {
    fn err(&self, pos: usize, msg: impl AsRef<str>) -> TemplateError {
        TemplateError::at(self.src, pos, msg.as_ref())
    }

    /// The output is capped at `MAX_BUILT`, like every value a template builds: a layout must
    /// not be able to exhaust memory (e.g. by ranging over a large count).
    pub fn walk(&mut self, dot: &V<'a>, nodes: &'a [Node]) -> R<()> {
        for node in nodes {
            match node {
                Node::Text(t) => {
                    if self.out.len() + t.len() > MAX_BUILT {
                        return Err(TemplateError {
                            line: 0,
                            column: 0,
                            ..self.err(0, "output too large")
                        });
                    }
                    self.out.push_str(t)
                }
                Node::Action(pipe) => {
                    let v = self.pipe(dot, pipe, true)?;
                    if pipe.decl.is_empty() {
                        match v.get() {
                            // Go prints a missing key or nil as `<no value>`.
                            Value::Null => self.out.push_str("<no value>"),
                            Value::String(s) => self.out.push_str(s),
                            other => write_go(&mut self.out, other),
                        }
                        if self.out.len() > MAX_BUILT {
                            return Err(self.err(pipe.pos, "output too large"));
                        }
                    }
                }
                Node::If { pipe, then, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(dot, pipe, true)?;
                    let branch = if truth(v.get()) { then } else { els };
                    self.walk(dot, branch)?;
                    self.vars.truncate(mark);
                }
                Node::With { pipe, body, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(dot, pipe, true)?;
                    if truth(v.get()) {
                        self.walk(&v, body)?;
                    } else {
                        self.walk(dot, els)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range { pipe, body, els } => self.range(dot, pipe, body, els)?,
            }
        }
        Ok(())
    }

    fn range(&mut self, dot: &V<'a>, pipe: &'a Pipe, body: &'a [Node], els: &'a [Node]) -> R<()> {
        let v = self.pipe(dot, pipe, false)?;
        let mark = self.vars.len();
        let mut items: Vec<(V<'a>, V<'a>)> = Vec::new();
        match &v {
            V::Missing => {}
            V::Ref(r) => collect(r, &mut items, V::Ref).map_err(|m| self.err(pipe.pos, m))?,
            V::Own(o) => {
                collect(o, &mut items, |x| V::Own(x.clone())).map_err(|m| self.err(pipe.pos, m))?
            }
        }
        if items.is_empty() {
            return self.walk(dot, els);
        }
        for (key, elem) in items {
            match pipe.decl.as_slice() {
                [] => {}
                [e] => self.vars.push((e.as_str(), elem.clone())),
                [k, e, ..] => {
                    self.vars.push((k.as_str(), key));
                    self.vars.push((e.as_str(), elem.clone()));
                }
            }
            self.walk(&elem, body)?;
            self.vars.truncate(mark);
        }
        Ok(())
    }

    /// Evaluates a pipeline; with `bind`, declares or assigns its variables.
    fn pipe(&mut self, dot: &V<'a>, pipe: &'a Pipe, bind: bool) -> R<V<'a>> {
        let mut val: Option<V<'a>> = None;
        for cmd in &pipe.cmds {
            val = Some(self.cmd(dot, cmd, val)?);
        }
        let val = val.unwrap_or(V::Missing);
        if bind && !pipe.decl.is_empty() {
            let name = pipe.decl[0].as_str();
            if pipe.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = val.clone(),
                    None => return Err(self.err(pipe.pos, format!("undefined variable: {name}"))),
                }
            } else {
                self.vars.push((name, val.clone()));
            }
        }
        Ok(val)
    }

    fn cmd(&mut self, dot: &V<'a>, cmd: &'a Cmd, piped: Option<V<'a>>) -> R<V<'a>> {
        let Arg::Func(f) = &cmd.args[0] else {
            return self.arg(dot, &cmd.args[0], cmd.pos);
        };
        let nargs = cmd.args.len() - 1 + usize::from(piped.is_some());
        if nargs < f.min || nargs > f.max {
            let want = if f.min == f.max {
                f.min.to_string()
            } else {
                format!("at least {}", f.min)
            };
            return Err(self.err(
                cmd.pos,
                format!(
                    "wrong number of args for {}: want {want} got {nargs}",
                    f.name
                ),
            ));
        }
        if f.lazy {
            // `and` stops at the first false argument, `or` at the first true one.
            let want = f.name == "or";
            let mut last = V::Missing;
            for a in &cmd.args[1..] {
                last = self.arg(dot, a, cmd.pos)?;
                if truth(last.get()) == want {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(nargs);
        for a in &cmd.args[1..] {
            args.push(self.arg(dot, a, cmd.pos)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        // Every value is at most MAX_BUILT, but a function of many (`list $a $a …`, `print`)
        // could still build their sum: bound what goes in and what comes out.
        let too_large = |ctx: &Self| {
            ctx.err(
                cmd.pos,
                format!("error calling {}: result too large", f.name),
            )
        };
        let mut total = 0usize;
        for a in &args {
            total = total.saturating_add(weight(a.get(), 4 * MAX_BUILT));
            if total > 4 * MAX_BUILT {
                return Err(too_large(self));
            }
        }
        let v =
            (f.f)(args).map_err(|m| self.err(cmd.pos, format!("error calling {}: {m}", f.name)))?;
        if matches!(v, V::Own(_)) && weight(v.get(), MAX_BUILT) > MAX_BUILT {
            return Err(too_large(self));
        }
        Ok(v)
    }

    fn arg(&mut self, dot: &V<'a>, arg: &'a Arg, pos: usize) -> R<V<'a>> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Lit(v) => Ok(V::Ref(v)),
            Arg::Field(chain) => self.chain(dot.clone(), chain, pos),
            Arg::Var(name, chain) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return Err(self.err(pos, format!("undefined variable: {name}")));
                };
                let v = v.clone();
                self.chain(v, chain, pos)
            }
            Arg::Sub(pipe, chain) => {
                let v = self.pipe(dot, pipe, false)?;
                self.chain(v, chain, pos)
            }
            // A function name as an argument is called without arguments (Go does the same).
            Arg::Func(f) => {
                if f.min > 0 {
                    return Err(self.err(
                        pos,
                        format!("wrong number of args for {}: want {} got 0", f.name, f.min),
                    ));
                }
                (f.f)(Vec::new())
                    .map_err(|m| self.err(pos, format!("error calling {}: {m}", f.name)))
            }
        }
    }

    fn chain(&self, mut v: V<'a>, chain: &'a [Name], pos: usize) -> R<V<'a>> {
        let mut literal = false;
        for name in chain {
            v = if literal {
                map_key(v, &name.go)
            } else {
                field(v, name, self.dialect.embedded).map_err(|m| self.err(pos, m))?
            };
            // Under a map field of the dialect (`.Labels`) names are map keys: literal and
            // case-sensitive.
            literal = name.map;
        }
        Ok(v)
    }
}

fn collect<'a, 'b>(
    v: &'b Value,
    items: &mut Vec<(V<'a>, V<'a>)>,
    wrap: impl Fn(&'b Value) -> V<'a>,
) -> Result<(), String> {
    match v {
        Value::Null => {}
        Value::Array(a) => items.extend(
            a.iter()
                .enumerate()
                .map(|(i, x)| (V::Own(Value::from(i)), wrap(x))),
        ),
        Value::Object(m) => {
            // Sorted key order, as Go ranges over maps (whatever serde_json's map order is).
            let mut entries: Vec<(&String, &'b Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            items.extend(
                entries
                    .into_iter()
                    .map(|(k, x)| (V::str(k.clone()), wrap(x))),
            );
        }
        Value::Number(n) if n.as_i64().is_some() => {
            let n = n.as_i64().unwrap_or(0).clamp(0, 1 << 20);
            items.extend((0..n).map(|i| (V::Own(Value::from(i)), V::Own(Value::from(i)))));
        }
        other => return Err(format!("range can't iterate over {}", to_go_string(other))),
    }
    Ok(())
}

/// A map key, taken literally (Go's map index semantics).
fn map_key<'a>(v: V<'a>, name: &str) -> V<'a> {
    match v {
        V::Ref(Value::Object(m)) => m.get(name).map_or(V::Missing, V::Ref),
        V::Own(Value::Object(m)) => m.get(name).map_or(V::Missing, |x| V::Own(x.clone())),
        _ => V::Missing,
    }
}

/// `.Name` on a value. On a JSON object: the exact key, then the Go→JSON name
/// (`InvolvedObject`→`involvedObject`, `APIVersion`→`apiVersion`, `UID`→`uid`), then the same
/// JSON name in each of the dialect's `embedded` objects (promoted fields), then the dialect's
/// alias, then its method of that name. Missing → Missing.
pub(crate) fn field<'a>(v: V<'a>, name: &Name, embedded: &[&'static str]) -> Result<V<'a>, String> {
    let obj = match v.get() {
        Value::Null => return Ok(V::Missing),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "can't evaluate field {} in type {}",
                name.go,
                type_name(other)
            ));
        }
    };
    match resolve(obj, name, embedded) {
        Some(k) => Ok(match v {
            V::Ref(r) => V::Ref(lookup_path(r, &k)),
            V::Own(o) => V::Own(lookup_path(&o, &k).clone()),
            V::Missing => V::Missing,
        }),
        None => Ok(name.method.map_or(V::Missing, |m| V::Own(m(obj)))),
    }
}

/// Where a field lives: a key of the object, or a key of one of its embedded objects.
enum Key<'n> {
    Own(&'n str),
    Embedded(&'static str, &'n str),
}

fn lookup_path<'v>(v: &'v Value, k: &Key) -> &'v Value {
    let r = match k {
        Key::Own(k) => v.get(*k),
        Key::Embedded(e, k) => v.get(*e).and_then(|m| m.get(*k)),
    };
    r.unwrap_or(&super::value::NULL)
}

fn resolve<'n>(
    obj: &serde_json::Map<String, Value>,
    name: &'n Name,
    embedded: &[&'static str],
) -> Option<Key<'n>> {
    if obj.contains_key(&name.go) {
        return Some(Key::Own(&name.go));
    }
    if obj.contains_key(&name.json) {
        return Some(Key::Own(&name.json));
    }
    for e in embedded {
        if let Some(Value::Object(inner)) = obj.get(*e)
            && inner.contains_key(&name.json)
        {
            return Some(Key::Embedded(e, &name.json));
        }
    }
    name.alias.filter(|j| obj.contains_key(*j)).map(Key::Own)
}

/// `InvolvedObject`→`involvedObject`, `APIVersion`→`apiVersion`, `UID`→`uid`, `Kind`→`kind`.
pub(crate) fn go_to_json(name: &str) -> String {
    let upper = name.chars().take_while(|c| c.is_ascii_uppercase()).count();
    let n = name.chars().count();
    let lower_n = if upper == n || upper <= 1 {
        upper
    } else {
        upper - 1
    };
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if i < lower_n {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}
