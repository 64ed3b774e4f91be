//! Many concurrent connections to one emulator: a handful of I/O threads serve them all,
//! every one gets a broadcast, and closing them leaves the emulator's sessions ended and its
//! threads and file descriptors at their baseline.
//!
//! - `a_thousand_connections_...` runs the emulator in this process: its threads, file
//!   descriptors and observations are this process's (10,000 would need 20,000 descriptors
//!   in one process, more than many machines allow).
//! - `ten_thousand_connections_...` runs the binary as a child and reads its threads, file
//!   descriptors and memory from `/proc/PID`, so the clients' memory is not counted.
//!
//! Both print what they measured (`--nocapture`); together they take about 8 s in a debug
//! build on 2 cores. Each raises its soft limit of open files if it must, and is skipped with
//! a message where the hard limit is too low.
//! The clients are bare tungstenite clients on blocking sockets with small buffers, driven one
//! after the other from the test's thread: each wait is bounded by its socket's timeouts.

mod support;

use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{RELIABLE, WAIT};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_protocol::{Data, ServiceMessage};
use webpubsub_testkit::process;

const HUB: &str = "scale";
/// The kernel's 15-byte name of every emulator thread (`webpubsub-emulator-io-N`).
const EMULATOR_THREADS: &str = "webpubsub-emula";
/// The most I/O threads the emulator starts by default.
const MAX_IO_THREADS: usize = 4;
/// What the emulator may use at 10,000 connections.
const RSS_BUDGET_KIB: u64 = 256 * 1024;

/// The tests measure the whole process: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Open WebSocket clients, driven one after the other.
struct Fleet {
    conns: Vec<WebSocket<TcpStream>>,
}

impl Fleet {
    /// Opens `n` connections to `url` and waits for each one's `connected`.
    fn open(addr: SocketAddr, url: &str, n: usize) -> Fleet {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(64 * 1024);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect #{i}: {e}"));
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            tcp.set_write_timeout(Some(WAIT)).unwrap();
            let req = support::request(url, Some(RELIABLE), None);
            let (mut ws, _) = tungstenite::client::client_with_config(req, tcp, Some(config))
                .unwrap_or_else(|e| panic!("upgrade #{i}: {e}"));
            match next_message(&mut ws) {
                ServiceMessage::Connected { .. } => {}
                other => panic!("#{i}: expected connected, got {other:?}"),
            }
            conns.push(ws);
        }
        Fleet { conns }
    }

    /// Every connection's next message is a server message with `text`.
    fn every_one_gets(&mut self, text: &str) {
        for (i, ws) in self.conns.iter_mut().enumerate() {
            match next_message(ws) {
                ServiceMessage::ServerMessage { data, .. } if data == Data::from(text) => {}
                other => panic!("#{i}: expected the broadcast, got {other:?}"),
            }
        }
    }

    /// Closes every connection with a close frame (which ends its session), then waits for
    /// each one's close reply.
    fn close_all(self) {
        let mut conns = self.conns;
        for ws in &mut conns {
            ws.close(None).expect("close frame");
        }
        for (i, mut ws) in conns.into_iter().enumerate() {
            loop {
                match ws.read() {
                    Ok(_) => {}
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Err(e) => panic!("#{i}: no close reply: {e}"),
                }
            }
        }
    }
}

fn next_message(ws: &mut WebSocket<TcpStream>) -> ServiceMessage {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return ServiceMessage::decode(&t).unwrap(),
            Ok(_) => {}
            Err(e) => panic!("read failed while waiting for a message: {e}"),
        }
    }
}

/// Makes room for `want` open files, or says why it cannot.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn raise_open_files(want: u64) -> Result<(), String> {
    #[repr(C)]
    struct RLimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    }
    const RLIMIT_NOFILE: i32 = 7;
    let mut limit = RLimit { cur: 0, max: 0 };
    // SAFETY: `limit` is a valid `struct rlimit` (two `rlim_t`, u64 on 64-bit Linux) that
    // the call fills.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err("getrlimit(RLIMIT_NOFILE) failed".into());
    }
    if limit.cur >= want {
        return Ok(());
    }
    if limit.max < want {
        return Err(format!(
            "the hard limit of open files is {}, below the {want} needed",
            limit.max
        ));
    }
    let raised = RLimit {
        cur: want,
        max: limit.max,
    };
    // SAFETY: `raised` is a valid `struct rlimit` the call reads.
    if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!("setrlimit(RLIMIT_NOFILE, {want}) failed"));
    }
    Ok(())
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn raise_open_files(_want: u64) -> Result<(), String> {
    Err("the test reads /proc and raises RLIMIT_NOFILE as on 64-bit Linux".into())
}

