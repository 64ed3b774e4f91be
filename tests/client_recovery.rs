//! Recovery (the reliable protocols), reconnect and rejoin, on every subprotocol (B42).
mod support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::{ClientState, Credential, Error, Event, RequestOptions};
use webpubsub_emulator::{Emulator, Observation};

per_protocol! {
    fn requests_of_a_lost_session_fail_with_connection_lost_and_retry_on_the_new_one(p: Protocol) {
        // B21, B26
        let emu = Emulator::start().unwrap();
        let a = builder(url(&emu, "a"))
            .protocol(p)
            .message_retry(webpubsub_client::RetryPolicy::none())
            .build()
            .unwrap();
        let a = start(a);
        let hub = emu.hub(HUB);
        let id = a.connection_id().unwrap();
        hub.delay_acks(&id, Duration::from_secs(30));
        emu.refuse_recoveries(true);
        let obs = emu.observe();
        let h = a
            .send_event_nowait("e", "x", &RequestOptions::default())
            .unwrap();
        next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        let events = a.events();
        hub.drop_connection(&id);
        let err = h.wait().unwrap_err();
        assert!(matches!(err, Error::ConnectionLost { ack_id } if ack_id == err.ack_id().unwrap()));
        assert!(err.is_retryable());
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, is_connected);
        assert!(a.send_event("e", "y").is_ok());
    }

    fn failed_rejoin_fires_rejoin_group_failed(p: Protocol) {
        // B13, B23
        let emu = Emulator::start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (c, full) = (calls.clone(), url(&emu, "a"));
        let no_roles = emu.client_url(HUB).user_id("a").build();
        let a = builder(Credential::from_fn(move || {
            Ok(if c.fetch_add(1, Ordering::SeqCst) == 0 {
                full.clone()
            } else {
                no_roles.clone()
            })
        }))
        .protocol(p)
        .build()
        .unwrap();
        let _g = a.start().unwrap();
        a.join_group("g").unwrap();
        let events = a.events();
        emu.hub(HUB)
            .close_connection(a.connection_id().unwrap(), "bye");
        match recv_until(&events, |e| matches!(e, Event::RejoinGroupFailed { .. })) {
            Event::RejoinGroupFailed { group, error } => {
                assert_eq!(group, "g");
                assert!(
                    matches!(error, Error::Ack(ref f) if f.name == "Forbidden"),
                    "{error:?}"
                );
            }
            _ => unreachable!(),
        }
        recv_until(&events, is_connected);
    }
}

