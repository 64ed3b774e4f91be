//! The official Python SDKs for tests: the virtual environment under `target/` and bounded
//! child processes.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cold install (pip from PyPI) takes 10–20 s; this bounds a slow index.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// The venv's python, created by `testkit/python/setup_venv.sh` (idempotent). `None` — with a
/// printed SKIPPED line naming `test` — only when python3 itself is missing; any other
/// failure panics with the script's output.
pub fn venv_python(test: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut setup = Command::new("bash");
    setup.arg(root.join("python/setup_venv.sh"));
    let (code, stdout, stderr) = run_bounded(setup, SETUP_TIMEOUT);
    match code {
        Some(0) => {}
        Some(3) => {
            println!("SKIPPED {test}: python3 not found");
            return None;
        }
        _ => panic!("setup_venv.sh failed ({code:?}):\n{stdout}\n{stderr}"),
    }
    let python = stdout.lines().last().expect("venv python path").trim();
    Some(python.to_owned())
}

/// Runs a child to completion within `timeout`, killing it otherwise.
/// Returns (exit code, stdout, stderr).
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(2);
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(());
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx2.send(());
        s
    });
    // Both pipes reach EOF when the child exits (or when it is killed).
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let status = child.wait().expect("wait");
    let (stdout, stderr) = (t1.join().unwrap(), t2.join().unwrap());
    if timed_out {
        panic!("{cmd:?} timed out after {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    (status.code(), stdout, stderr)
}
