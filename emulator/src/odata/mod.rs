//! The OData `filter` of REST sends and of `:addToGroups` / `:removeFromGroups`: a small,
//! strict parser for the service's documented grammar, and its evaluation on a connection.
//!
//! ```text
//! filter      = or
//! or          = and *( "or" and )
//! and         = compare *( "and" compare )
//! compare     = unary *( ("eq" / "ne" / "gt" / "ge" / "lt" / "le") unary / "in" in-list )
//! in-list     = "(" or *( "," or ) ")" / unary        ; a list, or a collection (groups)
//! unary       = "not" unary / primary
//! primary     = string / integer / "true" / "false" / "null" / identifier
//!             / function "(" [ or *( "," or ) ] ")" / "(" or ")"
//! identifier  = connectionId / userId / groups / protocol   ; names ignore case
//! function    = length / tolower / toupper / trim / concat / substring / indexof
//!             / contains / startswith / endswith
//! string      = "'" *( any character but "'" / "''" ) "'"   ; '' is one quote
//! integer     = [ "+" / "-" ] 1*DIGIT                        ; 64-bit
//! ```
//!
//! Keywords and function names are lower case, as in OData; the four identifiers ignore
//! case, as the service documents. `not` binds tighter than the comparisons (OData's order),
//! so write `not (userId eq 'a')`. Every expression has a type, checked while parsing: a
//! filter that is not a boolean, compares a string with a number, or calls a function with
//! the wrong arguments is refused before any connection is looked at, with the position
//! (in characters, from 0) where it went wrong and what was expected there.
//!
//! Values: `connectionId` and `protocol` (the subprotocol, e.g.
//! `json.reliable.webpubsub.azure.v1`) are strings, `userId` a string or `null`, `groups` the
//! collection of the connection's groups. Strings compare by their characters, exactly
//! (case-sensitively); `gt`, `ge`, `lt`, `le` order numbers and strings and are false when a
//! side is `null`; string functions give `null` for a `null` argument, and `contains`,
//! `startswith`, `endswith` false. Indices count characters from 0; `substring` clamps
//! indices out of range.

mod eval;
mod lexer;
mod parser;

use eval::Val;
use lexer::{lex, Kind};
use parser::Parser;
use std::collections::BTreeSet;
use std::fmt;

/// Deepest nesting of parentheses, `not`s and function calls accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// What a filter is evaluated on: one connection.
pub(crate) struct Subject<'a> {
    pub connection_id: &'a str,
    pub user_id: Option<&'a str>,
    pub groups: &'a BTreeSet<String>,
    pub protocol: &'a str,
}

/// A filter the parser accepted.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    root: Expr,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterError {
    /// Where, in characters from 0.
    pub position: usize,
    /// What went wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Invalid filter at position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    /// Parses and type-checks a filter.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = lex(text)?;
        let mut p = Parser::new(tokens);
        let root = p.or()?;
        let end = p.peek();
        if end.kind != Kind::End {
            return Err(FilterError {
                position: end.pos,
                message: format!(
                    "expected `and`, `or` or the end of the filter, found {}",
                    end.kind
                ),
            });
        }
        if root.ty != Ty::Bool {
            return Err(FilterError {
                position: 0,
                message: format!(
                    "a filter must be a boolean expression, this one is {}",
                    root.ty
                ),
            });
        }
        Ok(Filter { root })
    }

    /// Whether the connection passes.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        matches!(self.root.eval(s), Val::Bool(true))
    }
}

// ---- the tree, typed while it is parsed ----

/// The type of an expression, known once it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Str,
    Int,
    Coll,
    Null,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Bool => "a boolean",
            Ty::Str => "a string",
            Ty::Int => "a number",
            Ty::Coll => "a collection",
            Ty::Null => "null",
        })
    }
}

/// The connection's properties a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    ConnectionId,
    UserId,
    Groups,
    Protocol,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The documented functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Length,
    ToLower,
    ToUpper,
    Trim,
    Concat,
    Substring,
    IndexOf,
    Contains,
    StartsWith,
    EndsWith,
}

