//! What the three clients share: workload sizes, payloads, the service side of (b) and (c),
//! the recovery analysis, latency statistics and the (d) child process.

use crossbeam_channel::RecvTimeoutError;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webpubsub_emulator::{Emulator, HubHandle, Observation};

pub const HUB: &str = "bench";
/// (a): sequential acked sends, after `WARMUP` untimed ones.
pub const LATENCY_CALLS: usize = 2_000;
pub const WARMUP: usize = 50;
/// A call slower than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// (a2): acked sends with at most `WINDOW` in flight.
pub const PIPELINED: usize = 100_000;
pub const WINDOW: usize = 1_000;
/// (b): server messages pushed as fast as the emulator goes.
pub const RECEIVE: usize = 20_000;
/// (c): a stream at `RATE` messages/s with drops before these indices.
pub const STREAM: usize = 20_000;
pub const RATE: u64 = 10_000;
pub const DROPS_AT: [usize; 3] = [5_000, 10_000, 15_000];
/// (d): how long the child idles.
pub const IDLE: Duration = Duration::from_secs(10);
/// Bound of a single workload's wait.
pub const WAIT: Duration = Duration::from_secs(60);

pub const ROLES: [&str; 2] = ["webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"];

/// Whether workload `w` (`a`, `a2`, `b`, `c`, `d`) runs: all, unless `BENCH_WORKLOADS`
/// (comma-separated) names some — for profiling one of them.
pub fn enabled(w: &str) -> bool {
    std::env::var("BENCH_WORKLOADS").map_or(true, |v| v.split(',').any(|x| x.trim() == w))
}

/// Whether workload `w` is named in `BENCH_WORKLOADS`: for the profiling workloads, which
/// a full run leaves out.
pub fn named(w: &str) -> bool {
    std::env::var("BENCH_WORKLOADS").is_ok_and(|v| v.split(',').any(|x| x.trim() == w))
}

/// A 100-byte text payload whose first 8 characters are `i`.
pub fn payload(i: usize) -> String {
    let mut s = format!("{i:08}");
    s.extend(std::iter::repeat_n('x', 100 - s.len()));
    s
}

/// The index `payload` wrote, from a message's text.
pub fn payload_index(text: &str) -> Option<usize> {
    text.get(..8)?.parse().ok()
}

/// Wall-clock seconds: the one clock the Python process shares with us (for (c)).
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A client access URL of the bench hub, joined to `group` by its token.
pub fn client_url(emu: &Emulator, user: &str, group: &str) -> String {
    emu.client_url(HUB)
        .user_id(user)
        .roles(ROLES)
        .group(group)
        .build()
}

/// The figures of one client, by figure id (see `report::FIGURES`).
pub type Figures = BTreeMap<&'static str, Val>;

/// A workload's outcome: an error text becomes the figure's "n/a" cell.
pub type R<T> = Result<T, String>;

/// Records a failed workload of `client` as "n/a" under `key` (and says so on stderr).
pub fn record(client: &str, out: &mut Figures, key: &'static str, r: R<()>) {
    if let Err(e) = r {
        eprintln!("[bench] {client} {key}: {e}");
        out.insert(key, Val::Na(e));
    }
}

/// A figure: a number, or why there is none.
#[derive(Debug, Clone)]
pub enum Val {
    Num(f64),
    Na(String),
}

/// Latency statistics of (a), in µs.
pub fn latency_figures(out: &mut Figures, lat: &mut [Duration], total: Duration) {
    if lat.is_empty() {
        out.insert("a.p50", Val::Na("no calls".into()));
        return;
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1e6
    };
    out.insert("a.p50", Val::Num(pct(0.50)));
    out.insert("a.p99", Val::Num(pct(0.99)));
    out.insert("a.max", Val::Num(lat[lat.len() - 1].as_secs_f64() * 1e6));
    out.insert(
        "a.rate",
        Val::Num(lat.len() as f64 / total.as_secs_f64().max(1e-9)),
    );
    out.insert(
        "a.stalls",
        Val::Num(lat.iter().filter(|d| **d > STALL).count() as f64),
    );
    out.insert("a.calls", Val::Num(lat.len() as f64));
}

