//! The chaos proxy itself, proved against plain TCP servers before any test trusts it.

use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use webpubsub_testkit::chaos_proxy::{
    ChaosEvent, ChaosProxy, CutReason, Direction, Plan, Schedule,
};

/// The bound on every wait in these tests.
const T: Duration = Duration::from_secs(5);

#[test]
fn bytes_pass_unchanged_without_faults() {
    let server = Server::start(echo);
    let proxy = ChaosProxy::start(server.addr, Schedule::none());
    let events = proxy.events();
    let data = pattern(300_000);
    let mut client = connect(proxy.addr());
    let writer = {
        let (mut w, data) = (client.try_clone().unwrap(), data.clone());
        thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let (got, end) = read_until_end(&mut client);
    writer.join().unwrap();
    assert_eq!(end, End::Eof);
    assert!(got == data, "echo differs: {} bytes back", got.len());
    assert_eq!(
        next_event(&events),
        ChaosEvent::Accepted {
            conn: 0,
            plan: Plan::default()
        }
    );
    assert_eq!(
        next_event(&events),
        ChaosEvent::Closed {
            conn: 0,
            to_server: 300_000,
            to_client: 300_000
        }
    );
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.cuts), (1, 0));
    assert_eq!(
        (stats.bytes_to_server, stats.bytes_to_client),
        (300_000, 300_000)
    );
}

#[test]
fn a_cut_toward_the_server_delivers_exactly_n_bytes_then_eof() {
    // 20,000 is more than the proxy's 16 KiB buffer: the cut lands in a second read.
    for n in [0u64, 1, 1000, 20_000] {
        let (sink_tx, sink_rx) = unbounded();
        let server = Server::start(move |s| sink(s, &sink_tx));
        let proxy = ChaosProxy::start(server.addr, Schedule::none().cut_at(Direction::ToServer, n));
        let events = proxy.events();
        let mut client = connect(proxy.addr());
        // The write may fail part way: the proxy stops reading at the cut.
        let _ = client.write_all(&pattern(50_000));
        let (got, end) = sink_rx.recv_timeout(T).expect("sink reports");
        assert_eq!(
            got.len() as u64,
            n,
            "server got {} bytes, cut at {n}",
            got.len()
        );
        assert_eq!(got, pattern(n as usize));
        assert_eq!(end, End::Eof, "cut at {n}");
        let (_, client_end) = read_until_end(&mut client);
        assert_ne!(client_end, End::TimedOut, "cut at {n}");
        skip_accepted(&events);
        assert_eq!(
            next_event(&events),
            ChaosEvent::Cut {
                conn: 0,
                reason: CutReason::Scheduled {
                    direction: Direction::ToServer,
                    at_bytes: n
                },
                to_server: n,
                to_client: 0
            }
        );
        assert_eq!(proxy.stats().cuts, 1);
    }
}

#[test]
fn a_cut_toward_the_client_delivers_exactly_n_bytes_then_eof() {
    for n in [0u64, 1, 777, 20_000] {
        let server = Server::start(|s| source(s, 50_000));
        let proxy = ChaosProxy::start(server.addr, Schedule::none().cut_at(Direction::ToClient, n));
        let events = proxy.events();
        let mut client = connect(proxy.addr());
        let (got, end) = read_until_end(&mut client);
        assert_eq!(
            got.len() as u64,
            n,
            "client got {} bytes, cut at {n}",
            got.len()
        );
        assert_eq!(got, pattern(n as usize));
        assert_eq!(end, End::Eof, "cut at {n}");
        skip_accepted(&events);
        assert!(matches!(
            next_event(&events),
            ChaosEvent::Cut { conn: 0, reason: CutReason::Scheduled { direction: Direction::ToClient, at_bytes }, to_client, .. }
                if at_bytes == n && to_client == n
        ));
    }
}

