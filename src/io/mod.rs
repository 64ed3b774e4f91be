//! A client's I/O, one run of it (`start()` to the end): a [`Driver`] that the runtime's I/O
//! loop steps. It dials, reads, writes, keeps the timers (sequence acks, keep-alive, recovery
//! and reconnect backoff) and resolves acks.
//!
//! Request threads push onto the session's outbox and wake the driver through the loop;
//! each step writes every queued frame and flushes once (batching). An idle connected client
//! costs the loop nothing until its next keep-alive deadline. The socket is edge-triggered:
//! reads go on until `WouldBlock` (or a budget, then the driver runs again next turn, after
//! the other clients of the loop). User code never runs here: events go to the dispatcher.

use crate::core::{Core, RunCtl};
use crate::endpoint::AccessUrl;
use crate::error::{Cause, ConnectError, Error, TimeoutKind};
use crate::events::Event;
use crate::protocol::websocket::{FrameError, FrameReader};
use crate::protocol::{ClientMessage, Subprotocol};
use crate::runtime::{ClientQueue, Cx, Driver, Item, Next, Threads};
use crate::timers::{ReconnectPlan, RecoveryPlan, Sequence};
use crate::transport::{Dialer, Stream};
use crate::wire::WireFrame;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// While reading is paused for a full event backlog, how often the driver looks whether it
/// drained (the consumers cannot wake it: one of them may be a user's `Receiver`).
const BACKLOG_RECHECK: Duration = Duration::from_millis(5);
/// How long `stop()` waits for the service to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

mod dial;
mod ended;
mod receive;
mod socket;

use socket::Socket;

/// Starts a run of `core` on `threads`: its events go to `queue`.
pub(crate) fn launch(core: &Arc<Core>, threads: &Threads, queue: Arc<ClientQueue>) -> Arc<RunCtl> {
    let wake = threads.io.reserve();
    let run = Arc::new(RunCtl::new(wake.clone()));
    core.attach_run(run.clone());
    let driver = ClientIo::new(core.clone(), run.clone(), queue);
    threads.io.insert(&wake, Box::new(driver));
    run
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
    reader: FrameReader,
    link: Link,
}

/// An open connection apart from its reader (what the handlers of received frames use).
struct Link {
    sock: Socket,
    /// Until `connected` arrives: when to give the attempt up.
    deadline: Option<Instant>,
    last_recv: Instant,
    next_ping: Option<Instant>,
    /// Not yet read until `WouldBlock`.
    readable: bool,
    /// Reading is paused: too many received events wait for their consumers.
    paused: bool,
    /// Why the connection ended: close code and reason, or an error.
    ended: Option<(Option<u16>, Error)>,
}

impl Open {
    fn new(
        stream: Stream,
        leftover: Vec<u8>,
        deadline: Option<Instant>,
        now: Instant,
        ping: Duration,
    ) -> Open {
        Open {
            reader: Socket::reader(leftover),
            link: Link {
                sock: Socket::new(stream),
                deadline,
                last_recv: now,
                next_ping: (!ping.is_zero()).then(|| now + ping),
                // The handshake may have read the first frames already.
                readable: true,
                paused: false,
                ended: None,
            },
        }
    }
}

/// The end of a run in progress: our close frame is out, the service's answer awaited.
struct Closing {
    deadline: Instant,
    close_code: Option<u16>,
}

struct ClientIo {
    core: Arc<Core>,
    run: Arc<RunCtl>,
    queue: Arc<ClientQueue>,
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
    closing: Option<Closing>,
    out: Vec<WireFrame>,
    /// The keep-alive frame, encoded once.
    ping: WireFrame,
    /// Messages of a new connection received before its `Connected` event (which waits for
    /// the rejoin to settle, B9): handed over right after it, in order.
    held: Option<Vec<Event>>,
    /// The messages of the read in progress, handed to the dispatcher together at its end
    /// (or before any other event, which must come after them). Empty between reads.
    batch: Vec<Event>,
}

impl Driver for ClientIo {
    fn step(&mut self, cx: &mut Cx<'_>) -> Next {
        if cx.readable {
            if let Conn::Open(o) = &mut self.conn {
                o.link.readable = true;
            }
        }
        if cx.abort {
            self.exit_error
                .get_or_insert_with(|| Error::Protocol("the I/O loop failed".into()));
            return self.finish(cx);
        }
        if self.closing.is_some() {
            return self.close_step(cx);
        }
        if !self.ending() {
            self.advance(cx);
        }
        if self.ending() {
            return self.begin_close(cx);
        }
        let next = self.next_deadline(cx.now);
        if next.is_some_and(|t| t <= cx.now) {
            return Next::Wait(next);
        }
        if !self.core.shared.lock().session.io_sleep() {
            // A request came in after the outbox was drained: go round again at once.
            return Next::Wait(Some(cx.now));
        }
        Next::Wait(next)
    }
}