per_protocol! {
    reliable;

    fn recovery_keeps_groups_and_loses_nothing(p: Protocol) {
        // B19, B20, B21
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        let id = a.connection_id().unwrap();
        let events = a.events();
        let hub = emu.hub(HUB);
        // Messages before, during and after the drop; the ones received before the drop but not
        // yet sequence-acked are redelivered after the recovery and must be dropped.
        for i in 0..5 {
            hub.send_to_group("g", format!("m{i}"));
        }
        hub.drop_connection(&id);
        for i in 5..10 {
            hub.send_to_group("g", format!("m{i}"));
        }
        // Collect everything (messages may arrive before or after `Recovered`).
        let mut got = Vec::new();
        let mut all = Vec::new();
        let mut recovered = false;
        while got.len() < 15 {
            let e = events
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("only {all:?} arrived"));
            match &e {
                Event::ServerMessage(m) => got.push(m.data.as_text().unwrap().to_owned()),
                Event::Recovered { .. } => {
                    recovered = true;
                    for i in 10..15 {
                        hub.send_to_group("g", format!("m{i}"));
                    }
                }
                _ => {}
            }
            all.push(e);
        }
        assert!(recovered);
        assert_eq!(got, (0..15).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert_none_within(&events, Duration::from_millis(300), |e| {
            matches!(e, Event::ServerMessage(_))
        });
        assert_eq!(
            a.connection_id().as_deref(),
            Some(id.as_str()),
            "same session"
        );
        assert!(hub.group_members("g").contains(&id));
    }

    fn connected_does_not_fire_after_recovery(p: Protocol) {
        // B9, B14
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let events = a.events();
        emu.hub(HUB).drop_connection(a.connection_id().unwrap());
        recv_until(&events, |e| matches!(e, Event::Recovering { .. }));
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        // A server message after the recovery proves the event queue is drained up to here.
        emu.hub(HUB)
            .send_to_connection(a.connection_id().unwrap(), "x");
        let mut saw_connected = false;
        let mut extra_episode_events = 0;
        loop {
            match recv(&events) {
                Event::ServerMessage(_) => break,
                Event::Recovering { .. } | Event::Recovered { .. } => extra_episode_events += 1,
                e => saw_connected |= is_connected(&e),
            }
        }
        assert!(!saw_connected);
        assert_eq!(
            extra_episode_events, 0,
            "one Recovering/Recovered pair per episode"
        );
    }

    fn close_1008_leads_to_a_new_connection_and_rejoin(p: Protocol) {
        // B17, B18, B22, B23
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        let first = a.connection_id().unwrap();
        let events = a.events();
        emu.refuse_recoveries(true);
        emu.hub(HUB).drop_connection(&first);
        recv_until(&obs, |o| matches!(o, Observation::RecoveryRefused { .. }));
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, is_connected);
        let second = a.connection_id().unwrap();
        assert_ne!(first, second);
        assert!(
            emu.hub(HUB).group_members("g").contains(&second),
            "rejoined before `connected`"
        );
        assert_none_within(&obs, Duration::from_millis(200), |o| {
            matches!(o, Observation::RecoveryRefused { .. })
        });
    }

    fn requests_made_during_recovery_complete_after_it(p: Protocol) {
        // B30, B21
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let id = a.connection_id().unwrap();
        let hub = emu.hub(HUB);
        let events = a.events();
        hub.hold_outbound(&id, true); // the recovered `connected` waits: the client stays Recovering
        hub.drop_connection(&id);
        recv_until(&events, |e| matches!(e, Event::Recovering { .. }));
        assert_eq!(a.state(), ClientState::Recovering);
        let c = a.clone();
        let req = std::thread::spawn(move || c.join_group("late"));
        let c = a.clone();
        let req2 = std::thread::spawn(move || c.send_event("ev", "data"));
        hub.hold_outbound(&id, false);
        assert!(req.join().unwrap().is_ok());
        assert!(req2.join().unwrap().is_ok());
        assert!(hub.group_members("late").contains(&id));
    }

    fn a_lost_ack_is_resent_and_executed_once(p: Protocol) {
        // B21, B25, B26
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let b = started_with(&emu, "b", p);
        b.join_group("g").unwrap();
        let b_events = b.events();
        emu.hub(HUB).lose_next_ack(a.connection_id().unwrap());
        let outcome = a.send_to_group("g", "once").unwrap();
        assert!(
            outcome.duplicate,
            "the resend after recovery was answered Duplicate"
        );
        let ids: Vec<Option<u64>> = obs
            .try_iter()
            .filter_map(|o| match o {
                Observation::Request {
                    message: ClientMessage::SendToGroup { ack_id, .. },
                    ..
                } => Some(ack_id),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            [Some(outcome.ack_id), Some(outcome.ack_id)],
            "same ack id twice"
        );
        recv_until(&b_events, |e| matches!(e, Event::GroupMessage(_)));
        assert_none_within(&b_events, Duration::from_millis(300), |e| {
            matches!(e, Event::GroupMessage(_))
        });
    }

    fn dead_connection_is_detected_by_keep_alive_and_recovered(p: Protocol) {
        // B32
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = builder(url(&emu, "a"))
            .protocol(p)
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let _g = a.start().unwrap();
        next_request(&obs, |m| matches!(m, ClientMessage::Ping));
        let id = a.connection_id().unwrap();
        let events = a.events();
        emu.hub(HUB).hold_outbound(&id, true); // silence: no pong, nothing
        recv_until(&events, |e| matches!(e, Event::Recovering { .. }));
        emu.hub(HUB).hold_outbound(&id, false);
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        assert_eq!(a.connection_id().unwrap(), id);
    }
}

per_protocol! {
    plain;

    fn plain_protocols_reconnect_instead_of_recovering(p: Protocol) {
        // B17, B22
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = builder(url(&emu, "a"))
            .protocol(p)
            .build()
            .unwrap();
        let _g = a.start().unwrap();
        recv_until(&obs, |o| {
            matches!(
                o,
                Observation::Connected {
                    reliable: false,
                    ..
                }
            )
        });
        a.join_group("g").unwrap();
        let first = a.connection_id().unwrap();
        let events = a.events();
        emu.hub(HUB).drop_connection(&first);
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, is_connected);
        assert_ne!(a.connection_id().unwrap(), first);
        assert!(emu
            .hub(HUB)
            .group_members("g")
            .contains(&a.connection_id().unwrap()));
    }
}
