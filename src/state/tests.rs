//! Behaviour of the session state machine, without sockets.

use super::*;
use crate::error::InvalidInput;
use crate::protocol::{AckError, Metadata};

type S = Session<u32>;

fn started(auto_rejoin: bool) -> S {
    let mut s = S::new(auto_rejoin, Subprotocol::JsonReliable);
    s.begin_start().unwrap();
    s
}

fn connect(s: &mut S, id: &str) -> ConnectedOutcome {
    s.on_connected(id.into(), Some("alice".into()), Some("tok".into()))
}

fn frame(s: &str) -> WireFrame {
    WireFrame::Text(s.to_owned().into())
}

fn drain(s: &mut S) -> Vec<String> {
    let mut out = Vec::new();
    s.drain_outbox(&mut out);
    out.into_iter()
        .map(|f| f.as_text().expect("a JSON frame").to_owned())
        .collect()
}

/// A connected session with one group joined through an ack.
fn connected_in_group(group: &str) -> S {
    let mut s = started(true);
    connect(&mut s, "c1");
    let id = s.next_id();
    s.register(id, RequestKind::Join(group.into()), frame("join"), 1)
        .unwrap();
    drain(&mut s);
    assert!(matches!(
        s.on_ack(id, true, None),
        AckResolution::Caller(1, Ok(_))
    ));
    s
}

#[test]
fn start_is_refused_unless_stopped() {
    // B2
    let mut s = started(true);
    assert_eq!(
        s.begin_start(),
        Err(Error::State(StateError::AlreadyStarted))
    );
    s.request_stop(false);
    assert_eq!(s.begin_start(), Err(Error::State(StateError::Stopping)));
}

#[test]
fn requests_are_refused_when_stopped() {
    let mut s = S::new(true, Subprotocol::JsonReliable);
    assert_eq!(
        s.register(1, RequestKind::Other, frame("x"), 0),
        Err(Error::Stopped)
    );
    assert_eq!(s.queue_frame(frame("x")), Err(Error::Stopped));
}

#[test]
fn ack_ids_count_from_one_and_skip_ids_in_use() {
    // B24
    let mut s = started(true);
    assert_eq!(s.next_id(), 1);
    s.register(2, RequestKind::Other, frame("x"), 0).unwrap();
    assert_eq!(s.next_id(), 3);
    assert_eq!(
        s.register(2, RequestKind::Other, frame("y"), 0),
        Err(Error::InvalidInput(InvalidInput::AckIdInUse(2)))
    );
}

#[test]
fn requests_made_before_connected_wait_and_go_out_once_connected() {
    // B30
    let mut s = started(true);
    let wake = s.register(1, RequestKind::Other, frame("a"), 0).unwrap();
    assert!(!wake, "no wake-up while nothing can be written");
    assert!(drain(&mut s).is_empty());
    connect(&mut s, "c1");
    assert_eq!(drain(&mut s), ["a"]);
    assert!(drain(&mut s).is_empty(), "written once");
}

#[test]
fn only_the_first_push_into_an_empty_outbox_wakes_the_io_thread() {
    let mut s = started(true);
    connect(&mut s, "c1");
    assert!(s.register(1, RequestKind::Other, frame("a"), 0).unwrap());
    assert!(!s.register(2, RequestKind::Other, frame("b"), 0).unwrap());
    assert_eq!(drain(&mut s), ["a", "b"]);
    // Awake after a drain: it looks at the outbox again before sleeping.
    assert!(!s.queue_frame(frame("c")).unwrap());
    assert!(!s.io_sleep(), "must not sleep with a frame queued");
    assert_eq!(drain(&mut s), ["c"]);
    assert!(s.io_sleep());
    assert!(s.queue_frame(frame("d")).unwrap());
}

