//! The emulator's reliable sessions: sequence ids, recovery, buffer limits, and faults.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_protocol::{ClientMessage, Data, ServiceMessage};

fn seqs(msgs: &[ServiceMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(ServiceMessage::sequence_id)
        .collect()
}

fn recover(url: &str, c: &Ws) -> Ws {
    let r = connect(&recovery_url(url, c));
    assert_eq!(r.connection_id, c.connection_id, "same session");
    assert_ne!(r.reconnection_token, c.reconnection_token, "fresh token");
    r
}

fn expect_1008(url: &str) {
    let mut r = open_raw(url, RELIABLE);
    match r.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

fn join_ack(g: &str, id: u64) -> ClientMessage {
    ClientMessage::JoinGroup {
        group: g.into(),
        ack_id: Some(id),
    }
}

#[test]
fn recovery_resends_what_was_not_sequence_acked_and_continues_the_sequence() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").group("g").build();
    let mut a = connect(&url);
    for i in 1..=3 {
        hub.send_to_group("g", format!("m{i}"));
    }
    a.send(ClientMessage::SequenceAck { sequence_id: 1 });
    assert_eq!(seqs(&a.drain_until_pong()), vec![1, 2, 3]);
    assert!(hub.drop_connection(&a.connection_id));
    let (code, _) = a.closed();
    assert_eq!(code, None, "abrupt: no close frame");
    wait_dropped(&obs, &a.connection_id);
    let info = hub.connections();
    assert!(!info[0].connected && info[0].groups == vec!["g".to_string()]);
    hub.send_to_group("g", "while away");
    let mut r = recover(&url, &a);
    wait_for(&obs, |o| {
        matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == a.connection_id).then_some(())
    });
    hub.send_to_group("g", "after");
    let got = r.drain_until_pong();
    assert_eq!(seqs(&got), vec![2, 3, 4, 5]);
    assert!(
        matches!(&got[3], ServiceMessage::ServerMessage { data, .. } if *data == Data::from("after"))
    );
    assert!(hub.connections()[0].connected);
}

#[test]
fn duplicate_ack_ids_are_detected_across_a_recovery() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    let mut a = connect(&url);
    a.send(join_ack("g", 5));
    assert_eq!(a.ack(5), (true, None));
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    let mut r = recover(&url, &a);
    r.send(join_ack("g", 5));
    assert_eq!(r.ack(5), (false, Some("Duplicate".into())));
}

#[test]
fn a_lost_ack_means_executed_then_dropped_and_the_retry_is_a_duplicate() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    let mut a = connect(&url);
    assert!(hub.lose_next_ack(&a.connection_id));
    a.send(join_ack("g", 1));
    let (code, seen) = a.closed();
    assert_eq!(code, None);
    assert!(seen.is_empty(), "no ack: {seen:?}");
    assert!(hub.group_exists("g"), "the request was executed");
    // The drop is reported once the emulator noticed; recovery works at once regardless.
    let mut r = recover(&url, &a);
    r.send(join_ack("g", 1));
    assert_eq!(r.ack(1), (false, Some("Duplicate".into())));
    r.send(join_ack("h", 2));
    assert_eq!(r.ack(2), (true, None), "only the next ack was lost");
}

#[test]
fn failed_acks_are_internal_server_errors_and_not_executed() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect(
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup")
            .build(),
    );
    assert!(hub.fail_next_acks(&a.connection_id, 2));
    a.send(join_ack("g", 1));
    assert_eq!(a.ack(1), (false, Some("InternalServerError".into())));
    a.send(join_ack("g", 1));
    assert_eq!(a.ack(1), (false, Some("InternalServerError".into())));
    assert!(!hub.group_exists("g"));
    a.send(join_ack("g", 1));
    assert_eq!(
        a.ack(1),
        (true, None),
        "a retry with the same id runs once the faults are used up"
    );
    assert!(hub.group_exists("g"));
}

#[test]
fn held_outbound_frames_get_sequence_ids_and_flow_when_released() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect(&emu.client_url("chat").build());
    let id = a.connection_id.clone();
    assert!(hub.hold_outbound(&id, true));
    for i in 0..3 {
        hub.send_to_connection(&id, format!("{i}"));
    }
    a.send(ClientMessage::Ping);
    // A bounded check that nothing is written while held.
    a.ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match a.ws.read() {
        Err(tungstenite::Error::Io(e)) => assert!(matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        other => panic!("expected nothing while held, got {other:?}"),
    }
    a.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    assert!(hub.hold_outbound(&id, false));
    let got: Vec<ServiceMessage> = (0..4).map(|_| a.recv()).collect();
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    assert_eq!(got[3], ServiceMessage::Pong);
}

#[test]
fn delayed_acks_arrive_after_the_delay_and_after_later_frames() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect(
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup")
            .build(),
    );
    let delay = Duration::from_millis(300);
    assert!(hub.delay_acks(&a.connection_id, delay));
    let t0 = Instant::now();
    a.send(join_ack("g", 1));
    a.send(ClientMessage::Ping);
    assert_eq!(a.recv(), ServiceMessage::Pong, "the pong is not delayed");
    assert_eq!(a.ack(1), (true, None));
    assert!(t0.elapsed() >= delay, "{:?}", t0.elapsed());
    assert!(hub.group_exists("g"));
}

