//! The I/O thread (`webpubsub-io`): one mio readiness loop that dials, reads, writes, keeps
//! the timers (sequence acks, keep-alive, recovery and reconnect backoff) and resolves acks.
//!
//! Request threads push onto the session's outbox and wake the loop through a `mio::Waker`;
//! the loop writes every queued frame and flushes once (batching). An idle connected client
//! sleeps in `poll` until the next keep-alive deadline. The socket is edge-triggered: reads go
//! on until `WouldBlock` (or a budget, then the loop comes back at once). User code never runs
//! here: events go to the dispatcher thread.

use crate::core::{Core, RunCtl};
use crate::endpoint::AccessUrl;
use crate::error::{Cause, ConnectError, Error, Result, TimeoutKind};
use crate::events::{run_dispatcher, Event};
use crate::protocol::{ClientMessage, Subprotocol};
use crate::timers::{ReconnectPlan, RecoveryPlan, Sequence};
use crate::transport::{Dialer, Stream};
use crate::wire::WireFrame;
use crossbeam_channel::Sender;
use mio::{Events, Poll, Token, Waker};
use std::io::ErrorKind;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::WebSocket;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// While reading is paused for a full event backlog, how often the loop looks whether it
/// drained (the consumers cannot wake it: one of them may be a user's `Receiver`).
const BACKLOG_RECHECK: Duration = Duration::from_millis(5);
/// How long `stop()` waits for the service to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

mod dial;
mod ended;
mod receive;

/// Starts a run: the dispatcher and I/O threads. `threads` holds the previous run's threads,
/// if the caller could not join them (a start from a callback runs on one of them): the new
/// dispatcher joins them before its first event, so that callbacks still run one at a time.
/// On success `threads` holds the new run's two threads; on failure it is unchanged.
pub(crate) fn spawn(core: Arc<Core>, threads: &mut Vec<JoinHandle<()>>) -> Result<Arc<RunCtl>> {
    let poll = Poll::new().map_err(Error::io)?;
    let waker = Waker::new(poll.registry(), WAKER).map_err(Error::io)?;
    let run = Arc::new(RunCtl::new(waker));
    core.attach_run(run.clone());
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    // The previous run's threads, handed over once both new threads exist.
    let (previous_tx, previous_rx) = crossbeam_channel::bounded::<Vec<JoinHandle<()>>>(1);
    let registry = core.registry.clone();
    let core_d = core.clone();
    let dispatch = std::thread::Builder::new()
        .name("webpubsub-dispatch".into())
        .spawn(move || {
            core_d.mark_own_thread();
            // Only the address is kept: the dispatcher must not keep the client alive.
            drop(core_d);
            for t in previous_rx.recv().unwrap_or_default() {
                let _ = t.join();
            }
            run_dispatcher(events_rx, registry)
        });
    let dispatch = match dispatch {
        Ok(h) => h,
        Err(e) => {
            core.detach_run(&run);
            return Err(Error::io(e));
        }
    };
    let io_thread = IoThread::new(core.clone(), run.clone(), poll, events_tx);
    let io = std::thread::Builder::new()
        .name("webpubsub-io".into())
        .spawn(move || {
            io_thread.core.mark_own_thread();
            io_thread.main()
        });
    match io {
        Ok(io) => {
            let _ = previous_tx.send(std::mem::take(threads));
            threads.extend([io, dispatch]);
            Ok(run)
        }
        Err(e) => {
            // The closure (and the events sender) is gone, and nothing to join is handed
            // over: the dispatcher ends by itself.
            drop(previous_tx);
            let _ = dispatch.join();
            core.detach_run(&run);
            Err(Error::io(e))
        }
    }
}

/// What the next connection attempt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Start,
    Recover,
    Reconnect,
}

enum Conn {
    Idle,
    Dialing {
        dialer: Box<Dialer>,
        deadline: Option<Instant>,
    },
    Open(Box<Open>),
}

