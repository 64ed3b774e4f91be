//! Requests: acks, ack ids, retries, timeouts, fire-and-forget, pipelining, input checks.
mod support;
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::protocol::{ClientMessage, ProtobufAny, RuleError};
use webpubsub_client::{
    Cancelled, Data, Error, Event, InvalidInput, Metadata, RequestOptions, RetryPolicy,
    TimeoutKind, WebPubSubClient,
};
use webpubsub_emulator::{Emulator, Observation};

/// Whether a refusal is the rule a case expects.
type RuleCheck = fn(&RuleError) -> bool;

fn ack_ids(obs: &crossbeam_channel::Receiver<Observation>) -> Vec<Option<u64>> {
    obs.try_iter()
        .filter_map(|o| match o {
            Observation::Request {
                message:
                    ClientMessage::JoinGroup { ack_id, .. }
                    | ClientMessage::LeaveGroup { ack_id, .. }
                    | ClientMessage::SendToGroup { ack_id, .. }
                    | ClientMessage::Event { ack_id, .. },
                ..
            } => Some(ack_id),
            _ => None,
        })
        .collect()
}

per_protocol! {
    fn ack_ids_count_from_one_unless_given(p: Protocol) {
        // B24
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        assert_eq!(a.join_group("g").unwrap().ack_id, 1);
        assert_eq!(a.send_to_group("g", "x").unwrap().ack_id, 2);
        let o = a
            .send_event_with("e", "y", &RequestOptions::new().ack_id(1000))
            .unwrap();
        assert_eq!(o.ack_id, 1000);
        assert_eq!(a.leave_group("g").unwrap().ack_id, 3);
        assert_eq!(ack_ids(&obs), [Some(1), Some(2), Some(1000), Some(3)]);
    }

    fn duplicate_is_reported_as_success(p: Protocol) {
        // B25
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        let opts = RequestOptions::new().ack_id(7);
        let first = a.send_event_with("e", "x", &opts).unwrap();
        assert!(!first.duplicate);
        let second = a.send_event_with("e", "x", &opts).unwrap();
        assert!(second.duplicate);
        assert_eq!(second.ack_id, 7);
    }

    fn forbidden_is_not_retried(p: Protocol) {
        // B25, B26
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let no_roles = emu.client_url(HUB).user_id("a").build();
        let a = start(builder(no_roles.as_str()).protocol(p).build().unwrap());
        let err = a.send_to_group("g", "x").unwrap_err();
        match &err {
            Error::Ack(f) => assert_eq!((f.ack_id, f.name.as_str()), (1, "Forbidden")),
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
        assert_eq!(ack_ids(&obs), [Some(1)], "sent once");
        assert!(matches!(a.join_group("g"), Err(Error::Ack(f)) if f.name == "Forbidden"));
    }

    fn transient_failures_are_retried_with_the_same_ack_id(p: Protocol) {
        // B26
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        emu.hub(HUB).fail_next_acks(a.connection_id().unwrap(), 2);
        let o = a
            .send_to_group_with("g", "x", &RequestOptions::new().no_echo(true))
            .unwrap();
        let sends: Vec<(Option<u64>, bool)> = obs
            .try_iter()
            .filter_map(|o| match o {
                Observation::Request {
                    message:
                        ClientMessage::SendToGroup {
                            ack_id, no_echo, ..
                        },
                    ..
                } => Some((ack_id, no_echo)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sends,
            vec![(Some(o.ack_id), true); 3],
            "same ack id and no_echo on every try"
        );
    }

    fn retries_give_up_after_the_policy_with_the_last_error(p: Protocol) {
        // B26
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        emu.hub(HUB).fail_next_acks(a.connection_id().unwrap(), 10);
        let err = a.send_event("e", "x").unwrap_err();
        assert!(
            matches!(err, Error::Ack(ref f) if f.name == "InternalServerError"),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }

    fn ack_timeout_bounds_the_wait(p: Protocol) {
        // B27
        let emu = Emulator::start().unwrap();
        let a = start(
            builder(url(&emu, "a")).protocol(p)
                .message_retry(RetryPolicy::none())
                .ack_timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        );
        emu.hub(HUB)
            .delay_acks(a.connection_id().unwrap(), Duration::from_secs(5));
        let t0 = Instant::now();
        let err = a.send_event("e", "x").unwrap_err();
        assert_eq!(err, Error::Timeout(TimeoutKind::Ack { ack_id: 1 }));
        assert!(t0.elapsed() < Duration::from_secs(2));
        // A per-call timeout overrides the client's.
        let err = a
            .send_event_timeout("e", "x", Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(TimeoutKind::Ack { .. })));
    }

    fn an_ack_arriving_before_the_wait_is_not_missed(p: Protocol) {
        // B27
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let h = a
            .send_event_nowait("e", "x", &RequestOptions::default())
            .unwrap();
        // The emulator reports the request after it answered it: the ack is on its way or here.
        next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        let o = h.wait_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(o.ack_id, 1);
    }

    fn fire_and_forget_sends_without_ack_id(p: Protocol) {
        // B28
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let o = a
            .send_event_with("e", "x", &RequestOptions::new().fire_and_forget(true))
            .unwrap();
        assert_eq!(o.ack_id, 0);
        next_request(&obs, |m| {
            matches!(m, ClientMessage::Event { ack_id: None, .. })
        });
        let bad = RequestOptions::new().fire_and_forget(true).ack_id(3);
        assert!(matches!(
            a.send_event_with("e", "x", &bad),
            Err(Error::InvalidInput(InvalidInput::Options(_)))
        ));
    }

    fn one_thread_keeps_a_thousand_requests_in_flight(p: Protocol) {
        // B29
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        let t0 = Instant::now();
        let handles: Vec<_> = (0..1000)
            .map(|i| {
                a.send_to_group_nowait("g", format!("{i}"), &RequestOptions::new().no_echo(true))
                    .unwrap()
            })
            .collect();
        let mut ids: Vec<u64> = handles.iter().map(|h| h.ack_id()).collect();
        for h in handles {
            assert!(!h.wait().unwrap().duplicate);
        }
        ids.dedup();
        assert_eq!(ids.len(), 1000);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    fn keep_alive_pings_while_connected(p: Protocol) {
        // B32
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let _a = start(
            builder(url(&emu, "a")).protocol(p)
                .keep_alive_interval(Duration::from_millis(50))
                .build()
                .unwrap(),
        );
        next_request(&obs, |m| matches!(m, ClientMessage::Ping));
        next_request(&obs, |m| matches!(m, ClientMessage::Ping));
    }

    fn invalid_inputs_are_typed_errors(p: Protocol) {
        // B35
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        assert!(matches!(
            a.join_group(""),
            Err(Error::InvalidInput(InvalidInput::GroupName(_)))
        ));
        let long = "g".repeat(1025);
        assert!(matches!(
            a.send_to_group(&long, "x"),
            Err(Error::InvalidInput(InvalidInput::GroupName(_)))
        ));
        assert!(a.join_group(&"g".repeat(1024)).is_ok());
        assert!(matches!(
            a.send_event("", "x"),
            Err(Error::InvalidInput(InvalidInput::EventName))
        ));
        // The limit counts the encoded frame: in JSON, base64 makes 800 KiB larger than
        // 1 MB; protobuf carries the bytes as they are.
        let big = vec![0u8; 800 * 1024];
        if p.is_binary() {
            assert!(a.send_to_group("g", big).is_ok());
        } else {
            assert!(matches!(
                a.send_to_group("g", big),
                Err(Error::InvalidInput(InvalidInput::PayloadTooLarge {
                    max: 1048576,
                    ..
                }))
            ));
        }
        assert!(matches!(
            a.send_to_group("g", vec![0u8; 1 << 20]),
            Err(Error::InvalidInput(InvalidInput::PayloadTooLarge {
                max: 1048576,
                ..
            }))
        ));
        for bad in [
            "ftp://x/client/hubs/h",
            "wss://x/client/",
            "not a url",
            "ws:///client/hubs/h",
        ] {
            assert!(
                matches!(
                    WebPubSubClient::new(bad),
                    Err(Error::InvalidInput(InvalidInput::Url(_)))
                ),
                "{bad}"
            );
        }
        assert!(WebPubSubClient::new("https://x.example/client/?hub=chat&access_token=t").is_ok());
    }

    fn requests_on_a_stopped_client_fail_with_stopped(p: Protocol) {
        let emu = Emulator::start().unwrap();
        let a = builder(url(&emu, "a")).protocol(p).build().unwrap();
        assert_eq!(a.send_event("e", "x"), Err(Error::Stopped));
        assert_eq!(
            a.send_event_with("e", "x", &RequestOptions::new().fire_and_forget(true)),
            Err(Error::Stopped)
        );
    }

    fn stop_interrupts_a_message_retry_backoff(p: Protocol) {
        // B5, B26
        let emu = Emulator::start().unwrap();
        let a = start(
            builder(url(&emu, "a")).protocol(p)
                .message_retry(RetryPolicy::fixed(Duration::from_secs(60), 3))
                .build()
                .unwrap(),
        );
        let obs = emu.observe();
        emu.hub(HUB).fail_next_acks(a.connection_id().unwrap(), 1);
        let c = a.clone();
        let req = std::thread::spawn(move || c.send_event("e", "x"));
        next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        // The InternalServerError ack follows at once; this pause (not a wait for an event) lets
        // the caller reach its 60 s backoff, so the stop below has to interrupt it. Without the
        // pause the test still holds, it only exercises less.
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        a.stop();
        assert!(t0.elapsed() < Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(req.join().unwrap(), Err(Error::Stopped));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    fn payload_types_round_trip(p: Protocol) {
        // B33
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        a.join_group("g").unwrap();
        let events = a.events();
        let payloads = [
            Data::from("text é \"quoted\""),
            Data::from(serde_json::json!({"n": 1, "a": [true, null]})),
            Data::from(vec![0u8, 1, 2, 255]),
            Data::from(ProtobufAny::new(
                "type.googleapis.com/demo.Id",
                vec![8, 150, 1],
            )),
            Data::json(&vec![1, 2, 3]).unwrap(),
        ];
        for p in &payloads {
            a.send_to_group("g", p.clone()).unwrap();
        }
        for p in &payloads {
            match recv_until(&events, |e| matches!(e, Event::GroupMessage(_))) {
                Event::GroupMessage(m) => assert_eq!(&m.data, p),
                _ => unreachable!(),
            }
        }
    }
}

per_protocol! {
    reliable;

    fn sequence_ack_follows_received_messages(p: Protocol) {
        // B31
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let hub = emu.hub(HUB);
        let id = a.connection_id().unwrap();
        hub.send_to_connection(&id, "1");
        let t0 = Instant::now();
        let m = next_request(&obs, |m| matches!(m, ClientMessage::SequenceAck { .. }));
        assert_eq!(m, ClientMessage::SequenceAck { sequence_id: 1 });
        assert!(t0.elapsed() < Duration::from_millis(1500));
        // Many messages: acked at once, before the one-second tick.
        let t0 = Instant::now();
        for i in 0..400 {
            hub.send_to_connection(&id, format!("{i}"));
        }
        let m = next_request(
            &obs,
            |m| matches!(m, ClientMessage::SequenceAck { sequence_id } if *sequence_id >= 301),
        );
        assert!(matches!(m, ClientMessage::SequenceAck { .. }));
        assert!(
            t0.elapsed() < Duration::from_millis(900),
            "{:?}",
            t0.elapsed()
        );
    }
}

per_protocol! {
    fn an_acked_wait_can_be_cancelled_from_another_thread(p: Protocol) {
        // B39: the outcome stays unknown and the error says so.
        let emu = Emulator::start().unwrap();
        let a = started_with(&emu, "a", p);
        emu.hub(HUB)
            .delay_acks(a.connection_id().unwrap(), Duration::from_secs(5));
        let h = a
            .send_event_nowait("e", "x", &RequestOptions::new())
            .unwrap();
        let ack_id = h.ack_id();
        let cancel = h.canceller();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let waiter = std::thread::spawn(move || done_tx.send(h.wait()).unwrap());
        let t0 = Instant::now();
        cancel.cancel();
        let err = recv(&done).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(err, Error::Cancelled(Cancelled::Request { ack_id }));
        assert_eq!(err.ack_id(), Some(ack_id));
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("outcome unknown"), "{err}");
        waiter.join().unwrap();
        cancel.cancel(); // idempotent
        // The late ack finds nobody; the next request is not disturbed.
        emu.hub(HUB)
            .delay_acks(a.connection_id().unwrap(), Duration::ZERO);
        assert!(a.send_event("e", "y").is_ok());
    }

    fn a_cancel_cuts_a_retry_backoff_short_and_stops_the_retries(p: Protocol) {
        // B26, B39
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = start(
            builder(url(&emu, "a"))
                .protocol(p)
                .message_retry(RetryPolicy::fixed(Duration::from_secs(60), 3))
                .build()
                .unwrap(),
        );
        emu.hub(HUB).fail_next_acks(a.connection_id().unwrap(), 1);
        let h = a
            .send_event_nowait("e", "x", &RequestOptions::new())
            .unwrap();
        let cancel = h.canceller();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || done_tx.send(h.wait()).unwrap());
        next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        // Whether the waiter is in its 60 s backoff yet or still reading the failed ack,
        // the cancel ends the wait at once and no second attempt goes out.
        cancel.cancel();
        let t0 = Instant::now();
        assert!(matches!(recv(&done), Err(Error::Cancelled(_))));
        assert!(t0.elapsed() < Duration::from_secs(2));
        a.send_to_group("g", "marker").unwrap();
        let mut seen = Vec::new();
        recv_until(&obs, |o| match o {
            Observation::Request { message, .. } => {
                seen.push(message.clone());
                matches!(message, ClientMessage::SendToGroup { .. })
            }
            _ => false,
        });
        assert!(
            !seen.iter().any(|m| matches!(m, ClientMessage::Event { .. })),
            "the cancelled event was not sent again: {seen:?}"
        );
    }

    fn metadata_and_a_time_to_live_go_out_with_a_send(p: Protocol) {
        // B41
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let meta = Metadata::new().with("trace-id", "abc").with("origin", "cli");
        let opts = RequestOptions::new().metadata(meta.clone()).ttl_seconds(60);
        a.send_to_group_with("g", "x", &opts).unwrap();
        let sent = next_request(&obs, |m| matches!(m, ClientMessage::SendToGroup { .. }));
        let ClientMessage::SendToGroup { ttl_seconds, .. } = &sent else { unreachable!() };
        assert_eq!((sent.metadata(), *ttl_seconds), (&meta, Some(60)));
        a.send_event_with("e", "y", &RequestOptions::new().metadata(meta.clone()))
            .unwrap();
        let sent = next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
        assert_eq!(sent.metadata(), &meta);
        // Without them, nothing is added.
        a.send_to_group("g", "z").unwrap();
        let sent = next_request(&obs, |m| matches!(m, ClientMessage::SendToGroup { .. }));
        let ClientMessage::SendToGroup { ttl_seconds, .. } = &sent else { unreachable!() };
        assert!(sent.metadata().is_empty() && ttl_seconds.is_none());
    }

    fn metadata_and_ttl_beyond_the_limits_are_refused_before_sending(p: Protocol) {
        // B35, B41: every limit, each a typed error carrying the protocol's rule; nothing
        // reaches the service.
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let a = started_with(&emu, "a", p);
        let too_big: Metadata = (0..9)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        let cases: Vec<(&str, RequestOptions, RuleCheck)> = vec![
            (
                "empty key",
                RequestOptions::new().metadata(Metadata::from([("", "v")])),
                |e| matches!(e, RuleError::InvalidMetadataKey { .. }),
            ),
            (
                "key with a space",
                RequestOptions::new().metadata(Metadata::from([("a b", "v")])),
                |e| matches!(e, RuleError::InvalidMetadataKey { .. }),
            ),
            (
                "key over 256 bytes",
                RequestOptions::new().metadata(Metadata::from([("k".repeat(257), "v".to_owned())])),
                |e| matches!(e, RuleError::MetadataKeyTooLong { bytes: 257 }),
            ),
            (
                "value with a line break",
                RequestOptions::new().metadata(Metadata::from([("k", "a\r\nb")])),
                |e| matches!(e, RuleError::InvalidMetadataValue { .. }),
            ),
            (
                "value not ASCII",
                RequestOptions::new().metadata(Metadata::from([("k", "é")])),
                |e| matches!(e, RuleError::InvalidMetadataValue { .. }),
            ),
            (
                "value over 1024 bytes",
                RequestOptions::new().metadata(Metadata::from([("k".to_owned(), "v".repeat(1025))])),
                |e| matches!(e, RuleError::MetadataValueTooLong { bytes: 1025, .. }),
            ),
            (
                "over 8 KiB in all",
                RequestOptions::new().metadata(too_big),
                |e| matches!(e, RuleError::MetadataTooLarge { .. }),
            ),
            (
                "time to live over 300 s",
                RequestOptions::new().ttl_seconds(301),
                |e| matches!(e, RuleError::TtlOutOfRange { seconds: 301 }),
            ),
        ];
        let mut wrong = Vec::new();
        for (what, opts, expected) in &cases {
            match a.send_to_group_with("g", "x", opts) {
                Err(Error::InvalidInput(InvalidInput::Rule(e))) if expected(&e) => {}
                other => wrong.push(format!("{what}: {other:?}")),
            }
        }
        // A time to live is for sendToGroup only; joins and leaves carry no metadata.
        let ttl = RequestOptions::new().ttl_seconds(10);
        let meta = RequestOptions::new().metadata(Metadata::from([("k", "v")]));
        for (what, r) in [
            ("event with ttl", a.send_event_with("e", "x", &ttl).map(drop)),
            ("join with metadata", a.join_group_with("g", &meta).map(drop)),
            ("leave with ttl", a.leave_group_with("g", &ttl).map(drop)),
        ] {
            if !matches!(r, Err(Error::InvalidInput(InvalidInput::Options(_)))) {
                wrong.push(format!("{what}: {r:?}"));
            }
        }
        // A protobuf payload that is not a serialised Any (B35).
        match a.send_to_group("g", Data::Protobuf(vec![0xff, 0xff])) {
            Err(Error::InvalidInput(InvalidInput::Rule(RuleError::InvalidProtobufPayload {
                ..
            }))) => {}
            other => wrong.push(format!("protobuf payload: {other:?}")),
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Only this marker reached the service.
        a.send_to_group_with("g", "marker", &RequestOptions::new().ttl_seconds(300))
            .unwrap();
        let first = next_request(&obs, |m| matches!(m, ClientMessage::SendToGroup { .. }));
        assert!(matches!(first, ClientMessage::SendToGroup { data, .. } if data == Data::from("marker")));
    }
}
