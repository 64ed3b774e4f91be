//! The emulator's WebSocket endpoint: auth, messages, acks, roles, groups, events.

mod support;

use serde_json::json;
use support::*;
use webpubsub_emulator::{
    Emulator, EventKind, EventResponse, Observation, Permission, BAD_REQUEST,
};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage, MAX_MESSAGE_BYTES};

#[test]
fn connected_message_carries_id_user_and_reconnection_token() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let c = connect(&emu.client_url("chat").user_id("alice").build());
    assert!(!c.connection_id.is_empty());
    assert_eq!(c.user_id.as_deref(), Some("alice"));
    assert!(c.reconnection_token.is_some());
    wait_for(&obs, |o| match o {
        Observation::Connected {
            hub,
            connection_id,
            user_id,
            reliable,
        } => {
            assert_eq!(hub, "chat");
            assert_eq!(connection_id, &c.connection_id);
            assert_eq!(user_id.as_deref(), Some("alice"));
            assert!(reliable);
            Some(())
        }
        _ => None,
    });
    let plain = connect_plain(&emu.client_url("chat").build());
    assert_eq!(plain.user_id, None);
    assert_eq!(plain.reconnection_token, None, "plain JSON has no recovery");
}

#[test]
fn client_url_has_the_sdk_shape() {
    let emu = Emulator::start().unwrap();
    let url = emu.client_url("Chat_Hub").build();
    let prefix = format!("ws://{}/client/hubs/Chat_Hub?access_token=", emu.addr());
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(
        emu.connection_string(),
        format!(
            "Endpoint=http://{};AccessKey={};Version=1.0;",
            emu.addr(),
            emu.access_key()
        )
    );
}

#[test]
fn missing_bad_expired_and_wrong_audience_tokens_get_401() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let base = format!("ws://{}/client/hubs/chat", emu.addr());
    let refused = |url: &str| {
        try_connect(url, Some(RELIABLE), None)
            .err()
            .expect("refused")
    };

    let r = refused(&base);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("no access token"), "{}", r.body);

    let good = emu.client_url("chat").build();
    let tampered = format!("{}x", &good[..good.len() - 2]);
    let r = refused(&tampered);
    assert_eq!(r.status, 401);

    let other = Emulator::builder()
        .access_key("another key of sufficient length!!")
        .start()
        .unwrap();
    let foreign_token = other.client_url("chat").token();
    let r = refused(&format!("{base}?access_token={foreign_token}"));
    assert_eq!(
        (r.status, r.body.contains("signature")),
        (401, true),
        "{}",
        r.body
    );

    let wrong_hub = emu.client_url("other").token();
    let r = refused(&format!("{base}?access_token={wrong_hub}"));
    assert_eq!(r.status, 401);
    assert!(r.body.contains("audience"), "{}", r.body);

    wait_for(&obs, |o| {
        matches!(o, Observation::AuthRefused { status: 401, .. }).then_some(())
    });
}

#[test]
fn expired_token_gets_401() {
    // A token whose exp is far in the past, signed with the right key and audience.
    let emu = Emulator::start().unwrap();
    let aud = format!("{}/client/hubs/chat", emu.endpoint());
    let token = sign_expired(emu.access_key(), &aud);
    let r = try_connect(
        &format!("ws://{}/client/hubs/chat?access_token={token}", emu.addr()),
        Some(RELIABLE),
        None,
    )
    .err()
    .expect("refused");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
}

/// HS256 by hand (independent of the emulator's own signer) with exp an hour ago.
fn sign_expired(key: &str, aud: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let h = B.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let c = B.encode(json!({"aud": aud, "exp": now - 3600}).to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B.encode(mac.finalize().into_bytes()))
}

