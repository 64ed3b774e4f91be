//! The filter's tokens, with their positions in characters.

use super::FilterError;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Word(String),
    Open,
    Close,
    Comma,
    End,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Str(s) => write!(f, "the string '{}'", s.replace('\'', "''")),
            Kind::Int(i) => write!(f, "the number {i}"),
            Kind::Word(w) => write!(f, "`{w}`"),
            Kind::Open => f.write_str("`(`"),
            Kind::Close => f.write_str("`)`"),
            Kind::Comma => f.write_str("`,`"),
            Kind::End => f.write_str("the end of the filter"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) pos: usize,
}

pub(crate) fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i;
        let kind = match c {
            ' ' | '\t' => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Kind::Open
            }
            ')' => {
                i += 1;
                Kind::Close
            }
            ',' => {
                i += 1;
                Kind::Comma
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError {
                                position: pos,
                                message: "the string starting here has no closing `'`".into(),
                            })
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Kind::Str(s)
            }
            '+' | '-' | '0'..='9' => {
                let start = i;
                if !c.is_ascii_digit() {
                    i += 1;
                }
                let digits = chars[i..].iter().take_while(|d| d.is_ascii_digit()).count();
                if digits == 0 {
                    return Err(FilterError {
                        position: pos,
                        message: format!("expected digits after `{c}`"),
                    });
                }
                i += digits;
                if chars
                    .get(i)
                    .is_some_and(|d| d.is_alphanumeric() || *d == '_' || *d == '.')
                {
                    return Err(FilterError {
                        position: i,
                        message: "expected a whole number (only integers are supported)".into(),
                    });
                }
                let lit: String = chars[start..i].iter().collect();
                let n = lit.parse::<i64>().map_err(|_| FilterError {
                    position: pos,
                    message: format!("the number {lit} does not fit in 64 bits"),
                })?;
                Kind::Int(n)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|d| d.is_ascii_alphanumeric() || **d == '_')
                    .count();
                let w: String = chars[i..i + len].iter().collect();
                i += len;
                Kind::Word(w)
            }
            other => {
                return Err(FilterError {
                    position: pos,
                    message: format!("unexpected character `{other}`"),
                })
            }
        };
        out.push(Token { kind, pos });
    }
    out.push(Token {
        kind: Kind::End,
        pos: chars.len(),
    });
    Ok(out)
}
