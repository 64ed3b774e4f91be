//! The import graph of a crate's modules, read from its sources, to keep dependencies
//! pointing one way: a test lists the crate's layers, and any `use` against them fails it.
//!
//! Reads every `.rs` file under `src/`; a file belongs to its top-level module (`src/io/mod.rs`
//! and `src/io/ended.rs` are both `io`; `lib.rs` and `main.rs` are the root and are not
//! checked). An edge `a → b` is any mention of `crate::b` in module `a`, or of `super::b` in
//! a direct child of the root. Text in comments and string literals counts too: a doc link
//! to another module is a dependency of the reader as much as a `use` is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module name → the modules it mentions.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose `src/` folder is given.
pub fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(from) = top_module(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let direct_child = file.parent() == Some(src);
        for to in mentions(&text, "crate::")
            .into_iter()
            .chain(if direct_child {
                mentions(&text, "super::")
            } else {
                Vec::new()
            })
        {
            if to != from && modules.contains(&to) {
                g.get_mut(&from).expect("known module").insert(to);
            }
        }
    }
    g
}

/// Checks the crate against its layers, lowest first: a module may use modules of its own
/// layer or below, never above. Every module must be in a layer. Returns every violation
/// (`"a → b"`), or nothing.
pub fn layer_violations(src: &Path, layers: &[&[&str]]) -> Vec<String> {
    let g = graph(src);
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect();
    let mut out = Vec::new();
    for (from, tos) in &g {
        let Some(&rf) = rank.get(from.as_str()) else {
            out.push(format!("{from} is in no layer"));
            continue;
        };
        for to in tos {
            match rank.get(to.as_str()) {
                Some(&rt) if rt > rf => out.push(format!("{from} → {to} (a higher layer)")),
                Some(_) => {}
                None => out.push(format!("{to} is in no layer")),
            }
        }
    }
    out.extend(cycles(&g));
    out.sort();
    out.dedup();
    out
}

/// Every cycle of the graph, each as `"a → b → a"` starting at its smallest module.
pub fn cycles(g: &Graph) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in g.keys() {
        let mut path = vec![start.clone()];
        walk(g, start, &mut path, &mut found);
    }
    found.into_iter().collect()
}

fn walk(g: &Graph, start: &str, path: &mut Vec<String>, found: &mut BTreeSet<String>) {
    let last = path.last().expect("non-empty").clone();
    for next in &g[&last] {
        if next == start {
            // Report each cycle once: from its smallest member.
            if path.iter().all(|m| m.as_str() >= start) {
                found.insert(format!("{} → {start}", path.join(" → ")));
            }
        } else if next.as_str() > start && !path.contains(next) {
            path.push(next.clone());
            walk(g, start, path, found);
            path.pop();
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" => None,
        // `#[path]` test files beside their module (`state_tests.rs`) belong to it.
        n => Some(n.strip_suffix("_tests").unwrap_or(n).to_owned()),
    }
}

fn mentions(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        // `webpubsub_crate::x` or `a_super::x` are other paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                push_ident(item.trim(), &mut out);
            }
        } else {
            push_ident(rest, &mut out);
        }
    }
    out
}

fn push_ident(s: &str, out: &mut Vec<String>) {
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // Lower case: a module (`crate::Error` is a re-export at the root).
    if ident.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.push(ident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_read_paths_and_groups() {
        assert_eq!(
            mentions(
                "use crate::{acks::X, state}; crate::io::spawn(); my_crate::no",
                "crate::"
            ),
            vec!["acks", "state", "io"]
        );
        assert!(mentions("use crate::Error;", "crate::").is_empty());
    }

    #[test]
    fn cycles_are_found_once_from_their_smallest_member() {
        let mut g = Graph::new();
        let edge = |g: &mut Graph, a: &str, b: &str| {
            g.entry(a.into()).or_default().insert(b.into());
            g.entry(b.into()).or_default();
        };
        edge(&mut g, "a", "b");
        edge(&mut g, "b", "c");
        edge(&mut g, "c", "a");
        edge(&mut g, "c", "d");
        assert_eq!(cycles(&g), vec!["a → b → c → a".to_owned()]);
    }
}
