//! Builtin functions (Go text/template) and the sprig subset. `env`/`expandenv` are deliberately
//! absent: a layout must not be able to read the exporter's secrets.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::printf::{go_quote, sprintf};
use super::time::{self as gotime, GoTime};
use super::value::{Num, V, compare, equal, num, to_go_string, truth};

pub(crate) type FnPtr = for<'a> fn(Vec<V<'a>>) -> Result<V<'a>, String>;

#[derive(Debug)]
pub(crate) struct Func {
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
    pub f: FnPtr,
    /// `and`/`or`: arguments are evaluated lazily by the executor (Go 1.18+ short-circuits).
    pub lazy: bool,
}

const MANY: usize = usize::MAX;

macro_rules! funcs {
    ($($name:literal $min:literal..$max:tt => $f:expr),* $(,)?) => {
        static FUNCS: &[Func] = &[$(Func { name: $name, min: $min, max: funcs!(@max $max), f: $f, lazy: false }),*];
    };
    (@max many) => { MANY };
    (@max $n:literal) => { $n };
}

funcs! {
    // Go builtins.
    "and" 1..many => |a| Ok(a.into_iter().last().unwrap_or(V::Missing)),
    "or" 1..many => |a| Ok(a.into_iter().last().unwrap_or(V::Missing)),
    "not" 1..1 => |a| Ok(bool_v(!truth(a[0].get()))),
    "len" 1..1 => f_len,
    "index" 1..many => f_index,
    "print" 0..many => |a| Ok(V::str(go_sprint(&a))),
    "println" 0..many => |a| Ok(V::str(go_sprintln(&a))),
    "printf" 1..many => f_printf,
    "eq" 1..many => f_eq,
    "ne" 2..2 => |a| Ok(bool_v(!equal(a[0].get(), a[1].get()))),
    "lt" 2..2 => |a| cmp(&a, |o| o.is_lt()),
    "le" 2..2 => |a| cmp(&a, |o| o.is_le()),
    "gt" 2..2 => |a| cmp(&a, |o| o.is_gt()),
    "ge" 2..2 => |a| cmp(&a, |o| o.is_ge()),
    "urlquery" 0..many => |a| Ok(V::str(url_escape(&go_sprint(&a)))),
    // Sprig: conversions and JSON.
    "toJson" 1..1 => |a| Ok(V::str(go_json(serde_json::to_string(a[0].get()).map_err(|e| e.to_string())?))),
    "toPrettyJson" 1..1 => |a| Ok(V::str(go_json(serde_json::to_string_pretty(a[0].get()).map_err(|e| e.to_string())?))),
    "toString" 1..1 => |a| Ok(V::str(strval(&a[0]))),
    "int" 1..1 => |a| Ok(V::Own(Value::from(to_int(a[0].get())))),
    "int64" 1..1 => |a| Ok(V::Own(Value::from(to_int(a[0].get())))),
    "float64" 1..1 => |a| Ok(V::Own(Value::from(to_float(a[0].get())))),
    // Sprig: strings.
    "upper" 1..1 => |a| Ok(V::str(strval(&a[0]).to_uppercase())),
    "lower" 1..1 => |a| Ok(V::str(strval(&a[0]).to_lowercase())),
    "title" 1..1 => |a| Ok(V::str(title(&strval(&a[0])))),
    "trim" 1..1 => |a| Ok(V::str(strval(&a[0]).trim())),
    "trimAll" 2..2 => |a| { let c = strval(&a[0]); Ok(V::str(strval(&a[1]).trim_matches(|x| c.contains(x)))) },
    "trimPrefix" 2..2 => |a| { let s = strval(&a[1]); Ok(V::str(s.strip_prefix(strval(&a[0]).as_str()).unwrap_or(&s))) },
    "trimSuffix" 2..2 => |a| { let s = strval(&a[1]); Ok(V::str(s.strip_suffix(strval(&a[0]).as_str()).unwrap_or(&s))) },
    "replace" 3..3 => f_replace,
    "contains" 2..2 => |a| Ok(bool_v(strval(&a[1]).contains(strval(&a[0]).as_str()))),
    "hasPrefix" 2..2 => |a| Ok(bool_v(strval(&a[1]).starts_with(strval(&a[0]).as_str()))),
    "hasSuffix" 2..2 => |a| Ok(bool_v(strval(&a[1]).ends_with(strval(&a[0]).as_str()))),
    "quote" 0..many => |a| Ok(V::str(a.iter().filter(|v| !v.is_nil()).map(|v| go_quote(&strval(v))).collect::<Vec<_>>().join(" "))),
    "squote" 0..many => |a| Ok(V::str(a.iter().filter(|v| !v.is_nil()).map(|v| format!("'{}'", strval(v))).collect::<Vec<_>>().join(" "))),
    "join" 2..2 => f_join,
    "split" 2..2 => f_split,
    "splitList" 2..2 => |a| {
        let (sep, s) = (strval(&a[0]), strval(&a[1]));
        check_pieces(&sep, &s)?;
        Ok(V::Own(Value::Array(s.split(sep.as_str()).map(|s| Value::String(s.into())).collect())))
    },
    "trunc" 2..2 => f_trunc,
    "abbrev" 2..2 => f_abbrev,
    "repeat" 2..2 => f_repeat,
    "substr" 3..3 => f_substr,
    "nospace" 1..1 => |a| Ok(V::str(strval(&a[0]).chars().filter(|c| !c.is_whitespace()).collect::<String>())),
    "indent" 2..2 => |a| Ok(V::str(indent(to_int(a[0].get()), &strval(&a[1])))),
    "nindent" 2..2 => |a| Ok(V::str(format!("\n{}", indent(to_int(a[0].get()), &strval(&a[1]))))),
    "b64enc" 1..1 => |a| Ok(V::str(base64::engine::general_purpose::STANDARD.encode(strval(&a[0])))),
    "b64dec" 1..1 => f_b64dec,
    "sha256sum" 1..1 => |a| Ok(V::str(sha256_hex(strval(&a[0]).as_bytes()))),
    // Sprig: defaults and logic.
    "default" 1..2 => |mut a| Ok(if a.len() == 2 && !empty(a[1].get()) { a.swap_remove(1) } else { a.swap_remove(0) }),
    "empty" 1..1 => |a| Ok(bool_v(empty(a[0].get()))),
    "coalesce" 0..many => |a| Ok(a.into_iter().find(|v| !empty(v.get())).unwrap_or(V::Own(Value::Null))),
    "ternary" 3..3 => |mut a| Ok(if truth(a[2].get()) { a.swap_remove(0) } else { a.swap_remove(1) }),
    // Sprig: dates.
    "now" 0..0 => |_| Ok(V::str(jiff::Timestamp::now().to_string())),
    "date" 2..2 => |a| f_date(&a[0], &a[1], "UTC"),
    "dateInZone" 3..3 => |a| { let z = strval(&a[2]); f_date(&a[0], &a[1], &z) },
    "unixEpoch" 1..1 => |a| Ok(V::str(time_of(&a[0])?.as_second().to_string())),
    "toDate" 2..2 => |a| {
        let ts = gotime::parse(&strval(&a[0]), &strval(&a[1])).ok_or_else(|| format!("toDate: cannot parse {:?} as {:?}", strval(&a[1]), strval(&a[0])))?;
        Ok(V::str(ts.to_string()))
    },
    // Sprig: arithmetic (on int64, like sprig).
    "add" 0..many => |a| Ok(V::Own(Value::from(a.iter().fold(0i64, |s, v| s.wrapping_add(to_int(v.get())))))),
    "add1" 1..1 => |a| Ok(V::Own(Value::from(to_int(a[0].get()).wrapping_add(1)))),
    "sub" 2..2 => |a| Ok(V::Own(Value::from(to_int(a[0].get()).wrapping_sub(to_int(a[1].get()))))),
    "mul" 1..many => |a| Ok(V::Own(Value::from(a.iter().fold(1i64, |s, v| s.wrapping_mul(to_int(v.get())))))),
    "div" 2..2 => |a| { let d = to_int(a[1].get()); if d == 0 { return Err("integer divide by zero".into()) } Ok(V::Own(Value::from(to_int(a[0].get()).wrapping_div(d)))) },
    "mod" 2..2 => |a| { let d = to_int(a[1].get()); if d == 0 { return Err("integer divide by zero".into()) } Ok(V::Own(Value::from(to_int(a[0].get()).wrapping_rem(d)))) },
    "max" 1..many => |a| Ok(V::Own(Value::from(a.iter().map(|v| to_int(v.get())).max().unwrap_or(0)))),
    "min" 1..many => |a| Ok(V::Own(Value::from(a.iter().map(|v| to_int(v.get())).min().unwrap_or(0)))),
    // Sprig: lists and dicts.
    "list" 0..many => |a| Ok(V::Own(Value::Array(a.into_iter().map(V::into_value).collect()))),
    "dict" 0..many => f_dict,
    "get" 2..2 => |a| Ok(match a[0].get().as_object().and_then(|m| m.get(&strval(&a[1]))) { Some(v) => V::Own(v.clone()), None => V::str("") }),
    "hasKey" 2..2 => |a| Ok(bool_v(a[0].get().as_object().is_some_and(|m| m.contains_key(&strval(&a[1]))))),
    "keys" 0..many => |a| {
        let mut k: Vec<Value> = a.iter().filter_map(|d| d.get().as_object()).flat_map(|m| m.keys().map(|k| Value::String(k.clone()))).collect();
        k.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
        Ok(V::Own(Value::Array(k)))
    },
    "first" 1..1 => |a| Ok(a[0].get().as_array().and_then(|l| l.first()).cloned().map_or(V::Own(Value::Null), V::Own)),
    "last" 1..1 => |a| Ok(a[0].get().as_array().and_then(|l| l.last()).cloned().map_or(V::Own(Value::Null), V::Own)),
}