struct Open {
    ws: WebSocket<Stream>,
    /// Until `connected` arrives: when to give the attempt up.
    deadline: Option<Instant>,
    last_recv: Instant,
    next_ping: Option<Instant>,
    /// Not yet read until `WouldBlock`.
    readable: bool,
    /// Reading is paused: too many received events wait for their consumers.
    paused: bool,
    /// Frames written but not flushed.
    dirty: bool,
    /// Why the connection ended: close code and reason, or an error.
    ended: Option<(Option<u16>, Error)>,
}

impl Open {
    fn new(ws: WebSocket<Stream>, deadline: Option<Instant>, now: Instant, ping: Duration) -> Open {
        Open {
            ws,
            deadline,
            last_recv: now,
            next_ping: (!ping.is_zero()).then(|| now + ping),
            // The handshake may have read the first frames already.
            readable: true,
            paused: false,
            dirty: false,
            ended: None,
        }
    }
}

struct IoThread {
    core: Arc<Core>,
    run: Arc<RunCtl>,
    poll: Poll,
    events: Sender<Event>,
    /// The codec of every frame, and whether the session recovers.
    subprotocol: Subprotocol,
    conn: Conn,
    seq: Sequence,
    attempt: Attempt,
    attempt_began: Instant,
    next_dial: Option<Instant>,
    access_url: Option<AccessUrl>,
    recovery: Option<RecoveryPlan>,
    reconnect: Option<ReconnectPlan>,
    /// Close code of the drop that began the current recovery (for `Disconnected`).
    drop_code: Option<u16>,
    /// `start()` succeeded: `stopped` fires at the end.
    started: bool,
    exit: bool,
    exit_error: Option<Error>,
    out: Vec<WireFrame>,
    /// The keep-alive frame, encoded once.
    ping: WireFrame,
    /// Messages of a new connection received before its `Connected` event (which waits for
    /// the rejoin to settle, B9): handed over right after it, in order.
    held: Option<Vec<Event>>,
}

impl IoThread {
    fn new(core: Arc<Core>, run: Arc<RunCtl>, poll: Poll, events: Sender<Event>) -> IoThread {
        let subprotocol = core.options.protocol.subprotocol();
        IoThread {
            core,
            run,
            poll,
            events,
            subprotocol,
            conn: Conn::Idle,
            seq: Sequence::default(),
            attempt: Attempt::Start,
            attempt_began: Instant::now(),
            next_dial: Some(Instant::now()),
            access_url: None,
            recovery: None,
            reconnect: None,
            drop_code: None,
            started: false,
            exit: false,
            exit_error: None,
            out: Vec::with_capacity(64),
            // B32: the protobuf codec encodes `ping` too (the JS protobuf codec cannot).
            ping: WireFrame::encode(&ClientMessage::Ping, subprotocol),
            held: None,
        }
    }

