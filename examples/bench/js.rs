//! The official JavaScript SDK (`@azure/web-pubsub-client` 1.1.0) in Node, through
//! `benches/node/bench_js.js`, with the packages that `testkit/node/setup_node.sh` installs
//! under `target/nodeenv` from `testkit/node/package-lock.json` (the ones the tests use),
//! driven as `script.rs` describes.
//!
//! The SDK keeps every default. Unlike the Python SDK it has a promise per acked send, so
//! (a2) is the same workload as this crate's: `PIPELINED` sends with at most `WINDOW` in
//! flight from the one event loop, awaiting the oldest when the window is full. It has no
//! ack timeout: a lost ack would hang its call, and the driver's bound on each line of the
//! script (`LINE_WAIT`) ends such a run. (a) stops issuing calls after the same budget as
//! Python's.

use crate::common::*;
use crate::py::LATENCY_BUDGET;
use crate::script::{repo, sdk_idle, sdk_workloads, setup, Script, SDK_FIGURES, SDK_WORKLOADS};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use webpubsub_emulator::Emulator;

const LINE_WAIT: Duration = Duration::from_secs(150);

/// The `node_modules` folder with the SDK, or why there is none.
pub fn node_modules() -> R<PathBuf> {
    setup("testkit/node/setup_node.sh", "node or npm not found").map(PathBuf::from)
}

/// `node bench_js.js CONFIG`, the packages on `NODE_PATH`.
pub fn script(modules: &Path, cfg: &Value, stderr_name: &str) -> R<Script> {
    let script = repo().join("benches/node/bench_js.js");
    let cfg = cfg.to_string();
    let cmd: Command = webpubsub_testkit::node::command(modules, &script, &[&cfg]);
    Script::start(cmd, "node", stderr_name)
}

pub fn run(emu: &Emulator, out: &mut Figures) {
    if !SDK_WORKLOADS.iter().any(|w| enabled(w)) {
        return;
    }
    let modules = match node_modules() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[bench] JS SDK: {e}");
            for k in SDK_FIGURES {
                out.insert(k, Val::Na(e.clone()));
            }
            return;
        }
    };
    let cfg = json!({
        "a": {"url": client_url(emu, "js-a", "js-a"), "group": "js-a", "n": LATENCY_CALLS,
              "warmup": WARMUP, "budget_s": LATENCY_BUDGET.as_secs_f64()},
        "a2": {"url": client_url(emu, "js-a2", "js-a2-member"), "group": "js-a2",
               "n": PIPELINED, "window": WINDOW},
        "b": {"url": client_url(emu, "js-b", "js-b"), "n": RECEIVE,
              "timeout_s": WAIT.as_secs_f64()},
        "c": {"url": client_url(emu, "js-c", "js-c"), "n": STREAM,
              "timeout_s": WAIT.as_secs_f64()},
    });
    let start = |cfg: &Value| script(&modules, cfg, "bench-js.stderr");
    if let Err(e) = sdk_workloads(emu, cfg, start, "js", LINE_WAIT, out) {
        eprintln!("[bench] node: {e}");
        for k in SDK_FIGURES {
            out.entry(k).or_insert_with(|| Val::Na(e.clone()));
        }
    }
    if !enabled("d") {
        return;
    }
    let cfg = json!({"d": {"url": client_url(emu, "js-d", "js-d"), "seconds": IDLE.as_secs_f64()}});
    let r = script(&modules, &cfg, "bench-js-idle.stderr").and_then(|s| sdk_idle(s, out));
    if let Err(e) = r {
        eprintln!("[bench] node (d): {e}");
        out.insert("d.rss", Val::Na(e));
    }
}
