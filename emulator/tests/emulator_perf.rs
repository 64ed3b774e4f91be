//! Fan-out throughput of the emulator, measured with plain tungstenite clients.
//!
//! Ignored by default; run in release mode:
//! `cargo test --release -p webpubsub-emulator --test emulator_perf -- --ignored --nocapture`

mod support;

use std::time::{Duration, Instant};
use support::*;
use tungstenite::Message;
use webpubsub_emulator::Emulator;
use webpubsub_protocol::{ClientMessage, Metadata, Subprotocol};

const N: u64 = 1_000_000;
const TARGET_PER_SEC: f64 = 500_000.0;

/// Reads `n` messages, JSON or protobuf (acking every 500 like a diligent client); returns
/// the time from the first to the last.
fn receive(mut rx: Ws, n: u64, reliable: bool) -> Duration {
    let mut got = 0u64;
    let mut first = None;
    while got < n {
        let is_message = match rx.ws.read().expect("read") {
            Message::Text(t) => t.contains("\"type\":\"message\""),
            // A protobuf DownstreamMessage whose case is data_message (field 2).
            Message::Binary(b) => b.first() == Some(&0x12),
            _ => false,
        };
        if is_message {
            first.get_or_insert_with(Instant::now);
            got += 1;
            if reliable && got % 500 == 0 {
                rx.send(ClientMessage::SequenceAck { sequence_id: got });
            }
        }
    }
    first.unwrap().elapsed()
}

fn emulator() -> Emulator {
    Emulator::builder()
        .max_unacked_messages(usize::MAX)
        .max_unacked_bytes(usize::MAX)
        .start()
        .unwrap()
}

fn report(what: &str, elapsed: Duration) -> f64 {
    let rate = N as f64 / elapsed.as_secs_f64();
    println!("{what}: {N} messages in {elapsed:.2?} = {rate:.0} messages/s");
    rate
}

#[test]
#[ignore = "throughput measurement; run with --release -- --ignored --nocapture"]
fn client_group_messages_reach_a_reliable_receiver_at_500k_per_second() {
    let emu = emulator();
    let roles = ["webpubsub.sendToGroup"];
    let rx = connect(&emu.client_url("perf").group("g").build());
    let mut tx = connect_plain(&emu.client_url("perf").roles(roles).build());
    let reader = std::thread::spawn(move || receive(rx, N, true));
    let frame = ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: None,
        no_echo: true,
        data: "hello world".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
    .encode();
    for _ in 0..N {
        tx.ws.write(Message::text(frame.clone())).unwrap();
    }
    tx.ws.flush().unwrap();
    let rate = report(
        "client sendToGroup -> 1 reliable receiver",
        reader.join().unwrap(),
    );
    assert!(rate >= TARGET_PER_SEC, "{rate:.0} < {TARGET_PER_SEC}");
}

#[test]
#[ignore = "throughput measurement; run with --release -- --ignored --nocapture"]
fn server_group_messages_reach_a_reliable_receiver_at_500k_per_second() {
    let emu = emulator();
    let rx = connect(&emu.client_url("perf").group("g").build());
    let reader = std::thread::spawn(move || receive(rx, N, true));
    let hub = emu.hub("perf");
    for _ in 0..N {
        hub.send_to_group("g", "hello world");
    }
    let rate = report(
        "hub.send_to_group -> 1 reliable receiver",
        reader.join().unwrap(),
    );
    assert!(rate >= TARGET_PER_SEC, "{rate:.0} < {TARGET_PER_SEC}");
}

#[test]
#[ignore = "throughput measurement; run with --release -- --ignored --nocapture"]
fn client_group_messages_reach_a_plain_receiver_at_500k_per_second() {
    let emu = emulator();
    let rx = connect_plain(&emu.client_url("perf").group("g").build());
    let mut tx = connect_plain(&emu.client_url("perf").role("webpubsub.sendToGroup").build());
    let reader = std::thread::spawn(move || receive(rx, N, false));
    let frame = r#"{"type":"sendToGroup","group":"g","noEcho":true,"dataType":"text","data":"hello world"}"#;
    for _ in 0..N {
        tx.ws.write(Message::text(frame)).unwrap();
    }
    tx.ws.flush().unwrap();
    let rate = report(
        "client sendToGroup -> 1 plain receiver",
        reader.join().unwrap(),
    );
    assert!(rate >= TARGET_PER_SEC, "{rate:.0} < {TARGET_PER_SEC}");
}

#[test]
#[ignore = "throughput measurement; run with --release -- --ignored --nocapture"]
fn client_group_messages_reach_a_protobuf_reliable_receiver_at_500k_per_second() {
    let emu = emulator();
    let roles = ["webpubsub.sendToGroup"];
    let rx = connect_as(
        Subprotocol::ProtobufReliable,
        &emu.client_url("perf").group("g").build(),
    );
    let mut tx = connect_as(
        Subprotocol::Protobuf,
        &emu.client_url("perf").roles(roles).build(),
    );
    let reader = std::thread::spawn(move || receive(rx, N, true));
    let frame = ClientMessage::SendToGroup {
        group: "g".into(),
        ack_id: None,
        no_echo: true,
        data: "hello world".into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
    .encode_protobuf();
    let frame = tungstenite::Bytes::from(frame);
    for _ in 0..N {
        tx.ws.write(Message::Binary(frame.clone())).unwrap();
    }
    tx.ws.flush().unwrap();
    let rate = report(
        "client sendToGroup (protobuf) -> 1 protobuf reliable receiver",
        reader.join().unwrap(),
    );
    assert!(rate >= TARGET_PER_SEC, "{rate:.0} < {TARGET_PER_SEC}");
}