#[test]
fn a_sleeping_io_thread_is_woken_by_the_first_request_only() {
    let mut s = started(true);
    connect(&mut s, "c1");
    drain(&mut s);
    assert!(s.io_sleep());
    assert!(s.register(1, RequestKind::Other, frame("a"), 0).unwrap());
    assert!(!s.register(2, RequestKind::Other, frame("b"), 0).unwrap());
    assert_eq!(drain(&mut s), ["a", "b"]);
    assert!(!s.register(3, RequestKind::Other, frame("c"), 0).unwrap());
    assert!(!s.io_sleep());
}

#[test]
fn connected_fires_after_rejoin_settles() {
    // B9, B23
    let mut s = connected_in_group("g");
    s.on_socket_closed(Some(1008), true);
    s.lose_session(Some(1008));
    let ConnectedOutcome::New { rejoin, connected } = connect(&mut s, "c2") else {
        panic!("expected a new connection")
    };
    assert_eq!(rejoin.len(), 1);
    assert!(rejoin[0].as_text().unwrap().contains("\"group\":\"g\""));
    assert_eq!(connected, None, "not before the rejoin is acked");
    assert_eq!(s.state(), ClientState::Connecting);
    let id: u64 = serde_json::from_str::<serde_json::Value>(rejoin[0].as_text().unwrap()).unwrap()
        ["ackId"]
        .as_u64()
        .unwrap();
    let AckResolution::Rejoin { failed, connected } = s.on_ack(id, true, None) else {
        panic!("expected a rejoin ack")
    };
    assert_eq!(failed, None);
    assert!(matches!(connected, Some(Event::Connected { .. })));
    assert_eq!(s.state(), ClientState::Connected);
}

#[test]
fn failed_rejoin_fires_an_event_and_forgets_the_group() {
    // B13
    let mut s = connected_in_group("g");
    s.on_socket_closed(None, false);
    s.lose_session(None);
    let ConnectedOutcome::New { rejoin, .. } = connect(&mut s, "c2") else {
        panic!()
    };
    let id = serde_json::from_str::<serde_json::Value>(rejoin[0].as_text().unwrap()).unwrap()
        ["ackId"]
        .as_u64()
        .unwrap();
    let AckResolution::Rejoin { failed, connected } =
        s.on_ack(id, false, Some(AckError::new("Forbidden", "no")))
    else {
        panic!()
    };
    assert!(matches!(failed, Some(Event::RejoinGroupFailed { ref group, .. }) if group == "g"));
    assert!(connected.is_some(), "connected still fires once settled");
    assert_eq!(s.groups().count(), 0);
}

#[test]
fn leave_forgets_the_group_and_failed_join_is_not_remembered() {
    // B23
    let mut s = connected_in_group("g");
    s.register(10, RequestKind::Leave("g".into()), frame("l"), 0)
        .unwrap();
    s.on_ack(10, true, None);
    assert_eq!(s.groups().count(), 0);
    s.register(11, RequestKind::Join("h".into()), frame("j"), 0)
        .unwrap();
    s.on_ack(11, false, Some(AckError::new("Forbidden", "")));
    assert_eq!(s.groups().count(), 0);
}

#[test]
fn auto_rejoin_off_rejoins_nothing() {
    let mut s = S::new(false, Subprotocol::JsonReliable);
    s.begin_start().unwrap();
    connect(&mut s, "c1");
    s.register(1, RequestKind::Join("g".into()), frame("j"), 0)
        .unwrap();
    s.on_ack(1, true, None);
    s.on_socket_closed(None, false);
    s.lose_session(None);
    let ConnectedOutcome::New { rejoin, connected } = connect(&mut s, "c2") else {
        panic!()
    };
    assert!(rejoin.is_empty());
    assert!(connected.is_some());
}

#[test]
fn duplicate_ack_is_success_marked_duplicate() {
    // B25
    let mut s = started(true);
    connect(&mut s, "c1");
    s.register(5, RequestKind::Other, frame("x"), 7).unwrap();
    let AckResolution::Caller(7, Ok(o)) =
        s.on_ack(5, false, Some(AckError::new("Duplicate", "dup")))
    else {
        panic!()
    };
    assert!(o.duplicate);
    assert_eq!(o.ack_id, 5);
}

