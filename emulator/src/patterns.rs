//! Group name patterns of the wildcard roles `webpubsub.joinLeaveGroups.<pattern>` and
//! `webpubsub.sendToGroups.<pattern>` (PROTOCOL.md §8), with the service's rules:
//!
//! - `*` matches any run of characters within one dot-separated segment (no `.`), empty
//!   included: `room.*` matches `room.a` and `room.`, not `room.a.b`;
//! - `**` (any run of two or more `*`) matches any run of characters, dots included:
//!   `room.**` matches `room.a.b`;
//! - `?` matches exactly one character that is not `.`;
//! - `\*`, `\?` and `\\` are the literal characters; any other escape is refused;
//! - every other character matches itself, case-sensitively.
//!
//! A pattern is 1 to [`MAX_PATTERN_CHARS`] characters with at most [`MAX_PATTERN_STARS`]
//! `*` characters (escaped ones not counted), as in Microsoft's emulator. Matching walks the
//! group name once, keeping the set of pattern positions reached, so its cost is bounded by
//! the two lengths' product whatever the pattern.

use std::fmt;

/// The longest pattern accepted, in characters.
pub(crate) const MAX_PATTERN_CHARS: usize = 1024;
/// The most unescaped `*` characters a pattern may have.
pub(crate) const MAX_PATTERN_STARS: usize = 5;

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `?`
    One,
    /// `*`
    InSegment,
    /// `**`
    Across,
}

/// A parsed group name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    toks: Vec<Tok>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatternError {
    Empty,
    TooLong {
        chars: usize,
    },
    /// A `\` ends the pattern.
    DanglingEscape,
    /// `\` followed by a character that needs no escape; `position` counts characters from 0.
    BadEscape {
        position: usize,
        ch: char,
    },
    TooManyStars {
        stars: usize,
    },
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("the pattern is empty"),
            PatternError::TooLong { chars } => write!(
                f,
                "the pattern is {chars} characters, more than {MAX_PATTERN_CHARS}"
            ),
            PatternError::DanglingEscape => f.write_str("the pattern ends with a single `\\`"),
            PatternError::BadEscape { position, ch } => write!(
                f,
                "invalid escape at position {position}: `{ch}` cannot be escaped (only `*`, `?` and `\\`)"
            ),
            PatternError::TooManyStars { stars } => write!(
                f,
                "the pattern has {stars} `*`, more than {MAX_PATTERN_STARS}"
            ),
        }
    }
}

