//! The whole workflow on one machine with OUR client: the client connects to the emulator,
//! the emulator calls an app server on the official handler package
//! (`testkit/node/app_server.js`, `@azure/web-pubsub-express` 1.1.0), and every step is
//! seen from both sides — what the client got (and, through a recording relay, the frames
//! on the wire) and what the app server printed (UPSTREAM.md §2–§4, PROTOCOL.md §12,
//! B38–B40):
//!
//! - connect sets the user id, the groups and the connection state; a refusal (401) is the
//!   typed HTTP connect error;
//! - user events echo text, JSON and binary, the reply a server message before the ack; a
//!   5xx is `InvocationFailed`; the state the app server keeps counts the calls;
//! - `invoke_event`: echo, failure, timeout, cancel from another thread, drop while pending;
//! - a recovery in the middle of an event: the handler is called once and the reply is not
//!   lost; disconnected is recorded once the session ends, not on the recovered drop;
//! - faults: an app server slower than the emulator's timeout, or unreachable, fails the
//!   event and the invocation with `InvocationFailed` (a timed-out request is not sent
//!   again), and an unreachable connect handler refuses the upgrade with 500.
//!
//! One app server and one emulator for the file (see `workflow_support`). Needs node and npm
//! (skipped with a message if missing) and, the first time, the npm registry.

mod support;
mod workflow_support;

use crossbeam_channel::Receiver;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{builder, recv_until, start, WAIT};
use webpubsub_client::{
    protocol::ClientMessage, Cancelled, ConnectError, Data, Error, Event, InvokeOptions, Protocol,
    RequestOptions, TimeoutKind, WebPubSubClient,
};
use webpubsub_emulator::upstream::{
    EventHandlerConfig, SystemEvent, UpstreamConfig, UserEventPattern,
};
use webpubsub_emulator::{Emulator, Observation};
use workflow_support::{frames_to_client, is, reply_and_ack, workflow, Workflow};

/// Another emulator, for faults: hub `chat` in front of the same app server with a short
/// timeout (300 ms) for blocking events; hub `down` sends its user events (only) to a port
/// nothing listens on; hub `gone` its connects.
fn faulty(wf: &Workflow) -> Emulator {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{closed}/api/{{hub}}/{{event}}");
    let cfg = UpstreamConfig::new()
        .timeout(Duration::from_millis(300))
        .retry_backoff(Duration::from_millis(10))
        .handler(
            "chat",
            EventHandlerConfig::new(wf.server.url_template()).unwrap(),
        )
        .handler(
            "down",
            EventHandlerConfig::new(nowhere.clone())
                .unwrap()
                .system_events([]),
        )
        .handler(
            "gone",
            EventHandlerConfig::new(nowhere)
                .unwrap()
                .user_events(UserEventPattern::None)
                .system_events([SystemEvent::Connect]),
        );
    Emulator::builder().upstream(cfg).start().unwrap()
}

/// A started client of the workflow hub for `user`, and its events.
fn client(url: &str, protocol: Protocol) -> (WebPubSubClient, Receiver<Event>) {
    let c = builder(url).protocol(protocol).build().unwrap();
    let events = c.events();
    (start(c), events)
}

/// The next server message's data.
fn server_message(events: &Receiver<Event>) -> Data {
    match recv_until(events, |e| matches!(e, Event::ServerMessage(_))) {
        Event::ServerMessage(m) => m.data,
        _ => unreachable!(),
    }
}

fn id(c: &WebPubSubClient) -> String {
    c.connection_id().expect("connected")
}

/// Waits for the emulator to handle `cancelInvocation` of `invocation` from `connection_id`.
fn cancel_seen(obs: &Receiver<Observation>, connection_id: &str, invocation: u64) {
    recv_until(obs, |o| {
        matches!(o, Observation::Request {
            connection_id: c,
            message: ClientMessage::CancelInvocation { invocation_id },
            ..
        } if c == connection_id && *invocation_id == invocation.to_string())
    });
}

/// Ends the app server's `hold` of `key` from another connection (the held one's events
/// wait in its lane behind the hold).
fn release(wf: &Workflow, key: &str) {
    let (other, _) = client(&wf.url("releaser"), Protocol::JsonReliable);
    other.send_event("release", key).unwrap();
    wf.server
        .first(|v| v["seen"] == "released" && v["key"] == key);
}

