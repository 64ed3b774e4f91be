//! Crossing subprotocols (PROTOBUF.md "crossing"): one group mixes JSON, JSON-reliable,
//! protobuf and protobuf-reliable clients, and each receives every message in its own form —
//! binary as raw bytes in protobuf and base64 in JSON, a protobuf `Any` as base64 of the
//! whole serialised `Any` in JSON and the `Any` itself in protobuf, json as `json_data`, text
//! as text — whoever sent it: a client of any subprotocol, or the application server over
//! REST. Recovery replays protobuf frames as protobuf.

mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use support::*;
use tungstenite::Message;
use webpubsub_emulator::{Emulator, BAD_REQUEST};
use webpubsub_protocol::{Data, ProtobufAny, ServiceMessage, Subprotocol};

/// A payload of each data type, naming its sender so that receivers can tell them apart.
fn payloads(sender: Subprotocol) -> [Data; 4] {
    let name = sender.name();
    [
        Data::from(format!("text from {name}")),
        Data::Json(json!({"from": name, "n": [1, 2]})),
        Data::Binary([name.as_bytes(), &[0, 255]].concat()),
        Data::from(ProtobufAny::new(
            format!("type.googleapis.com/{name}"),
            vec![8, 150, 1],
        )),
    ]
}

/// The next `n` messages a client receives, in order.
fn messages(c: &mut Ws, n: usize) -> Vec<ServiceMessage> {
    (0..n).map(|_| c.recv()).collect()
}

#[test]
fn every_pair_of_subprotocols_carries_every_data_type_each_in_its_own_form() {
    let emu = Emulator::start().unwrap();
    let mut clients = one_per_subprotocol(&emu);
    let mut sent = Vec::new();
    for (i, sender) in Subprotocol::ALL.into_iter().enumerate() {
        for (k, data) in payloads(sender).into_iter().enumerate() {
            clients[i].send(publish("g", Some(k as u64), data.clone()));
            sent.push((sender, data));
        }
    }
    let mut orders = Vec::new();
    for receiver in &mut clients {
        let p = receiver.subprotocol;
        // Every member also publishes: its four acks come among the 16 messages.
        let got: Vec<ServiceMessage> = messages(receiver, 16 + 4)
            .into_iter()
            .filter(|m| !matches!(m, ServiceMessage::Ack { success: true, .. }))
            .collect();
        assert_eq!(got.len(), 16, "{p}: {got:?}");
        let mut order = Vec::new();
        for (n, m) in got.iter().enumerate() {
            let ServiceMessage::GroupMessage {
                group,
                data,
                from_user_id,
                sequence_id,
                ..
            } = m
            else {
                panic!("{p}: expected a group message, got {m:?}");
            };
            let Some(at) = sent.iter().position(|(_, d)| d == data) else {
                panic!("{p} got a payload nobody sent: {data:?}");
            };
            let sender = sent[at].0;
            assert_eq!(group, "g", "{sender} -> {p}");
            // Protobuf has no fromUserId (PROTOBUF.md, data_message).
            let from = (!p.is_binary()).then(|| format!("u-{sender}"));
            assert_eq!(from_user_id, &from, "{sender} -> {p}");
            let seq = p.is_reliable().then_some(n as u64 + 1);
            assert_eq!(*sequence_id, seq, "{sender} -> {p}");
            order.push(at);
        }
        let mut each_once = order.clone();
        each_once.sort();
        assert_eq!(
            each_once,
            (0..16).collect::<Vec<_>>(),
            "{p}: each message once"
        );
        orders.push(order);
        assert!(receiver.drain_until_pong().is_empty(), "{p}");
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "a fan-out reaches every member in one order: {orders:?}"
    );
}

