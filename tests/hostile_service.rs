//! Hostile input from the service side (B34, PROTOCOL.md §4): a scripted WebSocket server
//! sends what no well-behaved service would. The client never panics, keeps the connection
//! where PROTOCOL.md §4 says so — proved by a later valid message arriving on the same
//! connection id, with no `Recovering`/`Disconnected` event and no new connection — and logs
//! what it skipped (a capturing logger, asserted per case).
//!
//! The tests of this binary share the global logger, so they run one at a time (`SERIAL`).

mod support;

use crossbeam_channel::Receiver;
use parking_lot::{Mutex, MutexGuard};
use scripted_server::{frame, Conn, Server};
use std::time::{Duration, Instant};
use support::scripted_server;
use webpubsub_client::{Data, Event, RequestOptions, RetryPolicy, WebPubSubClient};
use webpubsub_testkit::log_capture::{self, Capture};
use webpubsub_testkit::process::rss_kib;

const WAIT: Duration = Duration::from_secs(10);
const CONN_ID: &str = "conn-1";
const RECONNECTION_TOKEN: &str = "hostile-reconnection-token-9876";

static SERIAL: Mutex<()> = Mutex::new(());

struct Setup {
    _serial: MutexGuard<'static, ()>,
    log: &'static Capture,
    server: Server,
    client: WebPubSubClient,
    conn: Option<Conn>,
    events: Receiver<Event>,
}

fn builder(url: String) -> webpubsub_client::WebPubSubClientBuilder {
    WebPubSubClient::builder(url)
        .start_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .recovery_window(Duration::from_secs(3))
        .recovery_retry_interval(Duration::from_millis(50))
        .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(50), 20))
        .message_retry(RetryPolicy::none())
        // No pings in the frames the server reads.
        .keep_alive_interval(Duration::ZERO)
}

/// A client started against a fresh scripted server (which sent `connected`).
fn setup() -> Setup {
    let serial = SERIAL.lock();
    let log = log_capture::install();
    log.clear();
    let server = Server::start();
    let client = builder(server.url()).build().unwrap();
    let events = client.events();
    let c = client.clone();
    let starter = std::thread::spawn(move || c.start().map(|g| g.detach()));
    let mut conn = server.accept(WAIT);
    conn.connected(CONN_ID, RECONNECTION_TOKEN);
    join_bounded(starter).expect("start");
    match events.recv_timeout(WAIT) {
        Ok(Event::Connected { connection_id, .. }) => assert_eq!(connection_id, CONN_ID),
        other => panic!("expected Connected, got {other:?}"),
    }
    Setup {
        _serial: serial,
        log,
        server,
        client,
        conn: Some(conn),
        events,
    }
}

fn join_bounded<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    let deadline = Instant::now() + WAIT;
    // A JoinHandle has no timed join: wait on a channel fed by a watcher thread.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(h.join());
    });
    rx.recv_deadline(deadline)
        .expect("thread did not finish in time")
        .expect("thread panicked")
}

impl Setup {
    fn c(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("the connection is with the flooder")
    }

    /// The next event that is not a message event is a failure; returns the next message.
    fn next_message(&self) -> Event {
        let e = self.events.recv_timeout(WAIT).expect("no event in time");
        assert!(
            matches!(e, Event::ServerMessage(_) | Event::GroupMessage(_)),
            "the connection did not stay: {e:?}"
        );
        e
    }