pub(crate) fn lookup(name: &str) -> Option<&'static Func> {
    static LAZY: [Func; 2] = [
        Func {
            name: "and",
            min: 1,
            max: MANY,
            f: |a| Ok(a.into_iter().last().unwrap_or(V::Missing)),
            lazy: true,
        },
        Func {
            name: "or",
            min: 1,
            max: MANY,
            f: |a| Ok(a.into_iter().last().unwrap_or(V::Missing)),
            lazy: true,
        },
    ];
    match name {
        "and" => Some(&LAZY[0]),
        "or" => Some(&LAZY[1]),
        _ => FUNCS.iter().find(|f| f.name == name),
    }
}

/// The names of every function, for documentation and tests.
pub fn names() -> Vec<&'static str> {
    FUNCS.iter().map(|f| f.name).collect()
}

/// Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; do the same so
/// payloads are byte-identical to resmoio's. Outside strings JSON never contains these characters,
/// so a plain replacement is safe.
fn go_json(s: String) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn bool_v<'a>(b: bool) -> V<'a> {
    V::Own(Value::Bool(b))
}

/// sprig's `strval`: strings as is, nil as "", everything else as `%v`.
pub(crate) fn strval(v: &V) -> String {
    match v.get() {
        Value::Null => String::new(),
        other => to_go_string(other),
    }
}

