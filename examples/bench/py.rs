//! The official Python SDK (`azure-messaging-webpubsubclient` 1.1.0) through
//! `benches/python/bench_py.py`, in a venv made by `testkit/python/setup_venv.sh`, driven
//! as `script.rs` describes.
//!
//! The SDK keeps its defaults except its ack timeout, set to `PY_ACK_TIMEOUT` (3 s, the value
//! target/py-sdk-notes.md recommends for tests) for (a) and (a2): its ack race makes a call
//! sleep for the whole ack timeout and then succeed, and against this emulator that happens
//! to about one call in 30, which at the default 30 s would make (a) take half an hour. The
//! stalls stay visible (`calls > 1 s`, max). (a) stops issuing calls after `LATENCY_BUDGET`
//! and reports how many it made. (a2) cannot keep many acked sends in flight from one thread
//! (the SDK has no non-blocking send): it runs `PY_PIPELINED` sends from `PY_THREADS` threads.

use crate::common::*;
use crate::script::{repo, sdk_idle, sdk_workloads, setup, Script, SDK_FIGURES, SDK_WORKLOADS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use webpubsub_emulator::Emulator;

pub const PY_PIPELINED: usize = 2_000;
pub const PY_THREADS: usize = 64;
pub const LATENCY_BUDGET: Duration = Duration::from_secs(60);
const PY_ACK_TIMEOUT: f64 = 3.0;
/// Longest wait for the next line from the script (a stalled call takes 30 s).
const LINE_WAIT: Duration = Duration::from_secs(150);

/// The venv's python, or why there is none.
fn python() -> R<PathBuf> {
    setup("testkit/python/setup_venv.sh", "python3 not found").map(PathBuf::from)
}

fn script(python: &Path, cfg: &Value, stderr_name: &str) -> R<Script> {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("benches/python/bench_py.py"))
        .arg(cfg.to_string());
    Script::start(cmd, "python", stderr_name)
}

pub fn run(emu: &Emulator, out: &mut Figures) {
    if !SDK_WORKLOADS.iter().any(|w| enabled(w)) {
        return;
    }
    let python = match python() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[bench] Python SDK: {e}");
            for k in SDK_FIGURES {
                out.insert(k, Val::Na(e.clone()));
            }
            return;
        }
    };
    let cfg = json!({
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
    let start = |cfg: &Value| script(&python, cfg, "bench-py.stderr");
    if let Err(e) = sdk_workloads(emu, cfg, start, "py", LINE_WAIT, out) {
        eprintln!("[bench] python: {e}");
        for k in SDK_FIGURES {
            out.entry(k).or_insert_with(|| Val::Na(e.clone()));
        }
    }
    if !enabled("d") {
        return;
    }
    let cfg = json!({"d": {"url": client_url(emu, "py-d", "py-d"), "seconds": IDLE.as_secs_f64()}});
    let r = script(&python, &cfg, "bench-py-idle.stderr").and_then(|s| sdk_idle(s, out));
    if let Err(e) = r {
        eprintln!("[bench] python (d): {e}");
        out.insert("d.rss", Val::Na(e));
    }
}
