//! The results table: each figure per client, its ratio to the raw client, and the
//! target for this crate.

use crate::common::{Figures, Val};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Client {
    Ours,
    /// This crate with every client of the process on one shared runtime (scale only).
    OursShared,
    Raw,
    Python,
    Js,
}

/// A target for this crate: checked against its figure and the raw client's.
type Check = fn(ours: f64, raw: Option<f64>) -> bool;

struct Figure {
    id: &'static str,
    label: &'static str,
    /// Whether a ratio to raw means something (not for counts that should be 0).
    ratio: bool,
    target: &'static str,
    check: Option<Check>,
}

const FIGURES: &[Figure] = &[
    Figure {
        id: "a.p50",
        label: "(a) latency p50, µs",
        ratio: true,
        target: "≤ 1.3× raw",
        check: Some(|o, r| r.is_some_and(|r| o <= 1.3 * r)),
    },
    Figure {
        id: "a.p99",
        label: "(a) latency p99, µs",
        ratio: true,
        target: "≤ 3× raw",
        check: Some(|o, r| r.is_some_and(|r| o <= 3.0 * r)),
    },
    Figure {
        id: "a.max",
        label: "(a) latency max, µs",
        ratio: true,
        target: "< ack timeout (30 s)",
        check: Some(|o, _| o < 30e6),
    },
    Figure {
        id: "a.rate",
        label: "(a) calls/s",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "a.stalls",
        label: "(a) calls > 1 s",
        ratio: false,
        target: "0",
        check: Some(|o, _| o == 0.0),
    },
    Figure {
        id: "a.calls",
        label: "(a) calls timed",
        ratio: false,
        target: "",
        check: None,
    },
    Figure {
        id: "a2.rate",
        label: "(a2) pipelined acked sends/s",
        ratio: true,
        target: "≥ 0.75× raw",
        check: Some(|o, r| r.is_some_and(|r| o >= 0.75 * r)),
    },
    Figure {
        id: "b.cb",
        label: "(b) receive, msgs/s to the callback",
        ratio: true,
        target: "≥ 0.75× raw",
        check: Some(|o, r| r.is_some_and(|r| o >= 0.75 * r)),
    },
    Figure {
        id: "b.rx",
        label: "(b) receive, msgs/s to the Receiver",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "b1.cb",
        label: "(b1) receive, one frame per write, msgs/s to the callback",
        ratio: true,
        target: "≥ 0.75× raw",
        check: Some(|o, r| r.is_some_and(|r| o >= 0.75 * r)),
    },
    Figure {
        id: "bstep.cb",
        label: "(bstep) receive one at a time (profiling), msgs/s to the callback",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "c.lost",
        label: "(c) lost",
        ratio: false,
        target: "0",
        check: Some(|o, _| o == 0.0),
    },
    Figure {
        id: "c.dup",
        label: "(c) duplicated",
        ratio: false,
        target: "0",
        check: Some(|o, _| o == 0.0),
    },
    Figure {
        id: "c.ooo",
        label: "(c) out of order",
        ratio: false,
        target: "0",
        check: Some(|o, _| o == 0.0),
    },
    Figure {
        id: "c.drops",
        label: "(c) drops done",
        ratio: false,
        target: "",
        check: None,
    },
    Figure {
        id: "c.resume_med",
        label: "(c) drop→resumed median, ms",
        ratio: true,
        target: "≤ 2 ms",
        check: Some(|o, _| o <= 2.0),
    },
    Figure {
        id: "c.resume_max",
        label: "(c) drop→resumed max, ms",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "c.gap",
        label: "(c) longest gap between deliveries, ms",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "d.rss",
        label: "(d) idle client: peak RSS, MiB",
        ratio: true,
        target: "≤ 8 MiB",
        check: Some(|o, _| o <= 8.0),
    },
    Figure {
        id: "d.threads",
        label: "(d) idle client: threads",
        ratio: true,
        target: "≤ 3",
        check: Some(|o, _| o <= 3.0),
    },
    Figure {
        id: "d.cpu",
        label: "(d) idle client: CPU over 10 s, % of a core",
        ratio: false,
        target: "≤ 0.5 %",
        check: Some(|o, _| o <= 0.5),
    },
    // The 1 KiB binary workloads (bench/binary.rs): each protocol the median of its rounds.
    Figure {
        id: "bbin.json",
        label: "(bbin) receive 1 KiB binary, msgs/s to the callback: JSON reliable",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "bbin.pbr",
        label: "(bbin) receive 1 KiB binary, msgs/s to the callback: protobuf reliable",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "bbin.pb",
        label: "(bbin) receive 1 KiB binary, msgs/s to the callback: protobuf (plain)",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "bbin.ratio",
        label: "(bbin) protobuf reliable ÷ JSON reliable",
        ratio: false,
        target: "≥ 1.5",
        check: Some(|o, _| o >= 1.5),
    },
    Figure {
        id: "a2bin.json",
        label: "(a2bin) pipelined acked sends of 1 KiB binary/s: JSON reliable",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "a2bin.pbr",
        label: "(a2bin) pipelined acked sends of 1 KiB binary/s: protobuf reliable",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "a2bin.ratio",
        label: "(a2bin) protobuf reliable ÷ JSON reliable",
        ratio: false,
        target: "≥ 1.5",
        check: Some(|o, _| o >= 1.5),
    },
];

