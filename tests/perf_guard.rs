//! Performance regression guard: counts that do not depend on the machine's
//! speed, so they hold in a debug build on a loaded CI box. Timing lives in
//! `examples/bench.rs` (BENCH.md).
//!
//! Every test takes `SERIAL`: the thread count and the process-wide allocation counter must
//! not see another test's threads or allocations.
#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::{Data, Protocol, RequestOptions, Runtime, WebPubSubClient};
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_testkit::chaos_proxy::{ChaosProxy, Schedule};
use webpubsub_testkit::process;

/// Counts every allocation of this test binary. `unsafe` is confined to this test file:
/// the crate itself forbids it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed, by the whole process.
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HUB: &str = "guard";
const WAIT: Duration = Duration::from_secs(10);
/// Burst size of the batching, sequence-ack and allocation checks.
const BURST: usize = 1_000;
/// Bounds of the protobuf rows (see their tests).
const PROTOBUF_RECEIVE_BOUND: f64 = 3.0;
const PROTOBUF_ACK_BOUND: f64 = 13.5;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn client_url(emu: &Emulator, group: &str) -> String {
    emu.client_url(HUB)
        .user_id("guard")
        .role("webpubsub.sendToGroup")
        .role("webpubsub.joinLeaveGroup")
        .group(group)
        .build()
}

fn client(url: &str) -> WebPubSubClient {
    client_with(url, Protocol::JsonReliable)
}

