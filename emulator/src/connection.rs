//! One WebSocket connection on an I/O loop: a state machine the loop drives whenever its
//! socket is ready, its session woke it, or its timer is due.
//!
//! Each turn it carries out a command other threads left in the session (drop, close), reads
//! what the socket has (a bounded amount per turn, so that one busy client does not starve
//! the others) and hands every data frame to `messages` (which decides what it does), then
//! writes what the session queued — many frames per system call. A session outlives its
//! socket while it can be recovered.
//!
//! A frame whose handling waits for another thread (an upstream event handler) makes
//! `messages` answer [`Flow::Await`]: what waits is kept in the session, and the connection
//! is *suspended* while it does — it reads no further frame but still writes — until the
//! answer wakes it and [`messages::resume`] finishes the request here, on the loop. A
//! recovery in the middle finds the wait in the session: the new socket is suspended in
//! turn, and finishes the request.

use crate::hub::Hub;
use crate::messages::{self, Ctx, Flow, Incoming};
use crate::net::read_now;
use crate::session::{Command, Session, Waiting};
use crate::shared::Shared;
use crate::types::Observation;
use crate::wake::{DeferWakes, Link};
use crate::websocket;
use crate::wire::{Io, Ready, Step, Wire, BATCH, CLOSE_TIMEOUT, WRITE_CHUNK};
use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_protocol::websocket::Inbound;
use webpubsub_protocol::ServiceMessage;

/// Reads per turn before the loop's other connections get theirs.
const READS_PER_TURN: usize = 4;
/// Bytes written per turn before the loop's other connections get theirs.
const WRITES_PER_TURN: usize = 16 * WRITE_CHUNK;
/// How long a connection must be quiet before the buffers a burst made grow are let go:
/// letting them go between two batches of a burst would only make them grow again.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// How a socket's life ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame: the session ends.
    ClientClosed,
    /// EOF, reset or I/O error without a close frame: recoverable (reliable sessions).
    Lost(String),
    /// An injected abrupt drop: recoverable.
    Faulted,
    /// The service closed the session for good (REST close, buffer overflow).
    ClosedByService(String),
    /// The emulator stops.
    Stopping,
    /// A recovery attached a new socket to the session.
    TakenOver,
}

/// Why reading stopped inside a batch of frames.
enum Stop {
    /// The socket ends.
    End(End),
    /// A frame's handling waits in the session; the rest stays buffered.
    Await,
    /// Close with this code and reason; the session ends.
    Close(CloseCode, String),
}

/// Where a connection stands.
enum Phase {
    Open,
    /// Writing the last bytes, then the socket ends abruptly (a drop mid-frame).
    Flushing {
        deadline: Instant,
        end: End,
    },
    /// Our close frame is on its way; waiting for the client's.
    Closing {
        deadline: Instant,
        end: End,
    },
}

/// A WebSocket whose session is attached.
pub(crate) struct Connection {
    wire: Wire,
    link: Arc<Link>,
    hub: Arc<Hub>,
    session: Arc<Session>,
    phase: Phase,
    /// When to let go of what the last burst left, if it stays quiet until then.
    trim_at: Option<Instant>,
}

impl Connection {
    pub fn new(wire: Wire, link: Arc<Link>, hub: Arc<Hub>, session: Arc<Session>) -> Self {
        Connection {
            wire,
            link,
            hub,
            session,
            phase: Phase::Open,
            trim_at: None,
        }
    }

