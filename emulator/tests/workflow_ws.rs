//! The emulator in front of a real app server — `testkit/node/app_server.js` on the official
//! handler package (`@azure/web-pubsub-express` 1.1.0) — seen from raw WebSocket clients on
//! one side and from what the app server printed on the other (UPSTREAM.md §2–§4,
//! PROTOCOL.md §2, §11, §12):
//!
//! - connect shapes the connection (user, groups, roles, subprotocol) or refuses it;
//! - an `event`'s reply is a server message that comes before its ack, with the answer's
//!   metadata; a failure is `InvocationFailed`; `invoke` gets an `invokeResponse`, a
//!   cancelled one none;
//! - a recovery in the middle of an event calls the handler once and keeps the reply;
//! - simple WebSocket clients: each frame is the event `message`, its reply a frame, a
//!   failure a close with 1011; `sendToGroup` mode publishes to a group.
//!
//! Needs node and npm (skipped with a message if missing) and, the first time, the npm
//! registry for `testkit/node/setup_node.sh`.

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;
use webpubsub_emulator::upstream::{EventHandlerConfig, UpstreamConfig};
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage};
use webpubsub_testkit::node::{is, AppServer};

/// The app server, and an emulator whose hubs `chat` and `strict` send it their events.
fn setup(test: &str) -> Option<(AppServer, Emulator)> {
    init_log();
    let server = AppServer::start(test, "http://127.0.0.1:8080")?;
    let handler = EventHandlerConfig::new(server.url_template()).unwrap();
    let cfg = UpstreamConfig::new()
        .retry_backoff(Duration::from_millis(10))
        .handler("chat", handler.clone())
        .handler("strict", handler);
    let emu = Emulator::builder().upstream(cfg).start().unwrap();
    Some((server, emu))
}

fn event(name: &str, ack_id: Option<u64>, data: impl Into<Data>) -> ClientMessage {
    ClientMessage::Event {
        event: name.into(),
        ack_id,
        data: data.into(),
        metadata: Metadata::new(),
    }
}

fn invoke(id: &str, name: &str, data: impl Into<Data>) -> ClientMessage {
    ClientMessage::Invoke {
        invocation_id: id.into(),
        event: name.into(),
        data: Some(data.into()),
        metadata: Metadata::new(),
    }
}

fn server_data(m: ServiceMessage) -> (Data, Metadata) {
    match m {
        ServiceMessage::ServerMessage { data, metadata, .. } => (data, metadata),
        other => panic!("expected a server message, got {other:?}"),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_connect_answer_sets_user_groups_roles_and_the_subprotocol() {
    let Some((server, emu)) = setup("the_connect_answer_sets_user_groups_roles") else {
        return;
    };
    let hub = emu.hub("chat");
    // The handler picks the plain JSON subprotocol out of the two offered, and replaces the
    // token's user, group and roles.
    let url = emu
        .client_url("chat")
        .user_id("u1")
        .role("webpubsub.sendToGroup")
        .group("token-group")
        .build();
    let url = format!("{url}&pick=json.webpubsub.azure.v1");
    let mut c = try_connect(&url, Some(&format!("{RELIABLE}, {PLAIN}")), None).unwrap();
    assert_eq!(c.user_id.as_deref(), Some("app-u1"));
    assert_eq!(
        c.reconnection_token, None,
        "the plain subprotocol was picked"
    );
    let seen = server.seen(|v| is(v, "connect", &c.connection_id));
    assert_eq!(seen["subprotocols"], json!([RELIABLE, PLAIN]));
    assert_eq!(seen["claims"]["sub"], json!(["u1"]));
    assert!(seen["query"].get("access_token").is_none());
    let ce = server
        .seen(|v| is(v, "ce", &c.connection_id) && v["type"] == "azure.webpubsub.sys.connected");
    assert_eq!(ce["subprotocol"], PLAIN);
    let connected = server.seen(|v| is(v, "connected", &c.connection_id));
    assert_eq!(connected["userId"], "app-u1");
    assert_eq!(hub.group_members("app-group"), [c.connection_id.clone()]);
    assert!(!hub.group_exists("token-group"));
    // Roles: joinLeaveGroup instead of the token's sendToGroup.
    c.send(ClientMessage::JoinGroup {
        group: "g".into(),
        ack_id: Some(1),
    });
    assert_eq!(c.ack(1), (true, None));
    c.send(ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: Some(2),
        no_echo: false,
        data: "x".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    });
    assert_eq!(c.ack(2), (false, Some("Forbidden".into())));

    // A wildcard role from the handler.
    let url = format!(
        "{}&roles=webpubsub.sendToGroups.app-*",
        emu.client_url("chat").build()
    );
    let mut w = connect(&url);
    w.send(ClientMessage::SendToGroup {
        group: "app-group".into(),
        ack_id: Some(1),
        no_echo: true,
        data: "x".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    });
    assert_eq!(w.ack(1), (true, None));
}

#[test]
fn a_refusing_connect_handler_refuses_the_upgrade_with_its_status() {
    let Some((server, emu)) = setup("a_refusing_connect_handler_refuses_the_upgrade") else {
        return;
    };
    let obs = emu.observe();
    let url = format!("{}&refuse=1", emu.client_url("chat").user_id("u").build());
    let refused = try_connect(&url, Some(RELIABLE), None)
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("connect event handler"),
        "{}",
        refused.body
    );
    let seen = server.seen(|v| v["seen"] == "connect");
    assert_eq!(seen["query"]["refuse"], json!(["1"]));
    // Never a session: the next connection is the first the emulator reports.
    let c = connect(&emu.client_url("chat").build());
    assert_eq!(next_connected(&obs), c.connection_id);
    assert!(emu.hub("chat").connections().len() == 1);
}