#[test]
fn token_in_authorization_header_and_hub_in_query_are_accepted() {
    let emu = Emulator::start().unwrap();
    let token = emu.client_url("chat").user_id("bob").token();
    let c = try_connect(
        &format!("ws://{}/client/hubs/chat", emu.addr()),
        Some(RELIABLE),
        Some(&token),
    )
    .expect("header token accepted");
    assert_eq!(c.user_id.as_deref(), Some("bob"));
    let c2 = try_connect(
        &format!("ws://{}/client/?hub=chat&access_token={token}", emu.addr()),
        Some(PLAIN),
        None,
    )
    .expect("query hub accepted");
    assert_eq!(emu.hub("chat").connections().len(), 2);
    drop((c, c2));
}

#[test]
fn join_needs_a_role_and_forbidden_is_not_executed() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut c = connect(&emu.client_url("chat").build());
    c.send(join("g", 1));
    assert_eq!(c.ack(1), (false, Some("Forbidden".into())));
    assert!(!hub.group_exists("g"));

    let mut j = connect(
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup.g")
            .build(),
    );
    j.send(join("g", 1));
    assert_eq!(j.ack(1), (true, None));
    j.send(join("h", 2));
    assert_eq!(
        j.ack(2),
        (false, Some("Forbidden".into())),
        "role is for group g only"
    );
    assert_eq!(hub.group_members("g"), vec![j.connection_id.clone()]);
    j.send(ClientMessage::LeaveGroup {
        group: "g".into(),
        ack_id: Some(3),
    });
    assert_eq!(j.ack(3), (true, None));
    assert!(!hub.group_exists("g"));
}

#[test]
fn runtime_grants_and_revokes_change_what_a_connection_may_do() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut c = connect(&emu.client_url("chat").build());
    let id = c.connection_id.clone();
    assert!(!hub.has_permission(&id, Permission::SendToGroup, Some("g")));
    assert!(hub.grant_permission(&id, Permission::SendToGroup, Some("g")));
    assert!(hub.has_permission(&id, Permission::SendToGroup, Some("g")));
    assert!(!hub.has_permission(&id, Permission::SendToGroup, Some("h")));
    c.send(publish("g", Some(1), "x"));
    assert_eq!(c.ack(1), (true, None));
    c.send(publish("h", Some(2), "x"));
    assert_eq!(c.ack(2), (false, Some("Forbidden".into())));
    assert!(hub.grant_permission(&id, Permission::JoinLeaveGroup, None));
    c.send(join("any", 3));
    assert_eq!(c.ack(3), (true, None));
    assert!(hub.revoke_permission(&id, Permission::SendToGroup, Some("g")));
    c.send(publish("g", Some(4), "x"));
    assert_eq!(c.ack(4), (false, Some("Forbidden".into())));
    assert!(!hub.grant_permission("nope", Permission::SendToGroup, None));
}

#[test]
fn group_messages_reach_members_with_sequence_ids_and_from_user() {
    let emu = Emulator::start().unwrap();
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let mut a = connect(&emu.client_url("chat").user_id("alice").roles(roles).build());
    let mut b = connect(&emu.client_url("chat").roles(roles).build());
    let mut p = connect_plain(&emu.client_url("chat").roles(roles).build());
    for c in [&mut a, &mut b, &mut p] {
        c.send(join("g", 1));
        assert_eq!(c.ack(1), (true, None));
    }
    a.send(publish("g", Some(2), "hello"));
    a.send(publish("g", None, json!({"k": [1, 2]})));
    a.send(publish("g", Some(3), vec![0u8, 1, 255]));
    let expected = [
        Data::from("hello"),
        Data::from(json!({"k": [1, 2]})),
        Data::from(vec![0u8, 1, 255]),
    ];
    // After the sender's pong, all three were fanned out (one thread handles its frames in order).
    for c in [&mut a, &mut b] {
        let got: Vec<ServiceMessage> = c
            .drain_until_pong()
            .into_iter()
            .filter(|m| matches!(m, ServiceMessage::GroupMessage { .. }))
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        for (i, (m, d)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                m,
                &ServiceMessage::GroupMessage {
                    group: "g".into(),
                    data: d.clone(),
                    from_user_id: Some("alice".into()),
                    sequence_id: Some(i as u64 + 1),
                    metadata: Metadata::new(),
                }
            );
        }
    }
    for d in &expected {
        let m =
            p.recv_until(|m| matches!(m, ServiceMessage::GroupMessage { .. }).then(|| m.clone()));
        assert_eq!(m.sequence_id(), None, "plain JSON has no sequence ids");
        assert!(matches!(m, ServiceMessage::GroupMessage { data, .. } if data == *d));
    }
}