impl Pattern {
    /// Parses a pattern, refusing what the service refuses.
    pub fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let chars: Vec<char> = pattern.chars().collect();
        if chars.len() > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong { chars: chars.len() });
        }
        let mut toks = Vec::with_capacity(chars.len());
        let mut stars = 0;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let Some(&next) = chars.get(i + 1) else {
                        return Err(PatternError::DanglingEscape);
                    };
                    if !matches!(next, '*' | '?' | '\\') {
                        return Err(PatternError::BadEscape {
                            position: i,
                            ch: next,
                        });
                    }
                    toks.push(Tok::Char(next));
                    i += 2;
                }
                '*' => {
                    let run = chars[i..].iter().take_while(|c| **c == '*').count();
                    stars += run;
                    toks.push(if run >= 2 {
                        Tok::Across
                    } else {
                        Tok::InSegment
                    });
                    i += run;
                }
                '?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                c => {
                    toks.push(Tok::Char(c));
                    i += 1;
                }
            }
        }
        if stars > MAX_PATTERN_STARS {
            return Err(PatternError::TooManyStars { stars });
        }
        Ok(Pattern { toks })
    }

    /// The group name it stands for, when it has no wildcard (`room\*` is the name `room*`).
    pub fn literal(&self) -> Option<String> {
        self.toks
            .iter()
            .map(|t| match t {
                Tok::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether it matches every group name (`**`).
    pub fn matches_everything(&self) -> bool {
        self.toks == [Tok::Across]
    }

    /// Whether `group` matches, case-sensitively.
    pub fn matches(&self, group: &str) -> bool {
        // `live[j]`: the first `j` elements can match what was read so far.
        let n = self.toks.len();
        let mut live = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        live[0] = true;
        self.close(&mut live);
        for c in group.chars() {
            next.iter_mut().for_each(|b| *b = false);
            let mut any = false;
            for j in 0..n {
                if !live[j] {
                    continue;
                }
                let (stay, advance) = match self.toks[j] {
                    Tok::Char(p) => (false, p == c),
                    Tok::One => (false, c != '.'),
                    Tok::InSegment => (c != '.', false),
                    Tok::Across => (true, false),
                };
                if stay {
                    next[j] = true;
                    any = true;
                }
                if advance {
                    next[j + 1] = true;
                    any = true;
                }
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut live, &mut next);
        }
        live[n]
    }

    /// A star may match nothing: where one is reachable, so is the element after it.
    fn close(&self, live: &mut [bool]) {
        for j in 0..self.toks.len() {
            if live[j] && matches!(self.toks[j], Tok::InSegment | Tok::Across) {
                live[j + 1] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, group: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(group)
    }

    #[test]
    fn wildcards_match_as_the_service_documents() {
        // (pattern, group, matches)
        let table: &[(&str, &str, bool)] = &[
            ("room", "room", true),
            ("room", "Room", false),
            ("room", "room1", false),
            ("room.*", "room.a", true),
            ("room.*", "room.", true),
            ("room.*", "room.a.b", false),
            ("room.*", "room", false),
            ("*.chat", "eu.chat", true),
            ("*.chat", "eu.west.chat", false),
            ("**.chat", "eu.west.chat", true),
            ("**.chat", ".chat", true),
            ("room.**", "room.a.b.c", true),
            ("room.**", "room", false),
            ("room**", "room", true),
            ("r***m", "r.a.m", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axx.byyc", false),
            ("a*b", "abab", true),
            ("room?", "room1", true),
            ("room?", "room", false),
            ("room?", "room12", false),
            ("room?", "room.", false),
            ("??", "ab", true),
            ("??", "a", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*", "a.b", false),
            ("**", "a.b.c", true),
            ("é*", "été", true),
            (r"room\*", "room*", true),
            (r"room\*", "roomx", false),
            (r"room\?", "room?", true),
            (r"room\\", r"room\", true),
            ("Room.*", "room.a", false),
        ];
        for &(pattern, group, expected) in table {
            assert_eq!(m(pattern, group), expected, "{pattern:?} vs {group:?}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse(r"room\"), Err(PatternError::DanglingEscape));
        assert_eq!(
            Pattern::parse(r"ro\om"),
            Err(PatternError::BadEscape {
                position: 2,
                ch: 'o'
            })
        );
        assert_eq!(
            Pattern::parse("a*b*c*d***"),
            Err(PatternError::TooManyStars { stars: 6 })
        );
        assert!(
            Pattern::parse(r"a*b*c*d\*\*\*").is_ok(),
            "escaped stars are free"
        );
        let long = "x".repeat(MAX_PATTERN_CHARS + 1);
        assert_eq!(
            Pattern::parse(&long),
            Err(PatternError::TooLong {
                chars: MAX_PATTERN_CHARS + 1
            })
        );
        assert!(PatternError::BadEscape {
            position: 2,
            ch: 'o'
        }
        .to_string()
        .contains("position 2"));
    }

    #[test]
    fn literal_patterns_name_one_group_and_double_star_names_all() {
        assert_eq!(
            Pattern::parse(r"room\*1").unwrap().literal().as_deref(),
            Some("room*1")
        );
        assert_eq!(Pattern::parse("room*").unwrap().literal(), None);
        assert!(Pattern::parse("**").unwrap().matches_everything());
        assert!(Pattern::parse("*****").unwrap().matches_everything());
        assert!(!Pattern::parse("*").unwrap().matches_everything());
    }

    #[test]
    fn matching_a_long_name_against_many_stars_stays_linear() {
        // A backtracking matcher takes exponential time here; this one walks the name once.
        let p = Pattern::parse("a*a*a*a*a*b").unwrap();
        let group = "a".repeat(1024);
        assert!(!p.matches(&group));
    }
}
