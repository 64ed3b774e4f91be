//! A client in another process, driven over its stdin/stdout with one JSON object per line:
//! the official SDKs' scripts (`benches/python/bench_py.py`, `benches/node/bench_js.js`) and
//! the scale children. The SDK scripts' protocol:
//!
//! ```text
//! argv[1]  {"a": {...}, "a2": {...}, "b": {...}, "c": {...}, "d": {...}, "scale": {...}}
//! stdout   {"ready": "<workload>", "connection_id": ...}   the service side may start
//!          {"result": "<workload>", ...}                    the figures
//!          {"error": "<workload>", "message": ...}          a workload that failed
//!          {"done": true}                                   the last line
//! stdin    "go" after a ready line of "b" and "c": the stream starts now
//! ```
//!
//! Any other line on stdout is passed on to stderr; the script's stderr goes to a file under
//! `target/`.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use webpubsub_emulator::Emulator;

/// The workloads an SDK script runs besides (scale).
pub const SDK_WORKLOADS: [&str; 5] = ["a", "a2", "b", "c", "d"];

/// The figures an SDK script reports, set to "n/a" when the script cannot run at all.
pub const SDK_FIGURES: [&str; 14] = [
    "a.p50",
    "a.p99",
    "a.max",
    "a.rate",
    "a.stalls",
    "a2.rate",
    "b.cb",
    "c.lost",
    "c.dup",
    "c.ooo",
    "c.resume_med",
    "c.gap",
    "d.rss",
    "d.threads",
];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a `setup_*.sh` of the testkit (exit 0: ready, its last stdout line is the path;
/// 3: the interpreter is missing) and returns that path, or why there is none.
pub fn setup(script: &str, missing: &str) -> R<String> {
    let out = Command::new("bash")
        .arg(repo().join(script))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    match out.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            Ok(stdout.lines().last().unwrap_or("").trim().to_owned())
        }
        Some(3) => Err(missing.into()),
        _ => Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
    }
}

pub struct Script {
    who: String,
    child: Child,
    stdin: ChildStdin,
    lines: crossbeam_channel::Receiver<String>,
}