#[test]
fn no_echo_skips_the_sender_only() {
    let emu = Emulator::start().unwrap();
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let mut a = connect(&emu.client_url("chat").roles(roles).build());
    let mut b = connect(&emu.client_url("chat").roles(roles).build());
    for c in [&mut a, &mut b] {
        c.send(join("g", 1));
        assert_eq!(c.ack(1), (true, None));
    }
    a.send(ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: Some(2),
        no_echo: true,
        data: "quiet".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    });
    let before = a.drain_until_pong();
    assert_eq!(before.len(), 1, "only the ack: {before:?}");
    assert!(matches!(
        before[0],
        ServiceMessage::Ack {
            ack_id: 2,
            success: true,
            ..
        }
    ));
    let got = b.recv_until(|m| matches!(m, ServiceMessage::GroupMessage { .. }).then(|| m.clone()));
    assert!(
        matches!(got, ServiceMessage::GroupMessage { data, .. } if data == Data::from("quiet"))
    );
}

#[test]
fn repeated_ack_id_is_a_duplicate_and_not_executed_again() {
    let emu = Emulator::start().unwrap();
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let mut a = connect(&emu.client_url("chat").roles(roles).build());
    let mut b = connect(&emu.client_url("chat").roles(roles).build());
    b.send(join("g", 1));
    assert_eq!(b.ack(1), (true, None));
    a.send(publish("g", Some(7), "once"));
    assert_eq!(a.ack(7), (true, None));
    a.send(publish("g", Some(7), "once"));
    assert_eq!(a.ack(7), (false, Some("Duplicate".into())));
    let got = b.drain_until_pong();
    let n = got
        .iter()
        .filter(|m| matches!(m, ServiceMessage::GroupMessage { .. }))
        .count();
    assert_eq!(n, 1, "{got:?}");
}

#[test]
fn group_name_and_message_size_limits_give_bad_request_and_keep_the_connection() {
    let emu = Emulator::start().unwrap();
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let mut a = connect(&emu.client_url("chat").roles(roles).build());
    a.send(join("", 1));
    assert_eq!(a.ack(1), (false, Some(BAD_REQUEST.into())));
    a.send(join(&"x".repeat(1025), 2));
    assert_eq!(a.ack(2), (false, Some(BAD_REQUEST.into())));
    a.send(join(&"é".repeat(1024), 3));
    assert_eq!(a.ack(3), (true, None), "1024 characters is fine");
    // The limit measures the frame, as the client does before it sends one.
    let frame_of = |n: usize| publish("g", Some(4), "y".repeat(n)).encode().len();
    let fits = MAX_MESSAGE_BYTES - frame_of(0);
    assert_eq!(frame_of(fits), MAX_MESSAGE_BYTES);
    a.send(publish("g", Some(4), "y".repeat(fits + 1)));
    assert_eq!(a.ack(4), (false, Some(BAD_REQUEST.into())));
    a.send(publish("g", Some(5), "y".repeat(fits)));
    assert_eq!(a.ack(5), (true, None), "a frame of exactly 1 MB is fine");
    let event = |ack: u64, n: usize| ClientMessage::Event {
        event: "e".into(),
        ack_id: Some(ack),
        data: "y".repeat(n).into(),
        metadata: Metadata::new(),
    };
    let fits = MAX_MESSAGE_BYTES - event(6, 0).encode().len();
    a.send(event(6, fits + 1));
    assert_eq!(a.ack(6), (false, Some(BAD_REQUEST.into())));
    a.send(event(7, fits));
    assert_eq!(a.ack(7), (true, None));
}