#[test]
fn an_events_reply_comes_before_its_ack_with_the_answers_metadata_and_a_failure_is_invocation_failed(
) {
    let Some((server, emu)) = setup("an_events_reply_comes_before_its_ack") else {
        return;
    };
    let mut c = connect(&emu.client_url("chat").user_id("u").build());
    c.send(ClientMessage::Event {
        event: "echo".into(),
        ack_id: Some(1),
        data: Data::Json(json!({"a": [1, 2]})),
        metadata: Metadata::new().with("Trace-Id", "t1"),
    });
    // The reply, then the ack: nothing between, nothing before.
    let (data, metadata) = server_data(c.recv());
    assert_eq!(data, Data::Json(json!({"a": [1, 2]})));
    assert_eq!(
        metadata,
        Metadata::new()
            .with("trace-id", "t1")
            .with("answered-by", "app-server")
    );
    assert!(matches!(
        c.recv(),
        ServiceMessage::Ack {
            ack_id: 1,
            success: true,
            ..
        }
    ));
    let seen = server.seen(|v| v["seen"] == "metadata");
    assert_eq!(seen["metadata"], json!({"trace-id": "t1"}));
    assert_eq!(seen["eventName"], "echo");

    // 5xx: retried, then InvocationFailed; the app saw every try.
    c.send(event("fail500", Some(2), "x"));
    match c.recv() {
        ServiceMessage::Ack {
            ack_id: 2,
            success: false,
            error: Some(e),
        } => {
            assert_eq!(e.name, "InvocationFailed");
            assert_eq!(e.message, "The event handler answered 500");
        }
        other => panic!("{other:?}"),
    }
    // Without an ack id a failure is only logged; a reply-less event answers nothing.
    c.send(event("fail500", None, "x"));
    c.send(event("noreply", Some(3), "x"));
    assert_eq!(c.ack(3), (true, None));
    assert!(c.drain_until_pong().is_empty());
    // The state the handler keeps (its call count) came back with every event; a failed
    // answer's state is not kept: echo, noreply, count.
    c.send(event("count", Some(4), "x"));
    let (data, _) = server_data(c.recv());
    assert_eq!(data.as_json().unwrap()["calls"], 3);
    assert_eq!(c.ack(4), (true, None));
}

#[test]
fn an_invoke_gets_its_response_and_a_cancelled_one_gets_none() {
    let Some((server, emu)) = setup("an_invoke_gets_its_response") else {
        return;
    };
    let mut c = connect(&emu.client_url("chat").user_id("u").build());
    let mut other = connect(&emu.client_url("chat").user_id("o").build());
    c.send(ClientMessage::Invoke {
        invocation_id: "1".into(),
        event: "echo".into(),
        data: Some("hi".into()),
        metadata: Metadata::new().with("k", "v"),
    });
    match c.recv() {
        ServiceMessage::InvokeResponse {
            invocation_id,
            success: true,
            data,
            metadata,
            ..
        } => {
            assert_eq!(invocation_id, "1");
            assert_eq!(data, Some(Data::from("hi")));
            assert_eq!(metadata.get("k"), Some("v"));
            assert_eq!(metadata.get("answered-by"), Some("app-server"));
        }
        other => panic!("{other:?}"),
    }
    c.send(invoke("2", "fail500", "x"));
    match c.recv() {
        ServiceMessage::InvokeResponse {
            invocation_id,
            success: false,
            error: Some(e),
            ..
        } => assert_eq!(
            (invocation_id.as_str(), e.name.as_str()),
            ("2", "InvocationFailed")
        ),
        other => panic!("{other:?}"),
    }
    // An invoke does not hold the connection up: its cancel is read while it waits.
    c.send(invoke("3", "hold", "key-3"));
    server.seen(|v| is(v, "hold", &c.connection_id));
    c.send(ClientMessage::CancelInvocation {
        invocation_id: "3".into(),
    });
    assert!(c.drain_until_pong().is_empty());
    other.send(event("release", Some(1), "key-3"));
    assert_eq!(other.ack(1), (true, None));
    server.seen(|v| v["seen"] == "released" && v["key"] == "key-3");
    // The next invoke goes to the handler after the held one on the connection's lane:
    // its response comes after the cancelled answer was dropped.
    c.send(invoke("4", "echo", "after"));
    match c.recv() {
        ServiceMessage::InvokeResponse {
            invocation_id,
            data,
            ..
        } => assert_eq!(
            (invocation_id.as_str(), data),
            ("4", Some(Data::from("after")))
        ),
        other => panic!("the cancelled invocation answered: {other:?}"),
    }
}

