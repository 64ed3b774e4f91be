//! The emulator's reliable sessions: sequence ids, recovery, buffer limits, and faults.
//!
//! Every test runs over both reliable subprotocols, JSON and protobuf (PROTOBUF.md: only the
//! reliable variants recover, with the same URL parameters, 1008 rule and window; B42), and
//! the plain-session test over both plain ones.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_protocol::{ClientMessage, Data, ServiceMessage, Subprotocol};

/// One `#[test]` per subprotocol for each listed `fn name(p: Subprotocol)`, in a module of
/// that name: `name::json_reliable`, `name::protobuf_reliable` (or the plain twins).
macro_rules! over {
    (reliable: $($name:ident),* $(,)?) => {
        over!(@ [json_reliable JsonReliable, protobuf_reliable ProtobufReliable] $($name),*);
    };
    (plain: $($name:ident),* $(,)?) => {
        over!(@ [json Json, protobuf Protobuf] $($name),*);
    };
    (@ $variants:tt $($name:ident),*) => {
        $( over!(@@ $variants $name); )*
    };
    (@@ [$($test:ident $p:ident),*] $name:ident) => {
        mod $name {
            $(
                #[test]
                fn $test() {
                    super::$name(webpubsub_protocol::Subprotocol::$p)
                }
            )*
        }
    };
}

over!(reliable:
    recovery_resends_what_was_not_sequence_acked_and_continues_the_sequence,
    duplicate_ack_ids_are_detected_across_a_recovery,
    a_lost_ack_means_executed_then_dropped_and_the_retry_is_a_duplicate,
    failed_acks_are_internal_server_errors_and_not_executed,
    held_outbound_frames_get_sequence_ids_and_flow_when_released,
    delayed_acks_arrive_after_the_delay_and_after_later_frames,
    a_drop_mid_frame_leaves_a_truncated_frame_and_a_recoverable_session,
    bad_recovery_tokens_are_closed_with_1008,
    an_earlier_reconnection_token_still_recovers_its_session,
    refused_recoveries_are_closed_with_1008,
    sessions_end_after_the_recovery_window,
    a_client_close_frame_ends_the_session,
    unacked_buffer_overflow_closes_the_session_for_good,
    unacked_byte_limit_applies_to_dropped_sessions_too,
    a_recovery_must_speak_the_subprotocol_of_its_session,
);
over!(plain: plain_sessions_end_when_the_socket_drops);