impl Func {
    pub(crate) fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "length" => Func::Length,
            "tolower" => Func::ToLower,
            "toupper" => Func::ToUpper,
            "trim" => Func::Trim,
            "concat" => Func::Concat,
            "substring" => Func::Substring,
            "indexof" => Func::IndexOf,
            "contains" => Func::Contains,
            "startswith" => Func::StartsWith,
            "endswith" => Func::EndsWith,
            _ => return None,
        })
    }

    /// The type of a call, or what its arguments should have been.
    pub(crate) fn check(self, args: &[Ty]) -> Result<Ty, &'static str> {
        let text = |t: &Ty| matches!(t, Ty::Str | Ty::Null);
        let int = |t: &Ty| *t == Ty::Int;
        match (self, args) {
            (Func::Length, [a]) if text(a) || *a == Ty::Coll => Ok(Ty::Int),
            (Func::Length, _) => Err("length(string or collection)"),
            (Func::ToLower | Func::ToUpper | Func::Trim, [a]) if text(a) => Ok(Ty::Str),
            (Func::ToLower, _) => Err("tolower(string)"),
            (Func::ToUpper, _) => Err("toupper(string)"),
            (Func::Trim, _) => Err("trim(string)"),
            (Func::Concat, [a, b]) if text(a) && text(b) => Ok(Ty::Str),
            (Func::Concat, _) => Err("concat(string, string)"),
            (Func::Substring, [s, i]) if text(s) && int(i) => Ok(Ty::Str),
            (Func::Substring, [s, i, n]) if text(s) && int(i) && int(n) => Ok(Ty::Str),
            (Func::Substring, _) => {
                Err("substring(string, number) or substring(string, number, number)")
            }
            (Func::IndexOf, [a, b]) if text(a) && text(b) => Ok(Ty::Int),
            (Func::IndexOf, _) => Err("indexof(string, string)"),
            (Func::Contains | Func::StartsWith | Func::EndsWith, [a, b]) if text(a) && text(b) => {
                Ok(Ty::Bool)
            }
            (Func::Contains, _) => Err("contains(string, string)"),
            (Func::StartsWith, _) => Err("startswith(string, string)"),
            (Func::EndsWith, _) => Err("endswith(string, string)"),
        }
    }
}

/// An expression's shape.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Lit(Lit),
    Field(Field),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    /// The value, and a list or a collection-typed expression.
    In(Box<Expr>, Vec<Expr>),
    Call(Func, Vec<Expr>),
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
}

