//! The socket side of one WebSocket, shared by every state it is in: its stream, the bytes
//! it read but did not handle and those it could not write yet, the close handshake — and
//! what the loop lends a socket while it drives it ([`Io`]) and hears back ([`Step`]).
//!
//! [`Refused`] is a WebSocket without a session, closed at once (a refused recovery); a
//! `connection::Connection` is one whose session is attached.

use crate::frames::OutFrame;
use crate::messages::{Ctx, Flow, Incoming};
use crate::net::{read_now, write_now, Stream};
use crate::shared::Shared;
use crate::websocket;
use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_protocol::websocket::{FrameReader, Inbound};

/// Bytes read per system call (into the loop's buffer).
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Bytes gathered per write system call.
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;
/// Frames moved from a session per lock.
pub(crate) const BATCH: usize = 256;
/// How long a graceful close (and the last bytes of a drop mid-frame) may take.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Larger buffers are let go once empty, so that a burst leaves nothing behind.
const KEEP_CAPACITY: usize = 4096;

/// What handles a text frame from the client: `messages::on_frame`, or a test's.
pub(crate) type FrameHandler = fn(Ctx<'_>, Incoming<'_>) -> Flow;

/// What the loop lends the connection it drives: its buffers (shared by all its
/// connections, so that an idle connection holds none) and the emulator's state.
pub(crate) struct Io {
    pub shared: Arc<Shared>,
    pub on_frame: FrameHandler,
    pub rbuf: Box<[u8]>,
    pub wbuf: Vec<u8>,
    pub batch: Vec<OutFrame>,
}

impl Io {
    pub fn new(shared: Arc<Shared>, on_frame: FrameHandler) -> Io {
        Io {
            shared,
            on_frame,
            rbuf: vec![0; READ_CHUNK].into_boxed_slice(),
            wbuf: Vec::with_capacity(WRITE_CHUNK + 1024),
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// Lets go of the write buffer after a large frame made it grow.
    pub fn trim(&mut self) {
        if self.wbuf.capacity() > 4 * WRITE_CHUNK {
            self.wbuf = Vec::with_capacity(WRITE_CHUNK + 1024);
        }
    }
}

/// What the loop saw on the socket.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub readable: bool,
    pub writable: bool,
}

/// What the loop does with a connection after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for readiness, a wake-up or the timer.
    Idle,
    /// It has more to do now: drive it again after the others.
    Again,
    /// The socket is done: forget it.
    Closed,
}

/// The frame-level I/O of one WebSocket: its stream, what it read but did not handle, and
/// what it could not write yet.
pub(crate) struct Wire {
    pub stream: Stream,
    pub reader: FrameReader,
    /// Bytes the socket did not take yet; empty (no allocation) while it keeps up.
    pub out: Vec<u8>,
    /// The socket may have bytes: read until it has none (readiness is edge-triggered).
    pub readable: bool,
    /// The socket took all we wrote: no need to wait for it.
    pub writable: bool,
}

impl Wire {
    pub fn new(stream: Stream, leftover: Vec<u8>) -> Wire {
        Wire {
            stream,
            // Frames the client sent right behind its upgrade request.
            reader: websocket::reader(leftover),
            out: Vec::new(),
            readable: true,
            writable: true,
        }
    }

    pub fn note(&mut self, ready: Ready) {
        self.readable |= ready.readable;
        self.writable |= ready.writable;
    }

    /// Writes what is left in `out`. Returns whether it is all written.
    pub fn flush_out(&mut self) -> io::Result<bool> {
        if self.out.is_empty() {
            return Ok(true);
        }
        if !self.writable {
            return Ok(false);
        }
        let n = write_now(&mut self.stream, &self.out)?;
        self.out.drain(..n);
        if !self.out.is_empty() {
            self.writable = false;
            return Ok(false);
        }
        Ok(true)
    }

    /// Lets go of buffers a burst made grow (call when the connection is quiet: kept while
    /// it is busy, they save an allocation per blocked write or split frame).
    pub fn trim(&mut self) {
        if self.out.is_empty() && self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        self.reader.trim();
    }

    /// Writes `bytes` (from the loop's buffer) behind what is left; keeps what the socket
    /// does not take.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.flush_out()? {
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        let n = write_now(&mut self.stream, bytes)?;
        if n < bytes.len() {
            self.out.extend_from_slice(&bytes[n..]);
            self.writable = false;
        }
        Ok(())
    }

    /// One turn of a close we started: writes what is left, reads (and drops) frames until
    /// the client's close frame or EOF. Returns whether the close is over.
    pub fn close_step(&mut self, rbuf: &mut [u8], deadline: Instant) -> bool {
        match self.flush_out() {
            Ok(_) => {}
            Err(_) => return true,
        }
        while self.readable {
            match read_now(&mut self.stream, rbuf) {
                Ok(None) => self.readable = false,
                Ok(Some(0)) | Err(_) => return true,
                Ok(Some(n)) => {
                    let mut replied = false;
                    let fed = self.reader.feed(&mut rbuf[..n], &mut |m| match m {
                        Inbound::Close(_) => {
                            replied = true;
                            ControlFlow::Break(())
                        }
                        _ => ControlFlow::Continue(()),
                    });
                    if replied || fed.is_err() {
                        return true;
                    }
                }
            }
        }
        Instant::now() >= deadline
    }

    /// Starts a close: `disconnected` (the frame given, in the session's subprotocol; none
    /// for a simple client), then a close frame with the reason.
    pub fn begin_close(&mut self, disconnected: Option<&OutFrame>, reason: &str, code: CloseCode) {
        if let Some(f) = disconnected {
            websocket::frame(f, &mut self.out);
        }
        websocket::close(code, reason, &mut self.out);
    }
}

/// A WebSocket without a session, closed at once with a close code (a refused recovery).
pub(crate) struct Refused {
    wire: Wire,
    deadline: Instant,
}

impl Refused {
    pub fn new(mut wire: Wire, code: CloseCode, reason: &str) -> Refused {
        websocket::close(code, reason, &mut wire.out);
        Refused {
            wire,
            deadline: Instant::now() + CLOSE_TIMEOUT,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        Some(self.deadline)
    }

    pub fn drive(&mut self, io: &mut Io, ready: Ready) -> Step {
        self.wire.note(ready);
        if self.wire.close_step(&mut io.rbuf, self.deadline) {
            Step::Closed
        } else {
            Step::Idle
        }
    }
}
