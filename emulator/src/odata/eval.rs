//! Evaluation of a typed tree on one connection. The parser checked the types, so a value
//! of an unexpected type cannot occur; where it would, the result is `false` or `null`.

use super::{Cmp, Expr, Field, Func, Lit, Node, Subject, Ty};
use std::borrow::Cow;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Groups(&'a BTreeSet<String>),
}

impl<'a> Val<'a> {
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int(self) -> i64 {
        match self {
            Val::Int(i) => i,
            _ => 0,
        }
    }
}

impl Expr {
    pub(crate) fn eval<'a>(&'a self, s: &Subject<'a>) -> Val<'a> {
        match &self.node {
            Node::Lit(l) => match l {
                Lit::Null => Val::Null,
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Int(i) => Val::Int(*i),
                Lit::Str(t) => Val::Str(Cow::Borrowed(t)),
            },
            Node::Field(f) => match f {
                Field::ConnectionId => Val::Str(Cow::Borrowed(s.connection_id)),
                Field::UserId => s.user_id.map_or(Val::Null, |u| Val::Str(Cow::Borrowed(u))),
                Field::Groups => Val::Groups(s.groups),
                Field::Protocol => Val::Str(Cow::Borrowed(s.protocol)),
            },
            Node::Not(e) => Val::Bool(!truth(e.eval(s))),
            Node::And(a, b) => Val::Bool(truth(a.eval(s)) && truth(b.eval(s))),
            Node::Or(a, b) => Val::Bool(truth(a.eval(s)) || truth(b.eval(s))),
            Node::Cmp(op, a, b) => Val::Bool(compare(*op, a.eval(s), b.eval(s))),
            Node::In(v, list) => {
                let v = v.eval(s);
                let found = match list.as_slice() {
                    [one] if one.ty == Ty::Coll => match (&v, one.eval(s)) {
                        (Val::Str(t), Val::Groups(g)) => g.contains(t.as_ref()),
                        _ => false,
                    },
                    items => items.iter().any(|e| v != Val::Null && e.eval(s) == v),
                };
                Val::Bool(found)
            }
            Node::Call(f, args) => call(*f, args.iter().map(|a| a.eval(s)).collect()),
        }
    }
}

fn truth(v: Val<'_>) -> bool {
    matches!(v, Val::Bool(true))
}

fn compare(op: Cmp, a: Val<'_>, b: Val<'_>) -> bool {
    use std::cmp::Ordering;
    let order = match (&a, &b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Gt => order == Some(Ordering::Greater),
        Cmp::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        Cmp::Lt => order == Some(Ordering::Less),
        Cmp::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
    }
}

fn call<'a>(f: Func, args: Vec<Val<'a>>) -> Val<'a> {
    let arity = args.len();
    let mut args = args.into_iter();
    let mut take = || args.next().unwrap_or(Val::Null);
    let str_of = |v: Val<'a>| v.text();
    let count = |s: &str| i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    match f {
        Func::Length => match take() {
            Val::Str(t) => Val::Int(count(&t)),
            Val::Groups(g) => Val::Int(i64::try_from(g.len()).unwrap_or(i64::MAX)),
            _ => Val::Null,
        },
        Func::ToLower | Func::ToUpper | Func::Trim => match str_of(take()) {
            Some(t) => Val::Str(Cow::Owned(match f {
                Func::ToLower => t.to_lowercase(),
                Func::ToUpper => t.to_uppercase(),
                _ => t.trim().to_owned(),
            })),
            None => Val::Null,
        },
        Func::Concat => match (str_of(take()), str_of(take())) {
            (Some(a), Some(b)) => Val::Str(Cow::Owned(format!("{a}{b}"))),
            _ => Val::Null,
        },
        Func::Substring => {
            let (text, start) = (str_of(take()), take().int());
            let len = (arity == 3).then(|| take().int());
            match text {
                Some(t) => {
                    let skip = usize::try_from(start.max(0)).unwrap_or(usize::MAX);
                    let it = t.chars().skip(skip);
                    Val::Str(Cow::Owned(match len {
                        Some(n) => it
                            .take(usize::try_from(n.max(0)).unwrap_or(usize::MAX))
                            .collect(),
                        None => it.collect(),
                    }))
                }
                None => Val::Null,
            }
        }
        Func::IndexOf => match (str_of(take()), str_of(take())) {
            (Some(hay), Some(needle)) => Val::Int(
                hay.find(needle.as_ref())
                    .map_or(-1, |byte| count(&hay[..byte])),
            ),
            _ => Val::Int(-1),
        },
        Func::Contains | Func::StartsWith | Func::EndsWith => {
            match (str_of(take()), str_of(take())) {
                (Some(a), Some(b)) => Val::Bool(match f {
                    Func::Contains => a.contains(b.as_ref()),
                    Func::StartsWith => a.starts_with(b.as_ref()),
                    _ => a.ends_with(b.as_ref()),
                }),
                _ => Val::Bool(false),
            }
        }
    }
}
