//! Every citation of `docs/` in the workspace resolves.
//!
//! Code and tests point at the references in `docs/`: behaviour items (`// B12`, see
//! docs/BEHAVIOR.md), protocol sections (`PROTOCOL.md §7`, `PROTOCOL §7`, or a bare `§7`, which
//! means PROTOCOL.md unless another document was named before it on the line), upstream sections
//! (`UPSTREAM.md §4`) and the protobuf reference (`PROTOBUF.md`). This test reads the comments of
//! every `.rs` file of the workspace (the client, its tests, examples and benchmarks, the
//! protocol, the emulator, the testkit, the fuzz targets) and the text of every `.md` file, and
//! fails naming each citation that does not resolve to an item or a section of `docs/`.
//!
//! Text inside string and character literals is not a citation; `§` after `RFC <n>` cites the
//! RFC, not us.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Directories never scanned: build output, version control, installed packages.
const SKIP_DIRS: [&str; 4] = ["target", ".git", "node_modules", "pyenv"];

#[test]
fn every_citation_of_the_docs_in_the_workspace_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = Docs::load(&root.join("docs"));
    // The documents themselves parse into the numbering the code relies on.
    assert_eq!(docs.behavior, (1..=46).collect(), "BEHAVIOR.md items");
    assert_eq!(docs.protocol, (1..=13).collect(), "PROTOCOL.md sections");
    assert_eq!(docs.upstream, (1..=7).collect(), "UPSTREAM.md sections");

    let mut files = Vec::new();
    collect(root, &mut files);
    let (mut rs_files, mut md_files) = (0, 0);
    let mut counts = Counts::default();
    let mut unresolved = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let citations = match path.extension().and_then(|e| e.to_str()) {
            Some("rs") => {
                rs_files += 1;
                let found = citations(&comments(&text));
                // This file's own examples are checked, not counted.
                if !rel.ends_with("docs_citations.rs") {
                    counts.add(&found);
                }
                found
            }
            _ => {
                md_files += 1;
                // An item's own definition is not a citation of it.
                let defines_items = rel.ends_with("docs/BEHAVIOR.md");
                let lines: Vec<(usize, String)> = text
                    .lines()
                    .enumerate()
                    .map(|(i, l)| (i + 1, l.to_owned()))
                    .collect();
                citations(&lines)
                    .into_iter()
                    .filter(|c| !(defines_items && matches!(c.cited, Cited::Behavior(_))))
                    .collect()
            }
        };
        for c in citations {
            if !docs.resolves(&c.cited) {
                unresolved.push(format!(
                    "{rel}:{}: {} ({})",
                    c.line,
                    c.cited,
                    docs.has(&c.cited)
                ));
            }
        }
    }
    println!(
        "{rs_files} .rs and {md_files} .md files; citations in .rs comments: {} behaviour items, \
         {} PROTOCOL.md sections, {} UPSTREAM.md sections, {} of whole documents",
        counts.behavior, counts.protocol, counts.upstream, counts.documents
    );
    assert!(
        unresolved.is_empty(),
        "{} citations do not resolve to docs/:\n{}",
        unresolved.len(),
        unresolved.join("\n")
    );
    // Not vacuous: the scan saw the workspace and the code's many citations.
    assert!(
        rs_files >= 50,
        "only {rs_files} .rs files found under {root:?}"
    );
    assert!(
        counts.behavior >= 150,
        "only {} behaviour citations found",
        counts.behavior
    );
    assert!(
        counts.protocol >= 5,
        "only {} PROTOCOL.md citations found",
        counts.protocol
    );
}

// ---------------------------------------------------------------------------------------
// The documents

struct Docs {
    behavior: BTreeSet<u32>,
    protocol: BTreeSet<u32>,
    upstream: BTreeSet<u32>,
    files: BTreeSet<String>,
}

impl Docs {
    fn load(dir: &Path) -> Docs {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("docs/{name}: {e}"))
        };
        let files = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        Docs {
            behavior: behavior_items(&read("BEHAVIOR.md")),
            protocol: sections(&read("PROTOCOL.md")),
            upstream: sections(&read("UPSTREAM.md")),
            files,
        }
    }

    fn resolves(&self, c: &Cited) -> bool {
        match c {
            Cited::Behavior(n) => self.behavior.contains(n),
            Cited::Section(Doc::Protocol, n) => self.protocol.contains(n),
            Cited::Section(Doc::Upstream, n) => self.upstream.contains(n),
            // PROTOBUF.md and BEHAVIOR.md have no numbered sections.
            Cited::Section(_, _) => false,
            Cited::Document(d) => self.files.contains(d.file()),
        }
    }

    /// What the cited document holds, for the failure message.
    fn has(&self, c: &Cited) -> String {
        let range = |s: &BTreeSet<u32>, prefix: &str| match (s.first(), s.last()) {
            (Some(a), Some(b)) => format!("{prefix}{a}…{prefix}{b}"),
            _ => "nothing".into(),
        };
        match c {
            Cited::Behavior(_) => format!("BEHAVIOR.md has {}", range(&self.behavior, "B")),
            Cited::Section(Doc::Protocol, _) => {
                format!("PROTOCOL.md has {}", range(&self.protocol, "§"))
            }
            Cited::Section(Doc::Upstream, _) => {
                format!("UPSTREAM.md has {}", range(&self.upstream, "§"))
            }
            Cited::Section(d, _) => format!("{} has no numbered sections", d.file()),
            Cited::Document(d) => format!("docs/{} does not exist", d.file()),
        }
    }
}