#[test]
fn other_ack_errors_carry_id_name_and_message() {
    // B25
    let mut s = started(true);
    connect(&mut s, "c1");
    s.register(5, RequestKind::Other, frame("x"), 7).unwrap();
    let AckResolution::Caller(_, Err(Error::Ack(f))) =
        s.on_ack(5, false, Some(AckError::new("Forbidden", "no role")))
    else {
        panic!()
    };
    assert_eq!(
        (f.ack_id, f.name.as_str(), f.message.as_str()),
        (5, "Forbidden", "no role")
    );
    assert!(matches!(s.on_ack(5, true, None), AckResolution::Unknown));
}

#[test]
fn recovery_tried_only_when_connected_reliable_and_not_1008() {
    // B17
    let mut s = started(true);
    connect(&mut s, "c1");
    assert_eq!(s.on_socket_closed(Some(1006), true), AfterClose::Recover);
    assert_eq!(s.state(), ClientState::Recovering);

    let mut s = started(true);
    connect(&mut s, "c1");
    assert_eq!(
        s.on_socket_closed(Some(1008), true),
        AfterClose::SessionLost
    );

    let mut s = started(true);
    connect(&mut s, "c1");
    assert_eq!(s.on_socket_closed(None, false), AfterClose::SessionLost);

    let mut s = started(true);
    s.on_connected("c1".into(), None, None);
    assert_eq!(
        s.on_socket_closed(None, true),
        AfterClose::SessionLost,
        "no reconnection token, no recovery"
    );
}

#[test]
fn recovery_not_tried_while_stopping() {
    let mut s = started(true);
    connect(&mut s, "c1");
    s.request_stop(false);
    assert_eq!(s.on_socket_closed(None, true), AfterClose::Stop);
}

#[test]
fn failed_first_connection_is_a_start_failure() {
    // B3, B4
    let mut s = started(true);
    assert_eq!(s.on_socket_closed(None, true), AfterClose::StartFailed);
}

#[test]
fn recovery_keeps_ids_groups_and_does_not_fire_connected() {
    // B9, B19, B21
    let mut s = connected_in_group("g");
    s.register(9, RequestKind::Other, frame("pending"), 3)
        .unwrap();
    assert_eq!(drain(&mut s), ["pending"]);
    s.on_socket_closed(None, true);
    assert!(matches!(
        s.recovering_event(None),
        Some(Event::Recovering { .. })
    ));
    let out = s.on_connected("c1".into(), None, Some("tok2".into()));
    let ConnectedOutcome::Recovered { resend, event } = out else {
        panic!("expected a recovery, got {out:?}")
    };
    assert_eq!(
        resend,
        vec![frame("pending")],
        "resent with the same frame and ack id"
    );
    assert!(matches!(event, Some(Event::Recovered { .. })));
    assert_eq!(s.state(), ClientState::Connected);
    assert_eq!(s.connection_id(), Some("c1"));
    assert_eq!(s.recovery_ids(), Some(("c1", "tok2")), "token updated");
    assert_eq!(s.groups().collect::<Vec<_>>(), ["g"]);
    assert!(drain(&mut s).is_empty(), "the resend is not written twice");
}

#[test]
fn a_different_connection_id_after_recovery_is_a_new_connection() {
    let mut s = started(true);
    connect(&mut s, "c1");
    s.on_socket_closed(None, true);
    assert!(matches!(
        connect(&mut s, "c2"),
        ConnectedOutcome::New { .. }
    ));
}

