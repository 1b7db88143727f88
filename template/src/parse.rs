//! Parser: tokens to an AST. Functions are resolved here, so an unknown function is a parse error.

use serde_json::Value;

use super::funcs::{self, Func};
use super::lex::{Item, Tok, Token};
use super::{Dialect, Method, TemplateError};

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub pos: usize,
    /// Declared (`:=`) or assigned (`=`) variables, names with the `$`.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `.A.B`: fields of dot.
    Field(Vec<Name>),
    /// `$x.A.B`.
    Var(String, Vec<Name>),
    Dot,
    Lit(Value),
    Func(&'static Func),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<Name>),
}

/// One link of a field chain, with its JSON spelling and what the dialect says about it
/// computed once at parse time, so rendering neither allocates to resolve `.InvolvedObject` to
/// `involvedObject` nor searches the dialect's tables.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub go: String,
    pub json: String,
    /// The dialect's alias: the JSON key to try when neither spelling is a key.
    pub alias: Option<&'static str>,
    /// The dialect's method of this name, for an object that has no such field.
    pub method: Option<Method>,
    /// A map field of the dialect: the names after it are literal map keys.
    pub map: bool,
}

impl Name {
    fn new(go: &str, dialect: &Dialect) -> Name {
        Name {
            go: go.to_owned(),
            json: super::exec::go_to_json(go),
            alias: dialect
                .aliases
                .iter()
                .find(|(g, _)| *g == go)
                .map(|(_, j)| *j),
            method: dialect.methods.iter().find(|(g, _)| *g == go).map(|m| m.1),
            map: dialect
                .maps
                .iter()
                .any(|m| *m == go || super::exec::go_to_json(m) == go),
        }
    }
}

pub(crate) struct Parser<'s> {
    src: &'s str,
    dialect: &'s Dialect,
    items: std::iter::Peekable<std::vec::IntoIter<Item>>,
    /// Nesting of parentheses and control structures; bounded so hostile input cannot overflow
    /// the stack (parsing and evaluation both recurse).
    depth: std::cell::Cell<usize>,
    /// Variables in scope while parsing: Go rejects undefined ones at parse time.
    vars: std::cell::RefCell<Vec<String>>,
}

const MAX_DEPTH: usize = 100;

/// What ended a list of nodes.
#[allow(clippy::enum_variant_names)]
enum End {
    Eof,
    End,
    /// `else` with the tokens following it (`else if …`, `else with …`).
    Else(usize, Vec<Token>),
}

impl<'s> Parser<'s> {
    pub fn new(src: &'s str, dialect: &'s Dialect, items: Vec<Item>) -> Self {
        Parser {
            src,
            dialect,
            items: items.into_iter().peekable(),
            depth: std::cell::Cell::new(0),
            vars: std::cell::RefCell::new(vec!["$".to_owned()]),
        }
    }

    fn err(&self, pos: usize, msg: impl AsRef<str>) -> TemplateError {
        TemplateError::at(self.src, pos, msg.as_ref())
    }

