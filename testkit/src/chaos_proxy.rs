//! The TCP relay of the tests: it sits between clients and a server (the emulator) on
//! `127.0.0.1:0` and, on a seeded schedule, cuts connections at chosen byte offsets (inside a
//! WebSocket frame, inside the HTTP upgrade), stalls them, or refuses them; tests can also
//! cut, pause and refuse by hand, record what is forwarded, and reach the relay's own sockets.
//! With [`Schedule::none`] it is a transparent relay.
//!
//! ```no_run
//! use std::time::Duration;
//! use webpubsub_testkit::chaos_proxy::{ChaosProxy, Direction, Schedule};
//!
//! # let emulator_addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
//! let proxy = ChaosProxy::start(emulator_addr, Schedule::random(7).cut_every_bytes(0..4096));
//! proxy.record(Direction::ToClient, true);
//! // connect the client to proxy.addr() instead of the emulator ...
//! let cut = proxy.events().recv_timeout(Duration::from_secs(5)).unwrap();
//! ```
//!
//! # Determinism
//!
//! Each accepted connection gets a [`Plan`] drawn from the schedule's seed and the
//! connection's index (0 for the first accepted, refused ones included), never from timing;
//! faults trigger at byte offsets, so a failing run replays with the same seed. The seed is
//! printed when the proxy starts; `CHAOS_SEED=<n>` (decimal or `0x` hex) overrides the seed
//! of every [`Schedule::random`].
//!
//! # What a cut looks like
//!
//! A cut forwards exactly N bytes in one direction, then shuts down both sockets in both
//! directions and closes them: no WebSocket close frame, no more bytes either way. A peer
//! sees EOF, or `ECONNRESET` when it had unread bytes in flight (Linux answers data arriving
//! at a closed socket with a reset). A true reset on demand (`SO_LINGER` 0) needs `unsafe`
//! or the `socket2` crate; the tests do not need the difference, so "reset" here is the
//! same abrupt shutdown, taken at once rather than at a byte offset ([`ChaosProxy::cut`]).
//!
//! # Threads
//!
//! One accept thread, and one thread per direction per connection, all blocking; reads and
//! writes have a short timeout only so that a thread notices a stop even if a shutdown did
//! not wake it. Dropping the proxy (or [`ChaosProxy::stop`]) cuts every connection and
//! joins every thread within a bounded time.
use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::rng::{env_u64, Rng};

/// How often a blocked thread wakes to look for a stop it was not told about.
const POLL: Duration = Duration::from_millis(250);
/// How long the proxy tries to reach its target for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`ChaosProxy::stop`] waits for its threads.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Schedule

/// The direction bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server (the emulator).
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// Which directions a random fault may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directions {
    /// Only client → server.
    ToServer,
    /// Only server → client.
    ToClient,
    /// Either, drawn at random per connection.
    Both,
}

/// What happens to one connection: drawn from the schedule by [`Schedule::plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Cut the connection after exactly this many bytes in this direction.
    pub cut: Option<(Direction, u64)>,
    /// Stall the connection once this direction has forwarded some bytes.
    pub stall: Option<Stall>,
}

/// A stall: the whole connection stops forwarding (both directions) for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The direction whose byte count triggers the stall.
    pub direction: Direction,
    /// The stall starts once `direction` has forwarded exactly this many bytes.
    pub at_bytes: u64,
    /// How long nothing is forwarded.
    pub duration: Duration,
    /// Cut the connection when the stall ends, instead of resuming.
    pub then_cut: bool,
}

#[derive(Clone, Debug)]
struct CutSpec {
    probability: f64,
    bytes: Range<u64>,
    directions: Directions,
}

#[derive(Clone, Debug)]
struct StallSpec {
    probability: f64,
    at_bytes: Range<u64>,
    duration: Range<Duration>,
    then_cut: f64,
    directions: Directions,
}