fn client_with(url: &str, protocol: Protocol) -> WebPubSubClient {
    WebPubSubClient::builder(url)
        .protocol(protocol)
        .start_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .recovery_retry_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// The tests of this file: the harness names each test's thread after it (the kernel keeps
/// 15 bytes), and may start one while another test holds `SERIAL`.
const TESTS: [&str; 10] = [
    "a_shared_runtime_runs_two_threads_however_many_clients_it_serves",
    "an_idle_clients_buffers_shrink_back_after_a_burst_of_large_messages",
    "an_idle_clients_buffers_shrink_back_after_a_burst_on_a_shared_runtime",
    "a_started_client_runs_exactly_two_threads",
    "queued_fire_and_forget_sends_go_out_in_a_few_writes",
    "a_burst_of_received_messages_gets_few_sequence_acks",
    "receiving_a_message_costs_a_bounded_number_of_allocations",
    "an_acked_request_costs_a_bounded_number_of_allocations",
    "receiving_a_protobuf_message_costs_a_bounded_number_of_allocations",
    "an_acked_protobuf_request_costs_a_bounded_number_of_allocations",
];

/// Threads that are neither the emulator's (whose connection threads come and go with
/// sockets) nor the test harness's. A client thread, named or not (an unnamed thread takes
/// its creator's name), is counted.
fn client_side_threads() -> Vec<process::Thread> {
    let me = std::thread::current().name().map(str::to_owned);
    process::threads()
        .into_iter()
        .filter(|t| {
            !t.name.starts_with("webpubsub-emula")
                && !TESTS
                    .iter()
                    .any(|test| test.starts_with(t.name.as_str()) && me.as_deref() != Some(test))
        })
        .collect()
}

/// `client_side_threads` once two snapshots 20 ms apart agree: a new thread carries its
/// creator's name until it names itself, so a snapshot taken during a spawn is off.
fn settled_client_side_threads() -> Vec<process::Thread> {
    let deadline = Instant::now() + WAIT;
    let mut last = client_side_threads();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = client_side_threads();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

extern "C" {
    fn getsockopt(fd: i32, level: i32, name: i32, value: *mut u8, len: *mut u32) -> i32;
}

/// `tcpi_data_segs_in` of a socket: TCP segments with data it received. On loopback with
/// `TCP_NODELAY` (the client sets it), each `send(2)` of a small frame is one segment, so
/// this counts the peer's writes without depending on how the reader coalesces them.
fn data_segments_in(s: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    const SOL_TCP: i32 = 6;
    const TCP_INFO: i32 = 11;
    /// Offset of `tcpi_data_segs_in` in `struct tcp_info` (linux/tcp.h, since 4.6).
    const DATA_SEGS_IN: usize = 152;
    let mut info = [0u8; 256];
    let mut len = info.len() as u32;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most `len`.
    let rc = unsafe {
        getsockopt(
            s.as_raw_fd(),
            SOL_TCP,
            TCP_INFO,
            info.as_mut_ptr(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
    assert!(
        len as usize >= DATA_SEGS_IN + 4,
        "tcp_info too short: {len}"
    );
    u32::from_ne_bytes(info[DATA_SEGS_IN..DATA_SEGS_IN + 4].try_into().unwrap())
}

/// Waits until `n` observations match `pred`; returns how many did in the end.
fn count_observations(
    obs: &crossbeam_channel::Receiver<Observation>,
    n: usize,
    mut pred: impl FnMut(&Observation) -> bool,
) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut got = 0;
    while got < n {
        match obs.recv_deadline(deadline) {
            Ok(o) if pred(&o) => got += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_started_client_runs_exactly_two_threads() {
    // Catches: a third thread per client (a timer, a writer, a thread per callback as in
    // the Python SDK), or a thread that outlives stop().
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let c = client(&client_url(&emu, "g"));
    let before = settled_client_side_threads();
    let guard = c.start().unwrap();
    guard.join_group("g2").unwrap();
    let during = settled_client_side_threads();
    assert_eq!(
        during.len(),
        before.len() + 2,
        "before {before:?}, started {during:?}"
    );
    drop(guard);
    let after = settled_client_side_threads();
    assert_eq!(
        after.len(),
        before.len(),
        "before {before:?}, after stop {after:?}"
    );
}

#[test]
fn queued_fire_and_forget_sends_go_out_in_a_few_writes() {
    // Catches: a flush (one send) per frame instead of one per batch. The batch is made
    // deterministic by queueing while the client is recovering (the relay is paused, so the
    // recovery's upgrade waits in it), so the I/O thread finds all BURST frames at once; what
    // is counted is the TCP data segments the relay's socket received from the client.
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let proxy = ChaosProxy::start(emu.addr(), Schedule::none());
    let url = client_url(&emu, "g").replace(&emu.addr().to_string(), &proxy.addr().to_string());
    let c = client(&url);
    let guard = c.start().unwrap();
    let conn = guard.connection_id().unwrap();
    let first = *proxy
        .live_connections()
        .last()
        .expect("the first connection");
    let recovering = guard.events();
    proxy.pause(true);
    assert!(emu.hub(HUB).drop_connection(&conn));
    let deadline = Instant::now() + WAIT;
    while !matches!(
        recovering.recv_deadline(deadline),
        Ok(webpubsub_client::Event::Recovering { .. })
    ) {
        assert!(Instant::now() < deadline, "no Recovering event");
    }
    let obs = emu.observe();
    let ff = RequestOptions::new().fire_and_forget(true);
    for i in 0..BURST {
        guard
            .send_to_group_with("nobody", format!("message {i}"), &ff)
            .unwrap();
    }
    // The recovery socket is accepted (and held by the paused relay) once its upgrade
    // request is in.
    let deadline = Instant::now() + WAIT;
    let recovery_socket = loop {
        let newest = proxy.live_connections().last().copied();
        if let Some(s) = newest
            .filter(|n| *n > first)
            .and_then(|n| proxy.client_socket(n))
        {
            if data_segments_in(&s) > 0 {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "no recovery attempt");
        std::thread::sleep(Duration::from_millis(5));
    };
    let before = data_segments_in(&recovery_socket);
    proxy.pause(false);
    let got = count_observations(&obs, BURST, |o| {
        matches!(
            o,
            Observation::Request {
                message: ClientMessage::SendToGroup { .. },
                ..
            }
        )
    });
    assert_eq!(got, BURST, "the queued sends arrived");
    let writes = data_segments_in(&recovery_socket) - before;
    eprintln!("TCP data segments for {BURST} queued frames: {writes}");
    // Batched: the queued frames in a few buffer-sized writes, perhaps a sequenceAck.
    // One send per frame measured 61 segments here (Linux autocorking merges some of
    // the small sends while earlier ones are still queued); batched, 3.
    assert!(
        writes <= 15,
        "{writes} TCP segments for {BURST} queued frames"
    );
}

#[test]
fn a_burst_of_received_messages_gets_few_sequence_acks() {
    // Catches: a sequenceAck per message (or per read), which doubles the upstream traffic
    // of a busy subscriber. The client acks every 300 new messages (and 1 s after the last).
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let c = client(&client_url(&emu, "g"));
    let guard = c.start().unwrap();
    let (received_tx, received) = crossbeam_channel::unbounded::<()>();
    let _sub = guard.on_server_message(move |_| {
        let _ = received_tx.send(());
    });
    let obs = emu.observe();
    let hub = emu.hub(HUB);
    for i in 0..BURST {
        hub.send_to_group("g", format!("message {i}"));
    }
    // Until the ack that covers the whole burst (at most ~1 s after the last message).
    let mut acks = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        match obs.recv_deadline(deadline) {
            Ok(Observation::Request {
                message: ClientMessage::SequenceAck { sequence_id },
                ..
            }) => {
                acks += 1;
                if sequence_id >= BURST as u64 {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => panic!("no sequenceAck for {BURST} within {WAIT:?} ({acks} acks)"),
        }
    }
    eprintln!("sequenceAcks for {BURST} received messages: {acks}");
    let deadline = Instant::now() + WAIT;
    for n in 0..BURST {
        received
            .recv_deadline(deadline)
            .unwrap_or_else(|_| panic!("only {n} of the {BURST} messages arrived"));
    }
    assert!(acks <= 10, "{acks} sequenceAcks for {BURST} messages");
}

#[test]
fn receiving_a_message_costs_a_bounded_number_of_allocations() {
    // Catches: per-message allocation growth on the receive path (a JSON tree per frame, a
    // clone per handler, a buffer per read).
    // 1.1 measured with the one-pass decoder; the two-pass decoder (two `String`s for
    // `type` and `from` per frame) measured 4.1.
    let per_message = allocations_per_received_message(Protocol::JsonReliable);
    assert!(
        per_message <= 2.0,
        "{per_message:.1} allocations per received message"
    );
}

#[test]
fn receiving_a_protobuf_message_costs_a_bounded_number_of_allocations() {
    // The same over protobuf.reliable (B42). 2.0 measured: the payload's `String`, and the
    // `from` field, which prost decodes into a `String` where the JSON one-pass decoder
    // compares it in place.
    let per_message = allocations_per_received_message(Protocol::ProtobufReliable);
    assert!(
        per_message <= PROTOBUF_RECEIVE_BOUND,
        "{per_message:.1} allocations per received protobuf message"
    );
}

/// The messages are queued in the emulator first (hold_outbound), so the counted window
/// holds the emulator writing them out and the client's I/O and dispatcher threads handling
/// them — the whole process, so the bounds have headroom for the emulator's share.
fn allocations_per_received_message(protocol: Protocol) -> f64 {
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let c = client_with(&client_url(&emu, "g"), protocol);
    let guard = c.start().unwrap();
    let conn = guard.connection_id().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let r = received.clone();
    let _sub = guard.on_server_message(move |_| {
        if r.fetch_add(1, Ordering::Relaxed) + 1 == BURST {
            let _ = done_tx.try_send(());
        }
    });
    let hub = emu.hub(HUB);
    assert!(hub.hold_outbound(&conn, true));
    let payload = "x".repeat(100);
    for _ in 0..BURST {
        hub.send_to_group("g", payload.as_str());
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(hub.hold_outbound(&conn, false));
    done_rx.recv_timeout(WAIT).expect("the burst arrived");
    let per_message = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / BURST as f64;
    eprintln!(
        "allocations per received message over {} (whole process): {per_message:.1}",
        protocol.name()
    );
    per_message
}

#[test]
fn an_acked_request_costs_a_bounded_number_of_allocations() {
    // Catches: per-request allocation growth on the acked-send path (a channel per waiter,
    // tree nodes in the ack table, a frame buffer that grows by reallocation, a JSON tree per
    // ack).
    // 12.0 measured, most of it the emulator's (17.0 with its earlier two-pass request
    // decoder). A crossbeam
    // `bounded(1)` channel per waiter (two allocations instead of one) makes 18; that and
    // a frame `String` grown by reallocation, as before, made 21-22.
    let per_request = allocations_per_acked_request(Protocol::JsonReliable);
    assert!(
        per_request <= 17.5,
        "{per_request:.1} allocations per acked request"
    );
}

#[test]
fn an_acked_protobuf_request_costs_a_bounded_number_of_allocations() {
    // The same over protobuf.reliable (B42). 12.0 measured, as for JSON.
    let per_request = allocations_per_acked_request(Protocol::ProtobufReliable);
    assert!(
        per_request <= PROTOBUF_ACK_BOUND,
        "{per_request:.1} allocations per acked protobuf request"
    );
}

/// BURST acked sends, pipelined from one thread, to a group without members: the window
/// holds the caller's encoding and registering, the I/O thread writing frames and resolving
/// acks, and the emulator decoding each request and encoding its ack — the whole process, so
/// the bounds have headroom for the emulator's share.
fn allocations_per_acked_request(protocol: Protocol) -> f64 {
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let c = client_with(&client_url(&emu, "g"), protocol);
    let guard = c.start().unwrap();
    let payload = "x".repeat(100);
    let opts = RequestOptions::new().no_echo(true);
    // Warm-up: the first requests size the ack table and the I/O buffers.
    let warm: Vec<_> = (0..BURST)
        .map(|_| {
            guard
                .send_to_group_nowait("nobody", payload.as_str(), &opts)
                .unwrap()
        })
        .collect();
    for h in warm {
        h.wait().unwrap();
    }
    let mut handles = Vec::with_capacity(BURST);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..BURST {
        handles.push(
            guard
                .send_to_group_nowait("nobody", payload.as_str(), &opts)
                .unwrap(),
        );
    }
    for h in handles.drain(..) {
        h.wait().unwrap();
    }
    let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / BURST as f64;
    eprintln!(
        "allocations per acked request over {} (whole process): {per_request:.1}",
        protocol.name()
    );
    per_request
}

#[test]
fn a_shared_runtime_runs_two_threads_however_many_clients_it_serves() {
    // B44. Catches: a thread per client (or per connection attempt) on a shared runtime.
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let rt = Runtime::new();
    let before = settled_client_side_threads();
    let mut clients = Vec::new();
    for n in [1, 10, 50] {
        while clients.len() < n {
            let c = WebPubSubClient::builder(client_url(&emu, "g"))
                .runtime(&rt)
                .start_timeout(WAIT)
                .build()
                .unwrap();
            c.start().unwrap().detach();
            clients.push(c);
        }
        let during = settled_client_side_threads();
        assert_eq!(
            during.len(),
            before.len() + 2,
            "{n} clients: before {before:?}, started {during:?}"
        );
    }
    drop(clients);
    drop(rt);
    let after = settled_client_side_threads();
    assert_eq!(
        after.len(),
        before.len(),
        "before {before:?}, after {after:?}"
    );
}

#[test]
fn an_idle_clients_buffers_shrink_back_after_a_burst_of_large_messages() {
    // B45. Catches: a read buffer, frame buffer, write buffer or event queue that keeps what
    // the largest message needed (tungstenite's never shrink), or a buffer per connection
    // that is allocated at its largest.
    let grown = bytes_kept_after_a_burst(None);
    assert!(grown <= KEPT_BOUND, "{grown} bytes kept after the burst");
}

#[test]
fn an_idle_clients_buffers_shrink_back_after_a_burst_on_a_shared_runtime() {
    // B45, on a shared runtime (its loop's one read buffer is allocated before the baseline).
    let rt = Runtime::new();
    let grown = bytes_kept_after_a_burst(Some(&rt));
    assert!(grown <= KEPT_BOUND, "{grown} bytes kept after the burst");
}

/// The burst: messages of `BIG` bytes each way.
const BIG: usize = 512 * 1024;
const BIG_COUNT: usize = 8;
/// What a burst may leave behind in the whole process (the client's and the emulator's
/// structures at their working size): one retained buffer of a large message exceeds it.
const KEPT_BOUND: i64 = 64 * 1024;

/// Live bytes of the process once idle after a burst of large messages, minus those once
/// idle before it (after a round of small ones).
fn bytes_kept_after_a_burst(runtime: Option<&Runtime>) -> i64 {
    let _s = serial();
    let emu = Emulator::start().unwrap();
    let mut b = WebPubSubClient::builder(client_url(&emu, "g"))
        .start_timeout(WAIT)
        .ack_timeout(WAIT);
    if let Some(rt) = runtime {
        b = b.runtime(rt);
    }
    let c = b.build().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let _sub = c.on_server_message(move |m| {
        let _ = tx.send(m.data.as_text().map_or(0, str::len));
    });
    let guard = c.start().unwrap();
    let conn = guard.connection_id().unwrap();
    let hub = emu.hub(HUB);
    // A round of small messages each way: what any traffic allocates once.
    let round = |size: usize, count: usize| {
        let payload = "x".repeat(size);
        for _ in 0..count {
            guard
                .send_to_group("nobody", Data::Text(payload.clone()))
                .unwrap();
            assert!(hub.send_to_connection(&conn, payload.as_str()));
        }
        for _ in 0..count {
            assert_eq!(rx.recv_timeout(WAIT), Ok(size));
        }
    };
    round(100, 4);
    let base = idle_live_bytes(i64::MIN);
    round(BIG, BIG_COUNT);
    round(100, 4);
    let after = idle_live_bytes(base + KEPT_BOUND);
    eprintln!(
        "live bytes once idle: {base} before, {after} after {BIG_COUNT} messages of {BIG} bytes each way"
    );
    drop(guard);
    after - base
}

/// The live bytes once they drop to `target` (or after 2 s): the client's sequence ack, and
/// with it the emulator's release of the acked messages, comes a few milliseconds after the
/// last delivery. This bounded re-check covers only that window.
fn idle_live_bytes(target: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        if live <= target || Instant::now() > deadline {
            return live;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