impl ClientIo {
    fn new(core: Arc<Core>, run: Arc<RunCtl>, queue: Arc<ClientQueue>) -> ClientIo {
        let subprotocol = core.options.protocol.subprotocol();
        ClientIo {
            core,
            run,
            queue,
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
            closing: None,
            out: Vec::new(),
            // B32: the protobuf codec encodes `ping` too (the JS protobuf codec cannot).
            ping: WireFrame::encode(&ClientMessage::Ping, subprotocol),
            held: None,
            batch: Vec::new(),
        }
    }

    /// A stop was asked for, or the run decided to end.
    fn ending(&self) -> bool {
        self.exit || self.run.stop_requested()
    }

    /// Does everything that can be done now without blocking.
    fn advance(&mut self, cx: &mut Cx<'_>) {
        // A dial can complete at once (and an open connection may hold data already), so
        // go on while the connection advances; the bound only guards against a loop.
        for _ in 0..4 {
            match &mut self.conn {
                Conn::Idle => {
                    if self.next_dial.is_some_and(|t| t <= cx.now) {
                        self.next_dial = None;
                        self.dial(cx);
                        continue;
                    }
                    return;
                }
                Conn::Dialing { .. } => {
                    if !self.advance_dial(cx) {
                        return;
                    }
                }
                Conn::Open(_) => {
                    self.service_open(cx);
                    return;
                }
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match &self.conn {
            Conn::Idle => self.next_dial,
            Conn::Dialing { deadline, .. } => *deadline,
            Conn::Open(o) => {
                let l = &o.link;
                if (l.readable && !l.paused) || l.ended.is_some() {
                    return Some(now);
                }
                if l.paused {
                    return Some(now + BACKLOG_RECHECK);
                }
                let opts = &self.core.options;
                let dead = (!opts.keep_alive_timeout.is_zero())
                    .then(|| l.last_recv + opts.keep_alive_timeout);
                [l.deadline, l.next_ping, dead, self.seq.deadline()]
                    .into_iter()
                    .flatten()
                    .min()
            }
        }
    }

    fn emit(&mut self, event: Option<Event>) {
        if let Some(e) = event {
            self.flush_batch();
            self.queue.push(Item::Event(e));
        }
    }

    /// A received message event: held while a new connection settles, else batched with
    /// the other messages of the read.
    fn emit_message(&mut self, event: Event) {
        match &mut self.held {
            Some(held) => held.push(event),
            None => self.batch.push(event),
        }
    }

    /// Hands the batched messages to the dispatcher.
    fn flush_batch(&mut self) {
        self.queue.push_events(&mut self.batch);
    }

    /// Hands over the messages held while a new connection settled.
    fn release_held(&mut self) {
        for event in self.held.take().into_iter().flatten() {
            self.emit(Some(event));
        }
    }

    // ----- an open connection -----

    fn service_open(&mut self, cx: &mut Cx<'_>) {
        let Conn::Open(mut o) = std::mem::replace(&mut self.conn, Conn::Idle) else {
            return;
        };
        let now = cx.now;
        self.check_backlog(&mut o.link, now);
        if o.link.readable && !o.link.paused {
            self.read(&mut o, cx.buf, now);
        }
        if o.link.ended.is_none() {
            let ready = self.write_outbox(&mut o.link);
            self.timers(&mut o.link, ready, now);
        }
        if o.link.sock.has_unwritten() && o.link.ended.is_none() {
            // The rest waits for the writable edge.
            if let Err(e) = o.link.sock.flush() {
                o.link.ended = Some((None, Error::io(e)));
            }
        }
        match o.link.ended.take() {
            None => self.conn = Conn::Open(o),
            Some((code, cause)) => {
                // A close reply (or anything else still queued) goes out if it can.
                let _ = o.link.sock.flush();
                let _ = cx.registry.deregister(o.link.sock.tcp());
                drop(o);
                log::debug!("connection ended: {cause}");
                self.attempt_failed(code, cause, now);
            }
        }
    }

    /// Bounds the client's memory under a flood: reading pauses while the events waiting for
    /// the dispatcher or the slowest `events()` receiver reach `max_event_backlog`, and resumes
    /// when they drain to half. The socket buffers, then the service, hold the rest.
    fn check_backlog(&mut self, l: &mut Link, now: Instant) {
        let max = self.core.options.max_event_backlog;
        let held = self.held.as_ref().map_or(0, Vec::len);
        let backlog = || held + self.queue.backlog() + self.core.registry.stream_backlog();
        if !l.paused && l.readable && backlog() >= max {
            log::debug!("{max} events wait for their consumers: reading pauses");
            l.paused = true;
        } else if l.paused && backlog() <= max / 2 {
            log::debug!("event backlog drained: reading resumes");
            l.paused = false;
            // Frames waited unread in the socket; the connection was not silent.
            l.last_recv = now;
        }
    }

    /// Writes what the outbox holds; returns whether the session is ready (`connected`
    /// arrived on this socket).
    fn write_outbox(&mut self, l: &mut Link) -> bool {
        let mut out = std::mem::take(&mut self.out);
        let ready = self.core.shared.lock().session.drain_outbox(&mut out);
        l.sock
            .reserve(out.iter().map(|f| f.len() + FRAME_OVERHEAD).sum());
        for f in out.drain(..) {
            l.sock.queue(&f);
        }
        if out.capacity() > KEEP_OUT_FRAMES {
            out = Vec::new();
        }
        self.out = out;
        ready
    }

    fn timers(&mut self, l: &mut Link, ready: bool, now: Instant) {
        if ready {
            if self.subprotocol.is_reliable() {
                self.sequence_ack(l, now);
            }
            self.ping(l, now);
        }
        if let Some(timeout) = self.expired(l, now) {
            l.ended = Some((None, Error::Timeout(timeout)));
        }
    }

    /// B31: the largest sequence id seen, when due.
    fn sequence_ack(&mut self, l: &mut Link, now: Instant) {
        if let Some(sequence_id) = self.seq.ack_due(now) {
            let frame = WireFrame::encode(
                &ClientMessage::SequenceAck { sequence_id },
                self.subprotocol,
            );
            // If the write fails the connection ends, and the ack is sent again after the
            // recovery.
            l.sock.queue(&frame);
            log::trace!("sequenceAck {sequence_id}");
            self.seq.acked(sequence_id);
        }
    }

    /// B32: a `ping` every keep-alive interval.
    fn ping(&mut self, l: &mut Link, now: Instant) {
        if let Some(at) = l.next_ping.filter(|t| *t <= now) {
            l.sock.queue(&self.ping);
            l.next_ping = Some(at.max(now) + self.core.options.keep_alive_interval);
        }
    }

    /// Which of the open connection's timeouts expired, if any.
    fn expired(&self, l: &Link, now: Instant) -> Option<TimeoutKind> {
        let keep_alive = self.core.options.keep_alive_timeout;
        if !l.paused && !keep_alive.is_zero() && now >= l.last_recv + keep_alive {
            // B32: a dead connection is closed and recovered.
            log::warn!("no frame for {keep_alive:?}: the connection is dead");
            Some(TimeoutKind::KeepAlive)
        } else if l.deadline.is_some_and(|d| d <= now) {
            Some(TimeoutKind::Connected)
        } else {
            None
        }
    }
}

/// A frame's header and mask, at most.
const FRAME_OVERHEAD: usize = crate::protocol::websocket::MAX_FRAME_HEADER;
/// The drained outbox's list is let go above this many frames.
const KEEP_OUT_FRAMES: usize = 64;

/// Frames that break RFC 6455, or a message over the size limit: the connection's failure,
/// not its handshake's. The cause is the framing's error.
fn frame_error(e: FrameError) -> Error {
    Error::Connect(ConnectError::WebSocket(Cause::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_frame_is_a_websocket_error_with_its_cause() {
        let mut r = Socket::reader(Vec::new());
        let mut huge = vec![0x81u8, 0x7f];
        huge.extend_from_slice(&(socket::MAX_FRAME as u64 + 1).to_be_bytes());
        let e = r
            .feed(&mut huge, &mut |_| std::ops::ControlFlow::Continue(()))
            .map_err(frame_error)
            .unwrap_err();
        let Error::Connect(ConnectError::WebSocket(cause)) = &e else {
            panic!("{e:?}")
        };
        assert!(cause.downcast_ref::<FrameError>().is_some());
        assert!(!e.to_string().contains("handshake"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