/// When and how the proxy injects faults; see the module docs for determinism.
///
/// ```
/// # use std::time::Duration;
/// # use webpubsub_testkit::chaos_proxy::Schedule;
/// // Every connection cut somewhere in its first 4 KiB, in either direction;
/// // a third of them stalled for 0.5–2 s first, half of those cut after the stall.
/// let schedule = Schedule::random(42)
///     .cut_every_bytes(0..4096)
///     .stall_probability(0.33, Duration::from_millis(500)..Duration::from_secs(2))
///     .stall_then_cut(0.5);
/// // The plan of a connection is a function of the seed and its index only.
/// assert_eq!(schedule.plan(3), schedule.plan(3));
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    seed: u64,
    random: bool,
    spare_first: usize,
    cut: Option<CutSpec>,
    stall: Option<StallSpec>,
}

impl Schedule {
    /// No faults: a transparent proxy (manual faults still work).
    pub fn none() -> Schedule {
        Schedule {
            seed: 0,
            random: false,
            spare_first: 0,
            cut: None,
            stall: None,
        }
    }

    /// A seeded schedule, without faults until some are added. `CHAOS_SEED` in the
    /// environment overrides `seed`.
    pub fn random(seed: u64) -> Schedule {
        let seed = env_u64("CHAOS_SEED").unwrap_or(seed);
        Schedule {
            seed,
            random: true,
            ..Schedule::none()
        }
    }

    /// The seed plans are drawn from (after any `CHAOS_SEED` override).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Cuts every connection after a number of bytes drawn from `bytes`, in a direction
    /// drawn from [`Schedule::cut_directions`] (both by default).
    pub fn cut_every_bytes(mut self, bytes: Range<u64>) -> Schedule {
        assert!(!bytes.is_empty(), "empty byte range {bytes:?}");
        let spec = self.cut.get_or_insert(CutSpec {
            probability: 1.0,
            bytes: 0..1,
            directions: Directions::Both,
        });
        spec.bytes = bytes;
        self
    }

    /// Cuts only this fraction of connections (default 1).
    pub fn cut_probability(mut self, probability: f64) -> Schedule {
        self.cut_spec().probability = probability;
        self
    }

    /// The directions a scheduled cut may pick (default both).
    pub fn cut_directions(mut self, directions: Directions) -> Schedule {
        self.cut_spec().directions = directions;
        self
    }

    /// Cuts every connection after exactly `bytes` bytes toward `direction`.
    pub fn cut_at(self, direction: Direction, bytes: u64) -> Schedule {
        self.cut_every_bytes(bytes..bytes + 1)
            .cut_directions(match direction {
                Direction::ToServer => Directions::ToServer,
                Direction::ToClient => Directions::ToClient,
            })
    }

    /// Stalls this fraction of connections for a duration drawn from `duration`, once a
    /// direction drawn from [`Schedule::stall_directions`] has forwarded a number of bytes
    /// drawn from [`Schedule::stall_at_bytes`] (default `0..1024`).
    pub fn stall_probability(mut self, probability: f64, duration: Range<Duration>) -> Schedule {
        assert!(!duration.is_empty(), "empty duration range {duration:?}");
        let spec = self.stall_spec();
        spec.probability = probability;
        spec.duration = duration;
        self
    }

    /// Where stalls start (default `0..1024` bytes).
    pub fn stall_at_bytes(mut self, bytes: Range<u64>) -> Schedule {
        assert!(!bytes.is_empty(), "empty byte range {bytes:?}");
        self.stall_spec().at_bytes = bytes;
        self
    }

    /// The directions whose byte count may trigger a stall (default both).
    pub fn stall_directions(mut self, directions: Directions) -> Schedule {
        self.stall_spec().directions = directions;
        self
    }

    /// The fraction of stalls that end in a cut rather than resuming (default 0).
    pub fn stall_then_cut(mut self, probability: f64) -> Schedule {
        self.stall_spec().then_cut = probability;
        self
    }

