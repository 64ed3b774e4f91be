//! The shared runtime (B44): any number of clients on one I/O thread and one dispatcher
//! thread, each keeping its own callback order, backpressure, recovery and lifecycle.
//!
//! Each test names its runtime's threads after itself, so that counting them is not
//! disturbed by the other tests of this binary.
mod support;

use crossbeam_channel::{bounded, unbounded};
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::{ClientState, Data, Event, Runtime, WebPubSubClient};
use webpubsub_emulator::{Emulator, Observation};

/// The threads whose (kernel, 15-byte) names start with `prefix`.
fn threads(prefix: &str) -> usize {
    webpubsub_testkit::process::count_threads(&[prefix])
}

/// Waits (at most a second: see `assert_client_threads`) until `n` threads start with
/// `prefix`.
fn assert_threads(prefix: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let now = threads(prefix);
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} threads named {prefix}*, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn runtime(name: &str) -> Runtime {
    Runtime::builder().thread_name(name).build()
}

fn on(rt: &Runtime, emu: &Emulator, user: &str) -> WebPubSubClient {
    init_log();
    builder(url(emu, user)).runtime(rt).build().unwrap()
}

fn text(e: &Event) -> Option<&str> {
    match e {
        Event::ServerMessage(m) => m.data.as_text(),
        Event::GroupMessage(m) => m.data.as_text(),
        _ => None,
    }
}

#[test]
fn clients_of_a_shared_runtime_run_on_its_two_threads_whatever_their_number() {
    // B44: 20 clients, two threads; each client's events() receiver and callbacks work; the
    // threads end with the last client and the runtime handle.
    let emu = Emulator::start().unwrap();
    let rt = runtime("rt-count");
    let clients: Vec<_> = (0..20).map(|i| on(&rt, &emu, &format!("u{i}"))).collect();
    assert_eq!(
        threads("rt-count"),
        0,
        "threads start with the first client"
    );
    let (tx, seen) = unbounded();
    let mut receivers = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let tx = tx.clone();
        // The emulator's group send comes from the server (`"from": "server"`).
        c.on_server_message(move |m| {
            let _ = tx.send((i, m.data.as_text().map(str::to_owned)));
        });
        receivers.push(c.events());
        c.start().unwrap().detach();
        c.join_group("all").unwrap();
    }
    assert_threads("rt-count-io", 1);
    assert_threads("rt-count-dispa", 1);
    assert_eq!(threads("rt-count"), 2);
    assert_eq!(client_threads(), 0, "no client has threads of its own");

    emu.hub(HUB).send_to_group("all", "hello");
    let mut got: Vec<usize> = (0..20)
        .map(|_| {
            let (i, t) = recv(&seen);
            assert_eq!(t.as_deref(), Some("hello"));
            i
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        (0..20).collect::<Vec<_>>(),
        "every client's callback ran once"
    );
    for rx in &receivers {
        recv_until(rx, |e| text(e) == Some("hello"));
    }
    assert_eq!(threads("rt-count"), 2);

    drop(clients);
    assert_eq!(
        threads("rt-count"),
        2,
        "the runtime handle keeps its threads"
    );
    drop(rt);
    assert_threads("rt-count", 0);
}