fn seqs(msgs: &[ServiceMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(ServiceMessage::sequence_id)
        .collect()
}

/// Recovers `c`'s session over its own subprotocol.
fn recover(url: &str, c: &Ws) -> Ws {
    let r = connect_as(c.subprotocol, &recovery_url(url, c));
    assert_eq!(r.connection_id, c.connection_id, "same session");
    assert_ne!(r.reconnection_token, c.reconnection_token, "fresh token");
    r
}

fn expect_1008(p: Subprotocol, url: &str) {
    let mut r = open_raw(url, p.name());
    match r.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

fn recovery_resends_what_was_not_sequence_acked_and_continues_the_sequence(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub("chat");
    let url = emu.client_url("chat").group("g").build();
    let mut a = connect_as(p, &url);
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

fn duplicate_ack_ids_are_detected_across_a_recovery(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    let mut a = connect_as(p, &url);
    a.send(join("g", 5));
    assert_eq!(a.ack(5), (true, None));
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    let mut r = recover(&url, &a);
    r.send(join("g", 5));
    assert_eq!(r.ack(5), (false, Some("Duplicate".into())));
}

fn a_lost_ack_means_executed_then_dropped_and_the_retry_is_a_duplicate(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    let mut a = connect_as(p, &url);
    assert!(hub.lose_next_ack(&a.connection_id));
    a.send(join("g", 1));
    let (code, seen) = a.closed();
    assert_eq!(code, None);
    assert!(seen.is_empty(), "no ack: {seen:?}");
    assert!(hub.group_exists("g"), "the request was executed");
    // The drop is reported once the emulator noticed; recovery works at once regardless.
    let mut r = recover(&url, &a);
    r.send(join("g", 1));
    assert_eq!(r.ack(1), (false, Some("Duplicate".into())));
    r.send(join("h", 2));
    assert_eq!(r.ack(2), (true, None), "only the next ack was lost");
}

fn failed_acks_are_internal_server_errors_and_not_executed(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect_as(
        p,
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup")
            .build(),
    );
    assert!(hub.fail_next_acks(&a.connection_id, 2));
    a.send(join("g", 1));
    assert_eq!(a.ack(1), (false, Some("InternalServerError".into())));
    a.send(join("g", 1));
    assert_eq!(a.ack(1), (false, Some("InternalServerError".into())));
    assert!(!hub.group_exists("g"));
    a.send(join("g", 1));
    assert_eq!(
        a.ack(1),
        (true, None),
        "a retry with the same id runs once the faults are used up"
    );
    assert!(hub.group_exists("g"));
}

fn held_outbound_frames_get_sequence_ids_and_flow_when_released(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect_as(p, &emu.client_url("chat").build());
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

fn delayed_acks_arrive_after_the_delay_and_after_later_frames(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let mut a = connect_as(
        p,
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup")
            .build(),
    );
    let delay = Duration::from_millis(300);
    assert!(hub.delay_acks(&a.connection_id, delay));
    let t0 = Instant::now();
    a.send(join("g", 1));
    a.send(ClientMessage::Ping);
    assert_eq!(a.recv(), ServiceMessage::Pong, "the pong is not delayed");
    assert_eq!(a.ack(1), (true, None));
    assert!(t0.elapsed() >= delay, "{:?}", t0.elapsed());
    assert!(hub.group_exists("g"));
}

fn a_drop_mid_frame_leaves_a_truncated_frame_and_a_recoverable_session(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect_as(p, &url);
    assert!(emu.hub("chat").drop_connection_mid_frame(&a.connection_id));
    match a.ws.read() {
        Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected a broken stream, got {other:?}"),
    }
    wait_dropped(&obs, &a.connection_id);
    let _r = recover(&url, &a);
}

fn bad_recovery_tokens_are_closed_with_1008(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect_as(p, &url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    expect_1008(
        p,
        &format!(
            "{url}&awps_connection_id={}&awps_reconnection_token=wrong",
            a.connection_id
        ),
    );
    expect_1008(
        p,
        &format!("{url}&awps_connection_id=unknown&awps_reconnection_token=wrong"),
    );
    wait_for(&obs, |o| {
        matches!(o, Observation::RecoveryRefused { .. }).then_some(())
    });
    // The session itself is still recoverable with its real token.
    let _r = recover(&url, &a);
}

fn an_earlier_reconnection_token_still_recovers_its_session(p: Subprotocol) {
    // A recovery's `connected` message (with the fresh token) can be lost in a cut; the
    // service's tokens live as long as the session, so the previous one must still work.
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let first = connect_as(p, &url);
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
    let other = connect_as(p, &url);
    hub.drop_connection(&third.connection_id);
    wait_dropped(&obs, &third.connection_id);
    expect_1008(
        p,
        &format!(
            "{url}&awps_connection_id={}&awps_reconnection_token={}",
            first.connection_id,
            other.reconnection_token.as_deref().unwrap()
        ),
    );
}

fn refused_recoveries_are_closed_with_1008(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect_as(p, &url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    emu.refuse_recoveries(true);
    expect_1008(p, &recovery_url(&url, &a));
    emu.refuse_recoveries(false);
    let _r = recover(&url, &a);
}

fn sessions_end_after_the_recovery_window(p: Subprotocol) {
    let emu = Emulator::builder()
        .recovery_window(Duration::from_millis(200))
        .start()
        .unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect_as(p, &url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    assert_eq!(
        wait_ended(&obs, &a.connection_id),
        "recovery window expired"
    );
    assert!(!emu.hub("chat").connection_exists(&a.connection_id));
    expect_1008(p, &recovery_url(&url, &a));
}

fn plain_sessions_end_when_the_socket_drops(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = connect_as(p, &emu.client_url("chat").build());
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    wait_ended(&obs, &a.connection_id);
}

fn a_client_close_frame_ends_the_session(p: Subprotocol) {
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect_as(p, &url);
    a.ws.close(None).unwrap();
    let _ = a.closed();
    assert_eq!(wait_ended(&obs, &a.connection_id), "closed by the client");
    expect_1008(p, &recovery_url(&url, &a));
}

fn unacked_buffer_overflow_closes_the_session_for_good(p: Subprotocol) {
    let emu = Emulator::builder().max_unacked_messages(5).start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let mut a = connect_as(p, &url);
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
    expect_1008(p, &recovery_url(&url, &a));
}

fn unacked_byte_limit_applies_to_dropped_sessions_too(p: Subprotocol) {
    let emu = Emulator::builder().max_unacked_bytes(1000).start().unwrap();
    let obs = emu.observe();
    let a = connect_as(p, &emu.client_url("chat").build());
    let hub = emu.hub("chat");
    hub.drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    hub.send_to_connection(&a.connection_id, "x".repeat(600));
    assert!(hub.connection_exists(&a.connection_id));
    hub.send_to_connection(&a.connection_id, "x".repeat(600));
    wait_ended(&obs, &a.connection_id);
}

fn a_recovery_must_speak_the_subprotocol_of_its_session(p: Subprotocol) {
    // Its unacknowledged frames are in the codec of its subprotocol: a recovery over the
    // other reliable one is refused like any recovery that cannot succeed.
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let url = emu.client_url("chat").build();
    let a = connect_as(p, &url);
    emu.hub("chat").drop_connection(&a.connection_id);
    wait_dropped(&obs, &a.connection_id);
    let other = if p.is_binary() {
        Subprotocol::JsonReliable
    } else {
        Subprotocol::ProtobufReliable
    };
    expect_1008(other, &recovery_url(&url, &a));
    let _r = recover(&url, &a);
}
