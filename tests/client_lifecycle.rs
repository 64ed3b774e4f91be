//! Lifecycle: states, start, stop, restart, the guard, the credential provider, threads; on
//! every subprotocol (B42) where a service is involved.
mod support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::{
    ClientState, ConnectError, Credential, Error, Event, RetryPolicy, StateError, TimeoutKind,
    WebPubSubClient,
};
use webpubsub_emulator::{Emulator, Observation};

per_protocol! {
    fn start_returns_after_the_connected_message(p: Protocol) {
        // B3
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let client = builder(url(&emu, "a")).protocol(p).build().unwrap();
        let _g = client.start().unwrap();
        // The connection id is known when start returns: `connected` has arrived.
        let id = client
            .connection_id()
            .expect("connection id known at start");
        match recv_until(&obs, |o| matches!(o, Observation::Connected { .. })) {
            Observation::Connected {
                connection_id,
                reliable,
                ..
            } => {
                assert_eq!(connection_id, id);
                assert_eq!(reliable, p.is_reliable());
            }
            _ => unreachable!(),
        }
    }

    fn starting_twice_is_an_error(p: Protocol) {
        // B2
        let emu = Emulator::start().unwrap();
        let client = started_with(&emu, "a", p);
        assert_eq!(
            client.start().unwrap_err(),
            Error::State(StateError::AlreadyStarted)
        );
        assert_eq!(
            client.state(),
            ClientState::Connected,
            "the first run goes on"
        );
    }

    fn start_failure_with_401_reports_the_status_and_fires_no_stopped(p: Protocol) {
        // B3, B4
        let emu = Emulator::start().unwrap();
        let good = url(&emu, "a");
        let bad = good.replace("access_token=", "access_token=x");
        let client = builder(bad.as_str()).protocol(p).build().unwrap();
        let events = client.events();
        let err = client.start().unwrap_err();
        assert_eq!(err.http_status(), Some(401), "{err}");
        assert!(matches!(
            err,
            Error::Connect(ConnectError::Http { status: 401, .. })
        ));
        assert!(!err.is_retryable());
        assert_eq!(client.state(), ClientState::Stopped);
        assert_none_within(&events, Duration::from_millis(200), |_| true);
    }

    fn stop_is_idempotent_and_fires_disconnected_then_stopped(p: Protocol) {
        // B5, B11
        let emu = Emulator::start().unwrap();
        let client = started_with(&emu, "a", p);
        let events = client.events();
        client.stop();
        client.stop();
        assert_eq!(client.state(), ClientState::Stopped);
        // `Connected` may be delivered after `start` returned; it comes first if at all.
        let got: Vec<Event> = events.try_iter().filter(|e| !is_connected(e)).collect();
        assert!(
            matches!(
                got.as_slice(),
                [
                    Event::Disconnected {
                        close_code: Some(1000),
                        ..
                    },
                    Event::Stopped
                ]
            ),
            "{got:?}"
        );
    }

    fn stop_fails_waiting_requests_with_stopped(p: Protocol) {
        // B5
        let emu = Emulator::start().unwrap();
        let client = started_with(&emu, "a", p);
        let hub = emu.hub(HUB);
        hub.delay_acks(client.connection_id().unwrap(), Duration::from_secs(30));
        let c2 = client.clone();
        let obs = emu.observe();
        let waiter = std::thread::spawn(move || c2.join_group("g"));
        // The request reached the service (its ack is held back) before the stop.
        next_request(&obs, |m| matches!(m, ClientMessage::JoinGroup { .. }));
        client.stop();
        assert_eq!(waiter.join().unwrap(), Err(Error::Stopped));
        assert_eq!(client.join_group("g"), Err(Error::Stopped));
    }

    fn dropping_the_guard_stops_the_client(p: Protocol) {
        // B6
        let emu = Emulator::start().unwrap();
        let client = builder(url(&emu, "a")).protocol(p).build().unwrap();
        {
            let guard = client.start().unwrap();
            assert_eq!(guard.state(), ClientState::Connected);
            guard.join_group("g").unwrap();
        }
        assert_eq!(client.state(), ClientState::Stopped);
    }

    fn dropping_the_last_clone_stops_the_client(p: Protocol) {
        // B6
        let emu = Emulator::start().unwrap();
        let obs = emu.observe();
        let client = started_with(&emu, "a", p);
        drop(client);
        recv_until(&obs, |o| matches!(o, Observation::SessionEnded { .. }));
    }

    fn restart_after_stop_rejoins_remembered_groups(p: Protocol) {
        // B7
        let emu = Emulator::start().unwrap();
        let client = started_with(&emu, "a", p);
        client.join_group("g1").unwrap();
        client.join_group("g2").unwrap();
        client.leave_group("g2").unwrap();
        client.stop();
        let _g = client.start().unwrap();
        let id = client.connection_id().unwrap();
        let hub = emu.hub(HUB);
        assert!(
            hub.group_members("g1").contains(&id),
            "g1 rejoined at start"
        );
        assert!(!hub.group_members("g2").contains(&id), "g2 was left");
        assert_eq!(client.joined_groups(), ["g1"]);
    }

    fn auto_reconnect_off_stops_after_a_lost_session(p: Protocol) {
        // B11
        let emu = Emulator::start().unwrap();
        let client = builder(url(&emu, "a"))
            .protocol(p)
            .auto_reconnect(false)
            .build()
            .unwrap();
        let _g = client.start().unwrap();
        let events = client.events();
        emu.hub(HUB)
            .close_connection(client.connection_id().unwrap(), "bye");
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, |e| matches!(e, Event::Stopped));
        assert_eq!(client.state(), ClientState::Stopped);
        // Restart works after the client stopped by itself.
        let _g2 = client.start().unwrap();
    }

    fn exhausted_reconnect_retries_stop_the_client(p: Protocol) {
        // B11, B22
        let emu = Emulator::start().unwrap();
        let client = builder(url(&emu, "a"))
            .protocol(p)
            .recovery_window(Duration::from_millis(100))
            .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(10), 2))
            .build()
            .unwrap();
        let _g = client.start().unwrap();
        let events = client.events();
        emu.stop();
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, |e| matches!(e, Event::Stopped));
        assert_eq!(client.state(), ClientState::Stopped);
    }

    fn stop_during_a_reconnect_backoff_returns_at_once(p: Protocol) {
        // B5
        let emu = Emulator::start().unwrap();
        let client = builder(url(&emu, "a"))
            .protocol(p)
            .recovery_window(Duration::from_millis(100))
            .reconnect_retry(RetryPolicy::fixed(Duration::from_secs(60), 5))
            .build()
            .unwrap();
        let _g = client.start().unwrap();
        let events = client.events();
        emu.stop();
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        let deadline = Instant::now() + WAIT;
        while client.state() != ClientState::Disconnected {
            assert!(Instant::now() < deadline, "never reached the backoff");
            std::thread::yield_now();
        }
        let t0 = Instant::now();
        client.stop();
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t0.elapsed()
        );
        assert_eq!(client.state(), ClientState::Stopped);
    }
}

