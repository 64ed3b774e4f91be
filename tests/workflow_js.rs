//! The whole workflow on one machine with the OFFICIAL JavaScript client
//! (`@azure/web-pubsub-client` 1.1.0, `tests/workflow_support/peer.js`): the emulator in
//! front of the app server on the official handler package (`testkit/node/app_server.js`),
//! every step seen by the JS client and by the app server (UPSTREAM.md §2–§4,
//! PROTOCOL.md §12):
//!
//! - connect sets the user id and state; a refusal (401) fails the client's start;
//! - user events echo text, JSON and binary, the reply emitted before the send resolves
//!   with its ack; a 5xx is `InvocationFailed`; the state counts the calls;
//! - `invokeEvent`: echo, failure, an abort by timeout and by the caller (the client sends
//!   `cancelInvocation`, the emulator drops the late answer);
//! - a recovery in the middle of an event: one handler call, the reply not lost;
//!   disconnected recorded when the client stops.
//!
//! One app server and one emulator for the file. Needs node and npm (skipped with a message
//! if missing) and, the first time, the npm registry.

mod workflow_support;

use crossbeam_channel::Receiver;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use webpubsub_client::protocol::ClientMessage;
use webpubsub_emulator::Observation;
use webpubsub_testkit::node;
use workflow_support::{is, workflow, Peer, Workflow};

const WAIT: Duration = Duration::from_secs(15);

fn peer(wf: &Workflow) -> Peer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflow_support/peer.js");
    Peer::spawn(node::command(&wf.server.node_modules, &script, &[]))
}

/// Connects the peer's client `name` as `user`; returns its connection id.
fn connect(p: &mut Peer, wf: &Workflow, name: &str, user: &str) -> String {
    let a = p.ok(json!({"op": "connect", "client": name, "url": wf.url(user)}));
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

fn cancel_seen(obs: &Receiver<Observation>, connection_id: &str, invocation: &Value) {
    until(obs, |o| {
        matches!(o, Observation::Request {
            connection_id: c,
            message: ClientMessage::CancelInvocation { invocation_id },
            ..
        } if c == connection_id && invocation == invocation_id.as_str())
    });
}

/// Ends the app server's hold of `key` through the peer's client `releaser`.
fn release(p: &mut Peer, wf: &Workflow, key: &str) {
    let a = send(p, "releaser", "release", "text", json!(key));
    assert_eq!(a["ok"], true, "{a}");
    wf.server
        .first(|v| v["seen"] == "released" && v["key"] == key);
}

#[test]
fn the_js_client_is_shaped_by_connect_and_a_refused_connect_fails_its_start() {
    let Some(wf) = workflow("the_js_client_is_shaped_by_connect") else {
        return;
    };
    let mut p = peer(wf);
    let conn = connect(&mut p, wf, "a", "js1");
    let connect = wf.assert_shaped_by_connect(&conn, "js1");
    assert_eq!(
        connect["subprotocols"],
        json!(["json.reliable.webpubsub.azure.v1"])
    );

    let refused = format!("{}&refuse=1", wf.url("js-refused"));
    let a = p.call(json!({"op": "connect", "client": "r", "url": refused}));
    assert_eq!(a["ok"], false, "{a}");
    assert!(
        a["error"]["message"].as_str().unwrap_or("").contains("401"),
        "the status in the SDK's error: {a}"
    );
    wf.server
        .first(|v| v["seen"] == "connect" && v["claims"]["sub"] == json!(["js-refused"]));
}

#[test]
fn js_user_events_echo_each_data_type_with_the_reply_before_the_ack_and_count_calls() {
    let Some(wf) = workflow("js_user_events_echo_each_data_type") else {
        return;
    };
    let mut p = peer(wf);
    let conn = connect(&mut p, wf, "a", "js-echo");
    for (data_type, data) in [
        ("text", json!("héllo ✓")),
        ("json", json!({"a": [1, 2.5, null], "b": "ü"})),
        ("binary", json!("AAH+/w==")),
    ] {
        let a = send(&mut p, "a", "echo", data_type, data.clone());
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(
            a["before"],
            json!([{"dataType": data_type, "data": data}]),
            "the reply came before the ack"
        );
        let seen = wf
            .server
            .first(|v| is(v, "echo", &conn) && v["dataType"] == data_type);
        assert_eq!(seen["data"], data, "what the app server got");
    }
    // A 5xx: the send fails with the service's InvocationFailed.
    let a = send(&mut p, "a", "fail500", "text", json!("x"));
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(a["error"]["detail"]["name"], "InvocationFailed", "{a}");
    // The state counted the three echoes and the count; not the failure, whose state
    // express does not send (a state goes with a success only).
    let a = send(&mut p, "a", "count", "text", json!("x"));
    assert_eq!(a["before"][0]["data"]["calls"], 4, "{a}");
    assert_eq!(a["before"][0]["data"]["userId"], "app-js-echo");
}

#[test]
fn js_invoke_event_echoes_fails_and_is_cancelled_by_timeout_and_by_abort() {
    let Some(wf) = workflow("js_invoke_event_echoes_fails_and_is_cancelled") else {
        return;
    };
    let obs = wf.emu.observe();
    let mut p = peer(wf);
    let conn = connect(&mut p, wf, "a", "js-invoker");
    connect(&mut p, wf, "releaser", "js-releaser");
    for (data_type, data) in [
        ("text", json!("ping")),
        ("json", json!({"q": [1, 2]})),
        ("binary", json!("CQgH")),
    ] {
        let a = p.ok(json!({"op": "invoke", "client": "a", "event": "echo", "dataType": data_type, "data": data}));
        assert_eq!((&a["dataType"], &a["data"]), (&json!(data_type), &data));
    }
    let a = p.call(
        json!({"op": "invoke", "client": "a", "event": "fail500", "dataType": "text", "data": "x"}),
    );
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(a["error"]["type"], "InvocationError", "{a}");
    assert_eq!(a["error"]["detail"]["name"], "InvocationFailed", "{a}");

    // Past its timeout: the SDK cancels; the app server still finishes it later.
    let a = p.call(
        json!({"op": "invoke", "client": "a", "event": "hold", "dataType": "text",
        "data": "js-timeout", "timeoutMs": 300}),
    );
    assert_eq!(a["ok"], false, "{a}");
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "js-timeout");
    cancel_seen(&obs, &conn, &a["error"]["invocationId"]);
    release(&mut p, wf, "js-timeout");

    // Aborted by the caller.
    let id = p.begin(
        json!({"op": "invoke", "client": "a", "event": "hold", "dataType": "text",
        "data": "js-abort", "abort": "t1"}),
    );
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "js-abort");
    p.ok(json!({"op": "abort", "tag": "t1"}));
    let a = p.answer(id);
    assert_eq!(a["ok"], false, "{a}");
    cancel_seen(&obs, &conn, &a["error"]["invocationId"]);
    release(&mut p, wf, "js-abort");
    // The late answers were dropped: the next invocation gets its own.
    let a = p.ok(json!({"op": "invoke", "client": "a", "event": "echo", "dataType": "text", "data": "after"}));
    assert_eq!(a["data"], "after");
}