#[test]
fn a_recovery_in_the_middle_of_an_event_calls_the_handler_once_and_keeps_its_reply() {
    let Some((server, emu)) = setup("a_recovery_in_the_middle_of_an_event") else {
        return;
    };
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").user_id("u").build();
    let mut c = connect(&url);
    let id = c.connection_id.clone();
    let mut other = connect(&emu.client_url("chat").user_id("o").build());
    c.send(event("hold", Some(1), "key-r"));
    server.seen(|v| is(v, "hold", &id));
    assert!(hub.drop_connection(&id));
    wait_dropped(&obs, &id);
    // The client recovers and resends what was not acked, with the same ack id.
    let mut back = open_raw(&recovery_url(&url, &c), RELIABLE);
    back.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let mut back = Ws {
        ws: back,
        subprotocol: webpubsub_protocol::Subprotocol::JsonReliable,
        connection_id: id.clone(),
        user_id: None,
        reconnection_token: None,
    };
    assert!(matches!(back.recv(), ServiceMessage::Connected { .. }));
    back.send(event("hold", Some(1), "key-r"));
    other.send(event("release", Some(1), "key-r"));
    assert_eq!(other.ack(1), (true, None));
    // The reply reaches the recovered socket, then the ack; the resent request is a
    // duplicate of the one that ran.
    let (data, _) = server_data(back.recv());
    assert_eq!(data, Data::from("released key-r"));
    assert_eq!(back.recv_until(ack_of(1)), (true, None));
    assert_eq!(
        back.recv_until(ack_of(1)),
        (false, Some("Duplicate".into()))
    );
    // The handler got the event once; its state survived the recovery.
    back.send(event("count", Some(2), "x"));
    let (data, _) = server_data(back.recv());
    assert_eq!(data.as_json().unwrap()["calls"], 2);
    let seen = server.seen_until(|v| is(v, "count", &id));
    let holds = seen.iter().filter(|v| is(v, "hold", &id)).count();
    assert_eq!(
        holds, 0,
        "the hold was seen before the drop, and never again"
    );
}

fn ack_of(id: u64) -> impl FnMut(&ServiceMessage) -> Option<(bool, Option<String>)> {
    move |m| match m {
        ServiceMessage::Ack {
            ack_id,
            success,
            error,
        } if *ack_id == id => Some((*success, error.as_ref().map(|e| e.name.clone()))),
        _ => None,
    }
}