#[test]
fn the_same_seed_gives_the_same_cut_offsets() {
    let server = Server::start(echo);
    let schedule = Schedule::random(0xC4A0_5EED).cut_every_bytes(0..40_000);
    let run = |schedule: Schedule| -> Vec<CutReason> {
        let proxy = ChaosProxy::start(server.addr, schedule);
        let events = proxy.events();
        (0..6)
            .map(|conn| {
                let mut client = connect(proxy.addr());
                let writer = {
                    let mut w = client.try_clone().unwrap();
                    thread::spawn(move || {
                        let _ = w.write_all(&pattern(100_000));
                    })
                };
                let (_, end) = read_until_end(&mut client);
                assert_ne!(end, End::TimedOut);
                writer.join().unwrap();
                loop {
                    match next_event(&events) {
                        ChaosEvent::Cut {
                            conn: c, reason, ..
                        } => {
                            assert_eq!(c, conn);
                            break reason;
                        }
                        ChaosEvent::Accepted { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
            .collect()
    };
    let first = run(schedule.clone());
    let second = run(schedule.clone());
    assert_eq!(first, second, "seed {:#x}", schedule.seed());
    // And they are the ones the schedule predicts, spread over both directions and offsets.
    let planned: Vec<CutReason> = (0..6)
        .map(|i| {
            let (direction, at_bytes) = schedule.plan(i).cut.expect("every connection is cut");
            CutReason::Scheduled {
                direction,
                at_bytes,
            }
        })
        .collect();
    assert_eq!(first, planned);
    let mut offsets: Vec<u64> = planned
        .iter()
        .map(|r| match r {
            CutReason::Scheduled { at_bytes, .. } => *at_bytes,
            _ => unreachable!(),
        })
        .collect();
    offsets.dedup();
    assert!(offsets.len() > 1, "offsets do not vary: {offsets:?}");
}

#[test]
fn plans_depend_on_seed_and_index_only() {
    let schedule = || {
        Schedule::random(1)
            .cut_every_bytes(0..1_000_000)
            .stall_probability(0.5, Duration::from_millis(1)..Duration::from_secs(1))
            .stall_then_cut(0.5)
            .spare_first(2)
    };
    let (a, b) = (schedule(), schedule());
    let plans: Vec<Plan> = (0..64).map(|i| a.plan(i)).collect();
    // Any order of asking gives the same plans.
    let mut reversed: Vec<Plan> = (0..64).rev().map(|i| b.plan(i)).collect();
    reversed.reverse();
    assert_eq!(plans, reversed);
    assert_eq!(plans[0], Plan::default());
    assert_eq!(plans[1], Plan::default());
    assert!(plans[2..].iter().all(|p| p.cut.is_some()));
    let stalls = plans.iter().filter(|p| p.stall.is_some()).count();
    assert!(
        (10..=52).contains(&stalls),
        "{stalls} of 62 stalled at p=0.5"
    );
    let directions: Vec<Direction> = plans[2..].iter().map(|p| p.cut.unwrap().0).collect();
    assert!(directions.contains(&Direction::ToServer) && directions.contains(&Direction::ToClient));
}

#[test]
fn a_stall_holds_bytes_for_its_duration_then_resumes() {
    let server = Server::start(|s| source(s, 2000));
    let stall = Duration::from_millis(300);
    let proxy = ChaosProxy::start(
        server.addr,
        Schedule::none().stall_at(Direction::ToClient, 1000, stall, false),
    );
    let events = proxy.events();
    let mut client = connect(proxy.addr());
    let mut first = vec![0; 1000];
    client.read_exact(&mut first).unwrap();
    let first_half_at = Instant::now();
    let mut second = vec![0; 1000];
    client.read_exact(&mut second).unwrap();
    let waited = first_half_at.elapsed();
    first.extend_from_slice(&second);
    assert_eq!(first, pattern(2000));
    assert!(
        waited >= stall - Duration::from_millis(100),
        "stalled only {waited:?}"
    );
    skip_accepted(&events);
    assert!(
        matches!(next_event(&events), ChaosEvent::Stalled { conn: 0, stall: s } if s.at_bytes == 1000 && !s.then_cut)
    );
    assert_eq!(next_event(&events), ChaosEvent::Resumed { conn: 0 });
    assert_eq!(proxy.stats().stalls, 1);
}

#[test]
fn a_stall_can_end_in_a_cut() {
    let server = Server::start(|s| source(s, 2000));
    let proxy = ChaosProxy::start(
        server.addr,
        Schedule::none().stall_at(Direction::ToClient, 1000, Duration::from_millis(50), true),
    );
    let events = proxy.events();
    let mut client = connect(proxy.addr());
    let (got, end) = read_until_end(&mut client);
    assert_eq!(got, pattern(1000));
    assert_eq!(end, End::Eof);
    skip_accepted(&events);
    assert!(matches!(next_event(&events), ChaosEvent::Stalled { .. }));
    assert!(matches!(
        next_event(&events),
        ChaosEvent::Cut {
            conn: 0,
            reason: CutReason::AfterStall,
            to_client: 1000,
            ..
        }
    ));
}

#[test]
fn pause_holds_bytes_until_resumed() {
    let server = Server::start(echo);
    let proxy = ChaosProxy::start(server.addr, Schedule::none());
    let mut client = connect(proxy.addr());
    client.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut client, 1), b"a");
    proxy.pause(true);
    client.write_all(b"b").unwrap();
    // Nothing may arrive while paused: a bounded wait for silence.
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = client
        .read(&mut byte)
        .expect_err("a byte passed a paused proxy");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    client.set_read_timeout(Some(T)).unwrap();
    proxy.pause(false);
    assert_eq!(read_n(&mut client, 1), b"b");
    assert_eq!(proxy.stats().bytes_to_server, 2);
}

#[test]
fn refused_connections_are_accepted_then_closed() {
    let server = Server::start(echo);
    let proxy = ChaosProxy::start(server.addr, Schedule::none());
    let events = proxy.events();
    proxy.refuse_new(true);
    let mut refused = connect(proxy.addr());
    let (got, end) = read_until_end(&mut refused);
    assert!(got.is_empty());
    assert_ne!(end, End::TimedOut);
    assert_eq!(next_event(&events), ChaosEvent::Refused { conn: 0 });
    proxy.refuse_new(false);
    let mut ok = connect(proxy.addr());
    ok.write_all(b"hi").unwrap();
    assert_eq!(read_n(&mut ok, 2), b"hi");
    assert!(matches!(
        next_event(&events),
        ChaosEvent::Accepted { conn: 1, .. }
    ));
    assert_eq!((proxy.stats().refused, proxy.stats().accepted), (1, 1));
}

#[test]
fn manual_cuts_end_one_connection_or_all() {
    let server = Server::start(echo);
    let proxy = ChaosProxy::start(server.addr, Schedule::none());
    let events = proxy.events();
    let mut a = connect(proxy.addr());
    let mut b = connect(proxy.addr());
    for c in [&mut a, &mut b] {
        c.write_all(b"x").unwrap();
        assert_eq!(read_n(c, 1), b"x");
    }
    assert_eq!(proxy.live_connections(), vec![0, 1]);
    assert!(proxy.cut(0));
    assert!(!proxy.cut(0), "a connection is cut once");
    assert_eq!(read_until_end(&mut a), (Vec::new(), End::Eof));
    b.write_all(b"y").unwrap();
    assert_eq!(read_n(&mut b, 1), b"y");
    assert_eq!(proxy.cut_all(), 1);
    assert_eq!(read_until_end(&mut b), (Vec::new(), End::Eof));
    let cuts: Vec<usize> = std::iter::from_fn(|| events.recv_timeout(T).ok())
        .filter_map(|e| match e {
            ChaosEvent::Cut {
                conn,
                reason: CutReason::Manual,
                ..
            } => Some(conn),
            _ => None,
        })
        .take(2)
        .collect();
    assert_eq!(cuts, vec![0, 1]);
    assert_eq!(proxy.stats().cuts, 2);
}

#[test]
fn connect_failures_close_the_client() {
    // A port nobody listens on: bind one, then free it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = ChaosProxy::start(dead, Schedule::none());
    let events = proxy.events();
    let mut client = connect(proxy.addr());
    assert_ne!(read_until_end(&mut client).1, End::TimedOut);
    assert!(matches!(
        next_event(&events),
        ChaosEvent::ConnectFailed { conn: 0, .. }
    ));
}

#[test]
fn drop_stops_every_thread_promptly_even_mid_stall_and_paused() {
    let server = Server::start(echo);
    let proxy = ChaosProxy::start(
        server.addr,
        Schedule::none().stall_at(Direction::ToServer, 1, Duration::from_secs(60), false),
    );
    let events = proxy.events();
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(proxy.addr())).collect();
    for c in &mut clients {
        c.write_all(b"stall me").unwrap();
    }
    let mut stalled = 0;
    while stalled < 4 {
        if let ChaosEvent::Stalled { .. } = next_event(&events) {
            stalled += 1;
        }
    }
    proxy.pause(true);
    let started = Instant::now();
    drop(proxy);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    for c in &mut clients {
        assert_ne!(read_until_end(c).1, End::TimedOut);
    }
    // Every thread held the proxy's event sender: the queue disconnects once all ended.
    loop {
        match events.recv_timeout(T) {
            Ok(_) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("proxy threads still alive after drop: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).expect("connect to proxy");
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

fn next_event(events: &Receiver<ChaosEvent>) -> ChaosEvent {
    events.recv_timeout(T).expect("a proxy event within 5 s")
}

fn skip_accepted(events: &Receiver<ChaosEvent>) {
    assert!(matches!(next_event(events), ChaosEvent::Accepted { .. }));
}

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("bytes within 5 s");
    buf
}

/// How a stream ended for a reader.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
    TimedOut,
}

fn read_until_end(s: &mut TcpStream) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, End::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, End::TimedOut)
            }
            Err(_) => return (got, End::Reset),
        }
    }
}

fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads until the end and reports everything it got.
fn sink(mut s: TcpStream, report: &Sender<(Vec<u8>, End)>) {
    let _ = report.send(read_until_end(&mut s));
}

/// Sends `len` bytes of the pattern, then waits for the peer to go.
fn source(mut s: TcpStream, len: usize) {
    if s.write_all(&pattern(len)).is_ok() {
        read_until_end(&mut s);
    }
}

/// A plain TCP server on 127.0.0.1:0 running `handler` on a thread per connection;
/// dropping it stops accepting and joins the accept thread.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let accept = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    stream.set_read_timeout(Some(T)).unwrap();
                    stream.set_write_timeout(Some(T)).unwrap();
                    let handler = Arc::clone(&handler);
                    // Handlers end with their connection (every read and write is bounded).
                    thread::spawn(move || handler(stream));
                }
            })
        };
        Server {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, T);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
