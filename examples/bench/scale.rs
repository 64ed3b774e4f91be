//! (scale): `n` clients in one process against one emulator in another.
//!
//! For each client kind and each `n` (`BENCH_SCALE`, default 1,000 and 10,000), the driver
//! starts a fresh `webpubsub-emulator` binary (so that the emulator's memory is not counted,
//! and no session of an earlier run lingers in it), mints a client URL with the access key
//! its connection string prints, and starts the clients' process: this bench as
//! `--child-scale ours|raw CONFIG`, or `bench_js.js` with a "scale" config. The child
//! and the driver then talk in lines (JSON from the child, words from the driver):
//!
//! ```text
//! child   measures VmRSS, connects n clients (at most `connecting` in flight, each counted
//!         when the service's `connected` message arrived), measures again:
//!         {"ready": "scale", "connected", "connect_s", "rss_before_kib", "rss_kib",
//!          "threads", "fds", "fd_limit", "error"?}
//! driver  "go", then one REST broadcast of a 100-byte text to the hub (epoch t0)
//! child   {"result": "broadcast", "received", "last_epoch"}   the n-th delivery's time
//! driver  "go", then one REST broadcast of a `BIG`-byte text
//! child   every client got it; idles `SETTLE`; {"result": "burst", "received", "rss_kib"}
//! driver  "stop"; the child stops its clients and exits
//! ```
//!
//! The child's side for the Rust clients is `scale_child.rs`, the emulator process
//! `emulator_process.rs`. RSS per client is (VmRSS after − VmRSS before connecting) / n, of
//! the clients' process alone. A kind that cannot connect all `n` reports how many it did
//! and why (the first error), with the open files and their limit of both processes.
//!
//! This crate on a shared runtime (every client of the child on one `Runtime`: two threads
//! in all) runs as the `ours` child with `BENCH_SCALE_RUNTIME=shared`, in a column of its
//! own.
//!
//! To add a column: a `Client` and its header in `report.rs`, an entry in `KINDS` below,
//! and a `--child-scale` mode in `bench.rs` that calls `ours::child_scale` with a closure
//! building such a client.

use crate::common::*;
use crate::emulator_process::{emulator_binary, EmulatorProcess};
use crate::report::{Client, Table};
use crate::script::Script;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const SCALE_HUB: &str = "scale";
/// At most this many connects in flight, for every kind.
pub const CONNECTING: usize = 64;
/// The burst: one text message of this size to every client.
pub const BIG: usize = 256 * 1024;
/// Idle time after the burst, before the RSS is read.
pub const SETTLE: Duration = Duration::from_secs(3);
/// Bound of one client's connect.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Set to `shared` in the environment of an `ours` child: its clients share one runtime.
pub const RUNTIME_ENV: &str = "BENCH_SCALE_RUNTIME";

/// The client kinds of the scale workload: the table's column and the child to start.
const KINDS: &[(Client, Launch)] = &[
    (Client::Raw, Launch::Bench("raw")),
    (Client::Ours, Launch::Bench("ours")),
    (Client::Js, Launch::Node),
];

#[derive(Clone, Copy)]
enum Launch {
    /// This bench binary as `--child-scale MODE CONFIG`.
    Bench(&'static str),
    /// This bench binary as `--child-scale ours CONFIG`, its clients on one shared runtime.
    Shared,
    /// `benches/node/bench_js.js` with `{"scale": CONFIG}`.
    Node,
}

/// The numbers of clients: `BENCH_SCALE=1000,10000` (the default).
pub fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_SCALE") {
        Ok(v) => v
            .split(',')
            .filter_map(|s| s.trim().replace('_', "").parse().ok())
            .filter(|&n| n > 0)
            .collect(),
        Err(_) => vec![1_000, 10_000],
    }
}

/// What a scale child is told (also the JS script's "scale" object).
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub url: String,
    pub n: usize,
    pub connecting: usize,
    pub client_timeout: Duration,
    /// Bound of connecting all `n`.
    pub connect_budget: Duration,
    /// Bound of each broadcast's deliveries.
    pub wait: Duration,
    pub big_bytes: usize,
    pub settle: Duration,
}

impl ScaleConfig {
    fn new(url: String, n: usize) -> ScaleConfig {
        ScaleConfig {
            url,
            n,
            connecting: CONNECTING,
            client_timeout: CLIENT_TIMEOUT,
            connect_budget: Duration::from_secs(30) + Duration::from_millis(10) * n as u32,
            wait: WAIT,
            big_bytes: BIG,
            settle: SETTLE,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "url": self.url, "n": self.n, "connecting": self.connecting,
            "client_timeout_s": self.client_timeout.as_secs_f64(),
            "connect_budget_s": self.connect_budget.as_secs_f64(),
            "wait_s": self.wait.as_secs_f64(), "big_bytes": self.big_bytes,
            "settle_s": self.settle.as_secs_f64(),
        })
    }

    pub fn from_json(text: &str) -> R<ScaleConfig> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("bad config: {e}"))?;
        let num = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in the config"));
        let secs = |k: &str| num(k).map(Duration::from_secs_f64);
        Ok(ScaleConfig {
            url: v["url"].as_str().ok_or("no url in the config")?.to_owned(),
            n: num("n")? as usize,
            connecting: num("connecting")? as usize,
            client_timeout: secs("client_timeout_s")?,
            connect_budget: secs("connect_budget_s")?,
            wait: secs("wait_s")?,
            big_bytes: num("big_bytes")? as usize,
            settle: secs("settle_s")?,
        })
    }
}

