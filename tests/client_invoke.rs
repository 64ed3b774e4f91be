//! Invocations (B38–B40) against the emulator's in-process event handler, on every
//! subprotocol: responses of each data type, failures, timeouts, cancels from another thread
//! and by drop, a connection drop while pending, ids across reconnects, and invocations
//! mixed into pipelined acked sends.
//!
//! A pending invocation is made without sleeps: the handler of the event `slow` blocks on a
//! channel ([`Gate`]) until the test answers it. The emulator calls the handler on the
//! connection's own thread, so while it blocks, that connection reads nothing more: a
//! `cancelInvocation` the client sent meanwhile is observed once the handler returned.
mod support;

use crossbeam_channel::{Receiver, Sender};
use std::time::Duration;
use support::*;
use webpubsub_client::protocol::{ClientMessage, ProtobufAny};
use webpubsub_client::{
    Cancelled, Data, DataType, Error, Event, InvalidInput, InvokeOptions, Metadata, RequestOptions,
    TimeoutKind,
};
use webpubsub_emulator::{Emulator, EventKind, EventRequest, EventResponse, Observation};

/// The handler's side of a pending invocation: `entered` reports each `slow` invocation as it
/// begins, `release` answers it.
struct Gate {
    entered: Receiver<Data>,
    release: Sender<EventResponse>,
    /// Every `event` (not invoke) the handler got: its name and metadata.
    events: Receiver<(String, Metadata)>,
}

impl Gate {
    /// Waits until the handler is inside a `slow` invocation.
    fn entered(&self) -> Data {
        recv(&self.entered)
    }

    fn answer(&self, response: EventResponse) {
        self.release.send(response).unwrap();
    }
}

/// An emulator whose handler echoes invocations (`accept` answers without data, `fail`
/// fails, `slow` waits for the [`Gate`]) and accepts events.
fn emulator() -> (Emulator, Gate) {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded::<EventResponse>();
    let (events_tx, events) = crossbeam_channel::unbounded();
    let emu = Emulator::builder()
        .event_handler(move |req: &EventRequest| {
            if req.kind != EventKind::Invoke {
                let _ = events_tx.send((req.event.clone(), req.metadata.clone()));
                return EventResponse::Accept;
            }
            match req.event.as_str() {
                "accept" => EventResponse::Accept,
                // Echoes the data and the metadata it was sent.
                "meta" => {
                    EventResponse::Reply(req.data.clone()).with_metadata(req.metadata.clone())
                }
                "fail" => EventResponse::Fail("the handler says no".into()),
                "slow" => {
                    let _ = entered_tx.send(req.data.clone());
                    // Bounded: a test that never answers fails, it does not hang.
                    release_rx
                        .recv_timeout(WAIT)
                        .unwrap_or_else(|_| EventResponse::Fail("no answer from the test".into()))
                }
                _ => EventResponse::Reply(req.data.clone()),
            }
        })
        .start()
        .unwrap();
    let gate = Gate {
        entered,
        release,
        events,
    };
    (emu, gate)
}

fn is_cancel_of(id: u64) -> impl Fn(&ClientMessage) -> bool {
    move |m| matches!(m, ClientMessage::CancelInvocation { invocation_id } if *invocation_id == id.to_string())
}

fn invocation_ids(obs: &Receiver<Observation>) -> Vec<String> {
    obs.try_iter()
        .filter_map(|o| match o {
            Observation::Request {
                message: ClientMessage::Invoke { invocation_id, .. },
                ..
            } => Some(invocation_id),
            _ => None,
        })
        .collect()
}

