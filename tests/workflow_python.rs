//! The whole workflow on one machine with the OFFICIAL Python client
//! (`azure-messaging-webpubsubclient` 1.1.0, `tests/workflow_support/peer.py`) next to ours:
//! the emulator in front of the app server on the official handler package
//! (`testkit/node/app_server.js`), every step seen by the Python client, on the wire (a
//! recording relay) and by the app server (UPSTREAM.md §2–§3):
//!
//! - connect sets the user id and state; a refusal (401) fails the client's open;
//! - user events echo text, JSON and binary, the reply on the wire before the ack; a 5xx is
//!   `InvocationFailed`; the state counts the calls;
//! - a recovery in the middle of an event, released by OUR client: one handler call, the
//!   reply not lost (the SDK itself fails the pending send at the drop); disconnected
//!   recorded when the Python client closes.
//!
//! (The Python SDK has no invoke.) One app server and one emulator for the file. Needs node,
//! npm and python3 (skipped with a message if missing) and, the first time, the registries.

mod support;
mod workflow_support;

use crossbeam_channel::Receiver;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use webpubsub_emulator::Observation;
use webpubsub_testkit::chaos_proxy::ChaosProxy;
use webpubsub_testkit::python;
use workflow_support::{frames_to_client, is, reply_and_ack, workflow, Peer, Workflow};

const WAIT: Duration = Duration::from_secs(15);

fn peer(test: &str) -> Option<(&'static Workflow, Peer)> {
    let wf = workflow(test)?;
    let python = python::venv_python(test)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflow_support/peer.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONIOENCODING", "utf-8");
    Some((wf, Peer::spawn(cmd)))
}

/// Connects the peer's client `name` to `url` as `user`; returns its connection id.
fn connect(p: &mut Peer, url: &str, name: &str, user: &str) -> String {
    let a = p.ok(json!({"op": "connect", "client": name, "url": url}));
    assert_eq!(
        a["userId"],
        format!("app-{user}"),
        "the app server's user id"
    );
    a["connectionId"].as_str().unwrap().to_owned()
}

fn send(p: &mut Peer, client: &str, event: &str, data_type: &str, data: Value) -> Value {
    p.call(json!({"op": "send", "client": client, "event": event, "dataType": data_type, "data": data}))
}

fn server_message(p: &mut Peer, client: &str) -> Value {
    p.next(|v| v["event"] == "server-message" && v["client"] == client)
}

fn until<T: std::fmt::Debug>(rx: &Receiver<T>, mut pick: impl FnMut(&T) -> bool) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match rx.recv_deadline(deadline) {
            Ok(v) if pick(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("not observed in time: {e}"),
        }
    }
}

#[test]
fn the_python_client_is_shaped_by_connect_and_a_refused_connect_fails_its_open() {
    let Some((wf, mut p)) = peer("the_python_client_is_shaped_by_connect") else {
        return;
    };
    let conn = connect(&mut p, &wf.url("py1"), "a", "py1");
    let connect = wf.assert_shaped_by_connect(&conn, "py1");
    assert_eq!(
        connect["subprotocols"],
        json!(["json.reliable.webpubsub.azure.v1"])
    );

    let refused = format!("{}&refuse=1", wf.url("py-refused"));
    let a = p.call(json!({"op": "connect", "client": "r", "url": refused}));
    assert_eq!(a["ok"], false, "{a}");
    assert!(a["error"].to_string().contains("401"), "the status: {a}");
    wf.server
        .first(|v| v["seen"] == "connect" && v["claims"]["sub"] == json!(["py-refused"]));
}

#[test]
fn python_user_events_echo_each_data_type_with_the_reply_before_the_ack_and_count_calls() {
    let Some((wf, mut p)) = peer("python_user_events_echo_each_data_type") else {
        return;
    };
    let relay: ChaosProxy = wf.recording_relay();
    let conn = connect(&mut p, &wf.url_via(&relay, "py-echo"), "a", "py-echo");
    for (n, (data_type, data)) in [
        ("text", json!("héllo ✓")),
        ("json", json!({"a": [1, 2.5, null], "b": "ü"})),
        ("binary", json!("AAH+/w==")),
    ]
    .into_iter()
    .enumerate()
    {
        let a = send(&mut p, "a", "echo", data_type, data.clone());
        assert_eq!(a["ok"], true, "{a}");
        let reply = server_message(&mut p, "a");
        assert_eq!(
            (&reply["dataType"], &reply["data"]),
            (&json!(data_type), &data)
        );
        let seen = wf
            .server
            .first(|v| is(v, "echo", &conn) && v["dataType"] == data_type);
        assert_eq!(seen["data"], data, "what the app server got");
        // The SDK counts ack ids from 1.
        let frames = frames_to_client(&relay);
        let (reply, ack) = reply_and_ack(&frames, &data, n as u64 + 1);
        assert!(reply < ack, "the reply comes before the ack: {frames:#?}");
    }
    let a = send(&mut p, "a", "fail500", "text", json!("x"));
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(a["error"]["type"], "SendMessageError", "{a}");
    assert_eq!(a["error"]["detail"]["name"], "InvocationFailed", "{a}");
    // Counted: the three echoes and the count (a failure's state is not sent back).
    let a = send(&mut p, "a", "count", "text", json!("x"));
    assert_eq!(a["ok"], true, "{a}");
    let reply = server_message(&mut p, "a");
    assert_eq!(reply["data"]["calls"], 4, "{reply}");
    assert_eq!(reply["data"]["userId"], "app-py-echo");
}

#[test]
fn a_python_client_recovering_in_the_middle_of_an_event_gets_the_reply_from_one_handler_call() {
    let Some((wf, mut p)) = peer("a_python_client_recovering_in_the_middle_of_an_event") else {
        return;
    };
    let obs = wf.emu.observe();
    let conn = connect(&mut p, &wf.url("py-recovering"), "a", "py-recovering");
    let pending = p.begin(
        json!({"op": "send", "client": "a", "event": "hold", "dataType": "text", "data": "py-recover"}),
    );
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "py-recover");
    assert!(wf.emu.hub("chat").drop_connection(&conn));
    until(
        &obs,
        |o| matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == conn),
    );
    // Our client releases it.
    let ours = support::start(support::builder(wf.url("rs-releaser")).build().unwrap());
    ours.send_event("release", "py-recover").unwrap();
    // The SDK fails a send whose ack is pending when the socket goes (its outcome is
    // unknown to it; with message retries on, it would send the event again under a new
    // ack id and the handler would run twice). The reply still comes, after the recovery.
    let a = p.answer(pending);
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(
        a["error"]["detail"]["name"], "NoAckMessageReceivedFromServer",
        "{a}"
    );
    let reply = server_message(&mut p, "a");
    assert_eq!(reply["data"], "released py-recover");
    let a = send(&mut p, "a", "count", "text", json!("after"));
    assert_eq!(a["ok"], true, "{a}");
    let reply = server_message(&mut p, "a");
    assert_eq!(reply["data"]["calls"], 2, "hold and count: {reply}");
    assert_eq!(
        wf.calls("hold", &conn, |v| is(v, "count", &conn)),
        1,
        "no duplicate call"
    );

    // Closing ends the session: the app server records disconnected, with the last state.
    p.ok(json!({"op": "stop", "client": "a"}));
    wf.assert_disconnected_after(&conn, "count", json!({"calls": 2}));
}
