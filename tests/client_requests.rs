//! Requests: acks, ack ids, retries, timeouts, fire-and-forget, pipelining, input checks.
mod support;
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::protocol::{ClientMessage, ProtobufAny};
use webpubsub_client::{
    Data, Error, Event, InvalidInput, RequestOptions, RetryPolicy, TimeoutKind, WebPubSubClient,
};
use webpubsub_emulator::{Emulator, Observation};

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

#[test]
fn ack_ids_count_from_one_unless_given() {
    // B24
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = started(&emu, "a");
    assert_eq!(a.join_group("g").unwrap().ack_id, 1);
    assert_eq!(a.send_to_group("g", "x").unwrap().ack_id, 2);
    let o = a
        .send_event_with("e", "y", &RequestOptions::new().ack_id(1000))
        .unwrap();
    assert_eq!(o.ack_id, 1000);
    assert_eq!(a.leave_group("g").unwrap().ack_id, 3);
    assert_eq!(ack_ids(&obs), [Some(1), Some(2), Some(1000), Some(3)]);
}

#[test]
fn duplicate_is_reported_as_success() {
    // B25
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
    let opts = RequestOptions::new().ack_id(7);
    let first = a.send_event_with("e", "x", &opts).unwrap();
    assert!(!first.duplicate);
    let second = a.send_event_with("e", "x", &opts).unwrap();
    assert!(second.duplicate);
    assert_eq!(second.ack_id, 7);
}

#[test]
fn forbidden_is_not_retried() {
    // B25, B26
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let no_roles = emu.client_url(HUB).user_id("a").build();
    let a = start(builder(no_roles.as_str()).build().unwrap());
    let err = a.send_to_group("g", "x").unwrap_err();
    match &err {
        Error::Ack(f) => assert_eq!((f.ack_id, f.name.as_str()), (1, "Forbidden")),
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(ack_ids(&obs), [Some(1)], "sent once");
    assert!(matches!(a.join_group("g"), Err(Error::Ack(f)) if f.name == "Forbidden"));
}

#[test]
fn transient_failures_are_retried_with_the_same_ack_id() {
    // B26
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = started(&emu, "a");
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

#[test]
fn retries_give_up_after_the_policy_with_the_last_error() {
    // B26
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
    emu.hub(HUB).fail_next_acks(a.connection_id().unwrap(), 10);
    let err = a.send_event("e", "x").unwrap_err();
    assert!(
        matches!(err, Error::Ack(ref f) if f.name == "InternalServerError"),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn ack_timeout_bounds_the_wait() {
    // B27
    let emu = Emulator::start().unwrap();
    let a = start(
        builder(url(&emu, "a"))
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

#[test]
fn an_ack_arriving_before_the_wait_is_not_missed() {
    // B27
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = started(&emu, "a");
    let h = a
        .send_event_nowait("e", "x", &RequestOptions::default())
        .unwrap();
    // The emulator reports the request after it answered it: the ack is on its way or here.
    next_request(&obs, |m| matches!(m, ClientMessage::Event { .. }));
    let o = h.wait_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(o.ack_id, 1);
}

#[test]
fn fire_and_forget_sends_without_ack_id() {
    // B28
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = started(&emu, "a");
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

#[test]
fn one_thread_keeps_a_thousand_requests_in_flight() {
    // B29
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
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

#[test]
fn sequence_ack_follows_received_messages() {
    // B31
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let a = started(&emu, "a");
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

#[test]
fn keep_alive_pings_while_connected() {
    // B32
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let _a = start(
        builder(url(&emu, "a"))
            .keep_alive_interval(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    next_request(&obs, |m| matches!(m, ClientMessage::Ping));
    next_request(&obs, |m| matches!(m, ClientMessage::Ping));
}

#[test]
fn invalid_inputs_are_typed_errors() {
    // B35
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
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
    let big = vec![0u8; 800 * 1024]; // base64 makes it larger than 1 MB
    assert!(matches!(
        a.send_to_group("g", big),
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

#[test]
fn requests_on_a_stopped_client_fail_with_stopped() {
    let emu = Emulator::start().unwrap();
    let a = builder(url(&emu, "a")).build().unwrap();
    assert_eq!(a.send_event("e", "x"), Err(Error::Stopped));
    assert_eq!(
        a.send_event_with("e", "x", &RequestOptions::new().fire_and_forget(true)),
        Err(Error::Stopped)
    );
}

#[test]
fn stop_interrupts_a_message_retry_backoff() {
    // B5, B26
    let emu = Emulator::start().unwrap();
    let a = start(
        builder(url(&emu, "a"))
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

#[test]
fn payload_types_round_trip() {
    // B33
    let emu = Emulator::start().unwrap();
    let a = started(&emu, "a");
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