/// `- **B12** …` at the start of a line.
fn behavior_items(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("- **B")?.split("**").next()?.parse().ok())
        .collect()
}

/// `## 7. …` headings.
fn sections(text: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("## ")?.split_once(". ")?.0.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Citations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doc {
    Behavior,
    Protocol,
    Upstream,
    Protobuf,
}

impl Doc {
    fn file(self) -> &'static str {
        match self {
            Doc::Behavior => "BEHAVIOR.md",
            Doc::Protocol => "PROTOCOL.md",
            Doc::Upstream => "UPSTREAM.md",
            Doc::Protobuf => "PROTOBUF.md",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Cited {
    Behavior(u32),
    Section(Doc, u32),
    Document(Doc),
}

impl fmt::Display for Cited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cited::Behavior(n) => write!(f, "`B{n}`"),
            Cited::Section(d, n) => write!(f, "`{} §{n}`", d.file()),
            Cited::Document(d) => write!(f, "`{}`", d.file()),
        }
    }
}

#[derive(Debug)]
struct Citation {
    line: usize,
    cited: Cited,
}

#[derive(Default)]
struct Counts {
    behavior: usize,
    protocol: usize,
    upstream: usize,
    documents: usize,
}

impl Counts {
    fn add(&mut self, found: &[Citation]) {
        for c in found {
            match c.cited {
                Cited::Behavior(_) => self.behavior += 1,
                Cited::Section(Doc::Upstream, _) => self.upstream += 1,
                Cited::Section(_, _) => self.protocol += 1,
                Cited::Document(_) => self.documents += 1,
            }
        }
    }
}

