//! An open WebSocket's socket side: the stream, the frames read but not yet whole, and the
//! bytes written but not yet taken by the socket. The framing is the protocol crate's
//! (`websocket`), shared with the emulator.
//!
//! Why not tungstenite's `WebSocket` (the handshake helpers still are tungstenite's): it
//! keeps a 128 KiB read buffer per connection, zero-filled on the first read (128 KiB of
//! resident memory for every idle client), and its buffers keep what the largest frame
//! needed for the connection's life. Configured small it still grows, and it cannot be
//! re-created at a frame boundary without losing the bytes it read ahead. Here every read
//! goes into the loop's buffer, shared by all its connections; a connection keeps bytes
//! only for an incomplete frame or unwritten output, and lets go of large buffers as soon
//! as they are empty (B45). Measured with 1,000 idle clients: see the crate docs' "Many
//! clients in one process".

use crate::protocol::websocket::{self, FrameReader, Role};
use crate::transport::Stream;
use crate::wire::WireFrame;
use mio::net::TcpStream;
use std::io::{self, ErrorKind, Read, Write};

/// The largest message or frame the client reads (16 MiB): the service's 1 MB limit with
/// headroom for its envelopes and for a service that allows more.
pub(super) const MAX_FRAME: usize = 16 << 20;
/// Output buffers above this are let go once written.
const KEEP_OUT: usize = 4096;

/// The socket and its output.
pub(super) struct Socket {
    stream: Stream,
    out: Vec<u8>,
    /// How much of `out` the socket took.
    written: usize,
}

impl Socket {
    pub(super) fn new(stream: Stream) -> Socket {
        Socket {
            stream,
            out: Vec::new(),
            written: 0,
        }
    }

    /// The reader of a connection whose upgrade left `leftover` bytes behind its head.
    pub(super) fn reader(leftover: Vec<u8>) -> FrameReader {
        FrameReader::with_bytes(Role::Client, MAX_FRAME, leftover)
    }

    pub(super) fn tcp(&mut self) -> &mut TcpStream {
        self.stream.tcp()
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// Room for `bytes` more bytes of frames (one allocation for a batch of them).
    pub(super) fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// Queues a message frame (masked, as a client's must be); [`flush`](Self::flush) writes.
    pub(super) fn queue(&mut self, frame: &WireFrame) {
        match frame {
            WireFrame::Text(t) => websocket::write_text(t, Some(mask()), &mut self.out),
            WireFrame::Binary(b) => websocket::write_binary(b, Some(mask()), &mut self.out),
        }
    }

    /// Answers a ping.
    pub(super) fn queue_pong(&mut self, payload: &[u8]) {
        websocket::write_pong(payload, Some(mask()), &mut self.out);
    }

    /// Queues our close frame.
    pub(super) fn queue_close(&mut self, code: u16) {
        websocket::write_close(code, "", Some(mask()), &mut self.out);
    }

    /// Queues the answer to the service's close frame.
    pub(super) fn queue_close_reply(&mut self, received: Option<(u16, &str)>) {
        websocket::write_close_reply(received, Some(mask()), &mut self.out);
    }

    /// Whether queued bytes wait for the socket.
    pub(super) fn has_unwritten(&self) -> bool {
        self.written < self.out.len()
    }

    /// Writes what is queued until the socket takes no more (the rest waits for the writable
    /// edge); lets go of a large buffer once it is written.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        self.stream.flush()
    }
}

/// A fresh masking key per frame, from the thread's CSPRNG: RFC 6455 §5.3 asks for keys a
/// script on the path cannot predict.
fn mask() -> [u8; 4] {
    rand::random()
}