/// The scale rows, once per number of clients (`{n}` in the label is that number).
const SCALE_FIGURES: &[Figure] = &[
    Figure {
        id: "scale.connect",
        label: "(scale) {n} clients: connect all, s",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "scale.threads",
        label: "(scale) {n} clients: threads of the process",
        ratio: true,
        target: "",
        check: None,
    },
    Figure {
        id: "scale.rss",
        label: "(scale) {n} clients: RSS per client, KiB",
        ratio: true,
        target: "≤ 64 KiB",
        check: Some(|o, _| o <= 64.0),
    },
    Figure {
        id: "scale.rss_burst",
        label: "(scale) {n} clients: RSS per client after a 256 KiB message each, KiB",
        ratio: true,
        target: "≤ 64 KiB",
        check: Some(|o, _| o <= 64.0),
    },
    Figure {
        id: "scale.broadcast",
        label: "(scale) {n} clients: one broadcast to all, ms",
        ratio: true,
        target: "",
        check: None,
    },
];

/// The columns in the order printed, with their headers; a client with a `×raw` column
/// after its own. A column without any figure in a run is left out.
const COLUMNS: &[(Client, &str, bool)] = &[
    (Client::Ours, "webpubsub-client", true),
    (Client::OursShared, "webpubsub-client, shared runtime", true),
    (Client::Raw, "raw tungstenite", false),
    (Client::Python, "Python SDK 1.1.0", true),
    (Client::Js, "JS SDK 1.1.0", true),
];

pub struct Table {
    columns: BTreeMap<Client, Figures>,
    /// Per number of clients, the scale figures of each client.
    scale: BTreeMap<usize, BTreeMap<Client, Figures>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            columns: BTreeMap::new(),
            scale: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    pub fn column(&mut self, c: Client) -> &mut Figures {
        self.columns.entry(c).or_default()
    }

    /// The scale figures of client `c` with `n` clients.
    pub fn scale_column(&mut self, n: usize, c: Client) -> &mut Figures {
        self.scale.entry(n).or_default().entry(c).or_default()
    }

    /// A line printed under the table.
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    pub fn markdown(&self, machine: &str, took: Duration) -> String {
        let empty = Figures::new();
        let has = |c: Client| {
            self.columns.get(&c).is_some_and(|f| !f.is_empty())
                || self
                    .scale
                    .values()
                    .any(|m| m.get(&c).is_some_and(|f| !f.is_empty()))
        };
        let shown: Vec<&(Client, &str, bool)> = COLUMNS.iter().filter(|c| has(c.0)).collect();
        let mut s = String::new();
        s.push_str(&format!(
            "Machine: {machine}. Run took {:.0} s.\n\n",
            took.as_secs_f64()
        ));
        s.push_str("| figure |");
        let mut rule = String::from("|---|");
        for (_, header, ratio) in &shown {
            s.push_str(&format!(" {header} |"));
            rule.push_str("---:|");
            if *ratio {
                s.push_str(" ×raw |");
                rule.push_str("---:|");
            }
        }
        s.push_str(" target | met |\n");
        rule.push_str("---|:-:|\n");
        s.push_str(&rule);
        let mut rows = |f: &Figure, label: &str, cols: &BTreeMap<Client, Figures>| {
            let get = |c: Client| cols.get(&c).unwrap_or(&empty).get(f.id);
            if shown.iter().all(|c| get(c.0).is_none()) {
                return;
            }
            let raw_num = num(get(Client::Raw));
            let ratio = |v: Option<&Val>| match (f.ratio, num(v), raw_num) {
                (true, Some(v), Some(r)) if r > 0.0 => fmt_ratio(v / r),
                _ => String::new(),
            };
            let ours = get(Client::Ours);
            let met = match (f.check, num(ours)) {
                (Some(check), Some(v)) => {
                    if check(v, raw_num) {
                        "yes"
                    } else {
                        "**no**"
                    }
                }
                (Some(_), None) if ours.is_some() => "?",
                _ => "",
            };
            s.push_str(&format!("| {label} |"));
            for (c, _, with_ratio) in &shown {
                let v = get(*c);
                s.push_str(&format!(" {} |", cell(v)));
                if *with_ratio {
                    s.push_str(&format!(" {} |", ratio(v)));
                }
            }
            s.push_str(&format!(" {} | {met} |\n", f.target));
        };
        for f in FIGURES {
            rows(f, f.label, &self.columns);
        }
        for (n, cols) in &self.scale {
            for f in SCALE_FIGURES {
                rows(f, &f.label.replace("{n}", &fmt_num(*n as f64)), cols);
            }
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for line in &self.notes {
                s.push_str(&format!("- {line}\n"));
            }
        }
        s
    }
}

fn num(v: Option<&Val>) -> Option<f64> {
    match v {
        Some(Val::Num(n)) if n.is_finite() => Some(*n),
        _ => None,
    }
}

fn cell(v: Option<&Val>) -> String {
    match v {
        None => "—".into(),
        Some(Val::Na(why)) => format!("n/a ({})", why.replace('|', "/")),
        Some(Val::Num(n)) => fmt_num(*n),
    }
}

/// `0.62`, `11.4`, `8,978`; small ratios keep two significant digits (`0.0036`).
fn fmt_ratio(x: f64) -> String {
    if x >= 10.0 || x == 0.0 {
        fmt_num(x)
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        let digits = (-x.log10().floor()) as usize + 1;
        format!("{x:.digits$}")
    }
}

/// Three significant digits at most, thousands separated.
fn fmt_num(n: f64) -> String {
    if !n.is_finite() {
        return format!("{n}");
    }
    let a = n.abs();
    let decimals = if a >= 100.0 || n.fract() == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{n:.decimals$}");
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}
