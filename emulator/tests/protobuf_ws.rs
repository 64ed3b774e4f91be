//! The protobuf subprotocols on the WebSocket endpoint (PROTOBUF.md, PROTOCOL.md §2; B42):
//! negotiation, binary frames both ways, the JS codec's test vectors, acks, invoke, system
//! messages, and frames of the wrong kind. Sequence ids, recovery and the faults run over
//! both reliable subprotocols in `emulator_recovery.rs`.

mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use crossbeam_channel::unbounded;
use std::net::TcpStream;
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;
use webpubsub_emulator::{
    Emulator, EventKind, EventRequest, EventResponse, Observation, Permission, BAD_REQUEST,
};
use webpubsub_protocol::{
    ClientMessage, Data, Metadata, ProtobufAny, ServiceMessage, Subprotocol, MAX_MESSAGE_BYTES,
};

/// Both protobuf subprotocols, reliable first.
const PROTOBUF_BOTH: [Subprotocol; 2] = [Subprotocol::ProtobufReliable, Subprotocol::Protobuf];

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

fn binary(m: Message) -> Vec<u8> {
    match m {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

/// A downstream data-message test vector whose sequence id is 12345 (`20 b9 60`, the last
/// field), with that id replaced by `seq` (`None`: no sequence id), its length adjusted.
fn vector_with_seq(vector: &str, seq: Option<u8>) -> Vec<u8> {
    let v = b64(vector);
    assert_eq!(v[0], 0x12, "a data_message");
    assert!(
        v.ends_with(&[0x20, 0xb9, 0x60]),
        "ends with sequence_id 12345"
    );
    let mut inner = v[2..v.len() - 3].to_vec();
    if let Some(seq) = seq {
        inner.extend([0x20, seq]);
    }
    let mut out = vec![0x12, inner.len() as u8];
    out.extend(inner);
    out
}

#[test]
fn protobuf_subprotocols_are_chosen_as_offered_and_answer_in_binary_frames() {
    // B42, PROTOCOL.md §2.
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    for p in PROTOBUF_BOTH {
        // An unknown name first, JSON after: the first PubSub subprotocol offered wins.
        let offer = format!("mqtt, {}, {RELIABLE}", p.name());
        let tcp = TcpStream::connect(emu.addr()).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let url = emu.client_url("chat").user_id("u").build();
        let (mut ws, resp) = tungstenite::client(request(&url, Some(&offer), None), tcp).unwrap();
        assert_eq!(
            resp.headers()["Sec-WebSocket-Protocol"].to_str().unwrap(),
            p.name()
        );
        let connected = ServiceMessage::decode_protobuf(&binary(ws.read().unwrap())).unwrap();
        let ServiceMessage::Connected {
            connection_id,
            user_id,
            reconnection_token,
        } = connected
        else {
            panic!("{p}: expected connected, got {connected:?}");
        };
        assert_eq!(user_id.as_deref(), Some("u"));
        assert_eq!(
            reconnection_token.is_some(),
            p.is_reliable(),
            "{p}: only the reliable variant recovers"
        );
        let reliable = wait_for(&obs, |o| match o {
            Observation::Connected {
                connection_id: id,
                reliable,
                ..
            } if *id == connection_id => Some(*reliable),
            _ => None,
        });
        assert_eq!(reliable, p.is_reliable(), "{p}");
        let info = emu.hub("chat").connections();
        let me = info.iter().find(|c| c.connection_id == connection_id);
        assert_eq!(me.unwrap().subprotocol, Some(p));
    }
}

#[test]
fn frames_are_byte_for_byte_those_of_the_js_codecs_test_vectors() {
    // PROTOBUF.md "Test vectors", from @azure/web-pubsub-client-protobuf's unit tests.
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let url = emu.client_url("chat").roles(roles).build();
    let mut reliable = connect_as(Subprotocol::ProtobufReliable, &url);
    let mut plain = connect_as(Subprotocol::Protobuf, &url);

    // `join, ack 44133` in, an ack out; `ack ok` is the ack of 123.
    reliable.send_binary(&b64("MgsKBWdyb3VwEOXYAg=="));
    assert_eq!(reliable.ack(44133), (true, None));
    assert_eq!(hub.group_members("group"), [reliable.connection_id.clone()]);
    plain.send(join("groupName", 123));
    assert_eq!(binary(plain.recv_raw()), b64("CgQIexAB"));
    reliable.send(join("groupName", 1));
    assert_eq!(reliable.ack(1), (true, None));

    // `group text, seq 12345`: "xyz" published to groupName, with seq 1 or none.
    plain.send(publish("groupName", None, "xyz"));
    assert_eq!(
        binary(reliable.recv_raw()),
        vector_with_seq("EhwKBWdyb3VwEglncm91cE5hbWUaBQoDeHl6ILlg", Some(1)),
        "the reliable member's first message"
    );
    assert_eq!(
        binary(plain.recv_raw()),
        vector_with_seq("EhwKBWdyb3VwEglncm91cE5hbWUaBQoDeHl6ILlg", None)
    );
    // `server text, seq 12345`.
    hub.send_to_connection(&plain.connection_id, "xyz");
    assert_eq!(
        binary(plain.recv_raw()),
        vector_with_seq("EhIKBnNlcnZlchoFCgN4eXoguWA=", None)
    );

    // `sendToGroup json, ack, noEcho` to "group": the other member gets the JSON value.
    plain.send(join("group", 2));
    assert_eq!(plain.ack(2), (true, None));
    reliable.send_binary(&b64("Ch8KBWdyb3VwELlgGhEiD3sidmFsdWUiOiJ4enkifSAB"));
    assert_eq!(reliable.ack(12345), (true, None));
    let got = plain.recv_until(|m| match m {
        ServiceMessage::GroupMessage { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(got, Data::Json(serde_json::json!({"value": "xzy"})));
    assert!(
        reliable.drain_until_pong().is_empty(),
        "noEcho: nothing back to the sender"
    );
    // `sequenceAck 123456` is taken without an answer.
    reliable.send_binary(&b64("QgQIwMQH"));
    assert!(reliable.drain_until_pong().is_empty());
}

#[test]
fn acks_duplicates_and_roles_work_over_protobuf() {
    // B42: as over JSON (PROTOCOL.md §6, §8).
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    for p in PROTOBUF_BOTH {
        let mut a = connect_as(p, &emu.client_url("chat").build());
        a.send(join("g", 1));
        assert_eq!(a.ack(1), (false, Some("Forbidden".into())), "{p}");
        hub.grant_permission(&a.connection_id, Permission::JoinLeaveGroup, None);
        a.send(join("g", 1));
        assert_eq!(a.ack(1), (true, None), "{p}: a Forbidden was not executed");
        a.send(join("g", 1));
        assert_eq!(a.ack(1), (false, Some("Duplicate".into())), "{p}");
        a.send(join("", 2));
        assert_eq!(a.ack(2), (false, Some(BAD_REQUEST.into())), "{p}");
        a.send(publish("g", Some(3), "x"));
        assert_eq!(a.ack(3), (false, Some("Forbidden".into())), "{p}");
    }
}

#[test]
fn frames_of_the_other_kind_malformed_and_unknown_frames_are_skipped() {
    // B42: unknown oneof cases are skipped, never fatal.
    let emu = Emulator::start().unwrap();
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    for p in PROTOBUF_BOTH {
        let mut a = connect_as(p, &url);
        // A JSON request in a text frame: not for a protobuf connection.
        a.send_text(r#"{"type":"joinGroup","group":"text","ackId":9}"#);
        // Not protobuf at all.
        a.send_binary(&[0xff, 0xff, 0xff]);
        // Case 13 (stream_data_message, preview): unknown here, skipped.
        a.send_binary(&[0x6a, 0x00]);
        assert!(a.drain_until_pong().is_empty(), "{p}: nothing answered");
        assert!(!emu.hub("chat").group_exists("text"), "{p}");
    }
    // And the JSON side skips binary frames, even a valid protobuf request.
    let mut j = connect(&url);
    j.send_binary(&join("binary", 9).encode_protobuf());
    assert!(j.drain_until_pong().is_empty());
    assert!(!emu.hub("chat").group_exists("binary"));
}

#[test]
fn the_1_mb_limit_measures_the_binary_frame() {
    let emu = Emulator::start().unwrap();
    let mut a = connect_as(
        Subprotocol::ProtobufReliable,
        &emu.client_url("chat")
            .roles(["webpubsub.sendToGroup"])
            .build(),
    );
    let msg = |ack: u64, n: usize| publish("g", Some(ack), vec![7u8; n]);
    let frame_of = |n: usize| msg(1, n).encode_protobuf().len();
    let near = MAX_MESSAGE_BYTES - 100;
    let fits = near + (MAX_MESSAGE_BYTES - frame_of(near));
    assert_eq!(frame_of(fits), MAX_MESSAGE_BYTES);
    a.send(msg(1, fits + 1));
    assert_eq!(a.ack(1), (false, Some(BAD_REQUEST.into())));
    a.send(msg(2, fits));
    assert_eq!(a.ack(2), (true, None), "a frame of exactly 1 MB is fine");
    let event = |ack: u64, n: usize| ClientMessage::Event {
        event: "e".into(),
        ack_id: Some(ack),
        data: Data::Binary(vec![7; n]),
        metadata: Metadata::new(),
    };
    let fits = near + (MAX_MESSAGE_BYTES - event(3, near).encode_protobuf().len());
    a.send(event(3, fits + 1));
    assert_eq!(a.ack(3), (false, Some(BAD_REQUEST.into())));
    a.send(event(4, fits));
    assert_eq!(a.ack(4), (true, None));
}

#[test]
fn ping_invoke_and_cancel_invocation_are_answered_over_protobuf() {
    let emu = Emulator::builder()
        .event_handler(|req| match req.event.as_str() {
            "fail" => EventResponse::Fail("nope".into()),
            _ => EventResponse::Reply(req.data.clone()),
        })
        .start()
        .unwrap();
    let any = Data::from(ProtobufAny::new(
        "type.googleapis.com/demo.Point",
        vec![8, 1],
    ));
    for p in PROTOBUF_BOTH {
        let mut a = connect_as(p, &emu.client_url("chat").build());
        let invoke = |id: &str, event: &str, data: Option<Data>| ClientMessage::Invoke {
            invocation_id: id.into(),
            event: event.into(),
            data,
            metadata: Metadata::new(),
        };
        a.send(invoke("1", "echo", Some(any.clone())));
        assert_eq!(
            a.recv(),
            ServiceMessage::InvokeResponse {
                invocation_id: "1".into(),
                success: true,
                data: Some(any.clone()),
                error: None,
                metadata: Metadata::new(),
            },
            "{p}"
        );
        a.send(invoke("2", "echo", None));
        assert!(
            matches!(a.recv(), ServiceMessage::InvokeResponse { ref invocation_id, success: true, data: None, .. } if invocation_id == "2"),
            "{p}: no data echoes as none"
        );
        a.send(invoke("3", "fail", Some("x".into())));
        match a.recv() {
            ServiceMessage::InvokeResponse {
                invocation_id,
                success: false,
                error: Some(e),
                ..
            } => assert_eq!(
                (invocation_id.as_str(), e.name.as_str(), e.message.as_str()),
                ("3", "InvocationFailed", "nope")
            ),
            other => panic!("{p}: {other:?}"),
        }
        a.send(ClientMessage::CancelInvocation {
            invocation_id: "4".into(),
        });
        assert!(
            a.drain_until_pong().is_empty(),
            "{p}: a cancel is not answered"
        );
    }
}

#[test]
fn events_reach_the_handler_with_their_protobuf_payloads() {
    let (tx, rx) = unbounded::<EventRequest>();
    let emu = Emulator::builder()
        .event_handler(move |req| {
            let _ = tx.send(req.clone());
            EventResponse::Accept
        })
        .start()
        .unwrap();
    let any = ProtobufAny::new("type.googleapis.com/demo.Point", vec![8, 1]);
    let mut a = connect_as(Subprotocol::Protobuf, &emu.client_url("chat").build());
    a.send(ClientMessage::Event {
        event: "point".into(),
        ack_id: Some(1),
        data: Data::from(&any),
        metadata: Metadata::new(),
    });
    assert_eq!(a.ack(1), (true, None));
    let req = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (req.kind, req.event.as_str(), req.connection_id.as_str()),
        (EventKind::Event, "point", a.connection_id.as_str())
    );
    assert_eq!(req.data.protobuf_any(), Some(Ok(any.clone())));
    assert_eq!(emu.hub("chat").events()[0].data, Data::from(any));
}

#[test]
fn close_and_stop_say_disconnected_in_protobuf_then_close_with_1008_and_1001() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").build();
    for p in PROTOBUF_BOTH {
        let mut a = connect_as(p, &url);
        assert!(hub.close_connection(&a.connection_id, "bye"));
        let (code, seen) = a.closed();
        assert_eq!(code, Some(CloseCode::Policy), "{p}");
        assert_eq!(
            seen.last(),
            Some(&ServiceMessage::Disconnected {
                message: Some("bye".into())
            }),
            "{p}"
        );
    }
    let mut clients: Vec<Ws> = PROTOBUF_BOTH.map(|p| connect_as(p, &url)).into();
    emu.stop();
    for a in &mut clients {
        let (code, seen) = a.closed();
        assert_eq!(code, Some(CloseCode::Away), "{}", a.subprotocol);
        assert!(
            matches!(seen.last(), Some(ServiceMessage::Disconnected { .. })),
            "{seen:?}"
        );
    }
}