#[test]
fn lost_session_fails_sent_requests_and_keeps_unsent_ones() {
    // B10, B21
    let mut s = started(true);
    connect(&mut s, "c1");
    s.register(1, RequestKind::Other, frame("sent"), 11)
        .unwrap();
    drain(&mut s);
    s.on_disconnected_message(Some("bye".into()));
    s.on_socket_closed(Some(1008), true);
    s.register(2, RequestKind::Other, frame("later"), 22)
        .unwrap();
    let (lost, event) = s.lose_session(Some(1008));
    assert_eq!(lost, vec![(1, 11)]);
    assert_eq!(
        event,
        Some(Event::Disconnected {
            connection_id: Some("c1".into()),
            message: Some("bye".into()),
            close_code: Some(1008),
        })
    );
    assert_eq!(s.state(), ClientState::Disconnected);
    connect(&mut s, "c2");
    assert_eq!(drain(&mut s), ["later"]);
}

#[test]
fn disconnected_fires_once_per_session() {
    // B10
    let mut s = started(true);
    connect(&mut s, "c1");
    s.on_socket_closed(None, false);
    assert!(s.lose_session(None).1.is_some());
    assert!(s.lose_session(None).1.is_none());
    assert!(s.finish(None).event.is_none());
}

#[test]
fn stop_fails_every_waiting_request_and_remembers_groups() {
    // B5, B7
    let mut s = connected_in_group("g");
    s.register(3, RequestKind::Other, frame("x"), 33).unwrap();
    let Ended { waiters, event, .. } = s.finish(Some(1000));
    assert_eq!(waiters, vec![33]);
    assert!(matches!(
        event,
        Some(Event::Disconnected {
            close_code: Some(1000),
            ..
        })
    ));
    assert_eq!(s.groups().collect::<Vec<_>>(), ["g"]);
    s.begin_start().unwrap();
    let ConnectedOutcome::New { rejoin, .. } = connect(&mut s, "c9") else {
        panic!()
    };
    assert_eq!(
        rejoin.len(),
        1,
        "remembered groups are rejoined after a restart"
    );
}

#[test]
fn abandoned_request_is_not_resent() {
    // B27
    let mut s = started(true);
    connect(&mut s, "c1");
    s.register(1, RequestKind::Other, frame("x"), 0).unwrap();
    s.abandon(1);
    assert!(drain(&mut s).is_empty());
    s.register(1, RequestKind::Other, frame("x"), 0).unwrap();
    assert_eq!(drain(&mut s), ["x"], "a retry re-registers the same ack id");
}

#[test]
fn a_stop_is_not_undone_by_the_io_threads_late_transitions() {
    // B5: once `stop()` asked, nothing the I/O thread still does leaves Stopping.
    let mut s = started(true);
    s.request_stop(false);
    s.reconnecting();
    s.waiting_to_reconnect();
    connect(&mut s, "c1");
    assert_eq!(s.state(), ClientState::Stopping);
    assert_eq!(s.new_ack_id(), Err(Error::Stopped));
    assert_eq!(
        s.register(1, RequestKind::Other, frame("x"), 0),
        Err(Error::Stopped)
    );
    s.finish(None);
    assert_eq!(s.state(), ClientState::Stopped);
}

#[test]
fn stop_on_a_stopped_client_changes_nothing() {
    let mut s = S::new(true, Subprotocol::JsonReliable);
    s.request_stop(false);
    assert_eq!(s.state(), ClientState::Stopped);
    s.begin_start().unwrap();
}

#[test]
fn a_run_that_could_not_be_set_up_goes_back_to_stopped() {
    // B4
    let mut s = started(true);
    s.abort_start();
    assert_eq!(s.state(), ClientState::Stopped);
    assert!(!s.take_start_pending());
    s.begin_start().unwrap();
    assert!(s.take_start_pending(), "pending for the run that starts");
    assert!(!s.take_start_pending(), "taken once");
}

#[test]
fn ready_from_connected_until_the_socket_closes() {
    // One flag, read by request threads (wake-ups) and the I/O thread (timers, close code).
    let mut s = started(true);
    let mut out = Vec::new();
    assert!(!s.is_ready());
    assert!(!s.drain_outbox(&mut out));
    connect(&mut s, "c1");
    assert!(s.is_ready());
    assert!(s.drain_outbox(&mut out));
    s.on_socket_closed(None, true);
    assert!(!s.is_ready());
    assert!(!s.drain_outbox(&mut out));
}