    /// When the loop must drive it even if nothing happens: a close's bound, a held-back
    /// ack coming due, or the time to trim.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Flushing { deadline, .. } | Phase::Closing { deadline, .. } => Some(*deadline),
            Phase::Open => match (self.session.next_due(), self.trim_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// One turn.
    pub fn drive(&mut self, io: &mut Io, ready: Ready) -> Step {
        self.link.woken();
        self.wire.note(ready);
        match self.turn(io) {
            Ok(step) => step,
            Err(end) => {
                self.settle(end, &io.shared);
                Step::Closed
            }
        }
    }

    fn turn(&mut self, io: &mut Io) -> Result<Step, End> {
        if let Some(step) = self.ending(io)? {
            return Ok(step);
        }
        if io.shared.stopping() {
            return self.close(
                io,
                "The service is stopping",
                CloseCode::Away,
                End::Stopping,
            );
        }
        if let Some(step) = self.obey_command(io)? {
            return Ok(step);
        }
        let reads_left = match self.resume(io)? {
            Resumed::Free => self.read_frames(io)?,
            Resumed::Waiting => true,
            Resumed::Step(step) => return Ok(step),
        };
        if let Some(step) = self.ending(io)? {
            return Ok(step);
        }
        let more = self.write_some(io).map_err(|e| End::Lost(e.to_string()))?;
        Ok(if more || !reads_left {
            Step::Again
        } else {
            Step::Idle
        })
    }

    /// A turn of a socket on its way out.
    fn ending(&mut self, io: &mut Io) -> Result<Option<Step>, End> {
        let over = match &self.phase {
            Phase::Open => return Ok(None),
            Phase::Closing { deadline, .. } => self.wire.close_step(&mut io.rbuf, *deadline),
            Phase::Flushing { deadline, .. } => {
                !matches!(self.wire.flush_out(), Ok(false)) || Instant::now() >= *deadline
            }
        };
        if !over {
            return Ok(Some(Step::Idle));
        }
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Closing { end, .. } | Phase::Flushing { end, .. } => Err(end),
            _ => unreachable!("checked above"),
        }
    }

    /// Sends `disconnected` and a close frame, then waits (bounded) for the client's close
    /// reply, so that they are not lost to a TCP reset; `end` follows.
    fn close(&mut self, io: &mut Io, reason: &str, code: CloseCode, end: End) -> Result<Step, End> {
        let disconnected = self.session.frame(&ServiceMessage::Disconnected {
            message: Some(reason.to_owned()),
        });
        self.wire.begin_close(disconnected.as_ref(), reason, code);
        self.phase = Phase::Closing {
            deadline: Instant::now() + CLOSE_TIMEOUT,
            end,
        };
        Ok(self.ending(io)?.unwrap_or(Step::Idle))
    }

    /// Carries out what another thread asked of this socket, if anything.
    fn obey_command(&mut self, io: &mut Io) -> Result<Option<Step>, End> {
        let cmd = match self.session.take_command(&self.link) {
            Ok(None) => return Ok(None),
            Ok(Some(cmd)) => cmd,
            Err(_) => return Err(End::TakenOver),
        };
        match cmd {
            Command::Drop => Err(End::Faulted),
            Command::DropMidFrame => {
                self.wire.out.extend_from_slice(websocket::PARTIAL_TEXT);
                self.phase = Phase::Flushing {
                    deadline: Instant::now() + CLOSE_TIMEOUT,
                    end: End::Faulted,
                };
                self.ending(io)
            }
            Command::Close { reason, flush } => {
                if flush {
                    self.queue_everything(io);
                }
                let end = End::ClosedByService(reason.clone());
                self.close(io, &reason, CloseCode::Policy, end).map(Some)
            }
        }
    }

    /// Finishes the request that waited in the session, once its answer came. Says
    /// whether frames may be read (nothing waits any more), or how the turn ends.
    fn resume(&mut self, io: &mut Io) -> Result<Resumed, End> {
        // The right to handle a frame first: a recovery cannot take the answer between
        // the moment it is taken out and the moment it is used.
        let Ok(exec) = self.session.exec(&self.link) else {
            return Err(End::TakenOver);
        };
        let (awaiting, outcome) = match self.session.waiting(&self.link) {
            Err(_) => return Err(End::TakenOver),
            Ok(Waiting::Free) => return Ok(Resumed::Free),
            Ok(Waiting::Pending) => return Ok(Resumed::Waiting),
            Ok(Waiting::Answered(awaiting, outcome)) => (awaiting, outcome),
        };
        let cx = Ctx {
            shared: &io.shared,
            hub: &self.hub,
            session: &self.session,
        };
        let flow = messages::resume(cx, awaiting, outcome);
        drop(exec);
        match flow {
            Flow::Continue => Ok(Resumed::Free),
            Flow::Await => Ok(Resumed::Waiting),
            Flow::Drop => Err(End::Faulted),
            Flow::Close { code, reason } => {
                let end = End::ClosedByService(reason.clone());
                self.close(io, &reason, code, end).map(Resumed::Step)
            }
        }
    }

