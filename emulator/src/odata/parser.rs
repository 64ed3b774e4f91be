//! The parser: precedence climbing over the tokens, typing each expression as it goes.

use super::lexer::{Kind, Token};
use super::{Cmp, Expr, Field, FilterError, Func, Lit, Node, Ty, MAX_DEPTH};

pub(crate) struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

impl Parser {
    pub(crate) fn new(tokens: Vec<Token>) -> Parser {
        Parser {
            tokens,
            at: 0,
            depth: 0,
        }
    }

    pub(crate) fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if t.kind != Kind::End {
            self.at += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().kind, Kind::Word(x) if x == w)
    }

    fn deeper(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                pos,
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn boolean(&self, e: &Expr, pos: usize, what: &str) -> Result<(), FilterError> {
        if e.ty != Ty::Bool {
            return err(
                pos,
                format!("`{what}` needs boolean operands, found {}", e.ty),
            );
        }
        Ok(())
    }

    pub(crate) fn or(&mut self) -> Result<Expr, FilterError> {
        let start = self.peek().pos;
        let mut left = self.and()?;
        while self.is_word("or") {
            self.next();
            self.boolean(&left, start, "or")?;
            let rpos = self.peek().pos;
            let right = self.and()?;
            self.boolean(&right, rpos, "or")?;
            left = Expr {
                node: Node::Or(Box::new(left), Box::new(right)),
                ty: Ty::Bool,
            };
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let start = self.peek().pos;
        let mut left = self.compare()?;
        while self.is_word("and") {
            self.next();
            self.boolean(&left, start, "and")?;
            let rpos = self.peek().pos;
            let right = self.compare()?;
            self.boolean(&right, rpos, "and")?;
            left = Expr {
                node: Node::And(Box::new(left), Box::new(right)),
                ty: Ty::Bool,
            };
        }
        Ok(left)
    }

    fn compare(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        loop {
            let op = match &self.peek().kind {
                Kind::Word(w) => match w.as_str() {
                    "eq" => Some(Cmp::Eq),
                    "ne" => Some(Cmp::Ne),
                    "gt" => Some(Cmp::Gt),
                    "ge" => Some(Cmp::Ge),
                    "lt" => Some(Cmp::Lt),
                    "le" => Some(Cmp::Le),
                    "in" => None,
                    _ => return Ok(left),
                },
                _ => return Ok(left),
            };
            let op_tok = self.next();
            left = match op {
                Some(op) => {
                    let right = self.unary()?;
                    compared(op, left, right, op_tok.pos)?
                }
                None => self.in_list(left, op_tok.pos)?,
            };
        }
    }

    fn in_list(&mut self, value: Expr, pos: usize) -> Result<Expr, FilterError> {
        if !matches!(value.ty, Ty::Str | Ty::Int | Ty::Bool | Ty::Null) {
            return err(
                pos,
                format!("`in` needs a single value on its left, found {}", value.ty),
            );
        }
        let list = if self.peek().kind == Kind::Open {
            let open = self.next().pos;
            self.deeper(open)?;
            let mut items = vec![self.or()?];
            while self.peek().kind == Kind::Comma {
                self.next();
                items.push(self.or()?);
            }
            self.close(open)?;
            self.depth -= 1;
            items
        } else {
            let rpos = self.peek().pos;
            let coll = self.unary()?;
            if coll.ty != Ty::Coll {
                return err(
                    rpos,
                    format!("expected a collection (groups) or a parenthesised list after `in`, found {}", coll.ty),
                );
            }
            vec![coll]
        };
        let is_collection = list.len() == 1 && list[0].ty == Ty::Coll;
        if !is_collection {
            if let Some(bad) = list.iter().find(|e| !comparable(value.ty, e.ty)) {
                return err(
                    pos,
                    format!("`in` compares {} with a list holding {}", value.ty, bad.ty),
                );
            }
        } else if !matches!(value.ty, Ty::Str | Ty::Null) {
            return err(
                pos,
                format!("a collection of strings cannot hold {}", value.ty),
            );
        }
        Ok(Expr {
            node: Node::In(Box::new(value), list),
            ty: Ty::Bool,
        })
    }

    fn close(&mut self, open: usize) -> Result<(), FilterError> {
        let t = self.next();
        if t.kind != Kind::Close {
            return err(
                t.pos,
                format!(
                    "expected `)` to close the `(` at position {open}, found {}",
                    t.kind
                ),
            );
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.is_word("not") {
            let pos = self.next().pos;
            self.deeper(pos)?;
            let operand_pos = self.peek().pos;
            let operand = self.unary()?;
            self.depth -= 1;
            if operand.ty != Ty::Bool {
                return err(
                    operand_pos,
                    format!(
                        "`not` needs a boolean, found {} (write `not (…)` around a comparison)",
                        operand.ty
                    ),
                );
            }
            return Ok(Expr {
                node: Node::Not(Box::new(operand)),
                ty: Ty::Bool,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let t = self.next();
        let lit = |l: Lit, ty: Ty| {
            Ok(Expr {
                node: Node::Lit(l),
                ty,
            })
        };
        match t.kind {
            Kind::Str(s) => lit(Lit::Str(s), Ty::Str),
            Kind::Int(i) => lit(Lit::Int(i), Ty::Int),
            Kind::Open => {
                self.deeper(t.pos)?;
                let e = self.or()?;
                self.close(t.pos)?;
                self.depth -= 1;
                Ok(e)
            }
            Kind::Word(w) => match w.as_str() {
                "true" => lit(Lit::Bool(true), Ty::Bool),
                "false" => lit(Lit::Bool(false), Ty::Bool),
                "null" => lit(Lit::Null, Ty::Null),
                _ if self.peek().kind == Kind::Open => self.call(&w, t.pos),
                _ => field(&w, t.pos),
            },
            other => err(
                t.pos,
                format!(
                    "expected a value (a string, a number, true, false, null, connectionId, userId, groups, protocol or a function call), found {other}"
                ),
            ),
        }
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, FilterError> {
        let Some(func) = Func::from_name(name) else {
            return err(
                pos,
                format!("unknown function `{name}` (expected length, tolower, toupper, trim, concat, substring, indexof, contains, startswith or endswith)"),
            );
        };
        let open = self.next().pos;
        self.deeper(open)?;
        let mut args = Vec::new();
        if self.peek().kind != Kind::Close {
            args.push(self.or()?);
            while self.peek().kind == Kind::Comma {
                self.next();
                args.push(self.or()?);
            }
        }
        self.close(open)?;
        self.depth -= 1;
        let types: Vec<Ty> = args.iter().map(|a| a.ty).collect();
        let ty = func.check(&types).or_else(|usage| {
            let found: Vec<String> = types.iter().map(Ty::to_string).collect();
            err(
                pos,
                format!("expected {usage}, found {name}({})", found.join(", ")),
            )
        })?;
        Ok(Expr {
            node: Node::Call(func, args),
            ty,
        })
    }
}

fn field(name: &str, pos: usize) -> Result<Expr, FilterError> {
    let f = if name.eq_ignore_ascii_case("connectionId") {
        (Field::ConnectionId, Ty::Str)
    } else if name.eq_ignore_ascii_case("userId") {
        (Field::UserId, Ty::Str)
    } else if name.eq_ignore_ascii_case("groups") {
        (Field::Groups, Ty::Coll)
    } else if name.eq_ignore_ascii_case("protocol") {
        (Field::Protocol, Ty::Str)
    } else {
        return err(
            pos,
            format!(
                "unknown identifier `{name}` (expected connectionId, userId, groups or protocol)"
            ),
        );
    };
    Ok(Expr {
        node: Node::Field(f.0),
        ty: f.1,
    })
}

/// Whether `eq` / `ne` / `in` may compare values of these types.
fn comparable(a: Ty, b: Ty) -> bool {
    a != Ty::Coll && b != Ty::Coll && (a == b || a == Ty::Null || b == Ty::Null)
}

fn compared(op: Cmp, left: Expr, right: Expr, pos: usize) -> Result<Expr, FilterError> {
    let ok = match op {
        Cmp::Eq | Cmp::Ne => comparable(left.ty, right.ty),
        _ => {
            let orderable = |t: Ty| matches!(t, Ty::Int | Ty::Str | Ty::Null);
            orderable(left.ty)
                && orderable(right.ty)
                && (left.ty == right.ty || left.ty == Ty::Null || right.ty == Ty::Null)
        }
    };
    if !ok {
        let name = match op {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
        };
        return err(
            pos,
            format!("`{name}` cannot compare {} with {}", left.ty, right.ty),
        );
    }
    Ok(Expr {
        node: Node::Cmp(op, Box::new(left), Box::new(right)),
        ty: Ty::Bool,
    })
}