/// An expression and its type.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub(crate) node: Node,
    pub(crate) ty: Ty,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(g: &[&str]) -> BTreeSet<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    fn eval(filter: &str, user: Option<&str>, gs: &[&str]) -> bool {
        let g = groups(gs);
        let s = Subject {
            connection_id: "conn-1",
            user_id: user,
            groups: &g,
            protocol: "json.reliable.webpubsub.azure.v1",
        };
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{filter:?}: {e}"))
            .matches(&s)
    }

    #[test]
    fn filters_select_connections_as_the_service_documents() {
        // (filter, user, groups, passes)
        let table: &[(&str, Option<&str>, &[&str], bool)] = &[
            ("userId eq 'alice'", Some("alice"), &[], true),
            ("userId eq 'alice'", Some("Alice"), &[], false),
            ("userId eq 'alice'", None, &[], false),
            ("userId ne 'alice'", None, &[], true),
            ("userId eq null", None, &[], true),
            ("userId ne null", Some("a"), &[], true),
            ("UserID eq 'a'", Some("a"), &[], true),
            ("connectionId eq 'conn-1'", None, &[], true),
            (
                "protocol eq 'json.reliable.webpubsub.azure.v1'",
                None,
                &[],
                true,
            ),
            ("'g1' in groups", None, &["g1", "g2"], true),
            ("'g3' in groups", None, &["g1", "g2"], false),
            ("'g1' in (groups)", None, &["g1"], true),
            ("null in groups", None, &["g1"], false),
            ("not ('g1' in groups)", None, &["g2"], true),
            ("userId eq 'a' and 'g1' in groups", Some("a"), &["g1"], true),
            ("userId eq 'a' and 'g1' in groups", Some("a"), &[], false),
            ("userId eq 'a' or 'g1' in groups", Some("b"), &["g1"], true),
            // `and` binds tighter than `or`.
            (
                "userId eq 'x' or userId eq 'a' and 'g' in groups",
                Some("x"),
                &[],
                true,
            ),
            (
                "(userId eq 'x' or userId eq 'a') and 'g' in groups",
                Some("x"),
                &[],
                false,
            ),
            ("userId in ('a', 'b')", Some("b"), &[], true),
            ("userId in ('a')", Some("b"), &[], false),
            ("userId in ('a', null)", None, &[], false),
            ("userId eq 'it''s'", Some("it's"), &[], true),
            ("userId eq ''", Some(""), &[], true),
            ("true", None, &[], true),
            ("false or not false", None, &[], true),
            ("length(userId) gt 3", Some("abcd"), &[], true),
            ("length(userId) le 3", Some("abcd"), &[], false),
            ("length(userId) gt 3", None, &[], false),
            ("length(groups) eq 2", None, &["a", "b"], true),
            ("length('été') eq 3", None, &[], true),
            ("tolower(userId) eq 'bob'", Some("BoB"), &[], true),
            ("toupper(userId) eq 'BOB'", Some("bob"), &[], true),
            ("trim(userId) eq 'x'", Some("  x "), &[], true),
            ("concat(userId, '!') eq 'a!'", Some("a"), &[], true),
            ("substring(userId, 1) eq 'bc'", Some("abc"), &[], true),
            ("substring(userId, 1, 1) eq 'b'", Some("abc"), &[], true),
            ("substring(userId, 9) eq ''", Some("abc"), &[], true),
            ("indexof(userId, 'c') eq 2", Some("abc"), &[], true),
            ("indexof(userId, 'z') eq -1", Some("abc"), &[], true),
            ("contains(userId, 'b')", Some("abc"), &[], true),
            ("startswith(userId, 'ab')", Some("abc"), &[], true),
            ("not endswith(userId, 'milk')", Some("oat milk"), &[], false),
            ("endswith(userId, 'x')", None, &[], false),
            ("userId gt 'a'", Some("b"), &[], true),
            ("userId lt null", Some("b"), &[], false),
            ("1 lt 2 and -1 lt +1", None, &[], true),
            ("((('g' in groups)))", None, &["g"], true),
        ];
        for &(filter, user, gs, expected) in table {
            assert_eq!(eval(filter, user, gs), expected, "{filter:?}");
        }
    }

    #[test]
    fn a_bad_filter_says_where_it_failed_and_what_was_expected() {
        // (filter, position, part of the message)
        let table: &[(&str, usize, &str)] = &[
            ("", 0, "expected a value"),
            ("userId eq", 9, "expected a value"),
            ("userId eq 'a", 10, "no closing `'`"),
            ("userId eq 'a' and", 17, "expected a value"),
            ("userId == 'a'", 7, "unexpected character `=`"),
            ("userId eq 'a' 'b'", 14, "expected `and`, `or` or the end"),
            (
                "userid eq 'a' annd true",
                14,
                "expected `and`, `or` or the end",
            ),
            ("name eq 'a'", 0, "unknown identifier `name`"),
            (
                "userId eq 1",
                7,
                "`eq` cannot compare a string with a number",
            ),
            ("userId", 0, "must be a boolean"),
            ("groups eq 'a'", 7, "cannot compare a collection"),
            ("not userId eq 'a'", 4, "`not` needs a boolean"),
            (
                "userId eq 'a' and length(userId)",
                18,
                "`and` needs boolean operands",
            ),
            ("'a' in userId", 7, "expected a collection"),
            ("groups in groups", 7, "single value"),
            (
                "(userId eq 'a'",
                14,
                "expected `)` to close the `(` at position 0",
            ),
            ("lenght(userId) eq 1", 0, "unknown function `lenght`"),
            ("length(1) eq 1", 0, "expected length(string or collection)"),
            (
                "substring(userId) eq ''",
                0,
                "expected substring(string, number)",
            ),
            ("userId eq 1.5", 11, "only integers"),
            (
                "userId eq 99999999999999999999",
                10,
                "does not fit in 64 bits",
            ),
            ("userId eq -", 10, "expected digits"),
            ("userId eq 'a' And true", 14, "expected `and`"),
            (
                "1 in ('a', 2)",
                2,
                "`in` compares a number with a list holding a string",
            ),
        ];
        for &(filter, position, part) in table {
            let e = Filter::parse(filter).expect_err(filter);
            assert_eq!(e.position, position, "{filter:?}: {e}");
            assert!(e.message.contains(part), "{filter:?}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("Invalid filter at position {position}: ")));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}true{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = Filter::parse(&deep).unwrap_err();
        assert!(e.message.contains("nests deeper"), "{e}");
        let nots = format!("{}true", "not ".repeat(MAX_DEPTH + 1));
        assert!(Filter::parse(&nots).is_err());
        let fine = format!("{}true{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Filter::parse(&fine).is_ok());
    }
}