/// Raises the soft limit of open files to the hard one (children inherit it); returns the
/// soft limit now.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("[bench] cannot raise the open-files limit: {e}");
    }
    fd_limit()
}

/// The soft limit of open files (0 where there is none to read).
pub fn fd_limit() -> u64 {
    #[cfg(unix)]
    return rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    #[cfg(not(unix))]
    return 0;
}

fn label(c: Client) -> &'static str {
    match c {
        Client::Ours => "webpubsub-client",
        Client::OursShared => "webpubsub-client on one shared runtime",
        Client::Raw => "raw tungstenite",
        Client::Python => "Python SDK",
        Client::Js => "JS SDK",
    }
}

/// Runs the scale workload for the kinds `wants` selects, at every size.
pub fn run(table: &mut Table, wants: impl Fn(&str) -> bool) {
    let limit = raise_fd_limit();
    eprintln!("[bench] scale: open-files limit {limit}");
    let chosen: Vec<(Client, Launch)> = KINDS
        .iter()
        .copied()
        .filter(|(_, l)| match l {
            Launch::Bench(mode) => wants(mode),
            Launch::Shared => unreachable!("not a column"),
            Launch::Node => wants("js"),
        })
        .collect();
    let shared = wants("ours") || wants("ours-shared");
    if chosen.is_empty() && !shared {
        return;
    }
    let emulator = emulator_binary();
    let node = chosen
        .iter()
        .any(|(_, l)| matches!(l, Launch::Node))
        .then(crate::js::node_modules);
    for n in sizes() {
        for &(client, launch) in &chosen {
            eprintln!("[bench] scale: {n} clients of {} ...", label(client));
            let out = table.scale_column(n, client);
            let r = emulator.clone().and_then(|bin| {
                let modules = match (&node, launch) {
                    (Some(m), Launch::Node) => Some(m.clone()?),
                    _ => None,
                };
                one(&bin, n, launch, modules, out)
            });
            match r {
                Ok(note) => table.note(format!(
                    "(scale) the emulator process with {} clients of {}: {note}",
                    fmt_count(n),
                    label(client)
                )),
                Err(e) => {
                    eprintln!("[bench] scale {n} {}: {e}", label(client));
                    out.entry("scale.connect").or_insert(Val::Na(e));
                }
            }
        }
        if shared {
            let client = Client::OursShared;
            eprintln!("[bench] scale: {n} clients of {} ...", label(client));
            let out = table.scale_column(n, client);
            let r = emulator
                .clone()
                .and_then(|bin| one(&bin, n, Launch::Shared, None, out));
            match r {
                Ok(note) => table.note(format!(
                    "(scale) the emulator process with {} clients of {}: {note}",
                    fmt_count(n),
                    label(client)
                )),
                Err(e) => {
                    eprintln!("[bench] scale {n} {}: {e}", label(client));
                    out.entry("scale.connect").or_insert(Val::Na(e));
                }
            }
        }
    }
}