    /// Stalls every connection for exactly `duration` once `direction` has forwarded
    /// exactly `at_bytes` bytes, then resumes (or cuts, with `then_cut`).
    pub fn stall_at(
        self,
        direction: Direction,
        at_bytes: u64,
        duration: Duration,
        then_cut: bool,
    ) -> Schedule {
        let directions = match direction {
            Direction::ToServer => Directions::ToServer,
            Direction::ToClient => Directions::ToClient,
        };
        self.stall_probability(1.0, duration..duration + Duration::from_nanos(1))
            .stall_at_bytes(at_bytes..at_bytes + 1)
            .stall_directions(directions)
            .stall_then_cut(if then_cut { 1.0 } else { 0.0 })
    }

    /// Leaves the first `n` connections alone (e.g. the client's first connect).
    pub fn spare_first(mut self, n: usize) -> Schedule {
        self.spare_first = n;
        self
    }

    /// The plan of the connection with this index (0 = the first accepted): a function of
    /// the seed and the index only.
    pub fn plan(&self, conn: usize) -> Plan {
        if conn < self.spare_first {
            return Plan::default();
        }
        let mut rng = Rng::new(self.seed ^ (conn as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        // Draw every number whether or not it is used, so that enabling one fault does not
        // shift the other's draws.
        let cut_roll = rng.unit();
        let cut_dir = rng.next_u64();
        let cut_bytes = rng.next_u64();
        let stall_roll = rng.unit();
        let stall_dir = rng.next_u64();
        let stall_bytes = rng.next_u64();
        let stall_nanos = rng.next_u64();
        let stall_cut_roll = rng.unit();
        let cut = self.cut.as_ref().and_then(|spec| {
            (cut_roll < spec.probability).then(|| {
                (
                    pick_direction(spec.directions, cut_dir),
                    in_range(&spec.bytes, cut_bytes),
                )
            })
        });
        let stall = self.stall.as_ref().and_then(|spec| {
            (stall_roll < spec.probability).then(|| {
                let lo = spec.duration.start.as_nanos() as u64;
                let hi = spec.duration.end.as_nanos() as u64;
                Stall {
                    direction: pick_direction(spec.directions, stall_dir),
                    at_bytes: in_range(&spec.at_bytes, stall_bytes),
                    duration: Duration::from_nanos(in_range(&(lo..hi), stall_nanos)),
                    then_cut: stall_cut_roll < spec.then_cut,
                }
            })
        });
        Plan { cut, stall }
    }

    fn cut_spec(&mut self) -> &mut CutSpec {
        self.cut
            .as_mut()
            .expect("call cut_every_bytes or cut_at before tuning cuts")
    }

    fn stall_spec(&mut self) -> &mut StallSpec {
        self.stall.get_or_insert(StallSpec {
            probability: 0.0,
            at_bytes: 0..1024,
            duration: Duration::ZERO..Duration::from_nanos(1),
            then_cut: 0.0,
            directions: Directions::Both,
        })
    }
}

fn pick_direction(directions: Directions, draw: u64) -> Direction {
    match directions {
        Directions::ToServer => Direction::ToServer,
        Directions::ToClient => Direction::ToClient,
        Directions::Both if draw & 1 == 0 => Direction::ToServer,
        Directions::Both => Direction::ToClient,
    }
}

fn in_range(range: &Range<u64>, draw: u64) -> u64 {
    range.start + draw % (range.end - range.start)
}

// ---------------------------------------------------------------------------------------
// Events and statistics

/// Why a connection was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// The plan's cut: exactly `at_bytes` bytes were forwarded toward `direction`.
    Scheduled {
        /// The direction whose byte count triggered the cut.
        direction: Direction,
        /// The bytes forwarded in that direction.
        at_bytes: u64,
    },
    /// The plan's stall ended in a cut.
    AfterStall,
    /// [`ChaosProxy::cut`] or [`ChaosProxy::cut_all`].
    Manual,
}

/// Something the proxy did, in the order it did it (per connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChaosEvent {
    /// A connection was accepted and its server side connected.
    Accepted {
        /// The connection's index.
        conn: usize,
        /// What the schedule has in store for it.
        plan: Plan,
    },
    /// A connection was accepted and closed at once ([`ChaosProxy::refuse_new`]).
    Refused {
        /// The connection's index.
        conn: usize,
    },
    /// The target could not be reached; the client's connection was closed.
    ConnectFailed {
        /// The connection's index.
        conn: usize,
        /// The connect error.
        error: String,
    },
    /// The proxy cut a connection; both sockets are already shut down.
    Cut {
        /// The connection's index.
        conn: usize,
        /// Why.
        reason: CutReason,
        /// Bytes forwarded client → server before the cut (exact for the direction of a
        /// scheduled cut; the other may count a chunk whose write the cut then failed).
        to_server: u64,
        /// Bytes forwarded server → client before the cut (same caveat).
        to_client: u64,
    },
    /// A connection stopped forwarding for a while.
    Stalled {
        /// The connection's index.
        conn: usize,
        /// The stall.
        stall: Stall,
    },
    /// A stalled connection forwards again.
    Resumed {
        /// The connection's index.
        conn: usize,
    },
    /// A connection ended without a cut (a peer closed or reset it).
    Closed {
        /// The connection's index.
        conn: usize,
        /// Bytes forwarded client → server.
        to_server: u64,
        /// Bytes forwarded server → client.
        to_client: u64,
    },
}