#[test]
fn a_drop_mid_frame_leaves_a_truncated_frame_and_a_recoverable_session() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect(&url);
    assert!(emu.hub("chat").drop_connection_mid_frame(&a.connection_id));
    match a.ws.read() {
        Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected a broken stream, got {other:?}"),
    }
    wait_dropped(&obs, &a.connection_id);
    let _r = recover(&url, &a);
}

#[test]
fn bad_recovery_tokens_are_closed_with_1008() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect(&url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    expect_1008(&format!(
        "{url}&awps_connection_id={}&awps_reconnection_token=wrong",
        a.connection_id
    ));
    expect_1008(&format!(
        "{url}&awps_connection_id=unknown&awps_reconnection_token=wrong"
    ));
    wait_for(&obs, |o| {
        matches!(o, Observation::RecoveryRefused { .. }).then_some(())
    });
    // The session itself is still recoverable with its real token.
    let _r = recover(&url, &a);
}

#[test]
fn an_earlier_reconnection_token_still_recovers_its_session() {
    // A recovery's `connected` message (with the fresh token) can be lost in a cut; the
    // service's tokens live as long as the session, so the previous one must still work.
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let first = connect(&url);
    let hub = emu.hub("chat");
    hub.drop_connection(&first.connection_id);
    wait_dropped(&obs, &first.connection_id);
    let second = recover(&url, &first);
    hub.drop_connection(&second.connection_id);
    wait_dropped(&obs, &second.connection_id);
    // Recovered with the first token, not the second.
    let third = recover(&url, &first);
    assert_eq!(third.connection_id, first.connection_id);
    // A token of another session still does not.
    let other = connect(&url);
    hub.drop_connection(&third.connection_id);
    wait_dropped(&obs, &third.connection_id);
    expect_1008(&format!(
        "{url}&awps_connection_id={}&awps_reconnection_token={}",
        first.connection_id,
        other.reconnection_token.as_deref().unwrap()
    ));
}

#[test]
fn refused_recoveries_are_closed_with_1008() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect(&url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    emu.refuse_recoveries(true);
    expect_1008(&recovery_url(&url, &a));
    emu.refuse_recoveries(false);
    let _r = recover(&url, &a);
}

#[test]
fn sessions_end_after_the_recovery_window() {
    let emu = Emulator::builder()
        .recovery_window(Duration::from_millis(200))
        .start()
        .unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect(&url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    assert_eq!(
        wait_ended(&obs, &a.connection_id),
        "recovery window expired"
    );
    assert!(!emu.hub("chat").connection_exists(&a.connection_id));
    expect_1008(&recovery_url(&url, &a));
}

#[test]
fn plain_json_sessions_end_when_the_socket_drops() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = connect_plain(&emu.client_url("chat").build());
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    wait_ended(&obs, &a.connection_id);
}

#[test]
fn a_client_close_frame_ends_the_session() {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect(&url);
    a.ws.close(None).unwrap();
    let _ = a.closed();
    assert_eq!(wait_ended(&obs, &a.connection_id), "closed by the client");
    expect_1008(&recovery_url(&url, &a));
}

#[test]
fn unacked_buffer_overflow_closes_the_session_for_good() {
    let emu = Emulator::builder().max_unacked_messages(5).start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect(&url);
    let hub = emu.hub("chat");
    for i in 0..5 {
        hub.send_to_connection(&a.connection_id, format!("{i}"));
    }
    // Acknowledging keeps the session alive...
    a.send(ClientMessage::SequenceAck { sequence_id: 5 });
    assert_eq!(seqs(&a.drain_until_pong()), vec![1, 2, 3, 4, 5]);
    for i in 0..6 {
        hub.send_to_connection(&a.connection_id, format!("{i}"));
    }
    // ...six more without an ack overflow it.
    let (code, seen) = a.closed();
    assert_eq!(code, Some(CloseCode::Policy));
    assert!(
        matches!(seen.last(), Some(ServiceMessage::Disconnected { message: Some(m) }) if m.contains("unacknowledged")),
        "{seen:?}"
    );
    wait_ended(&obs, &a.connection_id);
    expect_1008(&recovery_url(&url, &a));
}

#[test]
fn unacked_byte_limit_applies_to_dropped_sessions_too() {
    let emu = Emulator::builder().max_unacked_bytes(1000).start().unwrap();
    let obs = emu.observe();
    let a = connect(&emu.client_url("chat").build());
    let hub = emu.hub("chat");
    hub.drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    hub.send_to_connection(&a.connection_id, "x".repeat(600));
    assert!(hub.connection_exists(&a.connection_id));
    hub.send_to_connection(&a.connection_id, "x".repeat(600));
    wait_ended(&obs, &a.connection_id);
}