#[test]
fn a_slow_handler_of_one_client_delays_another_client_by_at_most_the_callback_in_hand() {
    // B44: A's handler blocks on a gate and A's backlog (bounded by its max_event_backlog)
    // fills; B's message, once B's I/O read it, is delivered after at most the one callback
    // of A that was running. (A dispatcher serving one queue for all clients in arrival
    // order would run A's whole backlog first.)
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let rt = runtime("rt-slow");
    let a = builder(url(&emu, "a"))
        .runtime(&rt)
        .max_event_backlog(8)
        .build()
        .unwrap();
    let b = on(&rt, &emu, "b");
    let (gate_tx, gate) = bounded::<()>(0);
    let (seen_tx, seen) = unbounded();
    let s = seen_tx.clone();
    a.on_server_message(move |m| {
        gate.recv_timeout(WAIT).expect("the test opens the gate");
        let _ = s.send(("a", m.data.as_text().map(str::to_owned)));
    });
    b.on_server_message(move |m| {
        let _ = seen_tx.send(("b", m.data.as_text().map(str::to_owned)));
    });
    let a = start(a);
    let b = start(b);
    let hub = emu.hub(HUB);
    let (a_id, b_id) = (a.connection_id().unwrap(), b.connection_id().unwrap());
    for n in 0..40 {
        assert!(hub.send_to_connection(&a_id, n.to_string()));
    }
    // A's first callback is in the gate: the next rendezvous would find it there.
    hub.send_to_connection(&b_id, "for b");
    // B's I/O read the message (and queued its event) before it acknowledged it.
    recv_until(&obs, |o| {
        matches!(o, Observation::Request { connection_id, message: ClientMessage::SequenceAck { .. }, .. }
            if *connection_id == b_id)
    });
    let mut a_before_b = 0;
    let mut a_seen = Vec::new();
    // Each gate token lets one of A's callbacks finish.
    let mut opened = 0;
    let open = |opened: &mut usize| {
        *opened += 1;
        gate_tx
            .send_timeout((), WAIT)
            .expect("A's next callback waits at the gate");
    };
    loop {
        open(&mut opened);
        match recv(&seen) {
            ("a", t) => {
                a_before_b += 1;
                a_seen.push(t.unwrap());
            }
            ("b", t) => {
                assert_eq!(t.as_deref(), Some("for b"));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        a_before_b <= 1,
        "{a_before_b} of A's callbacks ran before B's message"
    );
    // A's own events all arrive, in order, once its handler goes on (its backpressure paused
    // reading its socket alone).
    while a_seen.len() < 40 {
        if opened < 40 {
            open(&mut opened);
        }
        let (who, t) = recv(&seen);
        assert_eq!(who, "a");
        a_seen.push(t.unwrap());
    }
    let expected: Vec<String> = (0..40).map(|n: i32| n.to_string()).collect();
    assert_eq!(a_seen, expected);
    assert_eq!(b.state(), ClientState::Connected);
}

#[test]
fn one_clients_recovery_and_stop_touch_no_other_client_of_the_runtime() {
    // B44: A's connection drops and A recovers, then A stops and starts again; B keeps its
    // connection and its messages meanwhile.
    let emu = Emulator::start().unwrap();
    let rt = runtime("rt-own");
    let a = start(on(&rt, &emu, "a"));
    let b = start(on(&rt, &emu, "b"));
    let (a_events, b_events) = (a.events(), b.events());
    let b_id = b.connection_id().unwrap();
    let hub = emu.hub(HUB);

    let a_id = a.connection_id().unwrap();
    assert!(hub.drop_connection(&a_id));
    hub.send_to_connection(&b_id, "during a's recovery");
    recv_until(&b_events, |e| text(e) == Some("during a's recovery"));
    recv_until(&a_events, |e| {
        matches!(e, Event::Recovered { .. } | Event::Connected { .. })
    });
    assert!(hub.send_to_connection(a.connection_id().unwrap(), "a is back"));
    recv_until(&a_events, |e| text(e) == Some("a is back"));

    a.stop();
    recv_until(&a_events, |e| matches!(e, Event::Stopped));
    assert_eq!(a.state(), ClientState::Stopped);
    hub.send_to_connection(&b_id, "after a stopped");
    recv_until(&b_events, |e| text(e) == Some("after a stopped"));
    assert_eq!(b.connection_id().as_deref(), Some(b_id.as_str()));

    let a = start(a);
    assert!(hub.send_to_connection(a.connection_id().unwrap(), "a again"));
    recv_until(&a_events, |e| text(e) == Some("a again"));
    assert_eq!(threads("rt-own"), 2);
    b.send_event("e", Data::Text("b works".into())).unwrap();
}

#[test]
fn a_stop_from_a_callback_on_the_shared_dispatcher_ends_that_client_only() {
    // B44, B5: the callback runs on the runtime's dispatcher, so the stop is asynchronous
    // (waiting there would wait for itself); the other client goes on.
    let emu = Emulator::start().unwrap();
    let rt = runtime("rt-cb");
    let a = start(on(&rt, &emu, "a"));
    let b = start(on(&rt, &emu, "b"));
    let a_events = a.events();
    let b_events = b.events();
    let a2 = a.clone();
    // The callback holds a clone of A: removed at the end, or A (and the runtime it holds)
    // would live on.
    let sub = a.on_server_message(move |_| a2.stop());
    let hub = emu.hub(HUB);
    hub.send_to_connection(a.connection_id().unwrap(), "stop please");
    recv_until(&a_events, |e| matches!(e, Event::Stopped));
    hub.send_to_connection(b.connection_id().unwrap(), "still here");
    recv_until(&b_events, |e| text(e) == Some("still here"));
    assert_eq!(a.state(), ClientState::Stopped);
    sub.remove();
    drop((a, b));
    drop(rt);
    assert_threads("rt-cb", 0);
}

#[test]
fn a_runtime_without_clients_starts_no_thread_and_one_dropped_in_use_ends_with_its_clients() {
    let emu = Emulator::start().unwrap();
    let idle = runtime("rt-idle");
    let _unused = on(&idle, &emu, "nobody");
    assert_eq!(threads("rt-idle"), 0);

    let rt = runtime("rt-drop");
    let a = start(on(&rt, &emu, "a"));
    drop(rt);
    // The client holds the runtime: its threads go on.
    assert_eq!(threads("rt-drop"), 2);
    a.send_event("e", Data::Text("x".into())).unwrap();
    drop(a);
    assert_threads("rt-drop", 0);
}
