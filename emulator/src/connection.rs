//! The per-connection WebSocket loop: one thread per socket.
//!
//! The thread waits on its socket and its wake-up link (mio), reads every complete frame
//! and hands it to `messages` (which decides what it does), then writes what other
//! threads queued in the session — many frames, one flush. A session outlives its socket
//! while it can be recovered.

use crate::checks::truncate;
use crate::frames::OutFrame;
use crate::hub::Hub;
use crate::messages::{self, Ctx, Flow, Incoming};
use crate::net::{Stream, Waiter};
use crate::session::{Command, Session};
use crate::types::Observation;
use crate::wake::DeferWakes;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes, WebSocket};
use webpubsub_protocol::ServiceMessage;

/// Frames moved from the session per write batch.
const MAX_BATCH: usize = 4096;
/// Frames read per loop turn before writing gets a turn.
const MAX_READS: usize = 1024;
/// How long a graceful close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// What one turn of reading gave.
enum Reads {
    /// The socket has nothing more for now.
    Drained,
    /// The read budget ran out with frames perhaps still buffered.
    BudgetSpent,
    Ended(End),
}

pub(crate) struct Connection {
    w: Waiter,
    ws: WebSocket<Stream>,
    hub: Arc<Hub>,
    session: Arc<Session>,
    write_blocked: bool,
    batch: Vec<OutFrame>,
}

impl Connection {
    pub fn new(w: Waiter, ws: WebSocket<Stream>, hub: Arc<Hub>, session: Arc<Session>) -> Self {
        Connection {
            w,
            ws,
            hub,
            session,
            write_blocked: false,
            batch: Vec::with_capacity(256),
        }
    }

    /// Runs the socket until it ends, then settles the session.
    pub fn run(mut self) {
        let end = self.run_loop();
        log::debug!(
            "emulator: socket of {} in hub {} ended: {end:?}",
            self.session.id(),
            self.hub.name()
        );
        match end {
            End::TakenOver => self.ws.get_ref().shutdown_abruptly(),
            End::Lost(why) => {
                log::debug!("emulator: {} lost its socket: {why}", self.session.id());
                self.drop_socket();
            }
            End::Faulted => self.drop_socket(),
            End::ClientClosed => self.end_session("closed by the client"),
            End::ClosedByService(reason) => self.end_session(&reason),
            End::Stopping => {
                let reason = "The service is stopping";
                self.close_gracefully(reason, CloseCode::Away);
                self.end_session(reason);
            }
        }
    }

    /// An abrupt end: a reliable session waits for a recovery, a plain one ends. A socket
    /// that lost the session to a recovery leaves it alone.
    fn drop_socket(&self) {
        self.ws.get_ref().shutdown_abruptly();
        let reliable = self.session.reliable();
        if self.session.detach(&self.w.link, reliable) {
            self.dropped();
            if !reliable {
                self.w
                    .shared
                    .end_session(&self.hub, &self.session, "connection lost");
            }
        }
    }

    /// The session ends with its socket (if this socket still owns it).
    fn end_session(&self, reason: &str) {
        if self.session.detach(&self.w.link, false) {
            self.dropped();
            self.w.shared.end_session(&self.hub, &self.session, reason);
        }
    }

    fn dropped(&self) {
        self.w.shared.observe(Observation::Dropped {
            hub: self.hub.name().to_owned(),
            connection_id: self.session.id().to_owned(),
        });
    }

    fn run_loop(&mut self) -> End {
        let mut more = true;
        loop {
            let timeout = if more {
                Duration::ZERO
            } else {
                self.next_timeout()
            };
            if let Err(e) = self.w.wait(Some(timeout)) {
                return End::Lost(format!("poll failed: {e}"));
            }
            if self.w.shared.stopping() {
                return End::Stopping;
            }
            if let Some(end) = self.obey_command() {
                return end;
            }
            let budget_spent = match self.read_frames() {
                Reads::Drained => false,
                Reads::BudgetSpent => true,
                Reads::Ended(end) => return end,
            };
            match self.write_some() {
                Ok(m) => more = m || budget_spent,
                Err(e) => return End::Lost(e.to_string()),
            }
        }
    }

