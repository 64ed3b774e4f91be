//! The official Node.js packages for tests (`@azure/web-pubsub-express` with `express`,
//! `@azure/web-pubsub-client`): installed under `target/` from the committed lock file, and
//! Node scripts run as bounded children that find them through `NODE_PATH`.

use crate::process::{run_bounded, Spawned};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A cold `npm ci` takes about 10 s; this bounds a slow registry.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// The `node_modules` folder made by `testkit/node/setup_node.sh` (idempotent). `None` —
/// with a printed SKIPPED line naming `test` — only when node or npm itself is missing;
/// any other failure panics with the script's output.
pub fn node_modules(test: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut setup = Command::new("bash");
    setup.arg(root.join("node/setup_node.sh"));
    let (code, stdout, stderr) = run_bounded(setup, SETUP_TIMEOUT);
    match code {
        Some(0) => {}
        Some(3) => {
            println!("SKIPPED {test}: node or npm not found");
            return None;
        }
        _ => panic!("setup_node.sh failed ({code:?}):\n{stdout}\n{stderr}"),
    }
    let modules = stdout.lines().last().expect("node_modules path").trim();
    Some(PathBuf::from(modules))
}

/// `node script args…` with the packages on `NODE_PATH` and no proxy for loopback.
pub fn command(node_modules: &Path, script: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(args)
        .env("NODE_PATH", node_modules)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    cmd
}

/// Runs a Node script to completion within `timeout` (killed, and the test failed,
/// otherwise). Returns (exit code, stdout, stderr).
pub fn run_script(
    node_modules: &Path,
    script: &Path,
    args: &[&str],
    timeout: Duration,
) -> (Option<i32>, String, String) {
    run_bounded(command(node_modules, script, args), timeout)
}

/// Starts a long-running Node script (an app server). Its life is bounded by the test's:
/// every read of its output has a deadline, and it is killed when the handle drops.
pub fn spawn(node_modules: &Path, script: &Path, args: &[&str]) -> Spawned {
    Spawned::spawn(command(node_modules, script, args))
        .unwrap_or_else(|e| panic!("spawn node {}: {e}", script.display()))
}