/// The citations in lines of prose (comment text or Markdown).
fn citations(lines: &[(usize, String)]) -> Vec<Citation> {
    let mut out = Vec::new();
    for (line, text) in lines {
        let chars: Vec<char> = text.chars().collect();
        // The document a bare `§n` refers to; `None` after `RFC <n>`.
        let mut context = Some(Doc::Protocol);
        let mut i = 0;
        while i < chars.len() {
            let at_word_start = i == 0 || !is_word(chars[i - 1]);
            if at_word_start {
                if let Some((doc, len, dotted)) = doc_name(&chars[i..]) {
                    context = Some(doc);
                    // `PROTOBUF.md` and `BEHAVIOR.md` cite the file; `PROTOCOL.md §7` a
                    // section (checked when its `§` is read).
                    if dotted && !followed_by_section(&chars[i + len..]) {
                        out.push(Citation {
                            line: *line,
                            cited: Cited::Document(doc),
                        });
                    }
                    i += len;
                    continue;
                }
                if starts_with(&chars[i..], "RFC") {
                    context = None;
                    i += 3;
                    continue;
                }
                if chars[i] == 'B' {
                    let (n, len) = number(&chars[i + 1..]);
                    let ends = chars.get(i + 1 + len).is_none_or(|c| !is_word(*c));
                    if let (Some(n), true) = (n, ends) {
                        out.push(Citation {
                            line: *line,
                            cited: Cited::Behavior(n),
                        });
                        i += 1 + len;
                        continue;
                    }
                }
            }
            if chars[i] == '§' {
                let mut j = i + 1;
                while chars.get(j) == Some(&' ') {
                    j += 1;
                }
                let (first, len) = number(&chars[j..]);
                j += len;
                // A range: `§3–7`, `§3-7`, `§3 to §7`.
                let mut last = first;
                let rest: String = chars[j..].iter().take(6).collect();
                for sep in ["–", "-", " to §", " to "] {
                    if let Some(after) = rest.strip_prefix(sep) {
                        let after: Vec<char> = after.chars().collect();
                        if let (Some(n), _) = number(&after) {
                            last = Some(n);
                            j += sep.chars().count() + number(&after).1;
                        }
                        break;
                    }
                }
                if let (Some(doc), Some(first), Some(last)) = (context, first, last) {
                    for n in first..=last.max(first) {
                        out.push(Citation {
                            line: *line,
                            cited: Cited::Section(doc, n),
                        });
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            i += 1;
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts_with(chars: &[char], s: &str) -> bool {
    let mut it = chars.iter();
    s.chars().all(|c| it.next() == Some(&c))
}

/// `PROTOCOL.md`, `PROTOCOL`, …: (document, length, whether `.md` was written).
fn doc_name(chars: &[char]) -> Option<(Doc, usize, bool)> {
    for doc in [Doc::Behavior, Doc::Protocol, Doc::Upstream, Doc::Protobuf] {
        let stem = doc.file().trim_end_matches(".md");
        if !starts_with(chars, stem) {
            continue;
        }
        let n = stem.len();
        if starts_with(&chars[n..], ".md") && chars.get(n + 3).is_none_or(|c| !is_word(*c)) {
            return Some((doc, n + 3, true));
        }
        if chars.get(n).is_none_or(|c| !is_word(*c)) {
            return Some((doc, n, false));
        }
    }
    None
}

fn followed_by_section(chars: &[char]) -> bool {
    chars
        .iter()
        .find(|c| **c != ' ' && **c != ',')
        .is_some_and(|c| *c == '§')
}

/// A decimal number at the start: (value, digits).
fn number(chars: &[char]) -> (Option<u32>, usize) {
    let digits: String = chars.iter().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().ok(), digits.len())
}

// ---------------------------------------------------------------------------------------
// Rust comments

/// The text of every comment of a Rust source, line by line: `(line number, text)`. String,
/// raw string and character literals are skipped, block comments may nest.
fn comments(src: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let push = |out: &mut Vec<(usize, String)>, line: usize, c: char| match out.last_mut() {
        Some((l, text)) if *l == line => text.push(c),
        _ => out.push((line, c.to_string())),
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '/' if next == Some('/') => {
                i += 2;
                while i < chars.len() && chars[i] != '\n' {
                    push(&mut out, line, chars[i]);
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while i < chars.len() && depth > 0 {
                    match (chars[i], chars.get(i + 1).copied()) {
                        ('/', Some('*')) => {
                            depth += 1;
                            i += 2;
                        }
                        ('*', Some('/')) => {
                            depth -= 1;
                            i += 2;
                        }
                        ('\n', _) => {
                            line += 1;
                            i += 1;
                        }
                        (ch, _) => {
                            push(&mut out, line, ch);
                            i += 1;
                        }
                    }
                }
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if chars.get(i) == Some(&'\n') {
                        line += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            'r' if (i == 0
                || !is_word(chars[i - 1])
                || (chars[i - 1] == 'b' && (i < 2 || !is_word(chars[i - 2]))))
                && matches!(next, Some('"') | Some('#')) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    i += 1; // a raw identifier such as `r#type`
                    continue;
                }
                i += 2 + hashes;
                loop {
                    match chars.get(i) {
                        None => break,
                        Some('"')
                            if chars[i + 1..]
                                .iter()
                                .take(hashes)
                                .filter(|c| **c == '#')
                                .count()
                                == hashes =>
                        {
                            i += 1 + hashes;
                            break;
                        }
                        Some('\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            '\'' => {
                // A character literal (`'x'`, `'\n'`, `'\u{e9}'`), or else a lifetime.
                if next == Some('\\') {
                    // The escaped character itself may be a quote (`'\''`).
                    let end = chars[i + 3..].iter().position(|c| *c == '\'');
                    i += end.map_or(1, |e| e + 4);
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                collect(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scanner, on known input: it finds what it must and nothing else.

fn cited(src: &str) -> Vec<String> {
    citations(&comments(src))
        .iter()
        .map(|c| format!("{}:{}", c.line, c.cited))
        .collect()
}

#[test]
fn the_scanner_finds_citations_in_comments_only() {
    let src = r##"
        // B12, and B3.
        /// PROTOCOL.md §7 and PROTOCOL §4; UPSTREAM.md §2, then §5.
        let s = "B99 PROTOCOL.md §99 // B98"; let c = '"'; // B1
        /* a block, /* nested */ B2 */ let r = r#"B97 "# ; // §3–5
        fn f<'a>(x: &'a str) {} // see RFC 6455 §4.1 and PROTOBUF.md; B20B is a word
    "##;
    assert_eq!(
        cited(src),
        [
            "2:`B12`",
            "2:`B3`",
            "3:`PROTOCOL.md §7`",
            "3:`PROTOCOL.md §4`",
            "3:`UPSTREAM.md §2`",
            "3:`UPSTREAM.md §5`",
            "4:`B1`",
            "5:`B2`",
            "5:`PROTOCOL.md §3`",
            "5:`PROTOCOL.md §4`",
            "5:`PROTOCOL.md §5`",
            "6:`PROTOBUF.md`",
        ]
    );
}

#[test]
fn unknown_items_and_sections_do_not_resolve() {
    let docs = Docs::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
    let found = citations(&comments(
        "// B47 B0 PROTOCOL.md §14, §13 UPSTREAM.md §8 PROTOBUF.md §1 B46",
    ));
    let unresolved: Vec<String> = found
        .iter()
        .filter(|c| !docs.resolves(&c.cited))
        .map(|c| c.cited.to_string())
        .collect();
    assert_eq!(
        unresolved,
        [
            "`B47`",
            "`B0`",
            "`PROTOCOL.md §14`",
            "`UPSTREAM.md §8`",
            "`PROTOBUF.md §1`"
        ]
    );
    assert_eq!(found.len(), 7);
}