    /// Carries out what another thread asked of this socket, if anything.
    fn obey_command(&mut self) -> Option<End> {
        let cmd = match self.session.take_command(&self.w.link) {
            Ok(cmd) => cmd?,
            Err(_) => return Some(End::TakenOver),
        };
        Some(match cmd {
            Command::Drop => End::Faulted,
            Command::DropMidFrame => {
                self.write_partial_frame();
                End::Faulted
            }
            Command::Close { reason, flush } => {
                if flush {
                    while let Ok(true) = self.write_some() {}
                }
                self.close_gracefully(&reason, CloseCode::Policy);
                End::ClosedByService(reason)
            }
        })
    }

    /// Reads and handles up to `MAX_READS` frames. Wake-ups of other sessions' sockets are
    /// deferred to the end of the turn: one per receiver per burst.
    fn read_frames(&mut self) -> Reads {
        let _defer = DeferWakes::begin();
        for _ in 0..MAX_READS {
            match self.ws.read() {
                // The frame boundary: text and binary frames both go to `messages`, which
                // decodes them in the session's subprotocol (and skips the other kind).
                Ok(Message::Text(text)) => {
                    if let Some(end) = self.on_frame(Incoming::Text(&text)) {
                        return Reads::Ended(end);
                    }
                }
                Ok(Message::Binary(bytes)) => {
                    if let Some(end) = self.on_frame(Incoming::Binary(&bytes)) {
                        return Reads::Ended(end);
                    }
                }
                Ok(Message::Close(_)) => {
                    let _ = self.ws.flush();
                    return Reads::Ended(End::ClientClosed);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Reads::Drained;
                }
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    return Reads::Ended(End::ClientClosed);
                }
                Err(e) => return Reads::Ended(End::Lost(e.to_string())),
            }
        }
        Reads::BudgetSpent
    }

    fn on_frame(&self, frame: Incoming<'_>) -> Option<End> {
        // A recovery may have attached a new socket since the last check; frames still
        // buffered on this one are then dropped (the client resends its unacknowledged
        // requests on the new socket).
        let Ok(_exec) = self.session.exec(&self.w.link) else {
            return Some(End::TakenOver);
        };
        let cx = Ctx {
            shared: &self.w.shared,
            hub: &self.hub,
            session: &self.session,
        };
        match messages::on_frame(cx, frame) {
            Flow::Continue => None,
            Flow::Drop => Some(End::Faulted),
        }
    }

    fn next_timeout(&self) -> Duration {
        match self.session.next_due() {
            Some(due) => due.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(1),
        }
    }

    /// Writes a batch of queued frames and flushes once. Returns whether more are queued.
    fn write_some(&mut self) -> io::Result<bool> {
        if self.write_blocked {
            match self.ws.flush() {
                Ok(()) => self.write_blocked = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(false)
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let mut batch = std::mem::take(&mut self.batch);
        let more = self
            .session
            .take_outbound(&self.w.link, MAX_BATCH, &mut batch);
        if log::log_enabled!(log::Level::Trace) {
            for f in &batch {
                log::trace!("emulator: -> {}: {}", self.session.id(), f.for_log());
            }
        }
        let mut failed = None;
        for f in batch.drain(..) {
            if failed.is_some() {
                continue;
            }
            // The frame boundary: a queued frame is a text (JSON) or binary (protobuf) message.
            match self.ws.write(f.into_message()) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                }
                Err(e) => failed = Some(e),
            }
        }
        self.batch = batch;
        if let Some(e) = failed {
            return Err(io::Error::other(e.to_string()));
        }
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        Ok(more && !self.write_blocked)
    }

    /// Fault: the header of a 100-byte text frame and 10 bytes of it, then nothing.
    fn write_partial_frame(&mut self) {
        let _ = self.ws.flush();
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut partial = vec![0x81u8, 100];
        partial.extend_from_slice(br#"{"type":"m"#);
        let stream = self.ws.get_mut();
        let mut buf: &[u8] = &partial;
        while !buf.is_empty() && Instant::now() < deadline {
            match stream.write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        let _ = stream.flush();
    }

    /// `disconnected`, then a close frame, then waits (bounded) for the client's close
    /// reply so that the frames are not lost to a TCP reset.
    fn close_gracefully(&mut self, reason: &str, code: CloseCode) {
        let frame = self.session.frame(&ServiceMessage::Disconnected {
            message: Some(reason.to_owned()),
        });
        let _ = self.ws.write(frame.into_message());
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(truncate(reason, 120)),
        }));
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            let r = self.ws.flush().and_then(|_| self.ws.read().map(|_| ()));
            match r {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    // Not `wait_until`: it refuses to wait while the emulator stops, and a
                    // stop should still say goodbye.
                    if now >= deadline || self.w.wait(Some(deadline - now)).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
}