#[test]
fn reconnect_transitions_move_between_connecting_and_disconnected() {
    // B1, B22
    let mut s = started(true);
    connect(&mut s, "c1");
    s.on_socket_closed(Some(1008), true);
    s.lose_session(Some(1008));
    assert_eq!(s.state(), ClientState::Disconnected);
    s.reconnecting();
    assert_eq!(s.state(), ClientState::Connecting);
    s.on_socket_closed(None, true);
    s.waiting_to_reconnect();
    assert_eq!(s.state(), ClientState::Disconnected);
}

#[test]
fn start_is_refused_while_a_stop_call_waits_for_the_threads() {
    // B2, B5: a `stop()` you wait for is final, even for a start from the `stopped`
    // callback it fires; once it returned, the client starts again (B7).
    let mut s = started(true);
    connect(&mut s, "c1");
    s.request_stop(true);
    s.finish(Some(1000));
    assert_eq!(s.state(), ClientState::Stopped);
    assert_eq!(s.begin_start(), Err(Error::State(StateError::Stopping)));
    s.stop_returned();
    s.begin_start().unwrap();
    assert_eq!(s.state(), ClientState::Connecting);
}

#[test]
fn an_asynchronous_stop_lets_the_stopped_callback_start_again() {
    // A `stop()` from a callback does not wait, so its `stopped` callback may restart.
    let mut s = started(true);
    connect(&mut s, "c1");
    s.request_stop(false);
    s.finish(Some(1000));
    s.begin_start().unwrap();
}

// ----- invocations (B38-B40) and parked retries (B26, B39) -----

fn invoke(s: &mut S, waiter: u32) -> u64 {
    let id = s.new_invocation_id().unwrap();
    s.register_invocation(id, frame(&format!("invoke {id}")), waiter)
        .unwrap();
    id
}

#[test]
fn invocation_ids_never_repeat_across_sessions_and_restarts() {
    // B40
    let mut s = started(true);
    connect(&mut s, "c1");
    let a = invoke(&mut s, 1);
    s.on_socket_closed(None, false);
    s.lose_session(None);
    connect(&mut s, "c2");
    let b = invoke(&mut s, 2);
    s.finish(None);
    s.begin_start().unwrap();
    connect(&mut s, "c3");
    let c = invoke(&mut s, 3);
    assert!(a < b && b < c, "{a} {b} {c}");
    assert_eq!(s.next_id(), 1, "ack ids count apart");
}

#[test]
fn an_invocation_written_to_a_dropped_connection_is_lost_even_if_recovered() {
    // B40
    let mut s = started(true);
    connect(&mut s, "c1");
    let sent = invoke(&mut s, 7);
    assert_eq!(drain(&mut s), [format!("invoke {sent}")]);
    assert_eq!(s.on_socket_closed(Some(1006), true), AfterClose::Recover);
    let queued = invoke(&mut s, 8);
    assert_eq!(s.take_lost_invocations(), [(sent, 7)]);
    assert!(s.take_lost_invocations().is_empty(), "once");
    let out = s.on_connected("c1".into(), None, Some("tok2".into()));
    let ConnectedOutcome::Recovered { resend, .. } = out else {
        panic!("{out:?}")
    };
    assert!(resend.is_empty(), "an invocation is never resent");
    assert_eq!(
        drain(&mut s),
        [format!("invoke {queued}")],
        "one not yet written goes out on the recovered connection"
    );
    // The lost one's late response finds nobody; the queued one's finds its caller.
    let late = s.on_invoke_response(&sent.to_string(), true, None, None, Metadata::new());
    assert!(matches!(late, InvokeResolution::Unknown));
    let r = s.on_invoke_response(&queued.to_string(), true, None, None, Metadata::new());
    assert!(matches!(r, InvokeResolution::Caller(8, Ok(ref x)) if x.invocation_id == queued));
}