#[test]
fn a_simple_client_gets_each_frames_reply_as_a_frame_and_server_messages_as_frames() {
    let Some((server, emu)) = setup("a_simple_client_gets_each_frames_reply") else {
        return;
    };
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let (mut ws, chosen) =
        connect_simple(&emu.client_url("chat").user_id("s").build(), &[]).unwrap();
    assert_eq!(chosen, None, "no subprotocol in the 101");
    let id = next_connected(&obs);
    let seen = server.seen(|v| is(v, "connect", &id));
    assert_eq!(seen["subprotocols"], json!([]));
    server.seen(|v| is(v, "connected", &id) && v["userId"] == "app-s");
    assert_eq!(hub.connections()[0].subprotocol, None);

    ws.send(Message::text("hello")).unwrap();
    assert_eq!(next_frame(&mut ws), Message::text("hello"));
    let seen = server.seen(|v| is(v, "message", &id));
    assert_eq!(
        (seen["dataType"].as_str(), seen["data"].as_str()),
        (Some("text"), Some("hello"))
    );
    ws.send(Message::binary(vec![0, 1, 254, 255])).unwrap();
    assert_eq!(next_frame(&mut ws), Message::binary(vec![0, 1, 254, 255]));
    let seen = server.seen(|v| is(v, "message", &id));
    assert_eq!(seen["dataType"], "binary");
    assert_eq!(seen["data"], base64(&[0, 1, 254, 255]));
    assert_eq!(seen["states"]["calls"], 1, "the state of the first frame");

    // What the server sends: the data alone, text or binary by its type.
    assert!(hub.send_to_connection(&id, "from the server"));
    assert_eq!(next_frame(&mut ws), Message::text("from the server"));
    hub.send_to_group("app-group", Data::Json(json!({"to": "group"})));
    assert_eq!(next_frame(&mut ws), Message::text(r#"{"to":"group"}"#));
    hub.send_to_all(Data::Binary(vec![7]));
    assert_eq!(next_frame(&mut ws), Message::binary(vec![7]));

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let (code, _) = close_code(&mut ws);
    assert_eq!(code, Some(CloseCode::Normal));
    server.seen(|v| is(v, "disconnected", &id));
}

#[test]
fn a_simple_client_whose_event_fails_is_closed_with_1011() {
    let Some((server, emu)) = setup("a_simple_client_whose_event_fails") else {
        return;
    };
    let obs = emu.observe();
    let (mut ws, _) = connect_simple(&emu.client_url("chat").build(), &[]).unwrap();
    let id = next_connected(&obs);
    ws.send(Message::text("fail500")).unwrap();
    let (code, before) = close_code(&mut ws);
    assert_eq!(code, Some(CloseCode::Error));
    assert!(before.is_empty(), "{before:?}");
    let seen = server.seen_until(|v| is(v, "disconnected", &id));
    let tries = seen.iter().filter(|v| is(v, "message", &id)).count();
    assert_eq!(tries, 4, "a first try and 3 retries of the 500");
    wait_ended(&obs, &id);
}

#[test]
fn a_simple_client_offering_an_unknown_subprotocol_the_handler_picks_is_served() {
    let Some((server, emu)) = setup("a_simple_client_offering_an_unknown_subprotocol") else {
        return;
    };
    let obs = emu.observe();
    let url = format!("{}&pick=custom.v1", emu.client_url("chat").build());
    let (mut ws, chosen) = connect_simple(&url, &["custom.v1"]).unwrap();
    assert_eq!(chosen.as_deref(), Some("custom.v1"));
    let id = next_connected(&obs);
    server.seen(|v| {
        is(v, "ce", &id)
            && v["type"] == "azure.webpubsub.sys.connected"
            && v["subprotocol"] == "custom.v1"
    });
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(next_frame(&mut ws), Message::text("hi"));
}

#[test]
fn a_simple_client_in_send_to_group_mode_publishes_its_frames_to_the_group() {
    let Some((server, emu)) = setup("a_simple_client_in_send_to_group_mode") else {
        return;
    };
    let obs = emu.observe();
    let hub = emu.hub("chat");
    // A PubSub member of the group the connect handler puts everyone in.
    let mut member = connect(&emu.client_url("chat").user_id("m").build());
    next_connected(&obs);
    let url = format!(
        "{}&webpubsub_mode=sendToGroup&group=app-group&noEcho=true&roles=webpubsub.sendToGroup.app-group",
        emu.client_url("chat").user_id("s").build()
    );
    let (mut sender, _) = connect_simple(&url, &[]).unwrap();
    let id = next_connected(&obs);
    sender.send(Message::text("to the group")).unwrap();
    sender.send(Message::binary(vec![1, 2])).unwrap();
    let got: Vec<(Data, Option<String>)> = (0..2)
        .map(|_| match member.recv() {
            ServiceMessage::GroupMessage {
                group,
                data,
                from_user_id,
                ..
            } => {
                assert_eq!(group, "app-group");
                (data, from_user_id)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (Data::from("to the group"), Some("app-s".to_owned())),
            (Data::Binary(vec![1, 2]), Some("app-s".to_owned()))
        ]
    );
    // noEcho: the sender, a member too, got neither; the next frame it gets is this one.
    assert!(hub.send_to_connection(&id, "next"));
    assert_eq!(next_frame(&mut sender), Message::text("next"));
    sender.close(None).unwrap();
    close_code(&mut sender);
    // The frames never reached the event handler.
    let seen = server.seen_until(|v| is(v, "disconnected", &id));
    assert!(!seen.iter().any(|v| is(v, "message", &id)), "{seen:?}");

    // Without the group-send right, the first frame closes it (1008).
    let url = format!(
        "{}&webpubsub_mode=sendToGroup&group=app-group",
        emu.client_url("chat").build()
    );
    let (mut denied, _) = connect_simple(&url, &[]).unwrap();
    denied.send(Message::text("x")).unwrap();
    assert_eq!(close_code(&mut denied).0, Some(CloseCode::Policy));
    assert!(member.drain_until_pong().is_empty());
}

#[test]
fn a_simple_client_with_an_unknown_mode_is_refused_with_400() {
    let Some((_server, emu)) = setup("a_simple_client_with_an_unknown_mode") else {
        return;
    };
    for q in ["webpubsub_mode=sendEvent", "webpubsub_mode=sendToGroup"] {
        let url = format!("{}&{q}", emu.client_url("chat").build());
        assert_eq!(
            connect_simple(&url, &[]).err().map(|r| r.status),
            Some(400),
            "{q}"
        );
    }
}

#[test]
fn a_hub_without_event_handlers_serves_simple_clients_with_the_in_process_handler() {
    init_log();
    let emu = Emulator::builder()
        .event_handler(|req| match req.data.as_text() {
            Some("fail") => webpubsub_emulator::EventResponse::Fail("no".into()),
            _ => webpubsub_emulator::EventResponse::Reply(req.data.clone()),
        })
        .start()
        .unwrap();
    let obs = emu.observe();
    let (mut ws, _) = connect_simple(&emu.client_url("plain").build(), &[]).unwrap();
    let id = next_connected(&obs);
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(next_frame(&mut ws), Message::text("hi"));
    let events = emu.hub("plain").events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].event.as_str(), &events[0].data),
        ("message", &Data::from("hi"))
    );
    assert_eq!(events[0].connection_id, id);
    ws.send(Message::text("fail")).unwrap();
    assert_eq!(close_code(&mut ws).0, Some(CloseCode::Error));
    wait_for(&obs, |o| {
        matches!(o, Observation::SessionEnded { connection_id, .. } if *connection_id == id)
            .then_some(())
    });
}

