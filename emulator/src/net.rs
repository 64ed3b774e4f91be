//! Sockets of the emulator: an accepted non-blocking TCP stream, optionally wrapped in TLS,
//! and the TLS handshake that runs on the loop a step per readiness.

use std::io::{self, Read, Write};

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

/// Where a TLS handshake stands.
pub(crate) enum Tls {
    Done(Stream),
    /// Waiting for the peer; go on with [`continue_tls`] at the next readiness.
    Pending(Box<native_tls::MidHandshakeTlsStream<mio::net::TcpStream>>),
}

/// Starts the server side of TLS on `tcp`.
pub(crate) fn accept_tls(
    acceptor: &native_tls::TlsAcceptor,
    tcp: mio::net::TcpStream,
) -> io::Result<Tls> {
    tls_step(acceptor.accept(tcp))
}

/// Goes on with a handshake that waited for the peer.
pub(crate) fn continue_tls(
    mid: native_tls::MidHandshakeTlsStream<mio::net::TcpStream>,
) -> io::Result<Tls> {
    tls_step(mid.handshake())
}

fn tls_step(
    r: Result<
        native_tls::TlsStream<mio::net::TcpStream>,
        native_tls::HandshakeError<mio::net::TcpStream>,
    >,
) -> io::Result<Tls> {
    match r {
        Ok(s) => Ok(Tls::Done(Stream::Tls(Box::new(s)))),
        Err(native_tls::HandshakeError::WouldBlock(mid)) => Ok(Tls::Pending(Box::new(mid))),
        Err(native_tls::HandshakeError::Failure(e)) => {
            Err(io::Error::new(io::ErrorKind::InvalidData, e))
        }
    }
}

/// Reads what `s` has into `buf`: `Ok(None)` when it has nothing now, `Ok(Some(0))` at
/// EOF.
pub(crate) fn read_now(s: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `buf` as `s` takes now. Returns how much it took; less than all
/// means the socket is full (wait for it to be writable).
pub(crate) fn write_now(s: &mut impl Write, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match s.write(&buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // No flush: TCP keeps no bytes in user space, and TLS wrote its records through.
    Ok(done)
}