/// sprig's `toInt64`: numbers truncated, strings parsed (0 on failure), bools 0/1.
fn to_int(v: &Value) -> i64 {
    match v {
        Value::Number(_) => match num(v) {
            Some(Num::I(i)) => i,
            Some(Num::F(f)) => f as i64,
            None => 0,
        },
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64))
            .unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

fn to_float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// sprig's `empty`.
fn empty(v: &Value) -> bool {
    !truth(v)
}

fn f_len<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let n = match a[0].get() {
        Value::String(s) => s.len(),
        Value::Array(l) => l.len(),
        Value::Object(m) => m.len(),
        Value::Null => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", super::value::type_name(other))),
    };
    Ok(V::Own(Value::from(n)))
}

fn f_index<'a>(mut a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let keys: Vec<V<'a>> = a.drain(1..).collect();
    let mut cur = a.pop().unwrap_or(V::Missing);
    for k in keys {
        cur = match (&cur, k.get()) {
            (V::Missing, _) => return Err("index of untyped nil".into()),
            (_, key) => {
                let next = match (cur.get(), key) {
                    (Value::Object(m), Value::String(s)) => m.get(s),
                    (Value::Object(_), _) => {
                        return Err("value has type that is not a string map key".into());
                    }
                    (Value::Array(l), _) => {
                        let Some(Num::I(i)) = num(key) else {
                            return Err("cannot index slice/array with non-integer".into());
                        };
                        let i = usize::try_from(i)
                            .ok()
                            .filter(|i| *i < l.len())
                            .ok_or_else(|| format!("index out of range: {i}"))?;
                        Some(&l[i])
                    }
                    (Value::String(s), _) => {
                        let Some(Num::I(i)) = num(key) else {
                            return Err("cannot index string with non-integer".into());
                        };
                        let i = usize::try_from(i)
                            .ok()
                            .filter(|i| *i < s.len())
                            .ok_or_else(|| format!("index out of range: {i}"))?;
                        return Ok(V::Own(Value::from(s.as_bytes()[i])));
                    }
                    (Value::Null, _) => return Err("index of nil pointer".into()),
                    (other, _) => {
                        return Err(format!(
                            "can't index item of type {}",
                            super::value::type_name(other)
                        ));
                    }
                };
                match (next, &cur) {
                    (None, _) => V::Missing,
                    (Some(_), V::Ref(r)) => V::Ref(index_ref(r, key)),
                    (Some(v), _) => V::Own(v.clone()),
                }
            }
        };
    }
    Ok(cur)
}