per_protocol! {
    reliable;

    fn states_follow_the_lifecycle(p: Protocol) {
        // B1
        let emu = Emulator::start().unwrap();
        let client = builder(url(&emu, "a")).protocol(p).build().unwrap();
        assert_eq!(client.state(), ClientState::Stopped);
        let guard = client.start().unwrap();
        assert_eq!(client.state(), ClientState::Connected);
        let id = client.connection_id().unwrap();
        assert_eq!(client.user_id().as_deref(), Some("a"));
        // Hold the recovered session's `connected` so the client stays Recovering.
        let hub = emu.hub(HUB);
        hub.hold_outbound(&id, true);
        let events = client.events();
        hub.drop_connection(&id);
        recv_until(&events, |e| matches!(e, Event::Recovering { .. }));
        assert_eq!(client.state(), ClientState::Recovering);
        hub.hold_outbound(&id, false);
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        assert_eq!(client.state(), ClientState::Connected);
        drop(guard);
        assert_eq!(client.state(), ClientState::Stopped);
    }

    fn provider_is_called_for_new_connections_never_for_recovery(p: Protocol) {
        // B8
        let emu = Emulator::start().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (c, u) = (calls.clone(), url(&emu, "a"));
        let client = builder(Credential::from_fn(move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(u.clone())
        }))
        .protocol(p)
        .build()
        .unwrap();
        let _g = client.start().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let events = client.events();
        let hub = emu.hub(HUB);
        hub.drop_connection(client.connection_id().unwrap());
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "recovery does not call the provider"
        );
        hub.close_connection(client.connection_id().unwrap(), "bye");
        recv_until(&events, is_connected);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a new connection does");
    }
}

#[test]
fn start_failure_on_a_closed_port_reports_the_io_error() {
    // B3, B4
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = builder(format!("ws://127.0.0.1:{port}/client/hubs/h?access_token=t").as_str())
        .build()
        .unwrap();
    let err = client.start().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect(ConnectError::Io {
                kind: std::io::ErrorKind::ConnectionRefused,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(client.state(), ClientState::Stopped);
}

#[test]
fn start_times_out_when_the_service_never_answers() {
    // B3: a listener that accepts and never answers the upgrade.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = builder(format!("ws://127.0.0.1:{port}/client/hubs/h?access_token=t").as_str())
        .start_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = client.start().unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::Start(_))),
        "{err:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(client.state(), ClientState::Stopped);
    drop(listener);
}

#[test]
fn provider_failure_is_a_credential_error() {
    // B3
    let client = builder(Credential::from_fn(|| Err("no token for you".into())))
        .build()
        .unwrap();
    let err = client.start().unwrap_err();
    assert_eq!(
        err,
        Error::Connect(ConnectError::Credential("no token for you".into()))
    );
    let client = builder(Credential::from_fn(|| panic!("provider bug")))
        .build()
        .unwrap();
    assert!(matches!(
        client.start().unwrap_err(),
        Error::Connect(ConnectError::Credential(_))
    ));
}

#[test]
fn debug_output_never_contains_the_token() {
    // B37
    let emu = Emulator::start().unwrap();
    let u = url(&emu, "a");
    let token = u.split("access_token=").nth(1).unwrap().to_owned();
    let client = builder(u.as_str()).build().unwrap();
    let _g = client.start().unwrap();
    let shown = format!("{client:?} {:?}", Credential::from(u.as_str()));
    assert!(!shown.contains(&token), "{shown}");
    let bad = WebPubSubClient::builder(format!("{u}&x=%zz").replace("ws://", "ftp://"))
        .build()
        .unwrap_err();
    assert!(!format!("{bad} {bad:?}").contains(&token));
}