#[test]
fn a_js_client_recovering_in_the_middle_of_an_event_gets_the_reply_from_one_handler_call() {
    let Some(wf) = workflow("a_js_client_recovering_in_the_middle_of_an_event") else {
        return;
    };
    let obs = wf.emu.observe();
    let mut p = peer(wf);
    let conn = connect(&mut p, wf, "a", "js-recovering");
    connect(&mut p, wf, "releaser", "js-releaser");
    // The SDK fails a send whose ack a drop took and tries it again (messageRetryOptions)
    // under a NEW ack id unless the caller chose one: the service cannot tell the second
    // try from a new event, and the handler would run twice. With its own ack id, the
    // second try is the `Duplicate` of the first.
    let pending = p.begin(
        json!({"op": "send", "client": "a", "event": "hold", "dataType": "text",
        "data": "js-recover", "ackId": 1000}),
    );
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "js-recover");
    assert!(wf.emu.hub("chat").drop_connection(&conn));
    until(
        &obs,
        |o| matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == conn),
    );
    release(&mut p, wf, "js-recover");
    let a = p.answer(pending);
    assert_eq!((&a["ok"], &a["ackId"]), (&json!(true), &json!(1000)), "{a}");
    p.next(|v| {
        v["event"] == "server-message" && v["client"] == "a" && v["data"] == "released js-recover"
    });
    let a = send(&mut p, "a", "count", "text", json!("after"));
    assert_eq!(a["before"][0]["data"]["calls"], 2, "hold and count: {a}");
    assert_eq!(
        wf.calls("hold", &conn, |v| is(v, "count", &conn)),
        1,
        "no duplicate call"
    );

    // Stopping ends the session: the app server records disconnected, with the last state.
    p.ok(json!({"op": "stop", "client": "a"}));
    wf.assert_disconnected_after(&conn, "count", json!({"calls": 2}));
}