/// Re-does an index lookup on a borrowed value so the result keeps the data's lifetime.
fn index_ref<'a>(r: &'a Value, key: &Value) -> &'a Value {
    match (r, key) {
        (Value::Object(m), Value::String(s)) => m.get(s).unwrap_or(&super::value::NULL),
        (Value::Array(l), k) => k
            .as_u64()
            .and_then(|i| l.get(i as usize))
            .unwrap_or(&super::value::NULL),
        _ => &super::value::NULL,
    }
}

fn f_printf<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let fmt = strval(&a[0]);
    let args: Vec<Value> = a[1..].iter().map(|v| v.get().clone()).collect();
    Ok(V::str(sprintf(&fmt, &args)))
}

/// `fmt.Sprint`: a space between operands when neither side is a string.
fn go_sprint(a: &[V]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !a[i - 1].get().is_string() && !v.get().is_string() {
            out.push(' ');
        }
        out.push_str(&to_go_string(v.get()));
    }
    out
}

fn go_sprintln(a: &[V]) -> String {
    let mut out: Vec<String> = a.iter().map(|v| to_go_string(v.get())).collect::<Vec<_>>();
    out.push(String::new());
    let mut s = out[..out.len() - 1].join(" ");
    s.push('\n');
    s
}

fn f_eq<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    if a.len() < 2 {
        return Err("missing argument for comparison".into());
    }
    let first = a[0].get();
    Ok(bool_v(a[1..].iter().any(|b| equal(first, b.get()))))
}

fn cmp<'a>(a: &[V<'a>], pred: fn(std::cmp::Ordering) -> bool) -> Result<V<'a>, String> {
    match compare(a[0].get(), a[1].get()) {
        Some(o) => Ok(bool_v(pred(o))),
        None => Err(format!(
            "incompatible types for comparison: {} and {}",
            super::value::type_name(a[0].get()),
            super::value::type_name(a[1].get())
        )),
    }
}

fn f_join<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let sep = strval(&a[0]);
    let parts: Vec<String> = match a[1].get() {
        Value::Array(l) => l
            .iter()
            .filter(|v| !v.is_null())
            .map(to_go_string)
            .collect(),
        Value::Null => Vec::new(),
        other => vec![to_go_string(other)],
    };
    let len = parts.iter().map(String::len).sum::<usize>();
    if len.saturating_add(sep.len().saturating_mul(parts.len())) > MAX_BUILT {
        return Err("result too large".into());
    }
    Ok(V::str(parts.join(&sep)))
}

fn f_replace<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let (old, new, s) = (strval(&a[0]), strval(&a[1]), strval(&a[2]));
    if new.len() > old.len() {
        let n = if old.is_empty() {
            s.chars().count() + 1
        } else {
            s.matches(old.as_str()).count()
        };
        if s.len()
            .saturating_add(n.saturating_mul(new.len() - old.len()))
            > MAX_BUILT
        {
            return Err("result too large".into());
        }
    }
    Ok(V::str(s.replace(old.as_str(), &new)))
}

/// `split`/`splitList` make one value per piece: an empty separator makes one per character.
fn check_pieces(sep: &str, s: &str) -> Result<(), String> {
    let pieces = if sep.is_empty() {
        s.chars().count() + 2
    } else {
        s.matches(sep).count() + 1
    };
    if s.len().saturating_add(pieces.saturating_mul(NODE_WEIGHT)) > MAX_BUILT {
        return Err("result too large".into());
    }
    Ok(())
}

/// sprig's `split` returns a dict `{_0: …, _1: …}`.
fn f_split<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let sep = strval(&a[0]);
    let s = strval(&a[1]);
    check_pieces(&sep, &s)?;
    let mut m = Map::new();
    for (i, p) in s.split(sep.as_str()).enumerate() {
        m.insert(format!("_{i}"), Value::String(p.into()));
    }
    Ok(V::Own(Value::Object(m)))
}

