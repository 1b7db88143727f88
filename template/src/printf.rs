//! Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %x %X %o %b %f %F %e %g %t %c %%`,
//! with flags `-+ 0#`, width and precision. Bad verbs print Go's `%!v(type=value)` diagnostics.

use serde_json::Value;

use super::value::{Num, format_float_g, num, to_go_string, type_name};

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args_it = args.iter();
    let mut used = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = digits(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(digits(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args_it.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        used += 1;
        let body = match format_one(verb, &spec, arg) {
            Some(s) => s,
            None => {
                out.push_str(&bad_verb(verb, arg));
                continue;
            }
        };
        pad(
            &mut out,
            &body,
            &spec,
            matches!(arg, Value::Number(_)) && verb != 'q',
        );
    }
    if used < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[used..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}={}", type_name(a), to_go_string(a)));
        }
        out.push(')');
    }
    out
}

fn digits(chars: &mut std::iter::Peekable<std::str::Chars>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(
            n.unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(d as usize)
                .min(10_000),
        );
        chars.next();
    }
    n
}

fn bad_verb(verb: char, arg: &Value) -> String {
    match arg {
        Value::Null => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", type_name(arg), to_go_string(arg)),
    }
}

/// Pads to the width. Zero padding goes after the sign, and only for numbers (as Go).
fn pad(out: &mut String, body: &str, spec: &Spec, numeric: bool) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric {
        let (sign, rest) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (Some(c), &body[1..]),
            _ => (None, body),
        };
        if let Some(s) = sign {
            out.push(s);
        }
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}

fn sign(spec: &Spec, neg: bool, body: String) -> String {
    if neg {
        format!("-{body}")
    } else if spec.plus {
        format!("+{body}")
    } else if spec.space {
        format!(" {body}")
    } else {
        body
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Value) -> Option<String> {
    let n = num(arg);
    Some(match verb {
        'v' => match (arg, n) {
            (Value::Number(_), Some(Num::I(i))) => sign(spec, i < 0, i.unsigned_abs().to_string()),
            (Value::Number(_), Some(Num::F(f))) => {
                let s = format_float_g(f.abs());
                sign(spec, f.is_sign_negative() && f != 0.0, s)
            }
            (Value::Null, _) => "<nil>".into(),
            _ => to_go_string(arg),
        },
        's' => match arg {
            Value::String(s) => truncate(s, spec.prec),
            Value::Number(_) => return None,
            Value::Bool(_) => return None,
            Value::Null => return None,
            _ => to_go_string(arg),
        },
        'q' => match arg {
            Value::String(s) => {
                if spec.sharp && !s.contains('`') {
                    format!("`{s}`")
                } else {
                    go_quote(s)
                }
            }
            Value::Number(_) => match n? {
                Num::I(i) => char::from_u32(u32::try_from(i).ok()?).map(|c| format!("'{c}'"))?,
                Num::F(_) => return None,
            },
            _ => return None,
        },
        'd' => match n? {
            Num::I(i) => sign(spec, i < 0, i.unsigned_abs().to_string()),
            Num::F(_) => return None,
        },
        'x' | 'X' | 'o' | 'b' => {
            let s = match (arg, n) {
                (Value::String(s), _) if matches!(verb, 'x' | 'X') => {
                    s.bytes().map(|b| format!("{b:02x}")).collect::<String>()
                }
                (_, Some(Num::I(i))) => {
                    let a = i.unsigned_abs();
                    let body = match verb {
                        'x' | 'X' => format!("{a:x}"),
                        'o' => format!("{a:o}"),
                        _ => format!("{a:b}"),
                    };
                    let body = if spec.sharp {
                        match verb {
                            'x' | 'X' => format!("0x{body}"),
                            'o' => format!("0{body}"),
                            _ => format!("0b{body}"),
                        }
                    } else {
                        body
                    };
                    sign(spec, i < 0, body)
                }
                _ => return None,
            };
            if verb == 'X' { s.to_uppercase() } else { s }
        }
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let f = match n? {
                Num::I(_) => return None,
                Num::F(f) => f,
            };
            let neg = f.is_sign_negative() && f != 0.0;
            let a = f.abs();
            let body = match verb {
                'f' | 'F' => format!("{a:.*}", spec.prec.unwrap_or(6)),
                'e' | 'E' => go_exp(a, spec.prec.unwrap_or(6), verb == 'E'),
                _ => match spec.prec {
                    None => format_float_g(a),
                    Some(p) => {
                        let p = p.max(1);
                        let exp = if a == 0.0 {
                            0
                        } else {
                            a.log10().floor() as i32
                        };
                        if exp < -4 || exp >= p as i32 {
                            go_exp(a, p - 1, verb == 'G')
                        } else {
                            let s = format!("{a:.*}", (p as i32 - 1 - exp).max(0) as usize);
                            if s.contains('.') {
                                s.trim_end_matches('0').trim_end_matches('.').to_owned()
                            } else {
                                s
                            }
                        }
                    }
                },
            };
            sign(spec, neg, body)
        }
        't' => match arg {
            Value::Bool(b) => b.to_string(),
            _ => return None,
        },
        'c' => match n? {
            Num::I(i) => char::from_u32(u32::try_from(i).ok()?)?.to_string(),
            Num::F(_) => return None,
        },
        _ => return None,
    })
}

fn truncate(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_owned(),
    }
}

/// `%e`: mantissa with `prec` decimals and a signed two-digit exponent (`1.500000e+00`).
fn go_exp(a: f64, prec: usize, upper: bool) -> String {
    let s = format!("{a:.prec$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    let out = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    if upper { out.to_uppercase() } else { out }
}

/// `strconv.Quote`: double-quoted with Go escapes; printable Unicode stays as is.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
