//! Events: callbacks on one dispatcher thread, in order; streams; panics; re-entrancy; on
//! every subprotocol (B42).
mod support;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use webpubsub_client::{ClientState, Data, Error, Event, Metadata, StateError};
use webpubsub_emulator::Emulator;

per_protocol! {
    fn group_and_server_messages_arrive_in_order_exactly_once(p: Protocol) {
        // B12
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let b = started_with(&emu, "b", p);
        a.join_group("g").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let (s, t) = (seen.clone(), threads.clone());
        let _sub = a.on_group_message(move |m| {
            t.lock()
                .unwrap()
                .insert(std::thread::current().name().map(str::to_owned));
            s.lock().unwrap().push(m.data.as_text().unwrap().to_owned());
        });
        let events = a.events();
        for i in 0..200 {
            b.send_to_group_with(
                "g",
                i.to_string(),
                &webpubsub_client::RequestOptions::new().fire_and_forget(true),
            )
            .unwrap();
        }
        b.send_to_group("g", "end").unwrap();
        recv_until(
            &events,
            |e| matches!(e, Event::GroupMessage(m) if m.data.as_text() == Some("end")),
        );
        let mut seen = seen.lock().unwrap().clone();
        assert_eq!(seen.pop().as_deref(), Some("end"));
        assert_eq!(seen, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
        emu.hub(HUB)
            .send_to_connection(a.connection_id().unwrap(), "server");
        recv_until(
            &events,
            |e| matches!(e, Event::ServerMessage(m) if m.data.as_text() == Some("server")),
        );
        let names = threads.lock().unwrap().clone();
        assert_eq!(names.len(), 1, "one dispatcher thread");
        assert_eq!(
            names.into_iter().next().unwrap().as_deref(),
            Some("webpubsub-dispatch")
        );
    }

    fn group_message_carries_group_sender_and_sequence_id(p: Protocol) {
        // B12
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "alice", p);
        let events = a.events();
        a.join_group("g").unwrap();
        a.send_to_group("g", serde_json::json!({"k": 1})).unwrap();
        match recv_until(&events, |e| matches!(e, Event::GroupMessage(_))) {
            Event::GroupMessage(m) => {
                assert_eq!(m.group, "g");
                // Protobuf has no field for the publisher's user id (PROTOBUF.md).
                let from = (!p.is_binary()).then_some("alice");
                assert_eq!(m.from_user_id.as_deref(), from);
                assert_eq!(m.data, Data::Json(serde_json::json!({"k": 1})));
                assert_eq!(m.sequence_id.is_some(), p.is_reliable());
            }
            _ => unreachable!(),
        }
    }

    fn a_panicking_callback_does_not_stop_delivery(p: Protocol) {
        // B15
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let _p = a.on_server_message(|m| {
            if m.data.as_text() == Some("boom") {
                panic!("handler bug (expected in this test)");
            }
        });
        // The other handler reports what it got (the `events()` receivers get each event
        // before the handlers run, so they cannot tell when the handlers are done).
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        let _q = a.on_server_message(move |m| {
            let _ = seen_tx.send(m.data.as_text().map(str::to_owned));
        });
        let hub = emu.hub(HUB);
        let id = a.connection_id().unwrap();
        hub.send_to_connection(&id, "boom");
        hub.send_to_connection(&id, "after");
        assert_eq!(recv(&seen).as_deref(), Some("boom"), "the first reached the other handler");
        assert_eq!(recv(&seen).as_deref(), Some("after"), "and so did the next one");
        assert_eq!(a.state(), ClientState::Connected);
    }

    fn a_callback_may_send_and_stop_without_deadlock(p: Protocol) {
        // B15, B5
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        let events = a.events();
        let (tx, rx) = crossbeam_channel::unbounded();
        let c = a.clone();
        let _s = a.on_server_message(move |_| {
            // A blocking request from the dispatcher thread: its ack is resolved on the I/O thread.
            let r = c.send_to_group("g", "from callback");
            // start() from a callback returns at once instead of deadlocking: already started.
            let again = c.start().err();
            c.stop();
            tx.send((r.is_ok(), again)).unwrap();
        });
        emu.hub(HUB)
            .send_to_connection(a.connection_id().unwrap(), "go");
        let (sent, again) = recv(&rx);
        assert!(sent);
        assert_eq!(again, Some(Error::State(StateError::AlreadyStarted)));
        recv_until(&events, |e| matches!(e, Event::Stopped));
        a.stop(); // joins the threads the asynchronous stop left
        assert_eq!(a.state(), ClientState::Stopped);
    }

    fn handlers_survive_reconnects_and_can_be_removed(p: Protocol) {
        // B16
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        // Handlers run in the order they were added: the second one reports after the first
        // ran (or would have run), so what the first did is known when the second reports.
        let (tx, seen) = crossbeam_channel::unbounded();
        let t = tx.clone();
        let sub = a.on_server_message(move |m| {
            let _ = t.send(("removable", m.data.as_text().map(str::to_owned)));
        });
        let _marker = a.on_server_message(move |m| {
            let _ = tx.send(("marker", m.data.as_text().map(str::to_owned)));
        });
        let events = a.events();
        let hub = emu.hub(HUB);
        hub.close_connection(a.connection_id().unwrap(), "go away");
        recv_until(&events, is_connected);
        hub.send_to_connection(a.connection_id().unwrap(), "1");
        let one = Some("1".to_owned());
        assert_eq!(recv(&seen), ("removable", one.clone()), "the handler outlived the reconnect");
        assert_eq!(recv(&seen), ("marker", one));
        assert!(sub.remove());
        hub.send_to_connection(a.connection_id().unwrap(), "2");
        assert_eq!(
            recv(&seen),
            ("marker", Some("2".to_owned())),
            "a removed handler is not called"
        );
    }

    fn disconnected_carries_the_reason_and_close_code_once(p: Protocol) {
        // B10
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let events = a.events();
        let first = a.connection_id().unwrap();
        emu.hub(HUB).close_connection(&first, "kicked by admin");
        match recv_until(&events, |e| matches!(e, Event::Disconnected { .. })) {
            Event::Disconnected {
                connection_id,
                message,
                close_code,
            } => {
                assert_eq!(connection_id.as_deref(), Some(first.as_str()));
                assert_eq!(message.as_deref(), Some("kicked by admin"));
                assert_eq!(close_code, Some(1008));
            }
            _ => unreachable!(),
        }
        recv_until(&events, is_connected);
        assert_none_within(&events, Duration::from_millis(200), |e| {
            matches!(e, Event::Disconnected { .. })
        });
    }
}

