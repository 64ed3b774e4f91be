//! The protobuf subprotocols against a scripted service (B34, B42): what a protobuf service
//! could send that no JSON one can — unknown or preview `oneof` cases, bytes that are not
//! protobuf, a truncated message, a text frame — is skipped and logged, never fatal; and the
//! client's own frames (`ping`, `sequenceAck`, requests) are protobuf binary frames. The JS
//! protobuf codec cannot encode `ping` at all, so its idle clients die; ours keep alive.
//!
//! The tests of this binary share the global logger, so they run one at a time (`SERIAL`).

mod support;

use parking_lot::Mutex;
use std::time::{Duration, Instant};
use support::scripted_server::{Conn, Server, PROTOBUF_RELIABLE};
use webpubsub_client::protocol::{ClientMessage, Metadata, ServiceMessage};
use webpubsub_client::{
    Data, Event, Protocol, RequestOptions, RetryPolicy, WebPubSubClient, WebPubSubClientBuilder,
};
use webpubsub_testkit::log_capture;

const WAIT: Duration = Duration::from_secs(10);
const CONN_ID: &str = "pb-conn-1";
static SERIAL: Mutex<()> = Mutex::new(());

fn builder(url: String) -> WebPubSubClientBuilder {
    WebPubSubClient::builder(url)
        .no_proxy()
        .protocol(Protocol::ProtobufReliable)
        .start_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .recovery_retry_interval(Duration::from_millis(50))
        .message_retry(RetryPolicy::none())
}

fn send(conn: &mut Conn, msg: &ServiceMessage) {
    conn.binary(&msg.encode_protobuf());
}

fn server_text(data: &str, seq: u64) -> ServiceMessage {
    ServiceMessage::ServerMessage {
        data: Data::from(data),
        sequence_id: Some(seq),
        metadata: Metadata::new(),
    }
}

/// A started protobuf client and the scripted connection it speaks to.
fn start(server: &Server, b: WebPubSubClientBuilder) -> (WebPubSubClient, Conn) {
    let client = b.build().unwrap();
    let events = client.events();
    let c = client.clone();
    let starter = std::thread::spawn(move || c.start().map(|g| g.detach()));
    let mut conn = server.accept(WAIT);
    send(
        &mut conn,
        &ServiceMessage::Connected {
            connection_id: CONN_ID.into(),
            user_id: Some("u".into()),
            reconnection_token: Some("pb-token".into()),
        },
    );
    let deadline = Instant::now() + WAIT;
    loop {
        match events.recv_deadline(deadline) {
            Ok(Event::Connected { connection_id, .. }) => {
                assert_eq!(connection_id, CONN_ID);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no Connected: {e}"),
        }
    }
    starter.join().unwrap().expect("start");
    (client, conn)
}

/// The client's next frame of the kind `pred` picks, decoded as protobuf.
fn next_from_client(conn: &mut Conn, pred: impl Fn(&ClientMessage) -> bool) -> ClientMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let bytes = conn
            .read_binary(left)
            .expect("a binary frame from the client");
        let msg = ClientMessage::decode_protobuf(&bytes).expect("valid protobuf");
        if pred(&msg) {
            return msg;
        }
    }
}