    /// Proves the connection stayed: a valid message with `seq` is delivered next, on the
    /// same connection id, and no new connection was made.
    fn assert_kept(&mut self, seq: u64) {
        let data = format!("still-here-{seq}");
        self.c().server_text(&data, seq);
        match self.next_message() {
            Event::ServerMessage(m) => {
                assert_eq!(m.data, Data::Text(data));
                assert_eq!(m.sequence_id, Some(seq));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(self.client.connection_id().as_deref(), Some(CONN_ID));
        assert!(
            self.server.try_accept(Duration::ZERO).is_none(),
            "the client made a new connection"
        );
    }

    fn logged(&self, level: log::Level, text: &str) -> usize {
        self.log
            .lines()
            .iter()
            .filter(|l| l.level == level && l.message.contains(text))
            .count()
    }

    fn stop(self) {
        self.client.stop();
        assert_eq!(no_token_in_logs(self.log), 0);
    }
}

/// Neither token ever reaches a log line of the crate (B37), whatever the service sends.
/// (Trace lines of the tungstenite dependency are checked, and found leaking, in
/// tests/hygiene.rs.)
fn no_token_in_logs(log: &Capture) -> usize {
    let leaks: Vec<_> = log
        .lines()
        .into_iter()
        .filter(|l| l.target.starts_with("webpubsub_client"))
        .filter(|l| {
            l.message.contains(scripted_server::ACCESS_TOKEN)
                || l.message.contains(RECONNECTION_TOKEN)
        })
        .collect();
    assert!(leaks.is_empty(), "tokens in logs: {leaks:#?}");
    leaks.len()
}

#[test]
fn malformed_json_is_logged_and_skipped() {
    // B34
    let mut s = setup();
    let frames = [
        "not json",
        r#"{"type":"message","from":"server""#,
        "[1,2,3]",
        r#""a string""#,
        "",
        "\u{feff}{}",
    ];
    for f in frames {
        s.c().text(f);
    }
    s.assert_kept(1);
    assert_eq!(
        s.logged(log::Level::Warn, "skipping a malformed frame"),
        frames.len(),
        "{:#?}",
        s.log.lines()
    );
    s.stop();
}

#[test]
fn unknown_types_events_sources_and_data_types_are_skipped() {
    // B34; PROTOCOL.md §4 forward compatibility: skipped at debug, never fatal.
    let mut s = setup();
    let frames = [
        r#"{"type":"futureThing","sequenceId":1}"#,
        r#"{"type":"system","event":"reboot"}"#,
        r#"{"type":"message","from":"moon","dataType":"text","data":"x","sequenceId":2}"#,
        r#"{"type":"message","from":"server","dataType":"avro","data":"x","sequenceId":3}"#,
        r#"{"noType":true}"#,
    ];
    for f in frames {
        s.c().text(f);
    }
    s.assert_kept(4);
    let skipped = s
        .log
        .lines()
        .iter()
        .filter(|l| l.level == log::Level::Debug && l.message.contains("skipping"))
        .count();
    assert_eq!(skipped, frames.len(), "{:#?}", s.log.lines());
    assert_eq!(s.logged(log::Level::Warn, "skipping"), 0);
    s.stop();
}

#[test]
fn wrong_field_types_are_logged_and_skipped() {
    // B34: a known message with a field of the wrong type is a protocol error, skipped.
    let mut s = setup();
    let frames = [
        r#"{"type":"ack","ackId":"seven","success":true}"#,
        r#"{"type":"ack","ackId":1,"success":"yes"}"#,
        r#"{"type":"ack","ackId":-1,"success":true}"#,
        r#"{"type":"message","from":"group","group":5,"dataType":"text","data":"x","sequenceId":1}"#,
        r#"{"type":"message","from":"server","dataType":"text","data":"x","sequenceId":"one"}"#,
        r#"{"type":"message","from":"server","dataType":"text","data":7,"sequenceId":2}"#,
        r#"{"type":"system","event":"connected","connectionId":42}"#,
    ];
    for f in frames {
        s.c().text(f);
    }
    s.assert_kept(3);
    assert_eq!(
        s.logged(log::Level::Warn, "skipping a malformed frame"),
        frames.len(),
        "{:#?}",
        s.log.lines()
    );
    s.stop();
}

#[test]
fn invalid_base64_is_logged_and_skipped() {
    // B33, B34
    let mut s = setup();
    for (dt, seq) in [("binary", 1), ("protobuf", 2)] {
        s.c().text(&format!(
            r#"{{"type":"message","from":"server","dataType":"{dt}","data":"!!not base64!!","sequenceId":{seq}}}"#
        ));
    }
    s.assert_kept(3);
    assert_eq!(s.logged(log::Level::Warn, "skipping a malformed frame"), 2);
    s.stop();
}

#[test]
fn binary_frames_are_skipped() {
    // B34: the JSON subprotocols use text frames.
    let mut s = setup();
    s.c()
        .ws
        .send(tungstenite::Message::binary(&b"{\"type\":\"pong\"}"[..]))
        .unwrap();
    s.c()
        .ws
        .send(tungstenite::Message::binary(vec![0xff, 0, 1]))
        .unwrap();
    s.assert_kept(1);
    assert_eq!(s.logged(log::Level::Debug, "skipping a binary frame"), 2);
    s.stop();
}

#[test]
fn frames_read_beyond_one_read_budget_are_handled_without_more_data_from_the_socket() {
    // The socket is edge-triggered: a step handles a bounded number of frames (512), and
    // what it read beyond them (or left in the kernel) gets no new readiness event. 1,500
    // pongs and a message in one write arrive in one read; only a driver that runs again
    // on its own delivers the message (else nothing comes until the next keep-alive).
    let mut s = setup();
    let mut bytes = Vec::new();
    for _ in 0..1500 {
        bytes.extend(frame(true, 0xa, b""));
    }
    let data = r#"{"type":"message","from":"server","dataType":"text","data":"after the pongs","sequenceId":1}"#;
    bytes.extend(frame(true, 0x1, data.as_bytes()));
    s.c().raw(&bytes);
    match s.next_message() {
        Event::ServerMessage(m) => assert_eq!(m.data, Data::Text("after the pongs".into())),
        e => panic!("{e:?}"),
    }
    s.assert_kept(2);
    s.stop();
}

#[test]
fn a_message_over_1_mb_is_delivered() {
    // The service limits messages to 1 MB; the client accepts up to 16 MiB from the service
    // (a limit a service change should not break), and keeps the connection.
    let mut s = setup();
    let big = "x".repeat(2 << 20);
    s.c().server_text(&big, 1);
    match s.next_message() {
        Event::ServerMessage(m) => assert_eq!(m.data, Data::Text(big)),
        e => panic!("{e:?}"),
    }
    s.assert_kept(2);
    s.stop();
}

#[test]
fn a_frame_over_the_client_limit_ends_the_connection_and_the_session_is_recovered() {
    // Memory stays bounded: a 17 MiB frame is refused (16 MiB limit) without being buffered
    // whole; that socket is given up and the session recovered (B17, B18).
    let mut s = setup();
    let payload = vec![b'x'; 17 << 20];
    // The client may reset the socket before all of it is written.
    let _ = s.c().try_raw(&frame(true, 1, &payload));
    match s.events.recv_timeout(WAIT) {
        Ok(Event::Recovering { connection_id, .. }) => assert_eq!(connection_id, CONN_ID),
        other => panic!("expected Recovering, got {other:?}"),
    }
    let mut conn = s.server.accept(WAIT);
    assert!(
        conn.uri.contains("awps_connection_id=conn-1"),
        "not a recovery: {}",
        conn.uri
    );
    conn.connected(CONN_ID, "fresh-token");
    s.conn = Some(conn);
    match s.events.recv_timeout(WAIT) {
        Ok(Event::Recovered { .. }) => {}
        other => panic!("expected Recovered, got {other:?}"),
    }
    s.assert_kept(1);
    s.stop();
}

#[test]
fn a_message_split_over_continuation_frames_is_reassembled() {
    // B34: text frame (FIN=0), a ping in between (control frames may interleave),
    // two continuations, the last with FIN=1.
    let mut s = setup();
    let msg = r#"{"type":"message","from":"group","group":"g","dataType":"json","data":{"k":[1,2,3],"s":"split"},"sequenceId":1}"#;
    let b = msg.as_bytes();
    let (a, rest) = b.split_at(10);
    let (m, z) = rest.split_at(40);
    let mut bytes = frame(false, 1, a);
    bytes.extend(frame(true, 9, b"ping"));
    bytes.extend(frame(false, 0, m));
    bytes.extend(frame(true, 0, z));
    s.c().raw(&bytes);
    match s.next_message() {
        Event::GroupMessage(g) => {
            assert_eq!(g.group, "g");
            assert_eq!(
                g.data,
                Data::Json(serde_json::json!({"k":[1,2,3],"s":"split"}))
            );
        }
        e => panic!("{e:?}"),
    }
    s.assert_kept(2);
    s.stop();
}

#[test]
fn a_close_in_the_middle_of_a_message_drops_the_fragment_and_recovers() {
    // The fragment is never delivered; the close ends the socket, and the session is
    // recovered (close code 1011 is not 1008, B17).
    let mut s = setup();
    let mut bytes = frame(
        false,
        1,
        br#"{"type":"message","from":"server","dataType":"text","data":"half"#,
    );
    let mut close = 1011u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    bytes.extend(frame(true, 8, &close));
    s.c().raw(&bytes);
    match s.events.recv_timeout(WAIT) {
        Ok(Event::Recovering { close_code, .. }) => assert_eq!(close_code, Some(1011)),
        other => panic!("expected Recovering, got {other:?}"),
    }
    let mut conn = s.server.accept(WAIT);
    assert!(conn.uri.contains("awps_connection_id=conn-1"));
    conn.connected(CONN_ID, "fresh-token");
    s.conn = Some(conn);
    assert!(matches!(
        s.events.recv_timeout(WAIT),
        Ok(Event::Recovered { .. })
    ));
    s.assert_kept(1);
    s.stop();
}

#[test]
fn connected_without_connection_id_is_skipped_and_start_waits_for_a_valid_one() {
    // B3, B34
    let _serial = SERIAL.lock();
    let log = log_capture::install();
    log.clear();
    let server = Server::start();
    let client = builder(server.url()).build().unwrap();
    let c = client.clone();
    let starter = std::thread::spawn(move || c.start().map(|g| g.detach()));
    let mut conn = server.accept(WAIT);
    conn.text(r#"{"type":"system","event":"connected","reconnectionToken":"t"}"#);
    conn.text(r#"{"type":"system","event":"connected","connectionId":null}"#);
    // Still starting: a valid `connected` completes the start.
    conn.connected("real-id", RECONNECTION_TOKEN);
    join_bounded(starter).expect("start");
    assert_eq!(client.connection_id().as_deref(), Some("real-id"));
    let skipped = log
        .lines()
        .iter()
        .filter(|l| {
            l.level == log::Level::Warn
                && l.message.contains("skipping a malformed frame")
                && l.message.contains("connectionId")
        })
        .count();
    assert_eq!(skipped, 2, "{:#?}", log.lines());
    client.stop();
}

#[test]
fn acks_for_unknown_ids_are_ignored() {
    // An ack nobody waits for is logged at debug and skipped; a real request still gets
    // its own ack.
    let mut s = setup();
    s.c().text(r#"{"type":"ack","ackId":999,"success":true}"#);
    s.c().text(
        r#"{"type":"ack","ackId":18446744073709551615,"success":false,"error":{"name":"Weird","message":"?"}}"#,
    );
    s.assert_kept(1);
    assert_eq!(s.logged(log::Level::Debug, "has no waiter"), 2);
    let h = s
        .client
        .send_event_nowait("e", "x", &RequestOptions::default())
        .unwrap();
    let id = h.ack_id();
    s.c()
        .read_until("\"event\"", WAIT)
        .expect("the event frame");
    s.c().text(&format!(
        r#"{{"type":"ack","ackId":{},"success":true}}"#,
        id + 1000
    ));
    s.c()
        .text(&format!(r#"{{"type":"ack","ackId":{id},"success":true}}"#));
    let o = h.wait().unwrap();
    assert_eq!(o.ack_id, id);
    assert!(!o.duplicate);
    s.stop();
}

#[test]
fn sequence_ids_going_backwards_are_dropped_and_jumps_accepted() {
    // B20: a message whose sequence id is not above the largest seen is a redelivery;
    // a jump is accepted, and the sequence ack reports the largest id.
    let mut s = setup();
    for seq in [1, 2, 3, 2, 1, 10, 11, 5, 11, 12] {
        s.c().server_text(&format!("s{seq}"), seq);
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        match s.next_message() {
            Event::ServerMessage(m) => got.push(m.sequence_id.unwrap()),
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(got, [1, 2, 3, 10, 11, 12]);
    let ack = s
        .c()
        .read_until("\"sequenceId\":12", Duration::from_secs(3))
        .expect("a sequenceAck for 12 within 1 s (B31)");
    assert!(ack.contains("sequenceAck"), "{ack}");
    s.assert_kept(13);
    s.stop();
}

/// A flood faster than the user consumes. "Bounded memory" here means: while the user's
/// handler is stuck, the client's memory (VmRSS of this process) grows by less than
/// `BOUND_MIB` although the service sends `FLOOD_MIB` — the client must push back (stop
/// reading, let TCP flow control hold the rest) instead of queueing every event. Then the
/// handler is released and the client still works: every message arrives in order and a
/// later one on the same connection.
#[test]
fn a_flood_faster_than_the_user_consumes_keeps_memory_bounded() {
    const FLOOD_MIB: u64 = 64;
    const BOUND_MIB: u64 = 32;
    let mut s = setup();
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let (seen_tx, seen_rx) = crossbeam_channel::unbounded::<u64>();
    let _ = s.client.on_server_message(move |m| {
        if m.sequence_id == Some(1) {
            // Stuck until the test releases it (bounded).
            let _ = gate_rx.recv_timeout(Duration::from_secs(120));
        }
        let _ = seen_tx.send(m.sequence_id.unwrap());
    });
    // The test's own `events()` receiver would queue a copy of the flood: not the client's
    // memory. Dropped here (pruned on the next event), taken again after the flood.
    drop(std::mem::replace(&mut s.events, crossbeam_channel::never()));
    // The capturing logger would keep tungstenite's per-frame trace lines (hex payloads):
    // gigabytes of the test's own memory.
    log::set_max_level(log::LevelFilter::Debug);
    let baseline = rss_kib();
    let payload = "y".repeat(1024);
    let count = FLOOD_MIB * 1024;
    let conn = s.conn.take().unwrap();
    let flooder = std::thread::spawn(move || {
        let mut conn = conn;
        let mut sent = 0;
        // A send that timed out leaves its frame buffered in the writer: it goes out with
        // the next flush, so it counts as sent once that flush succeeds.
        let mut pending = false;
        for seq in 1..=count {
            let f = format!(
                r#"{{"type":"message","from":"server","dataType":"text","data":"{payload}","sequenceId":{seq}}}"#
            );
            // A write blocked for the socket's write timeout (10 s) means the client pushes
            // back: stop flooding.
            if conn.ws.send(tungstenite::Message::text(f)).is_err() {
                pending = true;
                break;
            }
            sent = seq;
        }
        (conn, sent, pending)
    });
    let mut peak = baseline;
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(join_bounded_long(flooder));
    });
    let (mut conn, mut sent, pending) = loop {
        peak = peak.max(rss_kib());
        // Sampling tick: the flooder's end is waited on, bounded per tick.
        match done_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => break r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    };
    peak = peak.max(rss_kib());
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    println!("flood: {sent} messages of 1 KiB sent, RSS grew by {grown_mib} MiB");
    log::set_max_level(log::LevelFilter::Trace);
    drop(gate_tx);
    // The client reads again once its consumer catches up, so the buffered frame drains.
    if pending && conn.ws.flush().is_ok() {
        sent += 1;
    }
    s.conn = Some(conn);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    while last < sent {
        let seq = seen_rx
            .recv_deadline(deadline)
            .expect("the flood is delivered");
        assert_eq!(seq, last + 1, "in order");
        last = seq;
    }
    assert!(
        grown_mib < BOUND_MIB,
        "RSS grew by {grown_mib} MiB during a {FLOOD_MIB} MiB flood"
    );
    // Taken only now: an `events()` receiver that is not read holds the client back by
    // design (`max_event_backlog`), so one made before the flood is consumed would stall it.
    s.events = s.client.events();
    s.assert_kept(sent + 1);
    s.stop();
}

fn join_bounded_long<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    h.join().expect("flooder panicked")
}