#[test]
fn a_protobuf_clients_events_reach_the_app_server_as_bytes_and_its_replies_come_back_in_protobuf() {
    let Some((server, emu)) = setup("a_protobuf_clients_events_reach_the_app_server") else {
        return;
    };
    let url = emu.client_url("chat").user_id("pb").build();
    for p in [
        webpubsub_protocol::Subprotocol::ProtobufReliable,
        webpubsub_protocol::Subprotocol::Protobuf,
    ] {
        let mut c = connect_as(p, &url);
        // Binary data travels as bytes on both sides: the handler gets `binary`, the reply
        // comes back as protobuf `binary_data`, before the ack.
        c.send(event("echo", Some(1), Data::Binary(vec![0, 1, 2, 255])));
        let (data, _) = server_data(c.recv());
        assert_eq!(data, Data::Binary(vec![0, 1, 2, 255]), "{p}");
        assert_eq!(c.ack(1), (true, None), "{p}");
        let seen = server.seen(|v| v["seen"] == "echo" && v["connectionId"] == c.connection_id);
        assert_eq!(seen["dataType"], "binary", "{p}");
        assert_eq!(seen["data"], base64(&[0, 1, 2, 255]), "{p}");

        // A protobuf payload (a serialised `Any`) reaches the handler as its bytes, which the
        // handler packages know as binary; an echo of them is binary again.
        let any = webpubsub_protocol::ProtobufAny::new("type.googleapis.com/demo.Point", [8, 1]);
        c.send(event("echo", Some(2), Data::from(any.clone())));
        let (data, _) = server_data(c.recv());
        assert_eq!(data, Data::Binary(any.to_bytes()), "{p}");
        assert_eq!(c.ack(2), (true, None), "{p}");
        let seen = server.seen(|v| v["seen"] == "echo" && v["connectionId"] == c.connection_id);
        assert_eq!(seen["dataType"], "binary", "{p}");
        assert_eq!(seen["data"], base64(&any.to_bytes()), "{p}");

        // Text and JSON arrive as text and JSON.
        c.send(event("echo", Some(3), "hi"));
        assert_eq!(server_data(c.recv()).0, Data::Text("hi".into()), "{p}");
        assert_eq!(c.ack(3), (true, None), "{p}");
        c.send(event("echo", Some(4), Data::Json(json!({"k": 1}))));
        assert_eq!(server_data(c.recv()).0, Data::Json(json!({"k": 1})), "{p}");
        assert_eq!(c.ack(4), (true, None), "{p}");
    }
}
