//! Message metadata and TTL on the WebSocket paths (PROTOCOL.md §11, §12; B41): what a
//! client sends with `sendToGroup`, `event` and `invoke` is checked with the protocol's rules,
//! reaches receivers of every subprotocol (also on recovery replay) and the event handler,
//! and the handler's metadata comes back with its answers. A TTL keeps a message from being
//! replayed once it passed.

mod support;

use crossbeam_channel::unbounded;
use support::*;
use webpubsub_emulator::{Emulator, EventKind, EventRequest, EventResponse, BAD_REQUEST};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage, Subprotocol};

fn publish(ack: Option<u64>, data: &str, ttl_seconds: Option<u32>, m: Metadata) -> ClientMessage {
    ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: ack,
        no_echo: false,
        data: data.into(),
        ttl_seconds,
        metadata: m,
    }
}

fn event(ack: u64, m: Metadata) -> ClientMessage {
    ClientMessage::Event {
        event: "e".into(),
        ack_id: Some(ack),
        data: "d".into(),
        metadata: m,
    }
}

fn invoke(id: &str, m: Metadata) -> ClientMessage {
    ClientMessage::Invoke {
        invocation_id: id.into(),
        event: "e".into(),
        data: Some("d".into()),
        metadata: m,
    }
}

fn metadata_of(m: &ServiceMessage) -> Metadata {
    match m {
        ServiceMessage::GroupMessage { metadata, .. }
        | ServiceMessage::ServerMessage { metadata, .. }
        | ServiceMessage::InvokeResponse { metadata, .. } => metadata.clone(),
        other => panic!("expected a message with metadata, got {other:?}"),
    }
}

#[test]
fn group_messages_carry_the_publishers_metadata_to_every_subprotocol() {
    // B41, PROTOCOL.md §11.
    let emu = Emulator::start().unwrap();
    let mut clients = one_per_subprotocol(&emu);
    let tagged = |p: Subprotocol| Metadata::from([("origin", p.name()), ("trace-id", "abc")]);
    // Every pair: each sender in turn, every member (the sender too) receives before the
    // next one sends.
    for sender in 0..clients.len() {
        let p = clients[sender].subprotocol;
        clients[sender].send(publish(None, "x", Some(60), tagged(p)));
        for c in &mut clients {
            let m = c.recv();
            assert_eq!(metadata_of(&m), tagged(p), "{p} -> {}", c.subprotocol);
        }
    }
    clients[0].send(publish(None, "plain", None, Metadata::new()));
    for c in &mut clients {
        assert_eq!(metadata_of(&c.recv()), Metadata::new(), "{}", c.subprotocol);
    }
}