#[test]
fn the_wire_forms_of_binary_and_protobuf_payloads_across_codecs() {
    let emu = Emulator::start().unwrap();
    let url = emu
        .client_url("chat")
        .role("webpubsub.sendToGroup")
        .group("g")
        .build();
    let mut json_rx = connect_as(Subprotocol::Json, &url);
    let mut proto_rx = connect_as(Subprotocol::Protobuf, &url);
    let any = ProtobufAny::new("type.googleapis.com/demo.Point", vec![8, 150, 1]).to_bytes();
    let bytes = vec![0u8, 1, 254, 255];

    // From protobuf: JSON receivers see base64 — of the whole serialised Any for protobuf.
    proto_rx.send(publish("g", None, Data::Protobuf(any.clone())));
    proto_rx.send(publish("g", None, Data::Binary(bytes.clone())));
    let texts: Vec<String> = (0..2)
        .map(|_| json_rx.recv_raw().into_text().unwrap().as_str().to_owned())
        .collect();
    let wants = [
        format!(r#""dataType":"protobuf","data":"{}""#, B64.encode(&any)),
        format!(r#""dataType":"binary","data":"{}""#, B64.encode(&bytes)),
    ];
    for (text, want) in texts.iter().zip(&wants) {
        assert!(text.contains(want), "{text} lacks {want}");
    }

    // From JSON: `dataType: protobuf` data is that base64, and protobuf receivers get the
    // Any embedded as protobuf_data (field 3 of MessageData), binary as raw binary_data.
    json_rx.send_text(&format!(
        r#"{{"type":"sendToGroup","group":"g","dataType":"protobuf","data":"{}"}}"#,
        B64.encode(&any)
    ));
    json_rx.send_text(&format!(
        r#"{{"type":"sendToGroup","group":"g","dataType":"binary","data":"{}"}}"#,
        B64.encode(&bytes)
    ));
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|_| match proto_rx.recv_raw() {
            Message::Binary(b) => b.to_vec(),
            other => panic!("expected binary, got {other:?}"),
        })
        .collect();
    // The first two are its own echoes; then the JSON client's.
    let embedded = |field: u8, value: &[u8]| {
        let mut f = vec![field << 3 | 2, value.len() as u8];
        f.extend_from_slice(value);
        f
    };
    for (frame, want) in frames[2..]
        .iter()
        .zip([embedded(3, &any), embedded(2, &bytes)])
    {
        assert!(
            frame.windows(want.len()).any(|w| w == want),
            "{frame:?} embeds {want:?}"
        );
    }
}

#[test]
fn text_data_holding_json_stays_text_and_json_data_is_json() {
    // PROTOBUF.md MessageData: only json_data is JSON (the .NET client sends json as
    // text_data: its receivers see text).
    let emu = Emulator::start().unwrap();
    let mut clients = one_per_subprotocol(&emu);
    let sender = Subprotocol::ALL
        .iter()
        .position(|p| *p == Subprotocol::Protobuf)
        .unwrap();
    clients[sender].send(publish("g", None, Data::from(r#"{"a":1}"#)));
    clients[sender].send(publish("g", None, Data::Json(json!({"a": 1}))));
    for c in &mut clients {
        let got: Vec<Data> = messages(c, 2)
            .into_iter()
            .map(|m| match m {
                ServiceMessage::GroupMessage { data, .. } => data,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [Data::from(r#"{"a":1}"#), Data::Json(json!({"a": 1}))],
            "{}",
            c.subprotocol
        );
    }
    // On the JSON wire: a text string, then the value embedded as is.
    let url = emu.client_url("chat").group("g").build();
    let mut raw = connect_as(Subprotocol::Json, &url);
    clients[sender].send(publish("g", None, Data::Json(json!({"a": 1}))));
    let text = raw.recv_raw().into_text().unwrap();
    assert!(
        text.contains(r#""dataType":"json","data":{"a":1}"#),
        "{text}"
    );
}

#[test]
fn a_protobuf_payload_to_a_group_must_be_a_serialised_any() {
    // A protobuf receiver reads the payload as an embedded message: bytes that are not an
    // Any would make its whole frame unreadable, so the emulator refuses them from any sender.
    let emu = Emulator::start().unwrap();
    let mut clients = one_per_subprotocol(&emu);
    for c in &mut clients {
        c.send(publish(
            "g",
            Some(1),
            Data::Protobuf(vec![0x0a, 0x05, b'x']),
        ));
        let (ok, err) = c.ack(1);
        assert_eq!(
            (ok, err.as_deref()),
            (false, Some(BAD_REQUEST)),
            "{}",
            c.subprotocol
        );
    }
    for c in &mut clients {
        assert!(c.drain_until_pong().is_empty(), "nothing was delivered");
    }
}

#[test]
fn server_messages_over_rest_and_the_hub_reach_every_subprotocol_in_its_own_form() {
    let emu = Emulator::start().unwrap();
    let mut clients = one_per_subprotocol(&emu);
    let post = |path: &str, ct: &str, body: &[u8]| {
        let target = format!("/api/hubs/chat{path}?api-version=2024-01-01");
        let r = rest(&emu, "POST", &target, Some(ct), body);
        assert_eq!(r.status, 202, "{path}: {}", r.body);
    };
    post("/groups/g/:send", "application/octet-stream", &[0, 1, 255]);
    post("/:send", "text/plain", b"to all");
    post("/groups/g/:send", "application/json", br#"{"a":[1]}"#);
    let hub = emu.hub("chat");
    let any = Data::from(ProtobufAny::new("type.googleapis.com/x", vec![1]));
    hub.send_to_group("g", any.clone());
    let mut expected = vec![
        Data::Binary(vec![0, 1, 255]),
        Data::from("to all"),
        Data::Json(json!({"a": [1]})),
        any,
    ];
    for c in &mut clients {
        let p = c.subprotocol;
        post(
            &format!("/users/u-{p}/:send"),
            "text/plain",
            format!("to {p}").as_bytes(),
        );
        post(
            &format!("/connections/{}/:send", c.connection_id),
            "application/octet-stream",
            p.name().as_bytes(),
        );
    }
    for c in &mut clients {
        let p = c.subprotocol;
        expected.push(Data::from(format!("to {p}")));
        expected.push(Data::Binary(p.name().as_bytes().to_vec()));
        for (n, m) in messages(c, 6).iter().enumerate() {
            let ServiceMessage::ServerMessage {
                data, sequence_id, ..
            } = m
            else {
                panic!("{p}: expected a server message, got {m:?}");
            };
            assert_eq!(data, &expected[n], "{p}");
            assert_eq!(*sequence_id, p.is_reliable().then_some(n as u64 + 1), "{p}");
        }
        expected.truncate(4);
    }
}

#[test]
fn recovery_replays_protobuf_frames_as_protobuf_beside_json_ones() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").group("g").build();
    let mut sender = connect_as(
        Subprotocol::Json,
        &emu.client_url("chat").role("webpubsub.sendToGroup").build(),
    );
    let receivers =
        [Subprotocol::ProtobufReliable, Subprotocol::JsonReliable].map(|p| connect_as(p, &url));
    for r in &receivers {
        assert!(hub.drop_connection(&r.connection_id));
        wait_dropped(&obs, &r.connection_id);
    }
    let sent = payloads(Subprotocol::Json);
    for (k, d) in sent.iter().enumerate() {
        sender.send(publish("g", Some(k as u64), d.clone()));
        assert_eq!(sender.ack(k as u64), (true, None));
    }
    hub.send_to_group("g", "from the server");
    for r in &receivers {
        let mut back = connect_as(r.subprotocol, &recovery_url(&url, r));
        assert_eq!(back.connection_id, r.connection_id);
        let got = back.drain_until_pong();
        assert_eq!(got.len(), 5, "{}: {got:?}", r.subprotocol);
        for (n, m) in got.iter().enumerate() {
            assert_eq!(m.sequence_id(), Some(n as u64 + 1), "{}", r.subprotocol);
        }
        for (m, d) in got.iter().zip(&sent) {
            assert!(
                matches!(m, ServiceMessage::GroupMessage { data, .. } if data == d),
                "{}: {m:?}",
                r.subprotocol
            );
        }
        assert!(matches!(
            &got[4],
            ServiceMessage::ServerMessage { data, .. } if *data == Data::from("from the server")
        ));
    }
}