per_protocol! {
    fn an_invocation_returns_the_handlers_answer_of_each_data_type(p: Protocol) {
        // B38
        let (emu, _gate) = emulator();
        let c = started_with(&emu, "a", p);
        let payloads = [
            Data::from("text é \"quoted\""),
            Data::from(serde_json::json!({"n": 1, "a": [true, null]})),
            Data::from(vec![0u8, 1, 2, 255]),
            Data::from(ProtobufAny::new("type.googleapis.com/demo.Id", vec![8, 150, 1])),
        ];
        for data in payloads {
            let r = c.invoke_event("echo", data.clone()).unwrap();
            assert_eq!(r.data_type(), Some(data.data_type()));
            assert_eq!(r.data, Some(data));
            assert!(r.metadata.is_empty());
        }
        // A handler that answers without data.
        let r = c.invoke_event("accept", "x").unwrap();
        assert_eq!((r.data_type(), r.data), (None, None));
    }

    fn a_failed_invocation_carries_the_service_error_and_is_not_retried(p: Protocol) {
        // B38, B40
        let (emu, _gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let err = c.invoke_event("fail", "x").unwrap_err();
        let Error::Invoke(f) = &err else { panic!("{err:?}") };
        assert_eq!(f.name, "InvocationFailed");
        assert_eq!(f.message, "the handler says no");
        assert_eq!(err.invocation_id(), Some(f.invocation_id));
        assert!(!err.is_retryable());
        // Sent once; the next invocation is the only other one.
        c.invoke_event("echo", "y").unwrap();
        assert_eq!(invocation_ids(&obs), ["1", "2"]);
    }

    fn a_timed_out_invocation_is_cancelled_and_its_late_answer_dropped(p: Protocol) {
        // B38, B39
        let (emu, gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let opts = InvokeOptions::new().timeout(Duration::from_millis(200));
        let h = c.invoke_event_nowait("slow", "x", &opts).unwrap();
        let id = h.invocation_id();
        gate.entered();
        let err = h.wait().unwrap_err();
        assert_eq!(err, Error::Timeout(TimeoutKind::Invoke { invocation_id: id }));
        assert!(!err.is_retryable());
        gate.answer(EventResponse::Reply(Data::from("too late")));
        next_request(&obs, is_cancel_of(id));
        // The late answer came before this one on the same connection, and went nowhere.
        let r = c.invoke_event("echo", "next").unwrap();
        assert_eq!(r.data, Some(Data::from("next")));
        assert_eq!(r.invocation_id, id + 1);
    }

    fn a_cancel_from_another_thread_returns_the_waiter_at_once(p: Protocol) {
        // B39: the GUI's cancel button while a worker thread waits.
        let (emu, gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let events = c.events();
        let h = c.invoke_event_nowait("slow", "x", &InvokeOptions::new()).unwrap();
        let id = h.invocation_id();
        assert_eq!(gate.entered(), Data::from("x"));
        let button = h.clone();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let worker = std::thread::spawn(move || done_tx.send(h.wait()).unwrap());
        assert!(!button.is_finished());
        button.cancel();
        // The waiter returns while the handler still runs (it has not been answered).
        let result = recv(&done);
        assert_eq!(
            result,
            Err(Error::Cancelled(Cancelled::Invocation { invocation_id: id }))
        );
        assert!(gate.entered.is_empty() && button.is_finished());
        worker.join().unwrap();
        button.cancel(); // idempotent
        gate.answer(EventResponse::Reply(Data::from("late")));
        next_request(&obs, is_cancel_of(id));
        let r = c.invoke_event("echo", "after").unwrap();
        assert_eq!(r.data, Some(Data::from("after")), "the late answer was dropped");
        assert_none_within(&events, Duration::from_millis(100), |e| {
            matches!(e, Event::ServerMessage(_) | Event::GroupMessage(_))
        });
    }

    fn dropping_the_last_handle_of_a_pending_invocation_cancels_it(p: Protocol) {
        // B39: documented on InvokeHandle: nobody can receive the answer any more.
        let (emu, gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let h = c.invoke_event_nowait("slow", "x", &InvokeOptions::new()).unwrap();
        let id = h.invocation_id();
        let keep = h.clone();
        gate.entered();
        drop(h);
        assert!(!keep.is_finished(), "a clone still holds it");
        drop(keep);
        gate.answer(EventResponse::Reply(Data::from("late")));
        next_request(&obs, is_cancel_of(id));
        assert_eq!(c.invoke_event("echo", "z").unwrap().data, Some(Data::from("z")));
    }

    fn a_drop_while_pending_leaves_the_outcome_unknown_even_when_the_session_recovers(
        p: Protocol
    ) {
        // B40: invocations are never resent, and the session's recovery does not bring
        // their answers back. The emulator holds its answer so the invocation is pending
        // when the socket drops.
        let (emu, _gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let events = c.events();
        let conn = c.connection_id().unwrap();
        let hub = emu.hub(HUB);
        assert!(hub.hold_outbound(&conn, true));
        let h = c.invoke_event_nowait("echo", "x", &InvokeOptions::new()).unwrap();
        let sent = c
            .send_event_nowait("e", "acked", &RequestOptions::new())
            .unwrap();
        let id = h.invocation_id();
        next_request(&obs, |m| matches!(m, ClientMessage::Invoke { .. }));
        next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        assert!(hub.drop_connection(&conn));
        assert_eq!(h.wait(), Err(Error::InvocationLost { invocation_id: id }));
        hub.hold_outbound(&conn, false);
        if p.is_reliable() {
            recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
            assert_eq!(c.connection_id(), Some(conn), "the same session");
        } else {
            recv_until(&events, is_connected);
        }
        // The acked request is resent after the recovery (B21), or retried on the new
        // connection (B26); the invocation is neither.
        assert!(sent.wait().is_ok());
        let r = c.invoke_event("echo", "after").unwrap();
        assert_eq!((r.invocation_id, r.data), (id + 1, Some(Data::from("after"))));
        assert_eq!(invocation_ids(&obs), [(id + 1).to_string()], "never resent");
    }

    fn invocation_ids_never_repeat_across_new_connections_and_restarts(p: Protocol) {
        // B40
        let (emu, _gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        let events = c.events();
        let mut ids = vec![c.invoke_event("echo", "1").unwrap().invocation_id];
        // Closed for good (1008): a new connection, a new session.
        emu.hub(HUB).close_connection(c.connection_id().unwrap(), "bye");
        recv_until(&events, is_connected);
        ids.push(c.invoke_event("echo", "2").unwrap().invocation_id);
        c.stop();
        let c = start(c);
        ids.push(c.invoke_event("echo", "3").unwrap().invocation_id);
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(invocation_ids(&obs), ["1", "2", "3"]);
    }

    fn invocations_mixed_into_pipelined_sends_leave_acks_and_sequence_acks_alone(p: Protocol) {
        // B38 with B24, B29, B31: invocation ids are apart from ack ids, and the group's
        // echo keeps its order while invocations come and go.
        let (emu, _gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        c.join_group("g").unwrap();
        let events = c.events();
        let mut sends = Vec::new();
        let mut invokes = Vec::new();
        for i in 0..200 {
            sends.push(
                c.send_to_group_nowait("g", format!("{i}"), &RequestOptions::new())
                    .unwrap(),
            );
            if i % 10 == 0 {
                invokes.push((
                    i,
                    c.invoke_event_nowait("echo", format!("inv {i}"), &InvokeOptions::new())
                        .unwrap(),
                ));
            }
        }
        let acks: Vec<u64> = sends.into_iter().map(|h| h.wait().unwrap().ack_id).collect();
        assert_eq!(acks, (2..=201).collect::<Vec<_>>(), "ack ids are consecutive");
        for (i, h) in invokes {
            assert_eq!(h.wait().unwrap().data, Some(Data::from(format!("inv {i}"))));
        }
        for i in 0..200 {
            let e = recv_until(&events, |e| matches!(e, Event::GroupMessage(_)));
            let Event::GroupMessage(m) = e else { unreachable!() };
            assert_eq!(m.data, Data::from(format!("{i}")));
        }
        if p.is_reliable() {
            next_request(&obs, |m| {
                matches!(m, ClientMessage::SequenceAck { sequence_id } if *sequence_id == 200)
            });
        }
    }

    fn invocations_are_checked_before_anything_is_sent(p: Protocol) {
        // B35, B41
        let (emu, _gate) = emulator();
        let obs = emu.observe();
        let c = started_with(&emu, "a", p);
        assert_eq!(
            c.invoke_event("", "x").unwrap_err(),
            Error::InvalidInput(InvalidInput::EventName)
        );
        let bad = InvokeOptions::new().metadata(Metadata::from([("no spaces", "v")]));
        assert!(matches!(
            c.invoke_event_with("echo", "x", &bad),
            Err(Error::InvalidInput(InvalidInput::Rule(_)))
        ));
        assert!(matches!(
            c.invoke_event("echo", Data::Protobuf(vec![0xff])),
            Err(Error::InvalidInput(InvalidInput::Rule(_)))
        ));
        assert!(matches!(
            c.invoke_event("echo", vec![0u8; 1 << 20]),
            Err(Error::InvalidInput(InvalidInput::PayloadTooLarge { .. }))
        ));
        // Metadata within the limits goes out with the invocation, reaches the handler, and
        // comes back with its answer (B41).
        let meta = Metadata::new().with("trace-id", "t1");
        let r = c
            .invoke_event_with("meta", "ok", &InvokeOptions::new().metadata(meta.clone()))
            .unwrap();
        assert_eq!(r.data_type(), Some(DataType::Text));
        assert_eq!(r.metadata, meta);
        let sent = next_request(&obs, |m| matches!(m, ClientMessage::Invoke { .. }));
        assert_eq!(sent.metadata(), &meta);
        assert_eq!(invocation_ids(&obs), Vec::<String>::new(), "nothing else was sent");
        c.stop();
        assert_eq!(c.invoke_event("echo", "x").unwrap_err(), Error::Stopped);
    }

    fn an_events_metadata_reaches_the_event_handler(p: Protocol) {
        // B41
        let (emu, gate) = emulator();
        let c = started_with(&emu, "a", p);
        let meta = Metadata::new().with("trace-id", "ev-1");
        c.send_event_with("audit", "x", &RequestOptions::new().metadata(meta.clone()))
            .unwrap();
        c.send_event("plain", "y").unwrap();
        assert_eq!(recv(&gate.events), ("audit".to_owned(), meta));
        assert_eq!(recv(&gate.events), ("plain".to_owned(), Metadata::new()));
    }
}
