//! Interoperability with the official Python SDKs (client 1.1.0, service 1.3.0):
//! `tests/python/two_clients.py` against an in-process emulator.
//!
//! Needs python3 (skipped with a message if missing) and, the first time, network access
//! to PyPI for `tests/python/setup_venv.sh`.
#![cfg(feature = "emulator")]

mod emulator_support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use webpubsub_client::emulator::{Emulator, Observation};

const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a child to completion within `timeout`, killing it otherwise.
/// Returns (exit code, stdout, stderr).
fn run_bounded(mut cmd: Command, timeout: Duration) -> (Option<i32>, String, String) {
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
    let deadline = std::time::Instant::now() + timeout;
    let mut timed_out = false;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
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

#[test]
fn official_python_sdks_exchange_messages_through_the_emulator() {
    emulator_support::init_log();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut setup = Command::new("bash");
    setup.arg(root.join("tests/python/setup_venv.sh"));
    let (code, stdout, stderr) = run_bounded(setup, SETUP_TIMEOUT);
    match code {
        Some(0) => {}
        Some(3) => {
            println!("SKIPPED official_python_sdks_exchange_messages_through_the_emulator: python3 not found");
            return;
        }
        _ => panic!("setup_venv.sh failed ({code:?}):\n{stdout}\n{stderr}"),
    }
    let python = stdout
        .lines()
        .last()
        .expect("venv python path")
        .trim()
        .to_owned();

    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let mut script = Command::new(&python);
    script
        .arg(root.join("tests/python/two_clients.py"))
        .arg(emu.connection_string())
        .arg("py_hub")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONUNBUFFERED", "1");
    let (code, stdout, stderr) = run_bounded(script, SCRIPT_TIMEOUT);
    assert_eq!(
        code,
        Some(0),
        "two_clients.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The emulator saw two reliable clients.
    let reliable = obs
        .try_iter()
        .filter(
            |o| matches!(o, Observation::Connected { reliable: true, hub, .. } if hub == "py_hub"),
        )
        .count();
    assert_eq!(reliable, 2, "stdout:\n{stdout}");
}