#[test]
fn dropped_stream_receivers_are_pruned() {
    // B12
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
    let dropped = a.events();
    drop(dropped);
    let live = a.events();
    emu.hub(HUB)
        .send_to_connection(a.connection_id().unwrap(), "x");
    recv_until(&live, |e| matches!(e, Event::ServerMessage(_)));
}

#[test]
fn a_receiver_holds_the_event_before_the_callbacks_run() {
    // B12, and the GUI pattern of the crate docs: a callback that wakes a UI, which then
    // drains its receiver, finds there the event it was woken for.
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
    let inbox = a.events();
    let (tx, found) = crossbeam_channel::unbounded();
    let sub = a.on_server_message(move |m| {
        let data = m.data.clone();
        let there = inbox
            .try_iter()
            .any(|e| matches!(e, Event::ServerMessage(s) if s.data == data));
        let _ = tx.send(there);
    });
    for text in ["one", "two", "three"] {
        emu.hub(HUB)
            .send_to_connection(a.connection_id().unwrap(), text);
        assert_eq!(
            found.recv_timeout(WAIT),
            Ok(true),
            "`{text}` was not in the receiver when its callback ran"
        );
    }
    sub.remove();
}

per_protocol! {
    fn a_server_message_carries_the_metadata_the_application_server_sent(p: Protocol) {
        // B41: REST `X-WebPubSub-Metadata-*` headers reach the client's event.
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let events = a.events();
        rest_send_to_connection(&emu, &a.connection_id().unwrap(), "hi", &[("Trace-Id", "abc")]);
        rest_send_to_connection(&emu, &a.connection_id().unwrap(), "plain", &[]);
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Event::ServerMessage(m) = recv(&events) {
                got.push((m.data, m.metadata));
            }
        }
        assert_eq!(
            got,
            [
                (Data::from("hi"), Metadata::new().with("trace-id", "abc")),
                (Data::from("plain"), Metadata::new()),
            ]
        );
    }
}

per_protocol! {
    fn a_group_message_carries_its_publishers_metadata(p: Protocol) {
        // B41: through the service, whatever the receiver's subprotocol.
        let emu = Emulator::start().unwrap();
        let publisher = started_with(&emu, "pub", p);
        let receivers: Vec<_> = Protocol::ALL
            .into_iter()
            .map(|q| started_with(&emu, "sub", q))
            .collect();
        let streams: Vec<_> = receivers.iter().map(|r| r.events()).collect();
        for r in &receivers {
            r.join_group("g").unwrap();
        }
        let meta = Metadata::new().with("trace-id", "abc").with("origin", "test");
        let opts = webpubsub_client::RequestOptions::new()
            .metadata(meta.clone())
            .ttl_seconds(60);
        publisher.send_to_group_with("g", "with", &opts).unwrap();
        publisher.send_to_group("g", "without").unwrap();
        for (events, q) in streams.iter().zip(Protocol::ALL) {
            let mut got = Vec::new();
            while got.len() < 2 {
                if let Event::GroupMessage(m) = recv(events) {
                    got.push((m.data, m.metadata));
                }
            }
            assert_eq!(
                got,
                [
                    (Data::from("with"), meta.clone()),
                    (Data::from("without"), Metadata::new())
                ],
                "received over {q:?}"
            );
        }
    }
}