    /// Reads and handles frames: those a suspension left, then up to `READS_PER_TURN`
    /// reads. Returns whether the socket was drained (false: budget spent, or stopped
    /// with frames left).
    fn read_frames(&mut self, io: &mut Io) -> Result<bool, End> {
        let mut stop = None;
        if self.wire.reader.has_buffered() {
            self.handle(&mut [], io, &mut stop)?;
            if let Some(stop) = stop {
                return self.stopped(io, stop);
            }
        }
        for _ in 0..READS_PER_TURN {
            if !self.wire.readable {
                return Ok(true);
            }
            let n = match read_now(&mut self.wire.stream, &mut io.rbuf) {
                Ok(None) => {
                    self.wire.readable = false;
                    return Ok(true);
                }
                Ok(Some(0)) => {
                    return Err(End::Lost("connection closed without a close frame".into()))
                }
                Ok(Some(n)) => n,
                Err(e) => return Err(End::Lost(e.to_string())),
            };
            self.trim_at = Some(Instant::now() + TRIM_AFTER);
            let mut rbuf = std::mem::take(&mut io.rbuf);
            // The receivers on other loops are woken once this read's frames are handled:
            // once per burst, and while the next read is being handled.
            let defer = DeferWakes::begin();
            let r = self.handle(&mut rbuf[..n], io, &mut stop);
            drop(defer);
            io.rbuf = rbuf;
            r?;
            if let Some(stop) = stop {
                return self.stopped(io, stop);
            }
        }
        Ok(!self.wire.readable)
    }

    /// Reading stopped in the middle of what was read.
    fn stopped(&mut self, io: &mut Io, stop: Stop) -> Result<bool, End> {
        match stop {
            Stop::End(end) => Err(end),
            Stop::Await => Ok(true),
            Stop::Close(code, reason) => {
                let end = End::ClosedByService(reason.clone());
                self.close(io, &reason, code, end)?;
                Ok(true)
            }
        }
    }

    /// Hands the complete frames of what was kept plus `fresh` to `messages`, until one
    /// ends the socket or suspends it.
    fn handle(&mut self, fresh: &mut [u8], io: &Io, stop: &mut Option<Stop>) -> Result<(), End> {
        let Connection {
            wire,
            link,
            hub,
            session,
            ..
        } = self;
        let Wire { reader, out, .. } = wire;
        let fed = reader.feed(fresh, &mut |m| match m {
            Inbound::Text(text) => data_frame(Incoming::Text(text), io, hub, session, link, stop),
            Inbound::Binary(bytes) => {
                data_frame(Incoming::Binary(bytes), io, hub, session, link, stop)
            }
            Inbound::Ping(payload) => {
                websocket::pong(payload, out);
                ControlFlow::Continue(())
            }
            Inbound::Pong(_) => ControlFlow::Continue(()),
            Inbound::Close(received) => {
                websocket::close_reply(received, out);
                *stop = Some(Stop::End(End::ClientClosed));
                ControlFlow::Break(())
            }
        });
        match fed {
            Ok(_) => Ok(()),
            Err(e) => Err(End::Lost(e.to_string())),
        }
    }

    /// Writes what the session queued, many frames per system call (one with
    /// `flush_each_frame`), until the socket is full, the queue empty or the turn's budget
    /// spent. Returns whether more is queued.
    fn write_some(&mut self, io: &mut Io) -> io::Result<bool> {
        if !self.wire.flush_out()? {
            return Ok(false);
        }
        let each_frame = io.shared.cfg.flush_each_frame;
        let mut written = 0;
        loop {
            io.wbuf.clear();
            let (mut more, mut gathered) = (true, 0);
            while more && gathered < WRITE_CHUNK {
                more = self.take_batch(io);
                for f in io.batch.drain(..) {
                    let before = io.wbuf.len();
                    websocket::frame(&f, &mut io.wbuf);
                    gathered += io.wbuf.len() - before;
                    if each_frame {
                        self.wire.write(&io.wbuf)?;
                        io.wbuf.clear();
                    }
                }
            }
            if gathered == 0 {
                self.trim_if_quiet();
                return Ok(false);
            }
            self.trim_at = Some(Instant::now() + TRIM_AFTER);
            let r = self.wire.write(&io.wbuf);
            written += gathered;
            io.trim();
            r?;
            if !more || !self.wire.writable {
                return Ok(false);
            }
            if written >= WRITES_PER_TURN {
                return Ok(true);
            }
        }
    }

    /// Lets go of the buffers and queue space a burst left, once nothing was written for
    /// `TRIM_AFTER`.
    fn trim_if_quiet(&mut self) {
        if self.trim_at.is_some_and(|at| Instant::now() >= at) {
            self.trim_at = None;
            self.wire.trim();
            self.session.trim();
        }
    }