#[test]
fn malformed_and_unknown_frames_are_skipped() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").build());
    a.send_text("not json");
    a.send_text(r#"{"type":"teleport"}"#);
    a.send_text(r#"{"type":"joinGroup"}"#);
    assert!(a.drain_until_pong().is_empty());
}

#[test]
fn ping_gets_pong_and_websocket_pings_are_answered() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").build());
    a.send(ClientMessage::Ping);
    assert_eq!(a.recv(), ServiceMessage::Pong);
    a.ws.send(tungstenite::Message::Ping("p".into())).unwrap();
    match a.ws.read().unwrap() {
        tungstenite::Message::Pong(p) => assert_eq!(&p[..], b"p"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn token_groups_are_joined_on_connect() {
    let emu = Emulator::start().unwrap();
    let a = connect(&emu.client_url("chat").group("g1").groups(["g2"]).build());
    let hub = emu.hub("chat");
    let info = hub.connections();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].groups, vec!["g1".to_string(), "g2".to_string()]);
    assert!(info[0].connected);
    assert_eq!(hub.group_members("g2"), vec![a.connection_id.clone()]);
}

#[test]
fn server_sends_reach_all_users_connections_and_groups_with_exclusions() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect(&emu.client_url("chat").user_id("u1").group("g").build());
    let mut b = connect(&emu.client_url("chat").user_id("u2").group("g").build());
    let mut c = connect_plain(&emu.client_url("chat").user_id("u1").build());
    let server = |m: &ServiceMessage| match m {
        ServiceMessage::ServerMessage { data, .. } => Some(data.clone()),
        _ => None,
    };
    hub.send_to_all("all");
    hub.send_to_all_except("all-but-a", &[a.connection_id.as_str()]);
    hub.send_to_user("u1", "user");
    assert!(hub.send_to_connection(&b.connection_id, "conn"));
    assert!(!hub.send_to_connection("nope", "conn"));
    hub.send_to_group("g", json!({"to": "g"}));
    hub.send_to_group_except("g", "g-but-b", &[b.connection_id.clone()]);
    let got = |c: &mut Ws| {
        c.drain_until_pong()
            .iter()
            .filter_map(server)
            .collect::<Vec<Data>>()
    };
    assert_eq!(
        got(&mut a),
        vec![
            "all".into(),
            "user".into(),
            json!({"to": "g"}).into(),
            "g-but-b".into()
        ]
    );
    assert_eq!(
        got(&mut b),
        vec![
            "all".into(),
            "all-but-a".into(),
            "conn".into(),
            json!({"to": "g"}).into()
        ]
    );
    assert_eq!(
        got(&mut c),
        vec![Data::from("all"), "all-but-a".into(), "user".into()]
    );
}

#[test]
fn server_side_membership_changes_apply_and_a_users_later_connections_join_its_groups() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let a = connect(&emu.client_url("chat").user_id("u").build());
    assert!(hub.user_exists("u") && !hub.user_exists("v"));
    assert!(hub.connection_exists(&a.connection_id));
    assert!(hub.add_connection_to_group("g", &a.connection_id));
    assert!(hub.group_exists("g"));
    assert!(hub.remove_connection_from_group("g", &a.connection_id));
    assert!(!hub.group_exists("g"));
    hub.add_user_to_group("u", "ug");
    assert_eq!(hub.group_members("ug"), vec![a.connection_id.clone()]);
    // Later connections of the user join too.
    let b = connect(&emu.client_url("chat").user_id("u").build());
    assert_eq!(hub.group_members("ug").len(), 2);
    hub.remove_user_from_group("u", "ug");
    assert!(!hub.group_exists("ug"));
    drop(b);
}

#[test]
fn close_connection_sends_disconnected_with_reason_then_1008_and_ends_the_session() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").build();
    let mut a = connect(&url);
    assert!(hub.close_connection(&a.connection_id, "bye now"));
    let (code, seen) = a.closed();
    assert_eq!(
        code,
        Some(tungstenite::protocol::frame::coding::CloseCode::Policy)
    );
    assert_eq!(
        seen.last(),
        Some(&ServiceMessage::Disconnected {
            message: Some("bye now".into())
        })
    );
    assert_eq!(wait_ended(&obs, &a.connection_id), "bye now");
    assert!(!hub.connection_exists(&a.connection_id));
    // Not recoverable.
    let mut r = open_raw(&recovery_url(&url, &a), RELIABLE);
    match r.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[test]
