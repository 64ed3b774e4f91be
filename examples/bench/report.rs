//! The results table: each figure per client, its ratio to the raw client, and the
//! target for this crate.

use crate::common::{Figures, Val};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Ours,
    Raw,
    Python,
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
        target: "≥ 0.5× raw",
        check: Some(|o, r| r.is_some_and(|r| o >= 0.5 * r)),
    },
    Figure {
        id: "b.cb",
        label: "(b) receive, msgs/s to the callback",
        ratio: true,
        target: "≥ 0.5× raw",
        check: Some(|o, r| r.is_some_and(|r| o >= 0.5 * r)),
    },
    Figure {
        id: "b.rx",
        label: "(b) receive, msgs/s to the Receiver",
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
];

pub struct Table {
    ours: Figures,
    raw: Figures,
    py: Figures,
}

impl Table {
    pub fn new() -> Table {
        Table {
            ours: Figures::new(),
            raw: Figures::new(),
            py: Figures::new(),
        }
    }

    pub fn column(&mut self, c: Client) -> &mut Figures {
        match c {
            Client::Ours => &mut self.ours,
            Client::Raw => &mut self.raw,
            Client::Python => &mut self.py,
        }
    }

    pub fn markdown(&self, machine: &str, took: Duration) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "Machine: {machine}. Run took {:.0} s.\n\n",
            took.as_secs_f64()
        ));
        s.push_str("| figure | webpubsub-client | ×raw | raw tungstenite | Python SDK 1.1.0 | ×raw | target | met |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---|:-:|\n");
        for f in FIGURES {
            let (o, r, p) = (self.ours.get(f.id), self.raw.get(f.id), self.py.get(f.id));
            if o.is_none() && r.is_none() && p.is_none() {
                continue;
            }
            let raw_num = num(r);
            let ratio = |v: Option<&Val>| match (f.ratio, num(v), raw_num) {
                (true, Some(v), Some(r)) if r > 0.0 => fmt_ratio(v / r),
                _ => String::new(),
            };
            let met = match (f.check, num(o)) {
                (Some(check), Some(v)) => {
                    if check(v, raw_num) {
                        "yes"
                    } else {
                        "**no**"
                    }
                }
                (Some(_), None) => "?",
                (None, _) => "",
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                f.label,
                cell(o),
                ratio(o),
                cell(r),
                cell(p),
                ratio(p),
                f.target,
                met
            ));
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
