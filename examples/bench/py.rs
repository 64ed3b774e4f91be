//! The official Python SDK (`azure-messaging-webpubsubclient` 1.1.0) through
//! `benches/python/bench_py.py`, in a venv made by `testkit/python/setup_venv.sh`.
//!
//! The SDK keeps its defaults except its ack timeout, set to `PY_ACK_TIMEOUT` (3 s, the value
//! target/py-sdk-notes.md recommends for tests) for (a) and (a2): its ack race makes a call
//! sleep for the whole ack timeout and then succeed, and against this emulator that happens
//! to about one call in 30, which at the default 30 s would make (a) take half an hour. The
//! stalls stay visible (`calls > 1 s`, max). (a) stops issuing calls after `LATENCY_BUDGET`
//! and reports how many it made. (a2) cannot keep many acked sends in flight from one thread
//! (the SDK has no non-blocking send): it runs `PY_PIPELINED` sends from `PY_THREADS` threads.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use webpubsub_emulator::Emulator;

pub const PY_PIPELINED: usize = 2_000;
pub const PY_THREADS: usize = 64;
const LATENCY_BUDGET: Duration = Duration::from_secs(60);
const PY_ACK_TIMEOUT: f64 = 3.0;
/// Longest wait for the next line from the script (a stalled call takes 30 s).
const LINE_WAIT: Duration = Duration::from_secs(150);

const ALL: [&str; 14] = [
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

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, or why there is none.
fn python() -> R<PathBuf> {
    let out = Command::new("bash")
        .arg(repo().join("testkit/python/setup_venv.sh"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run setup_venv.sh: {e}"))?;
    match out.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let path = stdout.lines().last().unwrap_or("").trim();
            Ok(PathBuf::from(path))
        }
        Some(3) => Err("python3 not found".into()),
        _ => Err(format!(
            "venv setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
    }
}

struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: crossbeam_channel::Receiver<String>,
}

impl Script {
    fn start(python: &Path, config: &Value, stderr_name: &str) -> R<Script> {
        let stderr = std::fs::File::create(repo().join("target").join(stderr_name))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(python)
            .arg(repo().join("benches/python/bench_py.py"))
            .arg(config.to_string())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start python: {e}"))?;
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
            child,
            stdin,
            lines,
        })
    }

    fn next(&mut self) -> R<Value> {
        loop {
            let line = self
                .lines
                .recv_timeout(LINE_WAIT)
                .map_err(|_| format!("no answer from python within {LINE_WAIT:?}"))?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Ok(v);
            }
            eprintln!("[bench] python: {line}");
        }
    }

    fn go(&mut self) -> R<()> {
        self.stdin
            .write_all(b"go\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| e.to_string())
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

pub fn run(emu: &Emulator, out: &mut Figures) {
    let python = match python() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[bench] Python SDK: {e}");
            for k in ALL {
                out.insert(k, Val::Na(e.clone()));
            }
            return;
        }
    };
    if let Err(e) = workloads(emu, &python, out) {
        eprintln!("[bench] python: {e}");
        for k in ALL {
            out.entry(k).or_insert_with(|| Val::Na(e.clone()));
        }
    }
    if !enabled("d") {
        return;
    }
    if let Err(e) = idle(emu, &python, out) {
        eprintln!("[bench] python (d): {e}");
        out.insert("d.rss", Val::Na(e));
    }
}

fn workloads(emu: &Emulator, python: &Path, out: &mut Figures) -> R<()> {
    let mut cfg = json!({
        "a": {"url": client_url(emu, "py-a", "py-a"), "group": "py-a", "n": LATENCY_CALLS,
              "warmup": WARMUP, "budget_s": LATENCY_BUDGET.as_secs_f64(),
              "ack_timeout": PY_ACK_TIMEOUT},
        "a2": {"url": client_url(emu, "py-a2", "py-a2-member"), "group": "py-a2",
               "n": PY_PIPELINED, "threads": PY_THREADS, "ack_timeout": PY_ACK_TIMEOUT},
        "b": {"url": client_url(emu, "py-b", "py-b"), "n": RECEIVE,
              "timeout_s": WAIT.as_secs_f64()},
        "c": {"url": client_url(emu, "py-c", "py-c"), "n": STREAM,
              "timeout_s": WAIT.as_secs_f64()},
    });
    if let Some(map) = cfg.as_object_mut() {
        map.retain(|w, _| enabled(w));
        if map.is_empty() {
            return Ok(());
        }
    }
    let mut s = Script::start(python, &cfg, "bench-py.stderr")?;
    let mut b_begin = 0.0;
    let mut c_run = None;
    loop {
        let v = s.next()?;
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
            eprintln!("[bench] python {name}: {msg}");
            out.insert(key, Val::Na(msg));
            continue;
        }
        match (v["ready"].as_str(), v["result"].as_str()) {
            (Some("b"), _) => {
                s.go()?;
                b_begin = now_epoch();
                // Joined when the last message is queued; the script reports the rest.
                let _ = blast(emu.hub(HUB), "py-b".into(), RECEIVE).join();
            }
            (Some("c"), _) => {
                let conn = v["connection_id"]
                    .as_str()
                    .ok_or("no connection id from python")?
                    .to_owned();
                let watch = RecoveryWatch::start(emu);
                s.go()?;
                let stream = paced_stream(emu.hub(HUB), "py-c".into(), conn.clone());
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
            _ => eprintln!("[bench] python said {v}"),
        }
    }
}

/// (d) in a process of its own, so that the other workloads' memory does not count.
fn idle(emu: &Emulator, python: &Path, out: &mut Figures) -> R<()> {
    let cfg = json!({"d": {"url": client_url(emu, "py-d", "py-d"), "seconds": IDLE.as_secs_f64()}});
    let mut s = Script::start(python, &cfg, "bench-py-idle.stderr")?;
    loop {
        let v = s.next()?;
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
