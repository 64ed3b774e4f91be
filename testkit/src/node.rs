//! The official Node.js packages for tests (`@azure/web-pubsub-express` with `express`,
//! `@azure/web-pubsub-client`): installed under `target/` from the committed lock file, and
//! Node scripts run as bounded children that find them through `NODE_PATH`; and
//! [`AppServer`], the app server on the official handler package that the workflow tests of
//! both crates put behind the emulator (`testkit/node/app_server.js`).

use crate::process::{run_bounded, Spawned};
use parking_lot::{Condvar, Mutex};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
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
/// one per request it got, so that a test sees what the app server saw. Killed when dropped;
/// it also exits when its standard input ends, so one kept in a `static` (shared by the
/// tests of a file, never dropped) ends with the test process.
///
/// Every record is kept: [`seen`](Self::seen) reads them in order with one cursor (one test
/// owns the server), [`first`](Self::first) and [`until`](Self::until) search them all from
/// the start (tests sharing the server, each picking its own connections' records).
pub struct AppServer {
    process: Spawned,
    log: Arc<Log>,
    cursor: Mutex<usize>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The `node_modules` folder it runs with (for other Node scripts of the test).
    pub node_modules: PathBuf,
}

/// The records read so far, filled by a reader thread that ends with the server's output.
struct Log {
    records: Mutex<Records>,
    grew: Condvar,
}

#[derive(Default)]
struct Records {
    lines: Vec<Value>,
    ended: bool,
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
        let mut cmd = command(&node_modules, &script, &["0", emulator_endpoint]);
        cmd.env("APP_SERVER_EXIT_WITH_STDIN", "1");
        let process =
            Spawned::spawn(cmd).unwrap_or_else(|e| panic!("spawn node {}: {e}", script.display()));
        let log = Arc::new(Log {
            records: Mutex::new(Records::default()),
            grew: Condvar::new(),
        });
        let lines = process.lines();
        let sink = Arc::clone(&log);
        // Ends when the server's standard output does (it exited or was killed).
        std::thread::spawn(move || {
            for line in lines.iter() {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.records.lock().lines.push(v);
                    sink.grew.notify_all();
                }
            }
            sink.records.lock().ended = true;
            sink.grew.notify_all();
        });
        let mut server = AppServer {
            process,
            log,
            cursor: Mutex::new(0),
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

    /// The next record (after the last one this returned) for which `pick` holds, skipping
    /// others; panics (with the server's stderr) if none comes within [`WAIT`](Self::WAIT).
    pub fn seen(&self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        let mut cursor = self.cursor.lock();
        let (at, v) = self.search(*cursor, &mut pick);
        *cursor = at + 1;
        v
    }

    /// Every record (after the last one [`seen`](Self::seen) returned) up to and including
    /// the one for which `last` holds.
    pub fn seen_until(&self, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut cursor = self.cursor.lock();
        let from = *cursor;
        let (at, _) = self.search(from, &mut last);
        *cursor = at + 1;
        self.log.records.lock().lines[from..=at].to_vec()
    }

    /// The first record since the server started for which `pick` holds, waiting for it
    /// as [`seen`](Self::seen) does; moves no cursor.
    pub fn first(&self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        self.search(0, &mut pick).1
    }

    /// Every record since the server started, up to and including the first for which
    /// `last` holds (waiting for it as [`seen`](Self::seen) does); moves no cursor. The app
    /// server prints a record when a request arrives, and the emulator sends a connection's
    /// events one at a time, so the records of that connection before `last` are all there.
    pub fn until(&self, mut last: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let (at, _) = self.search(0, &mut last);
        self.log.records.lock().lines[..=at].to_vec()
    }

    fn search(&self, from: usize, pick: &mut dyn FnMut(&Value) -> bool) -> (usize, Value) {
        let deadline = Instant::now() + Self::WAIT;
        let mut records = self.log.records.lock();
        let mut next = from;
        loop {
            while next < records.lines.len() {
                if pick(&records.lines[next]) {
                    return (next, records.lines[next].clone());
                }
                next += 1;
            }
            let why = if records.ended {
                "its output ended"
            } else if self.log.grew.wait_until(&mut records, deadline).timed_out() {
                "timed out"
            } else {
                continue;
            };
            drop(records);
            panic!(
                "not seen ({why}); the app server's stderr:\n{}",
                self.process.stderr()
            );
        }
    }
}

/// Whether a record of the [`AppServer`] is `seen` for the connection `connection_id`.
pub fn is(v: &Value, seen: &str, connection_id: &str) -> bool {
    v["seen"] == seen && v["connectionId"] == connection_id
}
