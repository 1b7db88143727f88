//! Values during evaluation, and Go's rules for printing them, their truth and comparisons.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// A value during evaluation: borrowed from the data where possible (field chains, range), owned
/// when computed by a function. `Missing` is Go's "invalid value": a missing map key.
#[derive(Debug, Clone)]
pub(crate) enum V<'a> {
    Missing,
    Ref(&'a Value),
    Own(Value),
}

pub(crate) static NULL: Value = Value::Null;

impl<'a> V<'a> {
    pub fn str(s: impl Into<String>) -> V<'a> {
        V::Own(Value::String(s.into()))
    }

    /// The JSON value; `Missing` reads as null.
    pub fn get(&self) -> &Value {
        match self {
            V::Missing => &NULL,
            V::Ref(v) => v,
            V::Own(v) => v,
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            V::Missing => Value::Null,
            V::Ref(v) => v.clone(),
            V::Own(v) => v,
        }
    }

    /// Missing or null: what Go prints as `<no value>` and treats as nil.
    pub fn is_nil(&self) -> bool {
        self.get().is_null()
    }
}

/// Go's `truth`: false for the zero value of the type, empty collections and nil.
pub(crate) fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Go's type name, for `%!d(string=…)` style printf diagnostics.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// `fmt.Sprint` of one value (`%v`). Top-level nil prints as `<no value>` in an action, but
/// nested nils print as `<nil>` (Go does the same).
pub(crate) fn write_go(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go(out, x);
            }
            out.push(']');
        }
        Value::Object(o) => {
            // Go prints maps with sorted keys; serde_json's map is already sorted.
            out.push_str("map[");
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_go(out, x);
            }
            out.push(']');
        }
    }
}

pub(crate) fn to_go_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => {
            let mut s = String::new();
            write_go(&mut s, v);
            s
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(itoa(i).as_str());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&format_float_g(f));
    }
}

fn itoa(i: i64) -> String {
    i.to_string()
}

/// Go's `%v` for a float64: strconv 'g' with the shortest representation, switching to an
/// exponent when it is < -4 or >= 6 (so `1e+06`, as `fmt.Sprint(1000000.0)`).
pub(crate) fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{f:e}"); // shortest digits, e.g. "1.234567e6"
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        // Plain decimal with the shortest digits.
        format!("{f}")
    }
}

/// Numeric view: ints stay exact, floats as f64.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num {
    I(i64),
    F(f64),
}

pub(crate) fn num(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        Some(Num::I(i))
    } else {
        n.as_f64().map(Num::F)
    }
}

/// Compares two basic values. Unlike Go, ints and floats compare numerically instead of failing
/// with "incompatible types" (`gt .Count 1.0` works). Returns None when not comparable.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (num(a)?, num(b)?) {
            (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
            (Num::I(x), Num::F(y)) => (x as f64).partial_cmp(&y),
            (Num::F(x), Num::I(y)) => x.partial_cmp(&(y as f64)),
            (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// Equality: basic values as `compare`, anything else structurally.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match compare(a, b) {
        Some(o) => o == Ordering::Equal,
        None => match (a, b) {
            (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => a == b,
            _ => false,
        },
    }
}
