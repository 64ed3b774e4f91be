//! Interoperability with the official Python SDKs (client 1.1.0, service 1.3.0) and a plain
//! Python program: the scripts of `tests/python` against an in-process emulator.
//!
//! Needs python3 (skipped with a message if missing) and, the first time, network access
//! to PyPI for `testkit/python/setup_venv.sh`.

mod support;
use webpubsub_testkit::{process, python};

use serde_json::json;
use std::collections::HashMap;
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

/// The `RESULT <name> <json>` lines a script printed.
fn results(stdout: &str) -> HashMap<String, serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("RESULT name json");
            let value = serde_json::from_str(value)
                .unwrap_or_else(|e| panic!("bad RESULT json ({e}): {l}"));
            (name.to_owned(), value)
        })
        .collect()
}

/// Runs a script of tests/python with the connection string and a hub; returns its results.
fn run_script(
    python: &str,
    script: &str,
    emu: &Emulator,
    hub: &str,
) -> HashMap<String, serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python);
    cmd.arg(root.join("tests/python").join(script))
        .arg(emu.connection_string())
        .arg(hub)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONUNBUFFERED", "1");
    let (code, stdout, stderr) = process::run_bounded(cmd, SCRIPT_TIMEOUT);
    assert_eq!(
        code,
        Some(0),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    results(&stdout)
}

#[test]
fn the_official_python_service_sdk_runs_every_rest_operation_it_has() {
    support::init_log();
    let Some(python) =
        python::venv_python("the_official_python_service_sdk_runs_every_rest_operation_it_has")
    else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let r = run_script(&python, "rest_sdk.py", &emu, "sdk_hub");
    let expect = |name: &str, value: serde_json::Value| {
        assert_eq!(r.get(name), Some(&value), "RESULT {name}; all: {r:#?}");
    };
    expect(
        "exists",
        json!({"connection": [true, false], "group": [true, false], "user": [true, false]}),
    );
    let common = ["ttl 300", "with metadata", "{'json': True}"];
    let with_common = |own: &[&str]| -> serde_json::Value {
        own.iter()
            .chain(common.iter())
            .copied()
            .collect::<Vec<_>>()
            .into()
    };
    expect(
        "filtered_sends",
        json!({
            "alice": with_common(&["all: userId eq 'alice'", "g1 but bob"]),
            "bob": with_common(&["all: 'g2' in groups", "all but alice", "g1: not alice", "bob: on bob's connection"]),
            "carol": with_common(&["all: userId eq null", "all but alice", "to carol"]),
        }),
    );
    let bad = &r["bad_filter"];
    assert_eq!(bad["status"], 400, "{bad}");
    assert_eq!(bad["body"]["code"], "Error.BadRequest", "{bad}");
    assert_eq!(bad["body"]["target"], "filter", "{bad}");
    assert!(
        bad["body"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid filter at position 9: expected a value")),
        "{bad}"
    );
    assert_eq!(r["bad_ttl"]["status"], 400, "{}", r["bad_ttl"]);
    assert_eq!(r["bad_ttl"]["body"]["target"], "messageTtlSeconds");
    expect(
        "after_refusals",
        json!({"alice": [], "bob": [], "carol": []}),
    );
    expect("g3_after_adds", json!(["alice", "carol"]));
    expect("g3_after_removes", json!(false));
    expect("bob_groups_after_remove_all", json!([false]));
    expect("alice_after_remove_all", json!([false, false]));
    expect("add_missing_connection", json!(404));
    expect(
        "list",
        json!([["alice", "alice"], ["bob", "bob"], ["carol", null]]),
    );
    expect(
        "list_pages_of_one",
        json!({"pages": 3, "members": ["alice", "bob", "carol"]}),
    );
    expect("list_top_2", json!(2));
    expect("permissions", json!([true, false, true, true]));
    expect(
        "bulk_groups",
        json!({"add": 200, "members": ["alice", "bob"], "remove": 200, "after": ["alice"], "bad_filter": 400}),
    );
    expect("health", json!(200));
    expect(
        "generated_token",
        json!({"user": true, "lobby": ["dave"], "joins": {"room.a": "ok", "room.a.b": "Forbidden", "lobby.x": "Forbidden"}}),
    );
    expect(
        "closed",
        json!({"dave": true, "alice": true, "bob": true, "carol_still_here": true, "carol": true}),
    );
    assert_eq!(r.len(), 18, "every RESULT is checked: {:?}", r.keys());
}

#[test]
fn a_python_program_drives_faults_over_http_with_the_standard_library() {
    support::init_log();
    let Some(python) =
        python::venv_python("a_python_program_drives_faults_over_http_with_the_standard_library")
    else {
        return;
    };
    let emu = Emulator::builder().rest_faults(true).start().unwrap();
    let obs = emu.observe();
    let r = run_script(&python, "faults_urllib.py", &emu, "fault_hub");
    let id = r["connection_id"]
        .as_str()
        .expect("connection id")
        .to_owned();
    assert_eq!(r["drop"], 204);
    assert_eq!(r["send_while_recovering"], 202);
    assert_eq!(r["received_after_recovery"], json!(["after the drop"]));
    assert_eq!(r["fail_next_ack"], 204);
    assert_eq!(r["joins"], json!(["InternalServerError", "ok"]));
    assert_eq!(r["unknown_connection"], 404);
    assert_eq!(r["forged_token"], 401);
    // The emulator saw the drop and the recovery of that connection.
    let seen: Vec<Observation> = obs.try_iter().collect();
    let dropped = seen
        .iter()
        .any(|o| matches!(o, Observation::Dropped { connection_id, .. } if *connection_id == id));
    let recovered = seen
        .iter()
        .any(|o| matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == id));
    assert!(dropped && recovered, "{seen:#?}");
}