#[test]
fn metadata_is_the_json_object_after_data_on_the_json_wire() {
    let emu = Emulator::start().unwrap();
    let url = emu
        .client_url("chat")
        .role("webpubsub.sendToGroup")
        .group("g")
        .build();
    let mut json = connect_as(Subprotocol::Json, &url);
    let mut proto = connect_as(Subprotocol::Protobuf, &url);
    proto.send(publish(None, "hi", None, Metadata::from([("k", "v")])));
    let text = json.recv_raw().into_text().unwrap();
    assert!(
        text.ends_with(r#""dataType":"text","data":"hi","metadata":{"k":"v"}}"#),
        "{text}"
    );
    // A JSON client's metadata as Microsoft's emulator reads it.
    json.send_text(
        r#"{"type":"sendToGroup","group":"g","dataType":"text","data":"x","metadata":{"a":"1"}}"#,
    );
    let m = proto.recv_until(|m| match m {
        ServiceMessage::GroupMessage { data, metadata, .. } if *data == Data::from("x") => {
            Some(metadata.clone())
        }
        _ => None,
    });
    assert_eq!(m, Metadata::from([("a", "1")]));
}

#[test]
fn metadata_and_ttls_outside_the_limits_are_refused_with_bad_request_and_never_run() {
    // B41: the limits the client checks before sending are the ones refused here.
    let (tx, rx) = unbounded::<EventRequest>();
    let emu = Emulator::builder()
        .event_handler(move |req| {
            let _ = tx.send(req.clone());
            EventResponse::Accept
        })
        .start()
        .unwrap();
    let bad: [(Metadata, &str); 4] = [
        (Metadata::from([("bad key", "v")]), "metadata key"),
        (Metadata::from([("k", "v".repeat(1025))]), "more than 1024"),
        (
            Metadata::from([("k", "line\nbreak")]),
            "not printable ASCII",
        ),
        (
            (0..9)
                .map(|i| (format!("k{i}"), "v".repeat(1000)))
                .collect(),
            "8192-byte limit",
        ),
    ];
    for p in [Subprotocol::JsonReliable, Subprotocol::ProtobufReliable] {
        let url = emu
            .client_url("chat")
            .role("webpubsub.sendToGroup")
            .group("g")
            .build();
        let mut c = connect_as(p, &url);
        let refused = |c: &mut Ws, ack: u64, why: &str| {
            let err = c.recv_until(|m| match m {
                ServiceMessage::Ack {
                    ack_id,
                    success: false,
                    error: Some(e),
                } if *ack_id == ack => Some(e.clone()),
                ServiceMessage::Ack { ack_id, .. } if *ack_id == ack => {
                    panic!("{p}: {ack} was accepted")
                }
                _ => None,
            });
            assert_eq!(err.name, BAD_REQUEST, "{p}");
            assert!(
                err.message.contains(why),
                "{p}: {:?} lacks {why}",
                err.message
            );
        };
        for (i, (m, why)) in bad.iter().enumerate() {
            let ack = 10 * i as u64;
            c.send(publish(Some(ack), "x", None, m.clone()));
            refused(&mut c, ack, why);
            c.send(event(ack + 1, m.clone()));
            refused(&mut c, ack + 1, why);
            c.send(invoke("i", m.clone()));
            match c.recv() {
                ServiceMessage::InvokeResponse {
                    success: false,
                    error: Some(e),
                    ..
                } => assert!(
                    e.name == BAD_REQUEST && e.message.contains(why),
                    "{p}: {e:?}"
                ),
                other => panic!("{p}: expected a failed invokeResponse, got {other:?}"),
            }
        }
        c.send(publish(Some(100), "x", Some(301), Metadata::new()));
        refused(&mut c, 100, "time to live of 301 s");
        // Nothing refused was delivered or reached the handler.
        assert!(c.drain_until_pong().is_empty(), "{p}");
        assert!(rx.try_recv().is_err(), "{p}: the handler was called");
        assert!(emu.hub("chat").events().is_empty(), "{p}");
        // The bounds themselves are fine.
        for (ack, ttl) in [(101, 0), (102, 300)] {
            c.send(publish(Some(ack), "x", Some(ttl), Metadata::new()));
            assert_eq!(c.ack(ack), (true, None), "{p}: TTL {ttl}");
        }
    }
}

#[test]
fn a_recovery_replays_metadata_but_not_messages_whose_ttl_passed() {
    // PROTOCOL.md §11: "the service may drop a message not delivered in time". The emulator
    // keeps undelivered messages for a dropped reliable session and drops those whose TTL
    // ran out from the replay; a TTL of 0 is delivered only to sessions connected then.
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").group("g").build();
    let mut sender = connect_as(
        Subprotocol::Protobuf,
        &emu.client_url("chat").role("webpubsub.sendToGroup").build(),
    );
    for (round, p) in [Subprotocol::JsonReliable, Subprotocol::ProtobufReliable]
        .into_iter()
        .enumerate()
    {
        let r = connect_as(p, &url);
        assert!(hub.drop_connection(&r.connection_id));
        wait_dropped(&obs, &r.connection_id);
        let m = Metadata::from([("k", "v")]);
        for (ack, data, ttl) in [
            (1, "expired", Some(0)),
            (2, "kept", Some(300)),
            (3, "no ttl", None),
        ] {
            let ack = 10 * round as u64 + ack;
            sender.send(publish(Some(ack), data, ttl, m.clone()));
            assert_eq!(sender.ack(ack), (true, None));
        }
        let mut back = connect_as(p, &recovery_url(&url, &r));
        let got = back.drain_until_pong();
        let seen: Vec<(Option<u64>, Data, Metadata)> = got
            .iter()
            .map(|msg| match msg {
                ServiceMessage::GroupMessage {
                    data,
                    sequence_id,
                    metadata,
                    ..
                } => (*sequence_id, data.clone(), metadata.clone()),
                other => panic!("{p}: {other:?}"),
            })
            .collect();
        assert_eq!(
            seen,
            [
                (Some(2), Data::from("kept"), m.clone()),
                (Some(3), Data::from("no ttl"), m.clone()),
            ],
            "{p}: the first one's TTL passed; the gap in sequence ids is expected"
        );
        drop(back);
        hub.close_connection(&r.connection_id, "done");
    }
}

#[test]
fn events_and_invokes_give_the_handler_their_metadata_and_get_its_metadata_back() {
    // B41, PROTOCOL.md §11, §12: invoke responses carry the handler's metadata.
    let (tx, rx) = unbounded::<EventRequest>();
    let emu = Emulator::builder()
        .event_handler(move |req| {
            let _ = tx.send(req.clone());
            let answer = Metadata::from([("answered", req.event.as_str())]);
            match (req.kind, req.event.as_str()) {
                (EventKind::Event, "reply") => {
                    EventResponse::Reply("back".into()).with_metadata(answer)
                }
                (EventKind::Invoke, "plain") => EventResponse::Reply(req.data.clone()),
                _ => EventResponse::Accept.with_metadata(answer),
            }
        })
        .start()
        .unwrap();
    let sent = Metadata::from([("trace-id", "t1")]);
    for p in Subprotocol::ALL {
        let mut c = connect_as(p, &emu.client_url("chat").build());
        c.send(event(1, sent.clone()));
        assert_eq!(c.ack(1), (true, None), "{p}");
        let req = rx.recv_timeout(WAIT).unwrap();
        assert_eq!((req.kind, &req.metadata), (EventKind::Event, &sent), "{p}");
        assert_eq!(emu.hub("chat").events().last().unwrap().metadata, sent);

        // An event reply comes back as a server message with the handler's metadata.
        c.send(ClientMessage::Event {
            event: "reply".into(),
            ack_id: Some(2),
            data: "d".into(),
            metadata: Metadata::new(),
        });
        let back = c.recv_until(|m| match m {
            ServiceMessage::ServerMessage { data, metadata, .. } => {
                Some((data.clone(), metadata.clone()))
            }
            _ => None,
        });
        assert_eq!(
            back,
            (Data::from("back"), Metadata::from([("answered", "reply")])),
            "{p}"
        );
        assert_eq!(rx.recv_timeout(WAIT).unwrap().event, "reply");

        c.send(invoke("1", sent.clone()));
        let resp =
            c.recv_until(|m| matches!(m, ServiceMessage::InvokeResponse { .. }).then(|| m.clone()));
        let req = rx.recv_timeout(WAIT).unwrap();
        assert_eq!((req.kind, &req.metadata), (EventKind::Invoke, &sent), "{p}");
        assert_eq!(
            resp,
            ServiceMessage::InvokeResponse {
                invocation_id: "1".into(),
                success: true,
                data: None,
                error: None,
                metadata: Metadata::from([("answered", "e")]),
            },
            "{p}"
        );
        c.send(ClientMessage::Invoke {
            invocation_id: "2".into(),
            event: "plain".into(),
            data: Some("d".into()),
            metadata: Metadata::new(),
        });
        assert_eq!(
            metadata_of(&c.recv()),
            Metadata::new(),
            "{p}: none given, none sent"
        );
        rx.recv_timeout(WAIT).unwrap();
    }
}