    fn main(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            if self.run.stop_requested() || self.exit {
                break;
            }
            self.step(Instant::now());
            if self.run.stop_requested() || self.exit {
                break;
            }
            let mut timeout = self.poll_timeout(Instant::now());
            if timeout != Some(Duration::ZERO) && !self.core.shared.lock().session.io_sleep() {
                // A request came in after the outbox was drained: go round again at once.
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("poll failed: {e}; stopping");
                self.exit_error = Some(Error::io(e));
                break;
            }
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    if let Conn::Open(o) = &mut self.conn {
                        // A writable edge needs no flag: every turn flushes what is pending.
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            o.readable = true;
                        }
                    }
                }
            }
        }
        self.shutdown();
    }

    /// Does everything that can be done now without blocking.
    fn step(&mut self, now: Instant) {
        // A dial can complete at once (and an open connection may hold data already), so
        // go on while the connection advances; the bound only guards against a loop.
        for _ in 0..4 {
            match &mut self.conn {
                Conn::Idle => {
                    if self.next_dial.is_some_and(|t| t <= now) {
                        self.next_dial = None;
                        self.dial(now);
                        continue;
                    }
                    return;
                }
                Conn::Dialing { .. } => {
                    if !self.advance_dial(now) {
                        return;
                    }
                }
                Conn::Open(_) => {
                    self.service_open(now);
                    return;
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let deadline = match &self.conn {
            Conn::Idle => self.next_dial,
            Conn::Dialing { deadline, .. } => *deadline,
            Conn::Open(o) => {
                if (o.readable && !o.paused) || o.ended.is_some() {
                    return Some(Duration::ZERO);
                }
                if o.paused {
                    return Some(BACKLOG_RECHECK);
                }
                let opts = &self.core.options;
                let dead = (!opts.keep_alive_timeout.is_zero())
                    .then(|| o.last_recv + opts.keep_alive_timeout);
                [o.deadline, o.next_ping, dead, self.seq.deadline()]
                    .into_iter()
                    .flatten()
                    .min()
            }
        };
        deadline.map(|d| d.saturating_duration_since(now))
    }

    fn emit(&self, event: Option<Event>) {
        if let Some(e) = event {
            let _ = self.events.send(e);
        }
    }

    /// A received message event: held while a new connection settles, else handed over.
    fn emit_message(&mut self, event: Event) {
        match &mut self.held {
            Some(held) => held.push(event),
            None => self.emit(Some(event)),
        }
    }

    /// Hands over the messages held while a new connection settled.
    fn release_held(&mut self) {
        for event in self.held.take().into_iter().flatten() {
            self.emit(Some(event));
        }
    }

    // ----- an open connection -----

    fn service_open(&mut self, now: Instant) {
        let Conn::Open(mut o) = std::mem::replace(&mut self.conn, Conn::Idle) else {
            return;
        };
        self.check_backlog(&mut o, now);
        if o.readable && !o.paused {
            self.read(&mut o, now);
        }
        if o.ended.is_none() {
            let ready = self.write_outbox(&mut o);
            self.timers(&mut o, ready, now);
        }
        if o.dirty && o.ended.is_none() {
            match o.ws.flush() {
                Ok(()) => o.dirty = false,
                // Waits for the writable edge; tungstenite keeps the bytes.
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => o.ended = Some((None, ws_error(e))),
            }
        }
        match o.ended.take() {
            None => self.conn = Conn::Open(o),
            Some((code, cause)) => {
                let _ = o.ws.flush();
                let _ = self.poll.registry().deregister(o.ws.get_mut().tcp());
                drop(o);
                log::debug!("connection ended: {cause}");
                self.attempt_failed(code, cause, now);
            }
        }
    }

    /// Bounds the client's memory under a flood: reading pauses while the events waiting for
    /// the dispatcher or the slowest `events()` receiver reach `max_event_backlog`, and resumes
    /// when they drain to half. The socket buffers, then the service, hold the rest.
    fn check_backlog(&mut self, o: &mut Open, now: Instant) {
        let max = self.core.options.max_event_backlog;
        let held = self.held.as_ref().map_or(0, Vec::len);
        let backlog = || held + self.events.len() + self.core.registry.stream_backlog();
        if !o.paused && o.readable && backlog() >= max {
            log::debug!("{max} events wait for their consumers: reading pauses");
            o.paused = true;
        } else if o.paused && backlog() <= max / 2 {
            log::debug!("event backlog drained: reading resumes");
            o.paused = false;
            // Frames waited unread in the socket; the connection was not silent.
            o.last_recv = now;
        }
    }

    /// Writes what the outbox holds; returns whether the session is ready (`connected`
    /// arrived on this socket).
    fn write_outbox(&mut self, o: &mut Open) -> bool {
        let mut out = std::mem::take(&mut self.out);
        let ready = self.core.shared.lock().session.drain_outbox(&mut out);
        for f in out.drain(..) {
            write(o, &f);
        }
        self.out = out;
        ready
    }

    fn timers(&mut self, o: &mut Open, ready: bool, now: Instant) {
        if ready {
            if self.subprotocol.is_reliable() {
                self.sequence_ack(o, now);
            }
            self.ping(o, now);
        }
        if let Some(timeout) = self.expired(o, now) {
            o.ended = Some((None, Error::Timeout(timeout)));
        }
    }

    /// B31: the largest sequence id seen, when due.
    fn sequence_ack(&mut self, o: &mut Open, now: Instant) {
        if let Some(sequence_id) = self.seq.ack_due(now) {
            let frame = WireFrame::encode(
                &ClientMessage::SequenceAck { sequence_id },
                self.subprotocol,
            );
            // If the write fails the connection ends, and the ack is sent again after the
            // recovery.
            if write(o, &frame) {
                log::trace!("sequenceAck {sequence_id}");
                self.seq.acked(sequence_id);
            }
        }
    }

    /// B32: a `ping` every keep-alive interval.
    fn ping(&mut self, o: &mut Open, now: Instant) {
        if let Some(at) = o.next_ping.filter(|t| *t <= now) {
            write(o, &self.ping);
            o.next_ping = Some(at.max(now) + self.core.options.keep_alive_interval);
        }
    }

    /// Which of the open connection's timeouts expired, if any.
    fn expired(&self, o: &Open, now: Instant) -> Option<TimeoutKind> {
        let keep_alive = self.core.options.keep_alive_timeout;
        if !o.paused && !keep_alive.is_zero() && now >= o.last_recv + keep_alive {
            // B32: a dead connection is closed and recovered.
            log::warn!("no frame for {keep_alive:?}: the connection is dead");
            Some(TimeoutKind::KeepAlive)
        } else if o.deadline.is_some_and(|d| d <= now) {
            Some(TimeoutKind::Connected)
        } else {
            None
        }
    }
}

/// Queues a frame (sharing its bytes); `false` if the connection failed (recorded in
/// `o.ended`).
fn write(o: &mut Open, frame: &WireFrame) -> bool {
    match o.ws.write(frame.to_message()) {
        Ok(()) => {
            o.dirty = true;
            true
        }
        // The frame is buffered; the flush goes on at the writable edge.
        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
            o.dirty = true;
            true
        }
        Err(e) => {
            if o.ended.is_none() {
                o.ended = Some((None, ws_error(e)));
            }
            false
        }
    }
}

/// An error of the open WebSocket, keeping tungstenite's error as the cause.
fn ws_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Io(e) => Error::io(e),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Error::Connect(ConnectError::Closed {
                code: None,
                reason: String::new(),
            })
        }
        // A message over the size limit, a frame that breaks RFC 6455, text that is not
        // UTF-8: the connection's failure, not its handshake's.
        other => Error::Connect(ConnectError::WebSocket(Cause::new(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::{CapacityError, ProtocolError};

    #[test]
    fn a_too_large_message_is_a_websocket_error_with_its_cause() {
        let e = ws_error(tungstenite::Error::Capacity(
            CapacityError::MessageTooLong {
                size: 20 << 20,
                max_size: 16 << 20,
            },
        ));
        let Error::Connect(ConnectError::WebSocket(cause)) = &e else {
            panic!("{e:?}")
        };
        assert!(matches!(
            cause.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        ));
        assert!(!e.to_string().contains("handshake"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn a_broken_frame_is_a_websocket_error_and_a_reset_an_io_error() {
        assert!(matches!(
            ws_error(tungstenite::Error::Protocol(
                ProtocolError::NonZeroReservedBits
            )),
            Error::Connect(ConnectError::WebSocket(_))
        ));
        assert!(matches!(
            ws_error(tungstenite::Error::Io(std::io::Error::from(
                ErrorKind::ConnectionReset
            ))),
            Error::Connect(ConnectError::Io {
                kind: ErrorKind::ConnectionReset,
                ..
            })
        ));
    }
}