impl Script {
    /// Starts `cmd` (`who` names it in messages), its stderr into `target/<stderr_name>`.
    pub fn start(mut cmd: Command, who: &str, stderr_name: &str) -> R<Script> {
        let stderr = std::fs::File::create(repo().join("target").join(stderr_name))
            .map_err(|e| e.to_string())?;
        let mut child = cmd
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {who}: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Script {
            who: who.to_owned(),
            child,
            stdin,
            lines,
        })
    }

    /// The next JSON line, within `wait`.
    pub fn next(&mut self, wait: Duration) -> R<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let line = self.lines.recv_deadline(deadline).map_err(|e| match e {
                crossbeam_channel::RecvTimeoutError::Timeout => {
                    format!("no answer from {} within {wait:?}", self.who)
                }
                crossbeam_channel::RecvTimeoutError::Disconnected => {
                    format!("{} exited", self.who)
                }
            })?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Ok(v);
            }
            eprintln!("[bench] {}: {line}", self.who);
        }
    }

    /// Writes one line to the script's stdin.
    pub fn send(&mut self, line: &str) -> R<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| e.to_string())
    }

    /// Waits (bounded) for the script to exit by itself.
    pub fn finish(mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Normally exited already; a hung script is ended here.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Workloads (a)–(c) of an SDK script started with `cfg` (the workloads not enabled are
/// removed from it first), the service side played by `emu`. The groups of (b) and (c) are
/// `<prefix>-b` and `<prefix>-c`, as in the config.
pub fn sdk_workloads(
    emu: &Emulator,
    mut cfg: Value,
    start: impl FnOnce(&Value) -> R<Script>,
    prefix: &str,
    line_wait: Duration,
    out: &mut Figures,
) -> R<()> {
    if let Some(map) = cfg.as_object_mut() {
        map.retain(|w, _| enabled(w));
        if map.is_empty() {
            return Ok(());
        }
    }
    let mut s = start(&cfg)?;
    let who = s.who.clone();
    let mut b_begin = 0.0;
    let mut c_run = None;
    loop {
        let v = s.next(line_wait)?;
        if v.get("done").is_some() {
            return Ok(());
        }
        if let Some(name) = v["error"].as_str() {
            let key = match name {
                "a" => "a.p50",
                "a2" => "a2.rate",
                "b" => "b.cb",
                "c" => "c.lost",
                _ => "d.rss",
            };
            let msg = v["message"].as_str().unwrap_or("failed").to_owned();
            eprintln!("[bench] {who} {name}: {msg}");
            out.insert(key, Val::Na(msg));
            continue;
        }
        match (v["ready"].as_str(), v["result"].as_str()) {
            (Some("b"), _) => {
                s.send("go")?;
                b_begin = now_epoch();
                // Joined when the last message is queued; the script reports the rest.
                let _ = blast(emu.hub(HUB), format!("{prefix}-b"), RECEIVE).join();
            }
            (Some("c"), _) => {
                let conn = v["connection_id"]
                    .as_str()
                    .ok_or_else(|| format!("no connection id from {who}"))?
                    .to_owned();
                let watch = RecoveryWatch::start(emu);
                s.send("go")?;
                let stream = paced_stream(emu.hub(HUB), format!("{prefix}-c"), conn.clone());
                c_run = Some((watch, stream, conn));
            }
            (_, Some("a")) => {
                let mut lat: Vec<Duration> = v["latencies_s"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_f64)
                            .map(Duration::from_secs_f64)
                            .collect()
                    })
                    .unwrap_or_default();
                let total = Duration::from_secs_f64(v["total_s"].as_f64().unwrap_or(0.0));
                latency_figures(out, &mut lat, total);
            }
            (_, Some("a2")) => {
                let n = v["n"].as_f64().unwrap_or(0.0);
                let total = v["total_s"].as_f64().unwrap_or(f64::INFINITY);
                out.insert("a2.rate", Val::Num(n / total));
            }
            (_, Some("b")) => {
                if v["complete"].as_bool() == Some(true) {
                    let end = v["end_epoch"].as_f64().unwrap_or(0.0);
                    out.insert("b.cb", Val::Num(RECEIVE as f64 / (end - b_begin)));
                } else {
                    let got = v["received"].as_u64().unwrap_or(0);
                    out.insert(
                        "b.cb",
                        Val::Na(format!("{got} of {RECEIVE} within {WAIT:?}")),
                    );
                }
            }
            (_, Some("c")) => {
                let (watch, stream, conn) = c_run.take().ok_or("result c before ready c")?;
                let drops = stream.join().map_err(|_| "stream thread panicked")?;
                let recs = watch.finish(&conn);
                let arrivals: Vec<(usize, f64)> = v["arrivals"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| Some((p[0].as_u64()? as usize, p[1].as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                recovery_figures(out, &arrivals, &drops, &recs);
            }
            _ => eprintln!("[bench] {who} said {v}"),
        }
    }
}

/// (d) in a script process of its own (started with a config holding only "d"), so that
/// the other workloads' memory does not count.
pub fn sdk_idle(mut s: Script, out: &mut Figures) -> R<()> {
    loop {
        let v = s.next(IDLE + Duration::from_secs(60))?;
        if v["result"].as_str() == Some("d") {
            let idle = Idle {
                rss_kib: v["rss_kib"].as_f64().unwrap_or(f64::NAN),
                threads: v["threads"].as_f64().unwrap_or(f64::NAN),
                cpu_pct: v["cpu_pct"].as_f64().unwrap_or(f64::NAN),
            };
            idle.insert(out);
            return Ok(());
        }
        if let Some(m) = v["message"].as_str() {
            return Err(m.to_owned());
        }
        if v.get("done").is_some() {
            return Err("no figures".into());
        }
    }
}