fn events_are_recorded_and_a_failing_handler_gives_invocation_failed() {
    let emu = Emulator::builder()
        .event_handler(|req| match (req.kind, req.event.as_str()) {
            (_, "fail") => EventResponse::Fail("nope".into()),
            (EventKind::Event, "reply") => EventResponse::Reply("pong!".into()),
            (EventKind::Invoke, _) => EventResponse::Reply(req.data.clone()),
            _ => EventResponse::Accept,
        })
        .start()
        .unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u").build());
    let ev = |name: &str, ack| ClientMessage::Event {
        event: name.into(),
        ack_id: ack,
        data: Data::from("payload"),
        metadata: Metadata::new(),
    };
    a.send(ev("ok", Some(1)));
    assert_eq!(a.ack(1), (true, None));
    a.send(ev("fail", Some(2)));
    assert_eq!(a.ack(2), (false, Some("InvocationFailed".into())));
    a.send(ev("reply", Some(3)));
    let before = a.drain_until_pong();
    assert!(before.iter().any(
        |m| matches!(m, ServiceMessage::ServerMessage { data, .. } if *data == Data::from("pong!"))
    ));
    assert!(before.iter().any(|m| matches!(
        m,
        ServiceMessage::Ack {
            ack_id: 3,
            success: true,
            ..
        }
    )));
    let events = emu.hub("chat").events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].event, "ok");
    assert_eq!(events[0].user_id.as_deref(), Some("u"));
    assert_eq!(events[0].data, Data::from("payload"));

    a.send(ClientMessage::Invoke {
        invocation_id: "i1".into(),
        event: "echo".into(),
        data: Some(json!({"a": 1}).into()),
        metadata: Metadata::new(),
    });
    assert_eq!(
        a.recv(),
        ServiceMessage::InvokeResponse {
            invocation_id: "i1".into(),
            success: true,
            data: Some(json!({"a": 1}).into()),
            error: None,
            metadata: Metadata::new(),
        }
    );
    a.send(ClientMessage::Invoke {
        invocation_id: "i2".into(),
        event: "fail".into(),
        data: None,
        metadata: Metadata::new(),
    });
    match a.recv() {
        ServiceMessage::InvokeResponse {
            invocation_id,
            success: false,
            error: Some(e),
            ..
        } => {
            assert_eq!(
                (invocation_id.as_str(), e.name.as_str(), e.message.as_str()),
                ("i2", "InvocationFailed", "nope")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_handler_accepts_events_and_echoes_invokes() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let mut a = connect(&emu.client_url("chat").build());
    a.send(ClientMessage::Event {
        event: "e".into(),
        ack_id: Some(1),
        data: "d".into(),
        metadata: Metadata::new(),
    });
    assert_eq!(a.ack(1), (true, None));
    a.send(ClientMessage::Invoke {
        invocation_id: "x".into(),
        event: "e".into(),
        data: Some("hi".into()),
        metadata: Metadata::new(),
    });
    assert_eq!(
        a.recv(),
        ServiceMessage::InvokeResponse {
            invocation_id: "x".into(),
            success: true,
            data: Some("hi".into()),
            error: None,
            metadata: Metadata::new(),
        }
    );
    wait_for(&obs, |o| match o {
        Observation::Request {
            message: ClientMessage::Event { event, .. },
            ..
        } if event == "e" => Some(()),
        _ => None,
    });
}

#[test]
fn stop_says_disconnected_to_clients_and_returns() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").build());
    emu.stop();
    let (code, seen) = a.closed();
    assert_eq!(
        code,
        Some(tungstenite::protocol::frame::coding::CloseCode::Away)
    );
    assert!(matches!(
        seen.last(),
        Some(ServiceMessage::Disconnected { .. })
    ));
    emu.stop(); // idempotent
}
