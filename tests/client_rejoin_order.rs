//! B9 with B12: after a new connection, `Connected` fires once the rejoin settled — and
//! messages that arrive on that connection meanwhile are delivered after it, in order, not
//! before. A scripted server decides exactly which frame comes when.

mod support;

use std::time::Duration;
use support::scripted_server::{frame, Conn, Server};
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::{Event, RetryPolicy, WebPubSubClient};

const WAIT: Duration = Duration::from_secs(10);

/// Reads the client's `joinGroup` for `group` and answers it with a successful ack.
fn ack_join(conn: &mut Conn, group: &str) {
    let text = conn
        .read_until("joinGroup", WAIT)
        .expect("a joinGroup from the client");
    let ack_id = match ClientMessage::decode(&text).unwrap() {
        ClientMessage::JoinGroup {
            group: g,
            ack_id: Some(id),
        } if g == group => id,
        other => panic!("unexpected {other:?}"),
    };
    conn.text(&format!(
        r#"{{"type":"ack","ackId":{ack_id},"success":true}}"#
    ));
}

fn next(events: &crossbeam_channel::Receiver<Event>) -> Event {
    events.recv_timeout(WAIT).expect("an event in time")
}

#[test]
fn messages_that_arrive_while_a_new_connection_rejoins_follow_its_connected_event() {
    let server = Server::start();
    let client = WebPubSubClient::builder(server.url())
        .start_timeout(WAIT)
        .ack_timeout(WAIT)
        .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(20), 10))
        .message_retry(RetryPolicy::none())
        .keep_alive_interval(Duration::ZERO)
        .build()
        .unwrap();
    let events = client.events();

    // First connection: started, joined to `g`.
    let c = client.clone();
    let starter = std::thread::spawn(move || c.start().map(|g| g.detach()));
    let mut first = server.accept(WAIT);
    first.connected("c1", "t1");
    let _client = starter.join().unwrap().expect("start");
    assert!(
        matches!(next(&events), Event::Connected { connection_id, .. } if connection_id == "c1")
    );
    let c = client.clone();
    let joiner = std::thread::spawn(move || c.join_group("g"));
    ack_join(&mut first, "g");
    joiner.join().unwrap().expect("join");

    // The service ends the session (close 1008: no recovery), so the client makes a new
    // connection and rejoins `g` before it reports `Connected`.
    let mut close = 1008u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"session closed");
    first.raw(&frame(true, 0x8, &close));
    let mut second = server.accept(WAIT);
    second.connected("c2", "t2");
    // A message on the new connection while the rejoin is still unanswered.
    second.server_text("early", 1);
    ack_join(&mut second, "g");
    second.server_text("later", 2);

    assert!(
        matches!(next(&events), Event::Disconnected { connection_id: Some(id), close_code: Some(1008), .. } if id == "c1")
    );
    match next(&events) {
        Event::Connected { connection_id, .. } => assert_eq!(connection_id, "c2"),
        other => panic!("expected Connected for the new connection first, got {other:?}"),
    }
    for want in ["early", "later"] {
        match next(&events) {
            Event::ServerMessage(m) => assert_eq!(m.data.as_text(), Some(want)),
            other => panic!("expected the server message {want:?}, got {other:?}"),
        }
    }
    client.stop();
}