/// Counters since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Connections accepted and proxied (refused ones not included).
    pub accepted: usize,
    /// Connections refused by [`ChaosProxy::refuse_new`].
    pub refused: usize,
    /// Cuts performed, scheduled or manual.
    pub cuts: usize,
    /// Stalls started.
    pub stalls: usize,
    /// Bytes forwarded client → server.
    pub bytes_to_server: u64,
    /// Bytes forwarded server → client.
    pub bytes_to_client: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    refused: AtomicUsize,
    cuts: AtomicUsize,
    stalls: AtomicUsize,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
}

// ---------------------------------------------------------------------------------------
// The proxy

/// A fault-injecting TCP proxy; see the module docs.
pub struct ChaosProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    events: Receiver<ChaosEvent>,
    accept_thread: Option<JoinHandle<()>>,
    /// Disconnects when every proxy thread has ended: each holds a sender.
    alive: Receiver<()>,
}

struct Inner {
    target: SocketAddr,
    schedule: Schedule,
    /// Everything a forwarding thread may wait on; `wake` is notified on every change.
    control: Mutex<Control>,
    wake: Condvar,
    counters: Counters,
    events: Sender<ChaosEvent>,
    /// Connection threads, joined on stop; finished ones are pruned as new ones start.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Control {
    paused: bool,
    refusing: bool,
    stopping: bool,
    /// Live connections by index.
    conns: HashMap<usize, Arc<Conn>>,
    /// Connections in a stall (both directions hold their bytes while listed).
    stalled: HashMap<usize, Instant>,
    /// The directions being recorded ([`ChaosProxy::record`]).
    recording: Vec<Direction>,
    /// What was recorded, by connection and direction, in forwarding order.
    recorded: HashMap<(usize, Direction), Vec<u8>>,
}

struct Conn {
    index: usize,
    client: TcpStream,
    server: TcpStream,
    cut: AtomicBool,
    /// Forwarding threads still running; the last one out reports the end.
    running: AtomicUsize,
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl Conn {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    fn shutdown_both(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    fn forwarded(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }
}

impl fmt::Debug for ChaosProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosProxy")
            .field("addr", &self.addr)
            .field("target", &self.inner.target)
            .field("seed", &self.inner.schedule.seed)
            .finish()
    }
}