/// Waits (bounded) until `done` holds: a socket's end is seen by the client a moment before
/// the emulator's loop closes its side, so this covers that window only.
fn settle(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_thousand_connections_are_served_by_a_handful_of_threads_and_leave_nothing_behind() {
    let _s = SERIAL.lock();
    let n = 1000;
    if let Err(why) = raise_open_files(2 * n as u64 + 256) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let hub = emu.hub(HUB);
    let io_threads = process::count_threads(&[EMULATOR_THREADS]);
    assert!(
        (1..=MAX_IO_THREADS).contains(&io_threads),
        "{io_threads} emulator threads"
    );
    let base_fds = process::open_fds();
    let base_rss = process::rss_kib();

    let t = Instant::now();
    let mut fleet = Fleet::open(emu.addr(), &emu.client_url(HUB).build(), n);
    let connect = t.elapsed();
    assert_eq!(
        process::count_threads(&[EMULATOR_THREADS]),
        io_threads,
        "no thread per connection"
    );
    assert_eq!(hub.connections().len(), n);
    let rss = process::rss_kib();

    let t = Instant::now();
    hub.send_to_all("hello, everyone");
    fleet.every_one_gets("hello, everyone");
    let broadcast = t.elapsed();

    let t = Instant::now();
    fleet.close_all();
    let close = t.elapsed();
    // A session ends before its close reply is sent.
    assert!(hub.connections().is_empty());
    let ended = obs
        .try_iter()
        .filter(|o| {
            matches!(o, Observation::SessionEnded { reason, .. } if reason == "closed by the client")
        })
        .count();
    assert_eq!(ended, n);
    settle("file descriptors back at the baseline", || {
        process::open_fds() <= base_fds
    });
    assert_eq!(
        process::count_threads(&[EMULATOR_THREADS]),
        io_threads,
        "threads at the baseline"
    );
    println!(
        "{n} connections in process: {io_threads} emulator threads; connect {connect:.2?}, \
         broadcast to all {broadcast:.2?}, close {close:.2?}; VmRSS of both sides {base_rss} -> {rss} KiB"
    );
    emu.stop();
}

/// A REST call to the binary, signed as the server SDKs sign it.
fn rest(addr: SocketAddr, key: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let token = webpubsub_emulator::rest_token(key, &url, Duration::from_secs(60));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = support::parse_response(&out);
    (r.status, r.body)
}

#[test]
fn ten_thousand_connections_to_the_binary_take_a_handful_of_threads_and_under_256_mib() {
    let _s = SERIAL.lock();
    let n = 10_000;
    if let Err(why) = raise_open_files(n as u64 + 256) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    const KEY: &str = "a-key-for-the-scale-test-of-the-emulator";
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_webpubsub-emulator"));
    cmd.args(["--port", "0", "--access-key", KEY]);
    // Killed when dropped, whatever happens.
    let child = process::Spawned::spawn(cmd).unwrap();
    let line = child
        .next_line(Instant::now() + WAIT)
        .unwrap_or_else(|e| panic!("no first line ({e:?}); stderr:\n{}", child.stderr()));
    let endpoint = line
        .strip_prefix("Endpoint=http://")
        .and_then(|l| l.split(';').next())
        .unwrap_or_else(|| panic!("not a connection string: {line}"));
    let addr: SocketAddr = endpoint.parse().unwrap();
    let pid = child.id();
    let base_threads = process::threads_of(pid).len();
    let base_fds = process::open_fds_of(pid);
    let base_rss = process::rss_kib_of(pid);

    let (status, body) = rest(
        addr,
        KEY,
        "POST",
        &format!("/api/hubs/{HUB}/:generateToken?group=all&api-version=2024-01-01"),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let url = format!(
        "ws://{addr}/client/hubs/{HUB}?access_token={}",
        token["token"].as_str().unwrap()
    );

    let t = Instant::now();
    let mut fleet = Fleet::open(addr, &url, n);
    let connect = t.elapsed();
    let threads = process::threads_of(pid);
    assert_eq!(threads.len(), base_threads, "no thread per connection");
    // The main thread and the I/O threads.
    assert!(threads.len() <= 1 + MAX_IO_THREADS, "{threads:?}");
    let rss = process::rss_kib_of(pid);
    assert!(
        rss < RSS_BUDGET_KIB,
        "{rss} KiB with {n} connections, over {RSS_BUDGET_KIB}"
    );

    let t = Instant::now();
    let path = format!("/api/hubs/{HUB}/:send?api-version=2024-01-01");
    assert_eq!(rest(addr, KEY, "POST", &path, b"hello, everyone").0, 202);
    fleet.every_one_gets("hello, everyone");
    let broadcast = t.elapsed();
    let rss_after_broadcast = process::rss_kib_of(pid);

    let t = Instant::now();
    fleet.close_all();
    let close = t.elapsed();
    // A session ends before its close reply is sent.
    let group = format!("/api/hubs/{HUB}/groups/all?api-version=2024-01-01");
    assert_eq!(
        rest(addr, KEY, "HEAD", &group, b"").0,
        404,
        "sessions ended"
    );
    settle("file descriptors back at the baseline", || {
        process::open_fds_of(pid) <= base_fds
    });
    assert_eq!(process::threads_of(pid).len(), base_threads);
    let rss_closed = process::rss_kib_of(pid);
    println!(
        "{n} connections to the binary: {} threads ({:?}); connect {connect:.2?}, broadcast to all \
         {broadcast:.2?}, close {close:.2?}; VmRSS {base_rss} KiB idle, {rss} KiB with {n} connections \
         ({:.1} KiB each), {rss_after_broadcast} KiB after the broadcast, {rss_closed} KiB after closing",
        threads.len(),
        threads.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        (rss - base_rss) as f64 / n as f64,
    );
    drop(child);
}