#[test]
fn a_cancelled_invocation_sends_cancel_only_if_it_went_out() {
    // B39
    let mut s = started(true);
    connect(&mut s, "c1");
    let sent = invoke(&mut s, 1);
    drain(&mut s);
    let queued = invoke(&mut s, 2);
    assert!(
        !s.cancel_invocation(queued),
        "never written: nothing to tell"
    );
    s.cancel_invocation(sent);
    assert_eq!(
        drain(&mut s),
        [format!(
            r#"{{"type":"cancelInvocation","invocationId":"{sent}"}}"#
        )],
        "the queued invocation is not written, the cancel is"
    );
    assert!(!s.cancel_invocation(sent), "idempotent");
    let late = s.on_invoke_response(&sent.to_string(), true, None, None, Metadata::new());
    assert!(
        matches!(late, InvokeResolution::Unknown),
        "a late response is dropped"
    );
}

#[test]
fn a_failed_invocation_carries_the_service_error_and_foreign_ids_are_dropped() {
    // B38
    let mut s = started(true);
    connect(&mut s, "c1");
    let id = invoke(&mut s, 1);
    drain(&mut s);
    assert!(matches!(
        s.on_invoke_response("not-ours", true, None, None, Metadata::new()),
        InvokeResolution::Unknown
    ));
    let r = s.on_invoke_response(
        &id.to_string(),
        false,
        None,
        Some(AckError::new("InvocationFailed", "handler said no")),
        Metadata::new(),
    );
    let InvokeResolution::Caller(1, Err(Error::Invoke(f))) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (f.invocation_id, f.name.as_str(), f.message.as_str()),
        (id, "InvocationFailed", "handler said no")
    );
}

#[test]
fn stop_fails_every_waiting_invocation() {
    // B5
    let mut s = started(true);
    connect(&mut s, "c1");
    invoke(&mut s, 1);
    drain(&mut s);
    invoke(&mut s, 2);
    let ended = s.finish(None);
    assert_eq!(ended.invocations, [1, 2]);
    assert_eq!(s.new_invocation_id(), Err(Error::Stopped));
}

#[test]
fn a_parked_retry_waits_unwritten_until_unparked() {
    // B26, B39: a request in its backoff is registered (a stop fails it) but not written,
    // not resent by a recovery, and not lost with a session.
    let mut s = started(true);
    connect(&mut s, "c1");
    s.park(4, RequestKind::Other, frame("retry"), 44).unwrap();
    assert!(drain(&mut s).is_empty());
    assert_eq!(
        s.park(4, RequestKind::Other, frame("again"), 45),
        Err(Error::InvalidInput(InvalidInput::AckIdInUse(4)))
    );
    s.on_socket_closed(None, true);
    let out = s.on_connected("c1".into(), None, Some("t".into()));
    assert!(matches!(out, ConnectedOutcome::Recovered { ref resend, .. } if resend.is_empty()));
    s.on_socket_closed(None, false);
    assert!(s.lose_session(None).0.is_empty(), "not written: not lost");
    connect(&mut s, "c2");
    s.unpark(4);
    assert_eq!(drain(&mut s), ["retry"]);
    // A late ack of an earlier attempt resolves a parked request.
    s.park(5, RequestKind::Other, frame("r5"), 55).unwrap();
    assert!(matches!(
        s.on_ack(5, true, None),
        AckResolution::Caller(55, Ok(_))
    ));
    assert!(!s.unpark(5), "nothing left to write");
    assert!(drain(&mut s).is_empty());
    s.park(6, RequestKind::Other, frame("r6"), 66).unwrap();
    assert_eq!(s.finish(None).waiters, [66]);
    assert_eq!(
        s.park(7, RequestKind::Other, frame("r7"), 77),
        Err(Error::Stopped)
    );
}