fn f_trunc<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let n = to_int(a[0].get());
    let s = strval(&a[1]);
    let len = s.len() as i64;
    // sprig works on bytes; we cut on char boundaries to stay valid UTF-8.
    let cut = |i: i64| {
        let mut i = i.clamp(0, len) as usize;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    Ok(V::str(if n < 0 {
        s[cut(len + n)..].to_owned()
    } else {
        s[..cut(n)].to_owned()
    }))
}

fn f_abbrev<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let w = to_int(a[0].get());
    let s = strval(&a[1]);
    if w < 4 || s.chars().count() as i64 <= w {
        return Ok(V::str(s));
    }
    Ok(V::str(format!(
        "{}...",
        s.chars().take((w - 3) as usize).collect::<String>()
    )))
}

fn f_substr<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let (start, end) = (to_int(a[0].get()), to_int(a[1].get()));
    let s = strval(&a[2]);
    let len = s.len() as i64;
    let fix = |i: i64| {
        let mut i = i.clamp(0, len) as usize;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    // sprig: start < 0 → from 0; end < 0 or > len → to the end.
    let st = fix(start.max(0));
    let en = if end < 0 || end > len {
        s.len()
    } else {
        fix(end)
    };
    Ok(V::str(if st > en {
        String::new()
    } else {
        s[st..en].to_owned()
    }))
}

/// Largest string `repeat`/`indent` may build: a layout must not be able to exhaust memory.
/// Also the largest weight of any value a function returns, and the largest output.
pub(crate) const MAX_BUILT: usize = 1 << 24;

/// What one JSON node costs besides its string bytes, roughly (a `Value` plus bookkeeping).
const NODE_WEIGHT: usize = 32;

/// Roughly the bytes a value holds, counted until it exceeds `limit` (cheap on large values).
pub(crate) fn weight(v: &Value, limit: usize) -> usize {
    fn go(v: &Value, limit: usize, acc: &mut usize) {
        *acc = acc.saturating_add(NODE_WEIGHT);
        match v {
            // A string's bytes, or the node's cost if more: a MAX_BUILT string weighs MAX_BUILT.
            Value::String(s) => *acc = acc.saturating_add(s.len().saturating_sub(NODE_WEIGHT)),
            Value::Array(l) => {
                for x in l {
                    if *acc > limit {
                        return;
                    }
                    go(x, limit, acc);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    if *acc > limit {
                        return;
                    }
                    *acc = acc.saturating_add(k.len());
                    go(x, limit, acc);
                }
            }
            _ => {}
        }
    }
    let mut acc = 0;
    go(v, limit, &mut acc);
    acc
}

fn f_repeat<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let s = strval(&a[1]);
    let n = usize::try_from(to_int(a[0].get())).unwrap_or(0);
    if n.saturating_mul(s.len()) > MAX_BUILT {
        return Err("result too large".into());
    }
    Ok(V::str(s.repeat(n)))
}

fn indent(n: i64, s: &str) -> String {
    let lines = s.matches('\n').count() + 1;
    let n = usize::try_from(n).unwrap_or(0).min(MAX_BUILT / lines);
    let pad = " ".repeat(n);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn f_b64dec<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    // sprig returns the error text as the result; we make it a render error instead.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(strval(&a[0]))
        .map_err(|e| format!("b64dec: {e}"))?;
    Ok(V::str(String::from_utf8_lossy(&bytes).into_owned()))
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn f_dict<'a>(a: Vec<V<'a>>) -> Result<V<'a>, String> {
    let mut m = Map::new();
    let mut it = a.into_iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .map(V::into_value)
            .unwrap_or(Value::String(String::new()));
        m.insert(strval(&k), v);
    }
    Ok(V::Own(Value::Object(m)))
}

fn time_of(v: &V) -> Result<jiff::Timestamp, String> {
    gotime::to_timestamp(v.get()).ok_or_else(|| format!("not a time: {}", to_go_string(v.get())))
}

fn f_date<'a>(layout: &V<'a>, t: &V<'a>, zone: &str) -> Result<V<'a>, String> {
    let ts = time_of(t)?;
    let tz = if zone == "UTC" || zone == "Local" || zone.is_empty() {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::get(zone).map_err(|e| format!("unknown time zone {zone:?}: {e}"))?
    };
    Ok(V::str(gotime::format(
        &GoTime::new(ts, &tz),
        &strval(layout),
    )))
}

/// `strings.Title`: upper-case the first letter of every word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
