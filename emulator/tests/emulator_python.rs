//! Interoperability with the official Python SDKs (client 1.1.0, service 1.3.0):
//! `tests/python/two_clients.py` against an in-process emulator.
//!
//! Needs python3 (skipped with a message if missing) and, the first time, network access
//! to PyPI for `testkit/python/setup_venv.sh`.

mod support;
use webpubsub_testkit::{process, python};

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use webpubsub_emulator::{Emulator, Observation};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn official_python_sdks_exchange_messages_through_the_emulator() {
    support::init_log();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(python) =
        python::venv_python("official_python_sdks_exchange_messages_through_the_emulator")
    else {
        return;
    };

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
    let (code, stdout, stderr) = process::run_bounded(script, SCRIPT_TIMEOUT);
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