#[test]
fn unknown_cases_and_malformed_protobuf_are_skipped_and_the_connection_stays() {
    // B34, B42
    let _s = SERIAL.lock();
    let log = log_capture::install();
    log.clear();
    let server = Server::start_with(PROTOBUF_RELIABLE);
    let (client, mut conn) = start(
        &server,
        builder(server.url()).keep_alive_interval(Duration::ZERO),
    );
    let events = client.events();
    let valid = server_text("cut", 1).encode_protobuf();
    // Preview downstream cases 6 and 10 (streaming, group state): unknown, skipped.
    conn.binary(&[0x32, 0x00]);
    conn.binary(&[0x52, 0x02, 0x08, 0x01]);
    // Not protobuf, and a message cut short: malformed, skipped.
    conn.binary(&[0xff, 0xff, 0xff]);
    conn.binary(&valid[..valid.len() - 2]);
    // A text frame on a binary subprotocol.
    conn.text(r#"{"type":"pong"}"#);
    // A data message whose payload case is unknown still counts its sequence id (1).
    conn.binary(&[
        0x12, 0x0c, 0x0a, 0x06, b's', b'e', b'r', b'v', b'e', b'r', 0x1a, 0x02, 0x4a, 0x00,
    ]);
    send(&mut conn, &server_text("still here", 2));
    let deadline = Instant::now() + WAIT;
    match events.recv_deadline(deadline) {
        Ok(Event::ServerMessage(m)) => {
            assert_eq!(m.data, Data::from("still here"));
            assert_eq!(m.sequence_id, Some(2));
        }
        other => panic!("the connection did not stay: {other:?}"),
    }
    assert_eq!(client.connection_id().as_deref(), Some(CONN_ID));
    assert!(
        server.try_accept(Duration::ZERO).is_none(),
        "no new connection"
    );
    let lines = log.lines();
    let count = |level, text: &str| {
        lines
            .iter()
            .filter(|l| l.level == level && l.message.contains(text))
            .count()
    };
    assert_eq!(
        count(log::Level::Warn, "skipping a malformed frame"),
        2,
        "{lines:#?}"
    );
    assert_eq!(
        count(log::Level::Debug, "skipping an unknown message"),
        3,
        "{lines:#?}"
    );
    assert_eq!(
        count(log::Level::Debug, "skipping a text frame"),
        1,
        "{lines:#?}"
    );
    // The sequence ack covers the unknown message's id too: the service need not resend it.
    let ack = next_from_client(&mut conn, |m| {
        matches!(m, ClientMessage::SequenceAck { .. })
    });
    assert_eq!(ack, ClientMessage::SequenceAck { sequence_id: 2 });
    client.stop();
}

#[test]
fn pings_sequence_acks_and_requests_go_out_as_protobuf() {
    // B32 (ping), B31 (sequenceAck), B25 (ack), B41 (metadata), B42
    let _s = SERIAL.lock();
    let server = Server::start_with(PROTOBUF_RELIABLE);
    let (client, mut conn) = start(
        &server,
        builder(server.url()).keep_alive_interval(Duration::from_millis(50)),
    );
    next_from_client(&mut conn, |m| *m == ClientMessage::Ping);
    send(&mut conn, &server_text("x", 7));
    let ack = next_from_client(&mut conn, |m| {
        matches!(m, ClientMessage::SequenceAck { .. })
    });
    assert_eq!(ack, ClientMessage::SequenceAck { sequence_id: 7 });
    let meta = Metadata::new().with("k", "v");
    let h = client
        .send_to_group_nowait(
            "g",
            vec![0u8, 1, 2],
            &RequestOptions::new().metadata(meta.clone()).ttl_seconds(30),
        )
        .unwrap();
    let sent = next_from_client(&mut conn, |m| {
        matches!(m, ClientMessage::SendToGroup { .. })
    });
    assert_eq!(
        sent,
        ClientMessage::SendToGroup {
            group: "g".into(),
            ack_id: Some(h.ack_id()),
            no_echo: false,
            data: Data::Binary(vec![0, 1, 2]),
            ttl_seconds: Some(30),
            metadata: meta,
        }
    );
    send(
        &mut conn,
        &ServiceMessage::Ack {
            ack_id: h.ack_id(),
            success: true,
            error: None,
        },
    );
    assert_eq!(h.wait().unwrap().ack_id, 1);
    client.stop();
}

#[test]
fn received_metadata_reaches_the_events_and_invoke_responses() {
    // B41: group and server messages and invoke responses expose their metadata.
    let _s = SERIAL.lock();
    let server = Server::start_with(PROTOBUF_RELIABLE);
    let (client, mut conn) = start(
        &server,
        builder(server.url()).keep_alive_interval(Duration::ZERO),
    );
    let events = client.events();
    let meta = Metadata::new().with("trace-id", "abc");
    send(
        &mut conn,
        &ServiceMessage::GroupMessage {
            group: "g".into(),
            data: Data::from("hi"),
            from_user_id: None,
            sequence_id: Some(1),
            metadata: meta.clone(),
        },
    );
    send(
        &mut conn,
        &ServiceMessage::ServerMessage {
            data: Data::from("srv"),
            sequence_id: Some(2),
            metadata: meta.clone(),
        },
    );
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < 2 {
        match events.recv_deadline(deadline).expect("the messages") {
            Event::GroupMessage(m) => got.push(m.metadata),
            Event::ServerMessage(m) => got.push(m.metadata),
            _ => {}
        }
    }
    assert_eq!(got, [meta.clone(), meta.clone()]);
    let h = client
        .invoke_event_nowait("ask", "q", &Default::default())
        .unwrap();
    let sent = next_from_client(&mut conn, |m| matches!(m, ClientMessage::Invoke { .. }));
    let ClientMessage::Invoke { invocation_id, .. } = sent else {
        unreachable!()
    };
    assert_eq!(invocation_id, h.invocation_id().to_string());
    send(
        &mut conn,
        &ServiceMessage::InvokeResponse {
            invocation_id,
            success: true,
            data: Some(Data::Json(serde_json::json!({"a": 1}))),
            error: None,
            metadata: meta.clone(),
        },
    );
    let r = h.wait().unwrap();
    assert_eq!(r.data, Some(Data::Json(serde_json::json!({"a": 1}))));
    assert_eq!(r.metadata, meta);
    client.stop();
}
