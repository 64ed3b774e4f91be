//! Sockets of the emulator: a non-blocking TCP stream, optionally wrapped in TLS, with a
//! per-connection mio `Poll` so that one thread can wait on its socket and on a wake-up
//! from other threads (queued frames, commands, stop).

use crate::shared::Shared;
use crate::wake::Link;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const SOCKET: mio::Token = mio::Token(0);
pub(crate) const WAKER: mio::Token = mio::Token(1);

/// An accepted socket: plain TCP or TLS over TCP, both non-blocking.
pub(crate) enum Stream {
    Plain(mio::net::TcpStream),
    Tls(Box<native_tls::TlsStream<mio::net::TcpStream>>),
}

impl Stream {
    /// Abrupt end (fault injection): TCP shutdown of both directions, no close frame, no
    /// TLS close_notify.
    pub(crate) fn shutdown_abruptly(&self) {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        };
        let _ = tcp.shutdown(std::net::Shutdown::Both);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection thread's readiness machinery; its link is known to `Shared` while alive.
pub(crate) struct Waiter {
    pub poll: mio::Poll,
    pub events: mio::Events,
    pub link: Arc<Link>,
    pub shared: Arc<Shared>,
    id: u64,
}

impl Waiter {
    pub fn new(shared: Arc<Shared>, id: u64) -> io::Result<Waiter> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let link = Arc::new(Link::new(waker));
        shared.add_link(id, link.clone());
        Ok(Waiter {
            poll,
            events: mio::Events::with_capacity(8),
            link,
            shared,
            id,
        })
    }

    /// Waits for readiness or a wake-up, at most `timeout`. Returns whether the socket
    /// reported an event.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        self.link.woken();
        Ok(self.events.iter().any(|e| e.token() == SOCKET))
    }

    /// Waits for the socket until `deadline`; fails on timeout or when the emulator stops.
    pub fn wait_until(&mut self, deadline: Instant) -> io::Result<()> {
        if self.shared.stopping() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "emulator stopping",
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        self.wait(Some(deadline - now)).map(|_| ())
    }

    /// Writes all of `buf`, waiting on `WouldBlock` until `deadline`.
    pub fn write_all(
        &mut self,
        s: &mut Stream,
        mut buf: &[u8],
        deadline: Instant,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            match s.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_until(deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            match s.flush() {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_until(deadline)?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads some bytes into `buf`, waiting on `WouldBlock` until `deadline`; 0 is EOF.
    pub fn read_some(
        &mut self,
        s: &mut Stream,
        buf: &mut [u8],
        deadline: Instant,
    ) -> io::Result<usize> {
        loop {
            match s.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_until(deadline)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Accepts TLS on `tcp` if the emulator serves TLS.
    pub fn accept_tls(
        &mut self,
        tcp: mio::net::TcpStream,
        deadline: Instant,
    ) -> io::Result<Stream> {
        let Some(acceptor) = self.shared.cfg.tls.clone() else {
            return Ok(Stream::Plain(tcp));
        };
        let mut attempt = acceptor.accept(tcp);
        loop {
            match attempt {
                Ok(s) => return Ok(Stream::Tls(Box::new(s))),
                Err(native_tls::HandshakeError::WouldBlock(mid)) => {
                    self.wait_until(deadline)?;
                    attempt = mid.handshake();
                }
                Err(native_tls::HandshakeError::Failure(e)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.shared.remove_link(self.id);
    }
}
