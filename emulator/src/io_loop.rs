//! One I/O loop: a thread that owns many sockets and drives each one's state machine
//! (`request` until it is a WebSocket, then `connection`) whenever mio reports it ready,
//! its [`Link`] lists it on the loop's [`Notify`], or its timer comes due.
//!
//! Loop 0 also owns the listener — it accepts and gives each socket to the loop with the
//! fewest — and the reaper's tick, which ends dropped sessions whose recovery window
//! passed.
//!
//! A turn: wait (until the next timer, or not at all if a connection has more to do),
//! drive the connections with events, then those listed as woken (again until none is: a
//! connection's turn may wake another of the same loop), then those whose timer is due,
//! then those that spent their budget last turn.

use crate::connection::Connection;
use crate::messages;
use crate::request::{Driven, HttpConn};
use crate::shared::Shared;
use crate::upgrade::{self, Answerer, Upgraded};
use crate::wake::{Link, Notify};
use crate::wire::{FrameHandler, Io, Ready, Refused, Step, CLOSE_TIMEOUT};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: mio::Token = mio::Token(0);
const WAKER: mio::Token = mio::Token(1);
/// Connection `i` has the mio token `FIRST_CONN + i`; its `Link` lists that token.
const FIRST_CONN: usize = 2;
/// Listed when sockets wait in `Handle::incoming`.
const INCOMING: usize = usize::MAX;
/// How long a stop waits for the last graceful closes.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon accepting is tried again after it failed (out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What decides what a loop's sockets do: the emulator's protocol logic, or a test's.
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    pub on_frame: FrameHandler,
    pub on_upgrade: Answerer,
}

impl Hooks {
    pub const STANDARD: Hooks = Hooks {
        on_frame: messages::on_frame,
        on_upgrade: upgrade::answer,
    };
}

/// How other threads reach a loop.
pub(crate) struct Handle {
    pub notify: Arc<Notify>,
    /// Sockets accepted by loop 0 for this loop.
    incoming: Mutex<Vec<mio::net::TcpStream>>,
    /// Sockets given to it and not yet closed.
    load: AtomicUsize,
}

/// A socket in one of its lives.
enum Conn {
    Http(Box<HttpConn>),
    Ws(Box<Connection>),
    Refused(Box<Refused>),
}

impl Conn {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Conn::Http(c) => c.deadline(),
            Conn::Ws(c) => c.deadline(),
            Conn::Refused(c) => c.deadline(),
        }
    }
}

struct Slot {
    conn: Conn,
    /// The timer it is listed under in `Loop::timers`.
    timer: Option<Instant>,
}

/// The listener and the loops it gives sockets to (loop 0 only).
struct Acceptor {
    listener: mio::net::TcpListener,
    loops: Vec<Arc<Handle>>,
    retry_at: Option<Instant>,
}

pub(crate) struct Loop {
    index: usize,
    poll: mio::Poll,
    events: mio::Events,
    handle: Arc<Handle>,
    io: Io,
    on_upgrade: Answerer,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    timers: BTreeSet<(Instant, usize)>,
    /// Connections that spent their turn's budget with work left.
    again: Vec<usize>,
    woken: Vec<usize>,
    acceptor: Option<Acceptor>,
    /// The reaper's tick and when it is next due (loop 0 only).
    reap: Option<(Duration, Instant)>,
    stop_deadline: Option<Instant>,
}

