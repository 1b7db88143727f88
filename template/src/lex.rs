//! Lexer: splits a template into text and actions, and an action into tokens.
//!
//! Go's lexer runs as a state machine over the whole input; we do two simpler passes: find the
//! `{{ … }}` delimiters (handling `{{-`/`-}}` trimming and comments), then tokenize the inside of
//! each action. Positions are byte offsets into the source; errors turn them into line:column.

use super::TemplateError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// `.Name` (one link of a field chain).
    Field(String),
    /// `$name`, or `$` alone (name "$").
    Var(String),
    /// `.` alone.
    Dot,
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
    /// Whitespace precedes the token: `$x .Y` is two operands, `$x.Y` is a field chain.
    pub spaced: bool,
}

#[derive(Debug)]
pub(crate) enum Item {
    Text(String),
    Action { pos: usize, toks: Vec<Token> },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits `src` into text and action items.
pub(crate) fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    let mut trim_next = false;
    while i <= b.len() {
        let start = find(src, i, "{{").unwrap_or(b.len());
        let mut text = &src[i..start];
        if trim_next {
            text = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
        }
        let left_trim = start + 3 <= b.len()
            && b[start + 2] == b'-'
            && start + 3 < b.len()
            && is_space(b[start + 3]);
        if left_trim {
            text = text.trim_end_matches(|c: char| c.is_ascii_whitespace());
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_owned()));
        }
        if start >= b.len() {
            break;
        }
        let mut j = start + 2;
        if left_trim {
            j += 2;
        }
        // Comment: `{{/* … */}}`, the closing delimiter must follow `*/` (optionally ` -`).
        let after_space = skip_ws(b, j);
        if b[j..].starts_with(b"/*") || (left_trim && b[after_space..].starts_with(b"/*")) {
            let cstart = if b[j..].starts_with(b"/*") {
                j
            } else {
                after_space
            };
            let Some(end) = find(src, cstart + 2, "*/") else {
                return Err(TemplateError::at(src, start, "unclosed comment"));
            };
            let mut k = end + 2;
            if b[k..].starts_with(b"}}") {
                trim_next = false;
                i = k + 2;
            } else {
                k = skip_ws(b, k);
                if k > end + 2 && b[k..].starts_with(b"-}}") {
                    trim_next = true;
                    i = k + 3;
                } else {
                    return Err(TemplateError::at(
                        src,
                        start,
                        "comment ends before closing delimiter",
                    ));
                }
            }
            continue;
        }
        let (toks, end, rtrim) = lex_action(src, j, start)?;
        items.push(Item::Action { pos: start, toks });
        trim_next = rtrim;
        i = end;
    }
    Ok(items)
}

fn find(src: &str, from: usize, pat: &str) -> Option<usize> {
    src.get(from..)?.find(pat).map(|p| p + from)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    i
}

/// Tokenizes one action starting at `i` (just after `{{`/`{{- `). Returns the tokens, the offset
/// after the closing delimiter and whether it was `-}}`.
fn lex_action(
    src: &str,
    mut i: usize,
    open: usize,
) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let err = |pos: usize, msg: &str| Err(TemplateError::at(src, pos, msg));
    loop {
        let ws_start = i;
        i = skip_ws(b, i);
        let spaced = i > ws_start;
        if i >= b.len() {
            return err(open, "unclosed action");
        }
        if spaced && b[i..].starts_with(b"-}}") {
            return Ok((toks, i + 3, true));
        }
        if b[i..].starts_with(b"}}") {
            return Ok((toks, i + 2, false));
        }
        let pos = i;
        let c = b[i];
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (s, end) = lex_quoted(src, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let Some(end) = find(src, i + 1, "`") else {
                    return err(pos, "unterminated raw quoted string");
                };
                let s = src[i + 1..end].to_owned();
                i = end + 1;
                Tok::Str(s)
            }
            b'$' => {
                let end = ident_end(b, i + 1);
                let name = if end == i + 1 {
                    "$".to_owned()
                } else {
                    src[i..end].to_owned()
                };
                i = end;
                Tok::Var(name)
            }
            b'.' if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let (t, end) = lex_number(src, i)?;
                i = end;
                t
            }
            b'.' => {
                let end = ident_end(b, i + 1);
                if end == i + 1 {
                    i += 1;
                    Tok::Dot
                } else {
                    let name = src[i + 1..end].to_owned();
                    i = end;
                    Tok::Field(name)
                }
            }
            b'0'..=b'9' => {
                let (t, end) = lex_number(src, i)?;
                i = end;
                t
            }
            b'-' | b'+'
                if b.get(i + 1)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.') =>
            {
                let (t, end) = lex_number(src, i)?;
                i = end;
                t
            }
            b'\'' => {
                // Character constant: Go treats it as an integer (the rune).
                let rest = &src[i + 1..];
                let mut chars = rest.char_indices();
                match (chars.next(), chars.next()) {
                    (Some((_, ch)), Some((n, '\''))) if ch != '\\' => {
                        i += 1 + n + 1;
                        Tok::Int(ch as i64)
                    }
                    _ => return err(pos, "unsupported character constant"),
                }
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let end = ident_end(b, i);
                let word = &src[i..end];
                i = end;
                match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_owned()),
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return err(pos, &format!("unexpected {ch:?} in action"));
            }
        };
        toks.push(Token { tok, pos, spaced });
    }
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
        i += 1;
    }
    i
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), TemplateError> {
    let b = src.as_bytes();
    let mut i = start;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'_' | b'+' | b'-'))
    {
        // Stop at a sign that is not part of an exponent.
        if matches!(b[i], b'+' | b'-') && i > start && !matches!(b[i - 1], b'e' | b'E') {
            break;
        }
        i += 1;
    }
    let text = src[start..i].replace('_', "");
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let int = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Ok((Tok::Int(if neg { -v } else { v }), i));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((Tok::Float(f), i)),
        _ => Err(TemplateError::at(
            src,
            start,
            &format!("bad number syntax: {:?}", &src[start..i]),
        )),
    }
}

/// A Go interpreted string literal (`"…"` with backslash escapes).
fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut it = src[start + 1..].char_indices();
    let bad = |msg: &str| Err(TemplateError::at(src, start, msg));
    while let Some((off, c)) = it.next() {
        match c {
            '"' => return Ok((out, start + 1 + off + 1)),
            '\n' => return bad("unterminated quoted string"),
            '\\' => {
                let Some((_, e)) = it.next() else {
                    return bad("unterminated quoted string");
                };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            match it.next() {
                                Some((_, h)) => hex.push(h),
                                None => return bad("unterminated quoted string"),
                            }
                        }
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) => out.push(ch),
                            None => return bad("invalid escape in quoted string"),
                        }
                    }
                    _ => return bad("invalid escape in quoted string"),
                }
            }
            c => out.push(c),
        }
    }
    bad("unterminated quoted string")
}