    pub fn parse(mut self) -> Result<Vec<Node>, TemplateError> {
        let (nodes, end) = self.list()?;
        match end {
            End::Eof => Ok(nodes),
            End::End => Err(self.err(self.src.len(), "unexpected {{end}}")),
            End::Else(pos, _) => Err(self.err(pos, "unexpected {{else}}")),
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, End), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action { pos, toks } => {
                    let Some(first) = toks.first() else {
                        return Err(self.err(pos, "missing value for command"));
                    };
                    match &first.tok {
                        Tok::Ident(k) if k == "end" => {
                            if toks.len() > 1 {
                                return Err(self.err(toks[1].pos, "unexpected token after end"));
                            }
                            return Ok((nodes, End::End));
                        }
                        Tok::Ident(k) if k == "else" => {
                            return Ok((nodes, End::Else(pos, toks[1..].to_vec())));
                        }
                        Tok::Ident(k) if k == "if" || k == "range" || k == "with" => {
                            let kw = k.clone();
                            nodes.push(self.control(&kw, pos, &toks[1..])?);
                        }
                        Tok::Ident(k)
                            if matches!(
                                k.as_str(),
                                "define" | "template" | "block" | "break" | "continue"
                            ) =>
                        {
                            return Err(
                                self.err(first.pos, format!("{{{{{k}}}}} is not supported"))
                            );
                        }
                        _ => nodes.push(Node::Action(self.pipeline(pos, &toks, false)?)),
                    }
                }
            }
        }
        Ok((nodes, End::Eof))
    }

    /// `if`/`range`/`with` after the keyword: pipeline, body, optional else, end.
    fn control(&mut self, kw: &str, pos: usize, toks: &[Token]) -> Result<Node, TemplateError> {
        self.enter(pos)?;
        let mark = self.vars.borrow().len();
        let node = self.control_inner(kw, pos, toks);
        self.vars.borrow_mut().truncate(mark);
        self.depth.set(self.depth.get() - 1);
        node
    }

    fn enter(&self, pos: usize) -> Result<(), TemplateError> {
        if self.depth.get() >= MAX_DEPTH {
            return Err(self.err(pos, "template nests too deeply"));
        }
        self.depth.set(self.depth.get() + 1);
        Ok(())
    }

    fn control_inner(
        &mut self,
        kw: &str,
        pos: usize,
        toks: &[Token],
    ) -> Result<Node, TemplateError> {
        if toks.is_empty() {
            return Err(self.err(pos, format!("missing value for {kw}")));
        }
        let pipe = self.pipeline(pos, toks, kw != "if")?;
        if kw == "range" && pipe.decl.len() > 2 {
            return Err(self.err(pos, "too many declarations in range"));
        }
        if kw != "range" && pipe.decl.len() > 1 {
            return Err(self.err(pos, "too many declarations"));
        }
        let (body, end) = self.list()?;
        let els = match end {
            End::Eof => {
                return Err(self.err(
                    pos,
                    format!("unexpected EOF: {{{{{kw}}}}} without {{{{end}}}}"),
                ));
            }
            End::End => Vec::new(),
            End::Else(epos, rest) if rest.is_empty() => {
                let (els, end) = self.list()?;
                match end {
                    End::End => els,
                    End::Eof => {
                        return Err(self.err(
                            pos,
                            format!("unexpected EOF: {{{{{kw}}}}} without {{{{end}}}}"),
                        ));
                    }
                    End::Else(p, _) => {
                        let _ = epos;
                        return Err(self.err(p, "unexpected {{else}} after {{else}}"));
                    }
                }
            }
            // `else if …` / `else with …`: a nested control node that consumes our `end`.
            End::Else(epos, rest) => match &rest[0].tok {
                Tok::Ident(k) if k == "if" || k == "with" => {
                    let k = k.clone();
                    vec![self.control(&k, epos, &rest[1..])?]
                }
                _ => return Err(self.err(rest[0].pos, "unexpected token after else")),
            },
        };
        Ok(match kw {
            "if" => Node::If {
                pipe,
                then: body,
                els,
            },
            "range" => Node::Range { pipe, body, els },
            _ => Node::With { pipe, body, els },
        })
    }

    fn pipeline(
        &self,
        pos: usize,
        toks: &[Token],
        allow_decl: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut i = 0;
        let (decl, assign) = self.declarations(toks, &mut i, allow_decl)?;
        let pipe = self.pipe_body(pos, toks, &mut i, decl, assign)?;
        if i < toks.len() {
            return Err(self.err(toks[i].pos, "unexpected token in operand"));
        }
        if pipe.assign {
            if let Some(v) = pipe.decl.iter().find(|v| !self.vars.borrow().contains(v)) {
                return Err(self.err(pos, format!("undefined variable {v:?}")));
            }
        } else {
            self.vars.borrow_mut().extend(pipe.decl.iter().cloned());
        }
        Ok(pipe)
    }

    fn declarations(
        &self,
        toks: &[Token],
        i: &mut usize,
        allow: bool,
    ) -> Result<(Vec<String>, bool), TemplateError> {
        let var = |t: Option<&Token>| match t.map(|t| &t.tok) {
            Some(Tok::Var(v)) if v != "$" => Some(v.clone()),
            _ => None,
        };
        let Some(first) = var(toks.first()) else {
            return Ok((Vec::new(), false));
        };
        match toks.get(1).map(|t| &t.tok) {
            Some(Tok::Declare) | Some(Tok::Assign) => {
                *i = 2;
                Ok((vec![first], matches!(toks[1].tok, Tok::Assign)))
            }
            Some(Tok::Comma) if allow => {
                let Some(second) = var(toks.get(2)) else {
                    return Err(self.err(toks[1].pos, "expected variable after comma"));
                };
                match toks.get(3).map(|t| &t.tok) {
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        *i = 4;
                        Ok((vec![first, second], matches!(toks[3].tok, Tok::Assign)))
                    }
                    _ => Err(self.err(toks[1].pos, "expected := after variables")),
                }
            }
            _ => Ok((Vec::new(), false)),
        }
    }

    /// Commands separated by `|`, up to the end of the tokens or a `)`.
    fn pipe_body(
        &self,
        pos: usize,
        toks: &[Token],
        i: &mut usize,
        decl: Vec<String>,
        assign: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut cmds = Vec::new();
        loop {
            let cpos = toks.get(*i).map_or(pos, |t| t.pos);
            let mut args = Vec::new();
            while *i < toks.len() && !matches!(toks[*i].tok, Tok::Pipe | Tok::RParen) {
                args.push(self.operand(toks, i)?);
            }
            if args.is_empty() {
                return Err(self.err(cpos, "missing value for command"));
            }
            if args.len() > 1 && !matches!(args[0], Arg::Func(_)) {
                return Err(self.err(cpos, "can't give argument to non-function"));
            }
            cmds.push(Cmd { pos: cpos, args });
            if *i < toks.len() && toks[*i].tok == Tok::Pipe {
                *i += 1;
                continue;
            }
            break;
        }
        // A literal or variable after `|` would silently ignore the piped value; Go rejects it.
        for c in &cmds[1..] {
            if !matches!(c.args[0], Arg::Func(_)) {
                return Err(self.err(c.pos, "non-function in pipeline stage"));
            }
        }
        Ok(Pipe {
            pos,
            decl,
            assign,
            cmds,
        })
    }

    fn operand(&self, toks: &[Token], i: &mut usize) -> Result<Arg, TemplateError> {
        let t = &toks[*i];
        *i += 1;
        let arg = match &t.tok {
            Tok::Field(f) => {
                let mut chain = vec![Name::new(f, self.dialect)];
                chain.extend(self.chain(toks, i));
                return Ok(Arg::Field(chain));
            }
            Tok::Var(v) => {
                // Like Go, a variable must be declared before use (checked at parse time).
                if !self.vars.borrow().iter().any(|d| d == v) {
                    return Err(self.err(t.pos, format!("undefined variable {v:?}")));
                }
                return Ok(Arg::Var(v.clone(), self.chain(toks, i)));
            }
            Tok::Dot => Arg::Dot,
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Int(n) => Arg::Lit(Value::from(*n)),
            Tok::Float(f) => Arg::Lit(Value::from(*f)),
            Tok::Bool(b) => Arg::Lit(Value::Bool(*b)),
            Tok::Nil => Arg::Lit(Value::Null),
            Tok::Ident(name) => match funcs::lookup(name) {
                Some(f) => Arg::Func(f),
                None if matches!(name.as_str(), "if" | "else" | "end" | "range" | "with") => {
                    return Err(self.err(t.pos, format!("unexpected keyword {name:?} in operand")));
                }
                None => return Err(self.err(t.pos, format!("function {name:?} not defined"))),
            },
            Tok::LParen => {
                self.enter(t.pos)?;
                let inner = self.pipe_body(t.pos, toks, i, Vec::new(), false);
                self.depth.set(self.depth.get() - 1);
                let inner = inner?;
                if *i >= toks.len() || toks[*i].tok != Tok::RParen {
                    return Err(self.err(t.pos, "unclosed left paren"));
                }
                *i += 1;
                return Ok(Arg::Sub(Box::new(inner), self.chain(toks, i)));
            }
            other => {
                return Err(self.err(t.pos, format!("unexpected {} in operand", describe(other))));
            }
        };
        if *i < toks.len() && !toks[*i].spaced && matches!(toks[*i].tok, Tok::Field(_)) {
            return Err(self.err(toks[*i].pos, "unexpected field access"));
        }
        Ok(arg)
    }

    /// Field links directly attached to the previous operand (no whitespace).
    fn chain(&self, toks: &[Token], i: &mut usize) -> Vec<Name> {
        let mut out = Vec::new();
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            ..
        }) = toks.get(*i)
        {
            out.push(Name::new(f, self.dialect));
            *i += 1;
        }
        out
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::Pipe => "\"|\"",
        Tok::LParen => "\"(\"",
        Tok::RParen => "\")\"",
        Tok::Comma => "\",\"",
        Tok::Declare => "\":=\"",
        Tok::Assign => "\"=\"",
        _ => "token",
    }
}