/// (b)'s service side: `n` server messages to `group`, from a thread of its own, as fast
/// as the emulator takes them.
pub fn blast(hub: HubHandle, group: String, n: usize) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("bench-blast".into())
        .spawn(move || {
            let data = payload(0);
            for _ in 0..n {
                hub.send_to_group(&group, data.clone());
            }
        })
        .expect("spawn")
}

/// (bstep)'s service side: `n` server messages to `group`, each sent once the client said
/// (on `next`) that the one before arrived, so that every read finds one frame. Ends early
/// if a message does not arrive within `WAIT`.
pub fn blast_stepped(
    hub: HubHandle,
    group: String,
    n: usize,
    next: crossbeam_channel::Receiver<()>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("bench-step".into())
        .spawn(move || {
            let data = payload(0);
            for _ in 0..n {
                hub.send_to_group(&group, data.clone());
                if next.recv_timeout(WAIT).is_err() {
                    return;
                }
            }
        })
        .expect("spawn")
}

/// (c)'s service side: `STREAM` messages at `RATE`/s to `group`, dropping `conn_id`'s
/// socket before the indices in `DROPS_AT`. Returns the drop times (epoch seconds).
///
/// A drop due while the client is still away (recovering from the previous one) waits until
/// its socket is back, so a slow recovery gets fewer drops; `c.drops` then says how many.
pub fn paced_stream(hub: HubHandle, group: String, conn_id: String) -> JoinHandle<Vec<f64>> {
    std::thread::Builder::new()
        .name("bench-stream".into())
        .spawn(move || {
            let start = Instant::now();
            let mut drops = Vec::new();
            let mut due_drops = 0;
            for i in 0..STREAM {
                if DROPS_AT.contains(&i) {
                    due_drops += 1;
                }
                if drops.len() < due_drops {
                    let t = now_epoch();
                    if hub.drop_connection(&conn_id) {
                        drops.push(t);
                    }
                }
                // 1 ms ticks of 10 messages: sleeping per message would cost more than it paces.
                if i % 10 == 0 {
                    let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                hub.send_to_group(&group, payload(i));
            }
            drops
        })
        .expect("spawn")
}

/// Records when the emulator recovers a session (epoch seconds), until `stop` is dropped.
pub struct RecoveryWatch {
    stop: crossbeam_channel::Sender<()>,
    thread: JoinHandle<Vec<(f64, String)>>,
}

impl RecoveryWatch {
    pub fn start(emu: &Emulator) -> RecoveryWatch {
        let obs = emu.observe();
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            loop {
                crossbeam_channel::select! {
                    recv(obs) -> o => match o {
                        Ok(Observation::Recovered { connection_id, .. }) => {
                            seen.push((now_epoch(), connection_id));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    },
                    recv(stop_rx) -> _ => break,
                }
            }
            seen
        });
        RecoveryWatch { stop, thread }
    }

    /// Recovery times of `conn_id`.
    pub fn finish(self, conn_id: &str) -> Vec<f64> {
        drop(self.stop);
        let seen = self.thread.join().unwrap_or_default();
        seen.into_iter()
            .filter(|(_, c)| c == conn_id)
            .map(|(t, _)| t)
            .collect()
    }
}

