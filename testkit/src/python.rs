//! The official Python SDKs (and the other Python packages the tests use) in a virtual
//! environment under `target/`, installed from the committed lock file
//! `testkit/python/requirements.lock`.

use crate::process::run_bounded;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