impl Loop {
    /// A loop and its handle; nothing runs until [`run`](Self::run).
    pub fn new(index: usize, shared: Arc<Shared>, hooks: Hooks) -> io::Result<(Loop, Arc<Handle>)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let handle = Arc::new(Handle {
            notify: Notify::new(waker),
            incoming: Mutex::new(Vec::new()),
            load: AtomicUsize::new(0),
        });
        let lp = Loop {
            index,
            poll,
            events: mio::Events::with_capacity(1024),
            handle: handle.clone(),
            io: Io::new(shared, hooks.on_frame),
            on_upgrade: hooks.on_upgrade,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            timers: BTreeSet::new(),
            again: Vec::new(),
            woken: Vec::new(),
            acceptor: None,
            reap: None,
            stop_deadline: None,
        };
        Ok((lp, handle))
    }

    /// Makes this loop the acceptor (and the reaper) for `loops` (itself included).
    pub fn accept(
        &mut self,
        mut listener: mio::net::TcpListener,
        loops: Vec<Arc<Handle>>,
    ) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)?;
        self.acceptor = Some(Acceptor {
            listener,
            loops,
            retry_at: None,
        });
        let tick = (self.io.shared.cfg.recovery_window / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        self.reap = Some((tick, Instant::now() + tick));
        Ok(())
    }

    /// Runs until the emulator stops and every socket of the loop is closed.
    pub fn run(mut self) {
        self.handle.notify.enter();
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("emulator: I/O loop {} cannot poll: {e}", self.index);
                    self.close_all();
                    return;
                }
            }
            self.turn();
            if self.io.shared.stopping() && self.stopped() {
                return;
            }
        }
    }

    fn turn(&mut self) {
        let mut accept = false;
        let events = std::mem::replace(&mut self.events, mio::Events::with_capacity(0));
        for ev in events.iter() {
            match ev.token() {
                LISTENER => accept = true,
                WAKER => {}
                mio::Token(t) => {
                    let ready = Ready {
                        readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        writable: ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                    };
                    self.drive(t.wrapping_sub(FIRST_CONN), ready);
                }
            }
        }
        self.events = events;
        if accept {
            self.accept_all();
        }
        self.run_woken();
        let now = Instant::now();
        while let Some(&(at, i)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) {
                slot.timer = None;
            }
            self.drive(i, Ready::default());
        }
        for i in std::mem::take(&mut self.again) {
            self.drive(i, Ready::default());
        }
        // What those turns woke on this loop.
        self.run_woken();
        self.tick(now);
    }

    /// Drives every connection listed as woken, until none is.
    fn run_woken(&mut self) {
        loop {
            let mut woken = std::mem::take(&mut self.woken);
            self.handle.notify.take(&mut woken);
            if woken.is_empty() {
                self.woken = woken;
                return;
            }
            for &t in &woken {
                if t == INCOMING {
                    self.adopt_incoming();
                } else {
                    self.drive(t.wrapping_sub(FIRST_CONN), Ready::default());
                }
            }
            woken.clear();
            self.woken = woken;
        }
    }

    /// The reaper's tick and a failed accept's retry, when due.
    fn tick(&mut self, now: Instant) {
        if let Some((tick, due)) = &mut self.reap {
            if now >= *due {
                *due = now + *tick;
                self.io.shared.reap_expired();
            }
        }
        if self
            .acceptor
            .as_ref()
            .and_then(|a| a.retry_at)
            .is_some_and(|at| now >= at)
        {
            self.accept_all();
        }
    }

    fn timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.first().map(|(at, _)| *at),
            self.reap.map(|(_, due)| due),
            self.acceptor.as_ref().and_then(|a| a.retry_at),
            self.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        next.map(|at| at.saturating_duration_since(Instant::now()))
    }

    // ---- sockets in and out ----

    fn accept_all(&mut self) {
        let mut mine = Vec::new();
        if let Some(acceptor) = self.acceptor.as_mut() {
            acceptor.retry_at = None;
            loop {
                match acceptor.listener.accept() {
                    Ok((tcp, peer)) => {
                        log::trace!("emulator: accepted {peer}");
                        let target = acceptor
                            .loops
                            .iter()
                            .min_by_key(|h| h.load.load(Ordering::Relaxed))
                            .expect("at least one loop");
                        target.load.fetch_add(1, Ordering::Relaxed);
                        if Arc::ptr_eq(target, &self.handle) {
                            mine.push(tcp);
                        } else {
                            target.incoming.lock().push(tcp);
                            target.notify.push(INCOMING);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EMFILE and friends: the connection waits in the backlog; try
                        // again soon.
                        log::warn!("emulator: accept failed: {e}");
                        acceptor.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                        break;
                    }
                }
            }
        }
        for tcp in mine {
            self.adopt(tcp);
        }
    }

    fn adopt_incoming(&mut self) {
        let incoming = std::mem::take(&mut *self.handle.incoming.lock());
        for tcp in incoming {
            self.adopt(tcp);
        }
    }

    /// Takes a socket given to this loop (its `load` already counts it).
    fn adopt(&mut self, mut tcp: mio::net::TcpStream) {
        if self.stop_deadline.is_some() {
            self.handle.load.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let _ = tcp.set_nodelay(true);
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let token = FIRST_CONN + i;
        let registered = self.poll.registry().register(
            &mut tcp,
            mio::Token(token),
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        );
        let link = Arc::new(Link::new(self.handle.notify.clone(), token));
        let conn = match registered {
            Ok(()) => HttpConn::new(tcp, self.io.shared.cfg.tls.as_ref(), link),
            Err(e) => {
                log::warn!("emulator: cannot watch a socket: {e}");
                None
            }
        };
        let Some(conn) = conn else {
            self.free.push(i);
            self.handle.load.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        self.slots[i] = Some(Slot {
            conn: Conn::Http(Box::new(conn)),
            timer: None,
        });
        self.live += 1;
        self.drive(
            i,
            Ready {
                readable: true,
                writable: true,
            },
        );
    }

    fn remove(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        if let Some(at) = slot.timer {
            self.timers.remove(&(at, i));
        }
        self.free.push(i);
        self.live -= 1;
        self.handle.load.fetch_sub(1, Ordering::Relaxed);
        // Dropping the socket closes it (and takes it out of the poll).
        drop(slot);
    }

    // ---- driving ----

    /// One turn of connection `i` (if it still exists: a listed token may be stale).
    fn drive(&mut self, i: usize, ready: Ready) {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut ready = ready;
        let step = loop {
            match &mut slot.conn {
                Conn::Http(c) => match c.drive(&mut self.io, self.on_upgrade, ready) {
                    Driven::Step(step) => break step,
                    Driven::Upgraded(upgraded) => {
                        slot.conn = match upgraded {
                            Upgraded::Connection(c) => Conn::Ws(c),
                            Upgraded::Refused(r) => Conn::Refused(r),
                        };
                        // At once: its `connected` is queued, and frames may be buffered.
                        ready = Ready {
                            readable: true,
                            writable: true,
                        };
                    }
                },
                Conn::Ws(c) => break c.drive(&mut self.io, ready),
                Conn::Refused(c) => break c.drive(&mut self.io, ready),
            }
        };
        self.after(i, step);
    }

    fn after(&mut self, i: usize, step: Step) {
        if step == Step::Closed {
            return self.remove(i);
        }
        if step == Step::Again {
            self.again.push(i);
        }
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let want = slot.conn.deadline();
        if want != slot.timer {
            if let Some(at) = slot.timer {
                self.timers.remove(&(at, i));
            }
            if let Some(at) = want {
                self.timers.insert((at, i));
            }
            slot.timer = want;
        }
    }

    // ---- stopping ----

    /// Called after each turn once the emulator stops: the first time, stops accepting and
    /// starts every WebSocket's close. Returns whether the loop is done.
    fn stopped(&mut self) -> bool {
        if self.stop_deadline.is_none() {
            self.stop_deadline = Some(Instant::now() + STOP_TIMEOUT.max(CLOSE_TIMEOUT));
            self.acceptor = None;
            self.reap = None;
            for i in 0..self.slots.len() {
                let step = match self.slots[i].as_mut().map(|s| &mut s.conn) {
                    None => continue,
                    Some(Conn::Ws(c)) => c.stop(&mut self.io),
                    Some(Conn::Refused(_)) => continue,
                    Some(Conn::Http(_)) => Step::Closed,
                };
                self.after(i, step);
            }
        }
        self.adopt_incoming();
        if self.live == 0 {
            return true;
        }
        if self.stop_deadline.is_some_and(|at| Instant::now() >= at) {
            log::warn!(
                "emulator: I/O loop {} stops with {} sockets still closing",
                self.index,
                self.live
            );
            self.close_all();
            return true;
        }
        false
    }

    fn close_all(&mut self) {
        for i in 0..self.slots.len() {
            self.remove(i);
        }
    }
}