impl ChaosProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`, injecting the
    /// schedule's faults. Panics if it cannot listen (this is test support).
    pub fn start(target: SocketAddr, schedule: Schedule) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("chaos proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("chaos proxy: local address");
        if schedule.random {
            eprintln!(
                "chaos proxy {addr} -> {target}: seed {seed:#x} (replay with CHAOS_SEED={seed:#x})",
                seed = schedule.seed
            );
        }
        let (tx, rx) = unbounded();
        let inner = Arc::new(Inner {
            target,
            schedule,
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
            events: tx,
            threads: Mutex::new(Vec::new()),
        });
        let (alive_tx, alive_rx) = crossbeam_channel::bounded(0);
        let accept_inner = Arc::clone(&inner);
        let accept_thread = thread::Builder::new()
            .name("chaos-accept".into())
            .spawn(move || accept_loop(&accept_inner, listener, alive_tx))
            .expect("chaos proxy: spawn accept thread");
        ChaosProxy {
            addr,
            inner,
            events: rx,
            accept_thread: Some(accept_thread),
            alive: alive_rx,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The seed of the schedule (after any `CHAOS_SEED` override).
    pub fn seed(&self) -> u64 {
        self.inner.schedule.seed
    }

    /// What the proxy does, as it does it. Every clone of the receiver takes events from
    /// the same queue; the queue is unbounded, so an unread one costs only memory.
    pub fn events(&self) -> Receiver<ChaosEvent> {
        self.events.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.inner.counters;
        ChaosStats {
            accepted: c.accepted.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            cuts: c.cuts.load(Ordering::SeqCst),
            stalls: c.stalls.load(Ordering::SeqCst),
            bytes_to_server: c.bytes_to_server.load(Ordering::SeqCst),
            bytes_to_client: c.bytes_to_client.load(Ordering::SeqCst),
        }
    }

    /// Indices of the connections currently open, in ascending order.
    pub fn live_connections(&self) -> Vec<usize> {
        let mut live: Vec<usize> = self.inner.control.lock().conns.keys().copied().collect();
        live.sort_unstable();
        live
    }

    /// From now on, keeps (`on`) or stops keeping a copy of every byte forwarded toward
    /// `direction`, on every connection: what a test needs to learn what really crossed the
    /// wire (the service's reconnection tokens, say) without trusting any log.
    pub fn record(&self, direction: Direction, on: bool) {
        let mut control = self.inner.control.lock();
        control.recording.retain(|d| *d != direction);
        if on {
            control.recording.push(direction);
        }
    }

    /// The bytes recorded toward `direction`, one entry per connection (by index, ascending),
    /// each in forwarding order. A chunk whose write a cut failed may be included.
    pub fn recorded(&self, direction: Direction) -> Vec<(usize, Vec<u8>)> {
        let control = self.inner.control.lock();
        let mut out: Vec<(usize, Vec<u8>)> = control
            .recorded
            .iter()
            .filter(|((_, d), _)| *d == direction)
            .map(|((conn, _), bytes)| (*conn, bytes.clone()))
            .collect();
        out.sort_by_key(|(conn, _)| *conn);
        out
    }

    /// A handle on the relay's socket that faces the client of connection `conn`, while the
    /// connection is open: for socket-level facts such as `TCP_INFO` (how many segments the
    /// client's writes took). Reading from or writing to it would disturb the relay.
    pub fn client_socket(&self, conn: usize) -> Option<TcpStream> {
        let control = self.inner.control.lock();
        control.conns.get(&conn)?.client.try_clone().ok()
    }

    /// Cuts connection `conn` now, whatever it is doing. Returns false if it is not open.
    pub fn cut(&self, conn: usize) -> bool {
        let found = self.inner.control.lock().conns.get(&conn).cloned();
        match found {
            Some(c) => self.inner.cut(&c, CutReason::Manual),
            None => false,
        }
    }

    /// Cuts every open connection now; returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let all: Vec<Arc<Conn>> = self.inner.control.lock().conns.values().cloned().collect();
        all.iter()
            .filter(|c| self.inner.cut(c, CutReason::Manual))
            .count()
    }

    /// While paused, no byte is forwarded in either direction on any connection (bytes
    /// already read are held, later ones wait in the kernel); connections still open.
    pub fn pause(&self, paused: bool) {
        self.inner.control.lock().paused = paused;
        self.inner.wake.notify_all();
    }

    /// While refusing, new connections are accepted and closed at once.
    pub fn refuse_new(&self, refuse: bool) {
        self.inner.control.lock().refusing = refuse;
    }

    /// Cuts every connection and joins every thread, waiting at most a few seconds.
    /// Dropping the proxy does the same; calling it twice is harmless.
    pub fn stop(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        let conns: Vec<Arc<Conn>> = {
            let mut control = self.inner.control.lock();
            control.stopping = true;
            control.conns.values().cloned().collect()
        };
        self.inner.wake.notify_all();
        for conn in &conns {
            conn.cut.store(true, Ordering::SeqCst);
            conn.shutdown_both();
        }
        // The accept thread is blocked in accept(): wake it with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        // Every thread holds a sender of `alive`: the channel disconnects when the last
        // one ends. Nothing is ever sent, so the receive ends in disconnection or timeout.
        let all_ended = matches!(
            self.alive.recv_timeout(STOP_TIMEOUT),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        let mut threads = std::mem::take(&mut *self.inner.threads.lock());
        threads.push(accept_thread);
        if all_ended {
            // Each thread drops its sender as it returns: joining is a formality.
            for t in threads {
                let _ = t.join();
            }
        } else {
            let stuck = threads.iter().filter(|t| !t.is_finished()).count();
            let msg =
                format!("chaos proxy: {stuck} threads still running {STOP_TIMEOUT:?} after stop");
            if thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(inner: &Arc<Inner>, listener: TcpListener, alive: Sender<()>) {
    let mut next_index = 0usize;
    loop {
        let accepted = listener.accept();
        let (refusing, stopping) = {
            let control = inner.control.lock();
            (control.refusing, control.stopping)
        };
        if stopping {
            return;
        }
        let client = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Transient accept errors (EMFILE, ECONNABORTED): retry after a pause that a
                // stop cuts short, rather than spinning.
                let mut control = inner.control.lock();
                if !control.stopping {
                    inner.wake.wait_for(&mut control, POLL);
                }
                continue;
            }
        };
        let index = next_index;
        next_index += 1;
        if refusing {
            let _ = client.shutdown(Shutdown::Both);
            drop(client);
            inner.counters.refused.fetch_add(1, Ordering::SeqCst);
            inner.emit(ChaosEvent::Refused { conn: index });
            continue;
        }
        let server = match TcpStream::connect_timeout(&inner.target, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                let _ = client.shutdown(Shutdown::Both);
                inner.emit(ChaosEvent::ConnectFailed {
                    conn: index,
                    error: e.to_string(),
                });
                continue;
            }
        };
        if let Err(e) = start_connection(inner, &alive, index, client, server) {
            inner.emit(ChaosEvent::ConnectFailed {
                conn: index,
                error: format!("setting up sockets: {e}"),
            });
        }
    }
}

fn start_connection(
    inner: &Arc<Inner>,
    alive: &Sender<()>,
    index: usize,
    client: TcpStream,
    server: TcpStream,
) -> io::Result<()> {
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(POLL))?;
    }
    let plan = inner.schedule.plan(index);
    let conn = Arc::new(Conn {
        index,
        client: client.try_clone()?,
        server: server.try_clone()?,
        cut: AtomicBool::new(false),
        running: AtomicUsize::new(2),
        to_server: AtomicU64::new(0),
        to_client: AtomicU64::new(0),
    });
    let (client_w, server_w) = (client.try_clone()?, server.try_clone()?);
    inner.control.lock().conns.insert(index, Arc::clone(&conn));
    inner.counters.accepted.fetch_add(1, Ordering::SeqCst);
    inner.emit(ChaosEvent::Accepted {
        conn: index,
        plan: plan.clone(),
    });
    let mut threads = inner.threads.lock();
    threads.retain(|t| !t.is_finished());
    for (spawned_before, (direction, src, dst, name)) in [
        (Direction::ToServer, client, server_w, "up"),
        (Direction::ToClient, server, client_w, "down"),
    ]
    .into_iter()
    .enumerate()
    {
        let (pump_inner, pump_conn) = (Arc::clone(inner), Arc::clone(&conn));
        let (plan, alive) = (plan.clone(), alive.clone());
        let spawned = thread::Builder::new()
            .name(format!("chaos-{index}-{name}"))
            .spawn(move || {
                let _alive = alive;
                Pump {
                    inner: &pump_inner,
                    conn: &pump_conn,
                    direction,
                    src,
                    dst,
                    plan,
                }
                .run();
                pump_inner.finish(&pump_conn);
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                conn.cut.store(true, Ordering::SeqCst);
                conn.shutdown_both();
                // Account for the pumps that will never run, so the connection is retired.
                for _ in spawned_before..2 {
                    inner.finish(&conn);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

impl Inner {
    fn emit(&self, event: ChaosEvent) {
        // The proxy holds a receiver, so the send cannot fail while it exists.
        let _ = self.events.send(event);
    }

    /// Cuts `conn` unless it already is; true if this call cut it.
    fn cut(&self, conn: &Conn, reason: CutReason) -> bool {
        {
            let _control = self.control.lock();
            if conn.cut.swap(true, Ordering::SeqCst) {
                return false;
            }
        }
        self.wake.notify_all();
        conn.shutdown_both();
        self.counters.cuts.fetch_add(1, Ordering::SeqCst);
        self.emit(ChaosEvent::Cut {
            conn: conn.index,
            reason,
            to_server: conn.to_server.load(Ordering::SeqCst),
            to_client: conn.to_client.load(Ordering::SeqCst),
        });
        true
    }

    /// Called by each forwarding thread as it ends; the last one reports the end.
    fn finish(&self, conn: &Conn) {
        if conn.running.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let stopping = {
            let mut control = self.control.lock();
            control.conns.remove(&conn.index);
            control.stalled.remove(&conn.index);
            control.stopping
        };
        self.wake.notify_all();
        conn.shutdown_both();
        if !conn.is_cut() && !stopping {
            self.emit(ChaosEvent::Closed {
                conn: conn.index,
                to_server: conn.to_server.load(Ordering::SeqCst),
                to_client: conn.to_client.load(Ordering::SeqCst),
            });
        }
    }

    /// Keeps a copy of `bytes` if `direction` is being recorded.
    fn record(&self, conn: &Conn, direction: Direction, bytes: &[u8]) {
        let mut control = self.control.lock();
        if control.recording.contains(&direction) {
            control
                .recorded
                .entry((conn.index, direction))
                .or_default()
                .extend_from_slice(bytes);
        }
    }

    /// Blocks while the proxy is paused or the connection stalled. False once the
    /// connection is cut or the proxy stopping: the caller then drops what it holds.
    fn wait_until_forwardable(&self, conn: &Conn) -> bool {
        let mut control = self.control.lock();
        loop {
            if control.stopping || conn.is_cut() {
                return false;
            }
            if !control.paused && !control.stalled.contains_key(&conn.index) {
                return true;
            }
            self.wake.wait_for(&mut control, POLL);
        }
    }

    /// Runs a stall of `conn`; false if the connection is cut (by the stall or otherwise).
    fn stall(&self, conn: &Conn, stall: Stall) -> bool {
        let until = Instant::now() + stall.duration;
        {
            let mut control = self.control.lock();
            if control.stopping || conn.is_cut() {
                return false;
            }
            control.stalled.insert(conn.index, until);
        }
        self.counters.stalls.fetch_add(1, Ordering::SeqCst);
        self.emit(ChaosEvent::Stalled {
            conn: conn.index,
            stall,
        });
        let mut control = self.control.lock();
        while !control.stopping && !conn.is_cut() && Instant::now() < until {
            self.wake.wait_until(&mut control, until);
        }
        if control.stopping || conn.is_cut() {
            return false;
        }
        if stall.then_cut {
            // Still listed as stalled: the other direction forwards nothing meanwhile.
            MutexGuard::unlocked(&mut control, || self.cut(conn, CutReason::AfterStall));
            control.stalled.remove(&conn.index);
            return false;
        }
        control.stalled.remove(&conn.index);
        drop(control);
        self.wake.notify_all();
        self.emit(ChaosEvent::Resumed { conn: conn.index });
        true
    }
}

/// One direction of one connection.
struct Pump<'a> {
    inner: &'a Inner,
    conn: &'a Conn,
    direction: Direction,
    src: TcpStream,
    dst: TcpStream,
    plan: Plan,
}

impl Pump<'_> {
    fn run(mut self) {
        let cut_at = self
            .plan
            .cut
            .filter(|(d, _)| *d == self.direction)
            .map(|(_, n)| n);
        let mut stall = self.plan.stall.filter(|s| s.direction == self.direction);
        let mut buf = vec![0u8; 16 * 1024];
        let mut forwarded = 0u64;
        loop {
            if let Some(s) = stall.filter(|s| s.at_bytes == forwarded) {
                stall = None;
                if !self.inner.stall(self.conn, s) {
                    return;
                }
            }
            if cut_at == Some(forwarded) {
                self.inner.cut(
                    self.conn,
                    CutReason::Scheduled {
                        direction: self.direction,
                        at_bytes: forwarded,
                    },
                );
                return;
            }
            // Never read past the next trigger, so that it fires at its exact offset.
            let next = [cut_at, stall.map(|s| s.at_bytes)]
                .into_iter()
                .flatten()
                .filter(|&t| t > forwarded)
                .min();
            let want = next.map_or(buf.len(), |t| {
                (t - forwarded).min(buf.len() as u64) as usize
            });
            let n = match self.src.read(&mut buf[..want]) {
                Ok(0) => {
                    // The sender finished: pass the half-close on, keep the other way open.
                    let _ = self.dst.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => n,
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                    if self.stopped() {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    // The peer reset us (or a cut shut the socket): abort the other side too.
                    self.conn.shutdown_both();
                    return;
                }
            };
            if !self.inner.wait_until_forwardable(self.conn) {
                return;
            }
            // Count and record before writing, so that whoever sees a byte arrive also sees
            // it counted; take back the count of what could not be written.
            self.count(n as u64, true);
            self.inner.record(self.conn, self.direction, &buf[..n]);
            let unwritten = self.write_all(&buf[..n]);
            if unwritten > 0 {
                self.count(unwritten as u64, false);
                return;
            }
            forwarded += n as u64;
        }
    }

    fn count(&self, bytes: u64, add: bool) {
        let total = match self.direction {
            Direction::ToServer => &self.inner.counters.bytes_to_server,
            Direction::ToClient => &self.inner.counters.bytes_to_client,
        };
        for counter in [self.conn.forwarded(self.direction), total] {
            if add {
                counter.fetch_add(bytes, Ordering::SeqCst);
            } else {
                counter.fetch_sub(bytes, Ordering::SeqCst);
            }
        }
    }

    fn stopped(&self) -> bool {
        self.conn.is_cut() || self.inner.control.lock().stopping
    }

    /// Writes everything unless the connection fails or is cut; returns the bytes left
    /// unwritten (0 on success).
    fn write_all(&mut self, mut bytes: &[u8]) -> usize {
        while !bytes.is_empty() {
            match self.dst.write(bytes) {
                Ok(0) => return bytes.len(),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {
                    if self.stopped() {
                        return bytes.len();
                    }
                }
                Err(_) => {
                    self.conn.shutdown_both();
                    return bytes.len();
                }
            }
        }
        0
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
