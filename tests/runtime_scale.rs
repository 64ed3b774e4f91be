//! Many clients on one shared runtime (B44, B45): they connect to the emulator, exchange one
//! message each and stop; the runtime keeps two threads however many clients it serves, and
//! threads and file descriptors are back at their baseline afterwards.
//!
//! Alone in its binary: it counts the whole process's threads and descriptors. 1,000 clients
//! take a few seconds in a debug build on 2 cores; the 10,000-client run is `#[ignore]`d
//! (minutes in a debug build, and client and emulator in one process need about 20,000
//! descriptors): `cargo test --release --test runtime_scale -- --ignored`.
#![cfg(target_os = "linux")]

mod support;

use crossbeam_channel::unbounded;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::{Data, RequestOptions, Runtime, WebPubSubClient};
use webpubsub_emulator::Emulator;
use webpubsub_testkit::process;

/// Threads that start or stop the clients, in parallel.
const WORKERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    /// Every thread of the process but the test harness's.
    threads: usize,
    fds: usize,
}

fn usage() -> Usage {
    Usage {
        threads: process::threads()
            .iter()
            .filter(|t| !t.name.starts_with("thousand") && !t.name.starts_with("ten_thousand"))
            .count(),
        fds: process::open_fds(),
    }
}

/// Waits (at most 2 s) until threads and descriptors are back to `base`: a joined thread
/// leaves `/proc/self/task` a moment after `join()` returns, and the emulator closes its
/// side of each socket on its own threads. This bounded re-check covers only that window.
fn settle(base: Usage) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let u = usage();
        if (u.threads <= base.threads && u.fds <= base.fds) || Instant::now() > deadline {
            return u;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on each client from `WORKERS` threads.
fn each(clients: &[WebPubSubClient], f: impl Fn(usize, &WebPubSubClient) + Sync) {
    let chunk = clients.len().div_ceil(WORKERS);
    std::thread::scope(|s| {
        for (k, part) in clients.chunks(chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, c) in part.iter().enumerate() {
                    f(k * chunk + i, c);
                }
            });
        }
    });
}

fn run(n: usize) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    assert!(
        limit as usize > 2 * n + 200,
        "{n} clients and their emulator need about {} open files; the limit is {limit}",
        2 * n + 200
    );
    let emu = Emulator::start().unwrap();
    let base = usage();
    let rss_before = process::rss_kib();
    let began = Instant::now();

    let rt = Runtime::builder().thread_name("scale").build();
    let (tx, received) = unbounded();
    let clients: Vec<WebPubSubClient> = (0..n)
        .map(|i| {
            let c = builder(url(&emu, &format!("u{i}")))
                .runtime(&rt)
                .start_timeout(WAIT)
                .ack_timeout(WAIT)
                .build()
                .unwrap();
            let tx = tx.clone();
            c.on_server_message(move |m| {
                let _ = tx.send((i, m.data.as_text().map(str::to_owned)));
            });
            c
        })
        .collect();
    each(&clients, |_, c| {
        c.start().unwrap().detach();
    });
    let connected = began.elapsed();
    let during = usage();
    let rss = process::rss_kib();
    assert_eq!(
        process::count_threads(&["scale-"]),
        2,
        "the runtime's two threads"
    );
    assert_eq!(client_threads(), 0, "no client has threads of its own");
    assert_eq!(
        during.threads,
        base.threads + 2,
        "{n} clients added the runtime's two threads and nothing else"
    );

    // One acked send each, then one message from the service to each.
    let opts = RequestOptions::default();
    each(&clients, |i, c| {
        c.send_event_nowait("hello", Data::Text(format!("from {i}")), &opts)
            .unwrap()
            .wait()
            .unwrap();
    });
    emu.hub(HUB).send_to_all("hi");
    let mut got = vec![false; n];
    let deadline = Instant::now() + WAIT;
    for _ in 0..n {
        let (i, text) = received.recv_deadline(deadline).unwrap_or_else(|_| {
            panic!(
                "{} of {n} clients got the message",
                got.iter().filter(|g| **g).count()
            )
        });
        assert_eq!(text.as_deref(), Some("hi"));
        assert!(
            !std::mem::replace(&mut got[i], true),
            "client {i} got it twice"
        );
    }
    let exchanged = began.elapsed();

    let clients = Arc::new(clients);
    each(&clients, |_, c| c.stop());
    drop(clients);
    drop(rt);
    let after = settle(base);
    println!(
        "{n} clients on a shared runtime: connected in {connected:?}, exchanged by {exchanged:?}, \
         stopped by {:?}; threads {} -> {} -> {}, fds {} -> {} -> {}; VmRSS {rss_before} -> {rss} KiB \
         (client and emulator: {} KiB per connection)",
        began.elapsed(),
        base.threads,
        during.threads,
        after.threads,
        base.fds,
        during.fds,
        after.fds,
        (rss - rss_before) / n as u64
    );
    assert_eq!(
        after.threads, base.threads,
        "threads are back at the baseline"
    );
    assert_eq!(
        after.fds, base.fds,
        "file descriptors are back at the baseline"
    );
}

#[test]
fn thousand_clients_on_a_shared_runtime_connect_exchange_and_stop_on_two_threads() {
    // B44
    init_log();
    run(1_000);
}

#[test]
#[ignore = "minutes in a debug build and ~20,000 open files; run with --release --ignored"]
fn ten_thousand_clients_on_a_shared_runtime_connect_exchange_and_stop_on_two_threads() {
    init_log();
    run(10_000);
}
