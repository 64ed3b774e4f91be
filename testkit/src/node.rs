//! The official Node.js packages for tests (`@azure/web-pubsub-express` with `express`,
//! `@azure/web-pubsub-client`): installed under `target/` from the committed lock file, and
//! Node scripts run as bounded children that find them through `NODE_PATH`; and
//! [`AppServer`], the app server on the official handler package that the workflow tests of
//! both crates put behind the emulator (`testkit/node/app_server.js`).

use crate::process::{run_bounded, Spawned};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// `testkit/node/app_server.js`: an express app server on `@azure/web-pubsub-express` 1.1.0
/// (its behaviour is described at the top of the script), and the JSON lines it printed —
/// one per request it got, so that a test sees what the app server saw. Killed when dropped.
pub struct AppServer {
    process: Spawned,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The `node_modules` folder it runs with (for other Node scripts of the test).
    pub node_modules: PathBuf,
}

impl AppServer {
    /// Bound of every wait for a line.
    pub const WAIT: Duration = Duration::from_secs(15);

    /// Starts it on a free port (after installing the packages); its hub `allowed` allows
    /// the origin of `emulator_endpoint` only. `None` (with a SKIPPED line naming `test`)
    /// when Node is missing.
    pub fn start(test: &str, emulator_endpoint: &str) -> Option<AppServer> {
        let node_modules = node_modules(test)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/app_server.js");
        let process = spawn(&node_modules, &script, &["0", emulator_endpoint]);
        let mut server = AppServer {
            process,
            port: 0,
            node_modules,
        };
        let listening = server.seen(|v| v.get("listening").is_some());
        server.port = listening["listening"].as_u64().expect("a port") as u16;
        Some(server)
    }

    /// `http://127.0.0.1:PORT/api/webpubsub/hubs/{hub}/{event}`, where express's handler
    /// listens.
    pub fn url_template(&self) -> String {
        format!(
            "http://127.0.0.1:{}/api/webpubsub/hubs/{{hub}}/{{event}}",
            self.port
        )
    }

    /// The next record for which `pick` holds, skipping others; panics (with the server's
    /// stderr) if none comes within [`WAIT`](Self::WAIT).
    pub fn seen(&self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Self::WAIT;
        loop {
            let line = self.process.next_line(deadline).unwrap_or_else(|e| {
                panic!(
                    "not seen ({e:?}); the app server's stderr:\n{}",
                    self.process.stderr()
                )
            });
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if pick(&v) {
                    return v;
                }
            }
        }
    }

    /// Every record up to and including the one for which `last` holds.
    pub fn seen_until(&self, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        self.seen(|v| {
            out.push(v.clone());
            last(v)
        });
        out
    }
}

/// Whether a record of the [`AppServer`] is `seen` for the connection `connection_id`.
pub fn is(v: &Value, seen: &str, connection_id: &str) -> bool {
    v["seen"] == seen && v["connectionId"] == connection_id
}