/// One kind at one size; returns the emulator's usage once all were connected.
fn one(
    bin: &Path,
    n: usize,
    launch: Launch,
    modules: Option<PathBuf>,
    out: &mut Figures,
) -> R<String> {
    let emu = EmulatorProcess::start(bin, "bench-scale-emulator.stderr")?;
    let cfg = ScaleConfig::new(emu.client_url(), n);
    let mut s = match (launch, modules) {
        (Launch::Bench(_) | Launch::Shared, _) => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut cmd = Command::new(exe);
            let (mode, name) = match launch {
                Launch::Bench(mode) => {
                    cmd.env_remove(RUNTIME_ENV);
                    (mode, mode)
                }
                _ => {
                    cmd.env(RUNTIME_ENV, "shared");
                    ("ours", "ours-shared")
                }
            };
            cmd.args(["--child-scale", mode, &cfg.to_json().to_string()]);
            Script::start(
                cmd,
                &format!("scale child {name}"),
                &format!("bench-scale-{name}.stderr"),
            )?
        }
        (Launch::Node, Some(modules)) => crate::js::script(
            &modules,
            &json!({"scale": cfg.to_json()}),
            "bench-scale-js.stderr",
        )?,
        (Launch::Node, None) => return Err("no node_modules".into()),
    };
    let v = s.next(cfg.connect_budget + cfg.client_timeout + Duration::from_secs(30))?;
    if let Some(e) = v["message"].as_str() {
        return Err(e.to_owned());
    }
    let num = |v: &Value, k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {v}"));
    let connected = num(&v, "connected")? as usize;
    let emu_usage = emu.usage();
    if connected < n {
        let (emu_fds, emu_limit) = emu.files();
        let why = format!(
            "{} of {} connected: {}; open files: {} of {} here, {} of {} in the emulator",
            fmt_count(connected),
            fmt_count(n),
            v["error"].as_str().unwrap_or("?"),
            fmt_count(num(&v, "fds")? as usize),
            fmt_count(num(&v, "fd_limit")? as usize),
            fmt_count(emu_fds),
            fmt_count(emu_limit as usize),
        );
        out.insert("scale.connect", Val::Na(why));
        let _ = s.send("stop");
        s.finish(Duration::from_secs(60));
        return Ok(emu_usage);
    }
    let rss_before = num(&v, "rss_before_kib")?;
    out.insert("scale.connect", Val::Num(num(&v, "connect_s")?));
    out.insert("scale.threads", Val::Num(num(&v, "threads")?));
    out.insert(
        "scale.rss",
        Val::Num((num(&v, "rss_kib")? - rss_before) / n as f64),
    );

    // One small broadcast: the time until the n-th client has it.
    s.send("go")?;
    let t0 = now_epoch();
    emu.broadcast(payload(0))?;
    let v = s.next(cfg.wait + Duration::from_secs(10))?;
    match v["last_epoch"].as_f64() {
        Some(t) => out.insert("scale.broadcast", Val::Num((t - t0) * 1e3)),
        None => out.insert(
            "scale.broadcast",
            Val::Na(format!("{} of {n} within {:?}", v["received"], cfg.wait)),
        ),
    };

    // The burst, unless this machine cannot hold it: each message is held by the client, the
    // emulator's unacked buffer and the socket buffers in between.
    let need_kib = (n * BIG * 4 / 1024) as f64;
    let available = mem_available_kib();
    if need_kib > available / 2.0 {
        out.insert(
            "scale.rss_burst",
            Val::Na(format!(
                "skipped: needs ~{:.1} GiB, {:.1} GiB available",
                need_kib / 1048576.0,
                available / 1048576.0
            )),
        );
    } else {
        let tcp_before = TcpPressure::read();
        s.send("go")?;
        emu.broadcast("x".repeat(BIG))?;
        let v = s.next(cfg.wait + cfg.settle + Duration::from_secs(10))?;
        if v["last_epoch"].is_null() {
            let tcp = TcpPressure::read().since(tcp_before);
            out.insert(
                "scale.rss_burst",
                Val::Na(format!(
                    "{} of {n} within {:?}{}",
                    v["received"],
                    cfg.wait,
                    tcp.note()
                )),
            );
        } else {
            out.insert(
                "scale.rss_burst",
                Val::Num((num(&v, "rss_kib")? - rss_before) / n as f64),
            );
        }
    }
    s.send("stop")?;
    s.finish(Duration::from_secs(60));
    Ok(emu_usage)
}

/// The kernel's TCP memory counters (`TcpExt` of `/proc/net/netstat`, for the whole machine).
/// A burst to many sockets puts up to `n` × 256 KiB in socket buffers at once; past
/// `tcp_mem`'s pressure threshold the kernel drops segments at the receive queues, and the
/// senders retransmit them with exponential backoff (200 ms, 400 ms, ... — eight drops of one
/// segment make it wait over 50 s), whatever the clients do once they read again. A burst
/// that does not arrive in time says whether that happened.
#[derive(Clone, Copy, Default)]
struct TcpPressure {
    pressures: u64,
    rcvq_drops: u64,
}

impl TcpPressure {
    fn read() -> TcpPressure {
        let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return TcpPressure::default();
        };
        let mut p = TcpPressure::default();
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            match name {
                "TCPMemoryPressures" => p.pressures = value.parse().unwrap_or(0),
                "TCPRcvQDrop" => p.rcvq_drops = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        p
    }

    fn since(self, before: TcpPressure) -> TcpPressure {
        TcpPressure {
            pressures: self.pressures.saturating_sub(before.pressures),
            rcvq_drops: self.rcvq_drops.saturating_sub(before.rcvq_drops),
        }
    }

    /// What the cell of an incomplete burst adds: nothing if the kernel was not under TCP
    /// memory pressure meanwhile.
    fn note(self) -> String {
        if self.pressures == 0 && self.rcvq_drops == 0 {
            return String::new();
        }
        let max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
            .ok()
            .and_then(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
            .map(|pages| format!(" of {} MiB", pages * 4 / 1024))
            .unwrap_or_default();
        format!(
            "; the kernel's TCP memory{max} was under pressure meanwhile ({} time(s), {} \
             segments dropped at receive queues, machine-wide): retransmission backoff",
            self.pressures, self.rcvq_drops
        )
    }
}

fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut s = String::new();
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            s.push(',');
        }
        s.push(ch);
    }
    s
}

fn mem_available_kib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}