    /// Moves frames from the session into `io.batch`. Returns whether more are queued.
    fn take_batch(&self, io: &mut Io) -> bool {
        let more = self.session.take_outbound(&self.link, BATCH, &mut io.batch);
        if log::log_enabled!(log::Level::Trace) {
            for f in &io.batch {
                log::trace!("emulator: -> {}: {}", self.session.id(), f.for_log());
            }
        }
        more
    }

    /// Puts every frame the session queued in the socket's buffer (before a close).
    fn queue_everything(&mut self, io: &mut Io) {
        while {
            let more = self.take_batch(io);
            more || !io.batch.is_empty()
        } {
            for f in io.batch.drain(..) {
                websocket::frame(&f, &mut self.wire.out);
            }
        }
    }

    /// Starts the close the emulator's stop asks for (the loop calls it once).
    pub fn stop(&mut self, io: &mut Io) -> Step {
        if !matches!(self.phase, Phase::Open) {
            return Step::Idle;
        }
        let r = self.close(
            io,
            "The service is stopping",
            CloseCode::Away,
            End::Stopping,
        );
        match r {
            Ok(step) => step,
            Err(end) => {
                self.settle(end, &io.shared);
                Step::Closed
            }
        }
    }

    /// Settles the session after the socket's end.
    fn settle(&mut self, end: End, shared: &Shared) {
        log::debug!(
            "emulator: socket of {} in hub {} ended: {end:?}",
            self.session.id(),
            self.hub.name()
        );
        match end {
            End::TakenOver => self.wire.stream.shutdown_abruptly(),
            End::Lost(why) => {
                log::debug!("emulator: {} lost its socket: {why}", self.session.id());
                self.drop_socket(shared);
            }
            End::Faulted => self.drop_socket(shared),
            End::ClientClosed => {
                // The session ends before the close reply goes: a client that saw the
                // reply finds it ended.
                self.end_session(shared, "closed by the client");
                let _ = self.wire.flush_out();
            }
            End::ClosedByService(reason) => self.end_session(shared, &reason),
            End::Stopping => self.end_session(shared, "The service is stopping"),
        }
    }

    /// An abrupt end: a reliable session waits for a recovery, a plain one ends. A socket
    /// that lost the session to a recovery leaves it alone.
    fn drop_socket(&self, shared: &Shared) {
        self.wire.stream.shutdown_abruptly();
        let reliable = self.session.reliable();
        if self.session.detach(&self.link, reliable) {
            self.dropped(shared);
            if !reliable {
                shared.end_session(&self.hub, &self.session, "connection lost");
            }
        }
    }

    /// The session ends with its socket (if this socket still owns it).
    fn end_session(&self, shared: &Shared, reason: &str) {
        if self.session.detach(&self.link, false) {
            self.dropped(shared);
            shared.end_session(&self.hub, &self.session, reason);
        }
    }

    fn dropped(&self, shared: &Shared) {
        shared.observe(Observation::Dropped {
            hub: self.hub.name().to_owned(),
            connection_id: self.session.id().to_owned(),
        });
    }
}

/// What [`Connection::resume`] found.
enum Resumed {
    /// Nothing waits: read on.
    Free,
    /// A request still waits: read nothing.
    Waiting,
    /// The connection is closing.
    Step(Step),
}

/// Hands one data frame to `messages`: the session's subprotocol decodes it (a frame of the
/// other kind is skipped there).
fn data_frame(
    frame: Incoming<'_>,
    io: &Io,
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    link: &Arc<Link>,
    stop: &mut Option<Stop>,
) -> ControlFlow<()> {
    // A recovery may have attached a new socket since the last check; frames still
    // buffered on this one are then dropped (the client resends its unacknowledged
    // requests on the new socket).
    let Ok(_exec) = session.exec(link) else {
        *stop = Some(Stop::End(End::TakenOver));
        return ControlFlow::Break(());
    };
    let cx = Ctx {
        shared: &io.shared,
        hub,
        session,
    };
    *stop = match (io.on_frame)(cx, frame) {
        Flow::Continue => return ControlFlow::Continue(()),
        Flow::Drop => Some(Stop::End(End::Faulted)),
        Flow::Await => Some(Stop::Await),
        Flow::Close { code, reason } => Some(Stop::Close(code, reason)),
    };
    ControlFlow::Break(())
}