#[test]
fn the_connect_handler_sets_the_user_the_groups_and_the_state() {
    let Some(wf) = workflow("the_connect_handler_sets_the_user_the_groups_and_the_state") else {
        return;
    };
    let (c, events) = client(&wf.url("u1"), Protocol::JsonReliable);
    let conn = id(&c);
    // The client's side: the user the app server chose, and the group it joined.
    assert_eq!(c.user_id().as_deref(), Some("app-u1"));
    // Every connection of the file's tests is in that group: the message goes through the
    // group to this one only, so that it never lands in another test's events.
    let hub = wf.emu.hub("chat");
    let others: Vec<String> = hub
        .group_members("app-group")
        .into_iter()
        .filter(|m| *m != conn)
        .collect();
    hub.send_to_group_except("app-group", "to the app's group", &others);
    assert_eq!(server_message(&events), Data::from("to the app's group"));
    // The app server's side: the token's claims in connect, its answer in connected.
    wf.assert_shaped_by_connect(&conn, "u1");
}

#[test]
fn a_connect_the_app_server_refuses_is_the_typed_http_401_connect_error() {
    let Some(wf) = workflow("a_connect_the_app_server_refuses_is_the_typed_http_401") else {
        return;
    };
    let url = format!("{}&refuse=1", wf.url("refused"));
    let c = builder(url).build().unwrap();
    match c.start() {
        Err(Error::Connect(ConnectError::Http { status: 401, .. })) => {}
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    // The app server saw the connect it refused.
    wf.server.first(|v| {
        v["seen"] == "connect"
            && v["query"]["refuse"] == json!(["1"])
            && v["claims"]["sub"] == json!(["refused"])
    });
}

#[test]
fn user_events_echo_text_json_and_binary_with_the_reply_before_the_ack() {
    let Some(wf) = workflow("user_events_echo_text_json_and_binary") else {
        return;
    };
    let relay = wf.recording_relay();
    let (c, events) = client(&wf.url_via(&relay, "echo"), Protocol::JsonReliable);
    let conn = id(&c);
    let cases = [
        (Data::from("héllo ✓"), "text", json!("héllo ✓")),
        (
            Data::from(json!({"a": [1, 2.5, null], "b": "ü"})),
            "json",
            json!({"a": [1, 2.5, null], "b": "ü"}),
        ),
        (
            Data::Binary(vec![0, 1, 0xFE, 0xFF]),
            "binary",
            json!("AAH+/w=="),
        ),
    ];
    for (data, data_type, on_wire) in cases {
        let ack = c.send_event("echo", data.clone()).unwrap();
        assert_eq!(server_message(&events), data, "the reply, as sent");
        let seen = wf
            .server
            .first(|v| is(v, "echo", &conn) && v["dataType"] == data_type);
        assert_eq!(seen["data"], on_wire, "what the app server got");
        let frames = frames_to_client(&relay);
        let (reply, ack) = reply_and_ack(&frames, &on_wire, ack.ack_id);
        assert!(reply < ack, "the reply comes before the ack: {frames:#?}");
    }
}

#[test]
fn a_user_event_the_app_server_fails_with_500_is_invocation_failed() {
    let Some(wf) = workflow("a_user_event_the_app_server_fails_with_500") else {
        return;
    };
    let (c, events) = client(&wf.url("failing"), Protocol::JsonReliable);
    let conn = id(&c);
    match c.send_event("fail500", "x") {
        Err(Error::Ack(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected InvocationFailed, got {other:?}"),
    }
    // The connection stays and serves the next event.
    c.send_event("echo", "still here").unwrap();
    assert_eq!(server_message(&events), Data::from("still here"));
    assert!(wf.calls("fail500", &conn, |v| is(v, "echo", &conn)) >= 1);
}

#[test]
fn the_connection_state_round_trips_through_the_app_server() {
    let Some(wf) = workflow("the_connection_state_round_trips") else {
        return;
    };
    let (c, events) = client(&wf.url("counter"), Protocol::Json);
    let conn = id(&c);
    for n in 1..=3 {
        c.send_event("count", "x").unwrap();
        let reply = server_message(&events);
        let reply = reply.as_json().expect("a JSON reply");
        assert_eq!(reply["calls"], n, "{reply}");
        assert_eq!(reply["userId"], "app-counter");
        // express's setState updates the context's states it answers with.
        assert_eq!(reply["state"], json!({"calls": n}));
    }
    let invoked = c.invoke_event("count", "x").unwrap();
    assert_eq!(invoked.data.unwrap().as_json().unwrap()["calls"], 4);
    // What the app server got with each call: the state the previous call set.
    let counts: Vec<_> = wf
        .server
        .until(|v| is(v, "count", &conn) && v["states"]["calls"] == 3)
        .into_iter()
        .filter(|v| is(v, "count", &conn))
        .map(|v| v["states"]["calls"].clone())
        .collect();
    assert_eq!(counts, [json!(0), json!(1), json!(2), json!(3)]);
}

#[test]
fn invoke_event_echoes_text_json_and_binary_on_both_json_protocols() {
    let Some(wf) = workflow("invoke_event_echoes_text_json_and_binary") else {
        return;
    };
    for protocol in [Protocol::JsonReliable, Protocol::Json] {
        let (c, _) = client(&wf.url("invoker"), protocol);
        let conn = id(&c);
        for data in [
            Data::from("ping"),
            Data::from(json!({"q": [1, 2]})),
            Data::Binary(vec![9, 8, 7]),
        ] {
            let r = c.invoke_event("echo", data.clone()).unwrap();
            assert_eq!(r.data, Some(data.clone()), "{protocol:?}");
            assert_eq!(r.data_type(), Some(data.data_type()));
        }
        let r = c.invoke_event("noreply", "x").unwrap();
        assert_eq!(r.data, None, "200 without a body: success without data");
        assert_eq!(wf.calls("echo", &conn, |v| is(v, "noreply", &conn)), 3);
    }
}

#[test]
fn an_invocation_the_app_server_fails_is_a_typed_invoke_error() {
    let Some(wf) = workflow("an_invocation_the_app_server_fails") else {
        return;
    };
    let (c, _) = client(&wf.url("invoker"), Protocol::JsonReliable);
    match c.invoke_event("fail500", "x") {
        Err(Error::Invoke(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected an invoke failure, got {other:?}"),
    }
    let conn = id(&c);
    assert!(wf.calls("fail500", &conn, |v| is(v, "fail500", &conn)) >= 1);
}

#[test]
fn an_invocation_past_its_timeout_is_cancelled_and_its_late_answer_dropped() {
    let Some(wf) = workflow("an_invocation_past_its_timeout") else {
        return;
    };
    let obs = wf.emu.observe();
    let (c, _) = client(&wf.url("patient"), Protocol::JsonReliable);
    let conn = id(&c);
    let opts = InvokeOptions::new().timeout(Duration::from_millis(300));
    let handle = c.invoke_event_nowait("hold", "key-timeout", &opts).unwrap();
    let invocation = handle.invocation_id();
    // The app server holds it; the wait passes its bound.
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "key-timeout");
    match handle.wait() {
        Err(Error::Timeout(TimeoutKind::Invoke { invocation_id })) => {
            assert_eq!(invocation_id, invocation)
        }
        other => panic!("expected an invoke timeout, got {other:?}"),
    }
    cancel_seen(&obs, &conn, invocation);
    release(wf, "key-timeout");
    // The late answer is dropped; the next invocation gets its own.
    let r = c.invoke_event("echo", "after").unwrap();
    assert_eq!(r.data, Some(Data::from("after")));
}

#[test]
fn cancel_from_another_thread_returns_the_waiting_invocation_at_once() {
    let Some(wf) = workflow("cancel_from_another_thread") else {
        return;
    };
    let obs = wf.emu.observe();
    let (c, _) = client(&wf.url("canceller"), Protocol::JsonReliable);
    let conn = id(&c);
    // A long bound: the wait must end by the cancel, not by its timeout.
    let opts = InvokeOptions::new().timeout(Duration::from_secs(60));
    let handle = c.invoke_event_nowait("hold", "key-cancel", &opts).unwrap();
    let invocation = handle.invocation_id();
    let button = handle.clone();
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(handle.wait());
    });
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "key-cancel");
    let pressed = Instant::now();
    std::thread::spawn(move || button.cancel()).join().unwrap();
    match done.recv_timeout(WAIT).expect("the waiter returned") {
        Err(Error::Cancelled(Cancelled::Invocation { invocation_id })) => {
            assert_eq!(invocation_id, invocation)
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    assert!(
        pressed.elapsed() < Duration::from_secs(30),
        "not the timeout"
    );
    waiter.join().unwrap();
    cancel_seen(&obs, &conn, invocation);
    release(wf, "key-cancel");
    assert_eq!(
        c.invoke_event("echo", "next").unwrap().data,
        Some(Data::from("next"))
    );
}

#[test]
fn dropping_a_pending_invocation_cancels_it() {
    let Some(wf) = workflow("dropping_a_pending_invocation_cancels_it") else {
        return;
    };
    let obs = wf.emu.observe();
    let (c, _) = client(&wf.url("dropper"), Protocol::JsonReliable);
    let conn = id(&c);
    let handle = c
        .invoke_event_nowait("hold", "key-drop", &InvokeOptions::new())
        .unwrap();
    let invocation = handle.invocation_id();
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "key-drop");
    drop(handle);
    cancel_seen(&obs, &conn, invocation);
    release(wf, "key-drop");
}

#[test]
fn a_recovery_in_the_middle_of_an_event_calls_the_handler_once_and_keeps_the_reply() {
    let Some(wf) = workflow("a_recovery_in_the_middle_of_an_event") else {
        return;
    };
    let obs = wf.emu.observe();
    let (c, events) = client(&wf.url("recovering"), Protocol::JsonReliable);
    let conn = id(&c);
    let pending = c
        .send_event_nowait("hold", "key-recover", &RequestOptions::new())
        .unwrap();
    wf.server
        .first(|v| is(v, "hold", &conn) && v["data"] == "key-recover");
    // The socket goes while the app server holds the event; the session recovers.
    assert!(wf.emu.hub("chat").drop_connection(&conn));
    recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
    recv_until(
        &obs,
        |o| matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == conn),
    );
    release(wf, "key-recover");
    // The reply reaches the recovered socket; the resent event was a duplicate.
    assert_eq!(server_message(&events), Data::from("released key-recover"));
    pending.wait().unwrap();
    assert_eq!(id(&c), conn, "the same session");
    c.send_event("count", "after").unwrap();
    let reply = server_message(&events);
    assert_eq!(reply.as_json().unwrap()["calls"], 2, "hold and count");
    let after_count = |v: &serde_json::Value| is(v, "count", &conn);
    assert_eq!(wf.calls("hold", &conn, after_count), 1, "no duplicate call");
    let until = wf.server.until(after_count);
    assert!(
        !until.iter().any(|v| is(v, "disconnected", &conn)),
        "a recovered drop is no disconnect"
    );
}

#[test]
fn disconnected_is_recorded_by_the_app_server_when_the_session_ends() {
    let Some(wf) = workflow("disconnected_is_recorded_by_the_app_server") else {
        return;
    };
    let (c, _) = client(&wf.url("leaving"), Protocol::JsonReliable);
    let conn = id(&c);
    c.send_event("count", "x").unwrap();
    c.stop();
    let seen = wf.server.first(|v| is(v, "disconnected", &conn));
    assert_eq!(seen["states"], json!({"calls": 1}), "the last state");
    assert!(seen["reason"].is_string(), "{seen}");
}

#[test]
fn an_app_server_slower_than_the_timeout_fails_the_event_and_the_invocation_once() {
    let Some(wf) = workflow("an_app_server_slower_than_the_timeout") else {
        return;
    };
    let emu = faulty(wf);
    let (c, events) = client(
        &emu.client_url("chat").user_id("hurried").build(),
        Protocol::JsonReliable,
    );
    let conn = id(&c);
    match c.send_event("hold", "slow-event") {
        Err(Error::Ack(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected InvocationFailed, got {other:?}"),
    }
    match c.invoke_event("hold", "slow-invoke") {
        Err(Error::Invoke(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected an invoke failure, got {other:?}"),
    }
    release(wf, "slow-event");
    release(wf, "slow-invoke");
    // The connection stays; a late answer reached nobody.
    c.send_event("echo", "on time").unwrap();
    assert_eq!(server_message(&events), Data::from("on time"));
    // A request that timed out after it was sent is not sent again: it may have run.
    assert_eq!(wf.calls("hold", &conn, |v| is(v, "echo", &conn)), 2);
}

#[test]
fn an_unreachable_app_server_fails_events_and_refuses_connects_with_500() {
    let Some(wf) = workflow("an_unreachable_app_server") else {
        return;
    };
    let emu = faulty(wf);
    // User events only: the connection opens without the app server.
    let (c, _) = client(
        &emu.client_url("down").user_id("alone").build(),
        Protocol::JsonReliable,
    );
    match c.send_event("echo", "anyone?") {
        Err(Error::Ack(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected InvocationFailed, got {other:?}"),
    }
    match c.invoke_event("echo", "anyone?") {
        Err(Error::Invoke(f)) => assert_eq!(f.name, "InvocationFailed", "{f:?}"),
        other => panic!("expected an invoke failure, got {other:?}"),
    }
    assert_eq!(c.state(), webpubsub_client::ClientState::Connected);
    // A connect handler that cannot be reached refuses the upgrade with 500.
    let gone = builder(emu.client_url("gone").user_id("turned-away").build())
        .build()
        .unwrap();
    match gone.start() {
        Err(Error::Connect(ConnectError::Http { status: 500, .. })) => {}
        other => panic!("expected HTTP 500, got {other:?}"),
    }
}