/// (c)'s figures from the deliveries `(index, epoch seconds)` in the order the application
/// saw them, the drop times and the emulator's recovery times.
///
/// drop→resumed is the time from a drop to the first delivery at or after the emulator
/// accepted the recovery (so that messages still read from the dead socket's buffer do not
/// count as resumed).
pub fn recovery_figures(out: &mut Figures, arrivals: &[(usize, f64)], drops: &[f64], recs: &[f64]) {
    let mut seen = vec![false; STREAM];
    let (mut distinct, mut dup, mut ooo, mut max_idx) = (0usize, 0usize, 0usize, None);
    for &(i, _) in arrivals {
        if i >= STREAM {
            continue;
        }
        if seen[i] {
            dup += 1;
            continue;
        }
        seen[i] = true;
        distinct += 1;
        if max_idx.is_some_and(|m| i < m) {
            ooo += 1;
        }
        max_idx = Some(max_idx.map_or(i, |m: usize| m.max(i)));
    }
    out.insert("c.lost", Val::Num((STREAM - distinct) as f64));
    out.insert("c.dup", Val::Num(dup as f64));
    out.insert("c.ooo", Val::Num(ooo as f64));
    let mut resumed = Vec::new();
    for (k, &d) in drops.iter().enumerate() {
        let next_drop = drops.get(k + 1).copied().unwrap_or(f64::INFINITY);
        let Some(&r) = recs.iter().find(|&&r| r >= d && r < next_drop) else {
            continue;
        };
        if let Some(&(_, t)) = arrivals.iter().find(|(_, t)| *t >= r) {
            resumed.push((t - d) * 1e3);
        }
    }
    if drops.len() < DROPS_AT.len() {
        out.insert(
            "c.drops",
            Val::Na(format!("{} of {} drops done", drops.len(), DROPS_AT.len())),
        );
    }
    if resumed.len() == drops.len() && !resumed.is_empty() {
        resumed.sort_by(f64::total_cmp);
        out.insert("c.resume_med", Val::Num(resumed[resumed.len() / 2]));
        out.insert("c.resume_max", Val::Num(resumed[resumed.len() - 1]));
    } else {
        let why = format!("{} of {} drops recovered", resumed.len(), drops.len());
        out.insert("c.resume_med", Val::Na(why.clone()));
        out.insert("c.resume_max", Val::Na(why));
    }
    let mut times: Vec<f64> = arrivals.iter().map(|a| a.1).collect();
    // Python's callbacks run on threads of their own: gaps are between arrival times.
    times.sort_by(f64::total_cmp);
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    out.insert("c.gap", Val::Num(gap * 1e3));
}

/// (d) as measured by a process on itself.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    pub rss_kib: f64,
    pub threads: f64,
    pub cpu_pct: f64,
}

impl Idle {
    pub fn to_json(self) -> String {
        format!(
            "{{\"rss_kib\":{},\"threads\":{},\"cpu_pct\":{}}}",
            self.rss_kib, self.threads, self.cpu_pct
        )
    }

    pub fn insert(self, out: &mut Figures) {
        out.insert("d.rss", Val::Num(self.rss_kib / 1024.0));
        out.insert("d.threads", Val::Num(self.threads));
        out.insert("d.cpu", Val::Num(self.cpu_pct));
    }
}

/// CPU seconds (utime + stime) of this process.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may contain spaces: the fields that matter come after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux we run on (sysconf would need libc).
    ticks / 100.0
}

/// `(VmHWM KiB, Threads)` of this process.
pub fn peak_rss_and_threads() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field("VmHWM:"), field("Threads:"))
}

/// Idles for `IDLE` (running `tick` meanwhile, if the client needs the calling thread) and
/// measures this process.
pub fn measure_idle(mut tick: impl FnMut(Instant) -> Result<(), String>) -> Result<Idle, String> {
    let cpu0 = cpu_seconds();
    let end = Instant::now() + IDLE;
    tick(end)?;
    let cpu1 = cpu_seconds();
    let (rss_kib, threads) = peak_rss_and_threads();
    Ok(Idle {
        rss_kib,
        threads,
        cpu_pct: (cpu1 - cpu0) / IDLE.as_secs_f64() * 100.0,
    })
}

/// Runs this binary as `--child-idle which url` and reads its figures.
pub fn idle_child(which: &str, url: &str, out: &mut Figures) {
    let result = (|| -> Result<Idle, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["--child-idle", which, url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(IDLE + Duration::from_secs(30)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("child gave no figures".into());
            }
        };
        let _ = child.wait();
        parse_idle(&line)
    })();
    match result {
        Ok(idle) => idle.insert(out),
        Err(e) => {
            out.insert("d.rss", Val::Na(e));
        }
    }
}

pub fn parse_idle(line: &str) -> Result<Idle, String> {
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("bad figures {line:?}: {e}"))?;
    let num = |k: &str| v[k].as_f64().ok_or_else(|| format!("no {k} in {line:?}"));
    Ok(Idle {
        rss_kib: num("rss_kib")?,
        threads: num("threads")?,
        cpu_pct: num("cpu_pct")?,
    })
}
