//! Opening a connection without blocking: TCP connect, the proxy's `CONNECT` (when there is
//! a proxy), TLS handshake and WebSocket client handshake, each driven through `WouldBlock`
//! by the I/O thread's poll, so that `stop()` interrupts any of them.

use crate::endpoint::AccessUrl;
use crate::error::{ConnectError, Error, Result};
use crate::options::Options;
use crate::proxy::{Proxy, Tunnel};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use native_tls::{HandshakeError as TlsHandshakeError, MidHandshakeTlsStream, TlsConnector};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};

/// The socket of a connection: plain TCP or TLS over TCP, both non-blocking.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut(),
        }
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

/// The stages of a connection attempt, in order. A new stage (a proxy's `CONNECT`, say)
/// is one more variant, one more step function, and one more arm in [`Dialer::step`].
enum Stage {
    Tcp(TcpStream),
    /// The `CONNECT` exchange with the proxy (B43), between TCP and TLS.
    Proxy(Box<Tunnel<TcpStream>>),
    Tls(MidHandshakeTlsStream<TcpStream>),
    WsStart(Stream),
    Ws(Upgrade),
    Done,
}

/// What one step of a stage did.
enum Progress {
    /// Go on at once with this stage.
    Next(Stage),
    /// Wait for the socket's readiness in this stage.
    Wait(Stage),
    /// The WebSocket is open: its stream, and the bytes read behind the upgrade's head.
    Open(Stream, Vec<u8>),
}

/// The WebSocket upgrade in progress. We write the request ourselves rather than through
/// tungstenite's `ClientHandshake`, which logs the whole request — the access token with it —
/// at trace level (B37).
struct Upgrade {
    stream: Stream,
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
    accept: String,
}

/// One connection attempt in progress.
pub(crate) struct Dialer {
    stage: Stage,
    url: AccessUrl,
    addrs: std::vec::IntoIter<SocketAddr>,
    tls: Option<TlsConnector>,
    subprotocol: &'static str,
    user_agent: String,
    token: Token,
    /// The proxy of this attempt, resolved from its URL.
    proxy: Option<Proxy>,
}

impl Dialer {
    /// Resolves the host (blocking: the one step `stop()` cannot interrupt) and starts a
    /// non-blocking TCP connect, registered with `registry` under `token`.
    pub(crate) fn start(
        url: AccessUrl,
        options: &Options,
        tls: Option<TlsConnector>,
        registry: &Registry,
        token: Token,
    ) -> Result<Dialer> {
        let proxy = options.proxy.for_url(&url)?;
        let addrs: Vec<SocketAddr> = match &proxy {
            // The service's name is the proxy's to resolve.
            Some(p) => {
                log::debug!("through the proxy {}", p.name());
                (p.host(), p.port())
                    .to_socket_addrs()
                    .map_err(|e| p.io_error(&e))?
                    .collect()
            }
            None => (url.host(), url.port())
                .to_socket_addrs()
                .map_err(Error::io)?
                .collect(),
        };
        let mut d = Dialer {
            stage: Stage::Done,
            url,
            addrs: addrs.into_iter(),
            tls,
            subprotocol: options.protocol.name(),
            user_agent: options.user_agent.clone(),
            token,
            proxy,
        };
        d.stage = d.connect_next(registry, None)?;
        Ok(d)
    }

    /// A TCP connect to the next resolved address; `last` is why the previous one failed.
    fn connect_next(&mut self, registry: &Registry, last: Option<io::Error>) -> Result<Stage> {
        let mut last = last;
        for addr in self.addrs.by_ref() {
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    registry
                        .register(&mut s, self.token, Interest::READABLE | Interest::WRITABLE)
                        .map_err(Error::io)?;
                    return Ok(Stage::Tcp(s));
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the host name resolved to no address",
            )
        });
        Err(self.io_error(e))
    }

    /// A TCP failure, naming the proxy if it was the proxy's connection that failed.
    fn io_error(&self, e: io::Error) -> Error {
        match &self.proxy {
            Some(p) => p.io_error(&e),
            None => Error::io(e),
        }
    }

    /// Drives the attempt as far as the socket allows. `Ok(None)`: waiting for readiness;
    /// once open, the stream and the bytes of frames the upgrade's last read took in.
    pub(crate) fn advance(&mut self, registry: &Registry) -> Result<Option<(Stream, Vec<u8>)>> {
        loop {
            let stage = std::mem::replace(&mut self.stage, Stage::Done);
            match self.step(stage, registry)? {
                Progress::Next(stage) => self.stage = stage,
                Progress::Wait(stage) => {
                    self.stage = stage;
                    return Ok(None);
                }
                Progress::Open(stream, leftover) => return Ok(Some((stream, leftover))),
            }
        }
    }

    fn step(&mut self, stage: Stage, registry: &Registry) -> Result<Progress> {
        match stage {
            Stage::Tcp(s) => self.tcp_step(s, registry),
            Stage::Proxy(mut tunnel) => {
                if !tunnel.step()? {
                    return Ok(Progress::Wait(Stage::Proxy(tunnel)));
                }
                Ok(Progress::Next(self.secure(tunnel.into_inner())?))
            }
            Stage::Tls(mid) => match tls_step(mid.handshake())? {
                stage @ Stage::Tls(_) => Ok(Progress::Wait(stage)),
                stage => Ok(Progress::Next(stage)),
            },
            Stage::WsStart(stream) => Ok(Progress::Next(self.begin_upgrade(stream))),
            Stage::Ws(mut up) => match self.upgrade_step(&mut up)? {
                Some(leftover) => Ok(Progress::Open(up.stream, leftover)),
                None => Ok(Progress::Wait(Stage::Ws(up))),
            },
            Stage::Done => Err(handshake("connection attempt already finished")),
        }
    }

    /// The TCP connect: done, still in progress, or failed (then the next address).
    fn tcp_step(&mut self, mut s: TcpStream, registry: &Registry) -> Result<Progress> {
        if let Some(e) = s.take_error().map_err(|e| self.io_error(e))? {
            let _ = registry.deregister(&mut s);
            return Ok(Progress::Next(self.connect_next(registry, Some(e))?));
        }
        match s.peer_addr() {
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.kind() == io::ErrorKind::WouldBlock =>
            {
                return Ok(Progress::Wait(Stage::Tcp(s)));
            }
            Err(e) => {
                let _ = registry.deregister(&mut s);
                return Ok(Progress::Next(self.connect_next(registry, Some(e))?));
            }
        }
        let _ = s.set_nodelay(true);
        Ok(Progress::Next(self.after_tcp(s)?))
    }

    /// What follows the TCP connection: the proxy's tunnel if there is a proxy, else
    /// [`secure`](Self::secure).
    fn after_tcp(&self, s: TcpStream) -> Result<Stage> {
        Ok(match &self.proxy {
            Some(p) => {
                let target = format!("{}:{}", self.url.host(), self.url.port());
                Stage::Proxy(Box::new(Tunnel::new(s, p, &target, &self.user_agent)))
            }
            None => self.secure(s)?,
        })
    }

    /// What follows the TCP connection (or the proxy's tunnel): TLS for `wss://`, else the
    /// upgrade.
    fn secure(&self, s: TcpStream) -> Result<Stage> {
        match &self.tls {
            None => Ok(Stage::WsStart(Stream::Plain(s))),
            Some(c) => {
                // Through a proxy too, TLS runs to the service: SNI and certificate check
                // name the service's host, never the proxy's.
                let host = self.url.host().trim_matches(['[', ']']).to_owned();
                tls_step(c.connect(&host, s))
            }
        }
    }

    /// The upgrade request, ready to be written.
    fn begin_upgrade(&self, stream: Stream) -> Stage {
        let key = tungstenite::handshake::client::generate_key();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        Stage::Ws(Upgrade {
            stream,
            request: self.request(&key),
            written: 0,
            response: Vec::with_capacity(1024),
            accept,
        })
    }

    /// The upgrade request (RFC 6455 §4.1).
    fn request(&self, key: &str) -> Vec<u8> {
        let url = self.url.url();
        let mut target = url.path().to_owned();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", self.url.host()),
            None => self.url.host().to_owned(),
        };
        // The user agent is ours to sanitise; the URL parts are already percent-encoded.
        let ua: String = self
            .user_agent
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Protocol: {}\r\nUser-Agent: {ua}\r\n\r\n",
            self.subprotocol
        )
        .into_bytes()
    }

    /// Writes the request, reads the response. `Some(leftover bytes)` once upgraded.
    fn upgrade_step(&self, up: &mut Upgrade) -> Result<Option<Vec<u8>>> {
        while up.written < up.request.len() {
            match up.stream.write(&up.request[up.written..]) {
                Ok(0) => return Err(closed_during_upgrade()),
                Ok(n) => up.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(e)),
            }
        }
        let _ = up.stream.flush();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(done) = self.parse_response(up)? {
                return Ok(Some(done));
            }
            if up.response.len() > 64 * 1024 {
                return Err(handshake("the upgrade response is too large"));
            }
            match up.stream.read(&mut buf) {
                Ok(0) => {
                    // A refused upgrade may end the connection right after its body.
                    return match parse_head(&up.response)? {
                        Some((status, _, head_len, _)) if status != 101 => {
                            Err(http_error(status, &up.response[head_len..]))
                        }
                        _ => Err(closed_during_upgrade()),
                    };
                }
                Ok(n) => up.response.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(e)),
            }
        }
    }

    /// `Ok(None)`: the response is incomplete.
    fn parse_response(&self, up: &Upgrade) -> Result<Option<Vec<u8>>> {
        let Some((status, headers, head_len, content_length)) = parse_head(&up.response)? else {
            return Ok(None);
        };
        if status != 101 {
            let body = &up.response[head_len..];
            if body.len() < content_length.unwrap_or(0).min(4096) {
                return Ok(None);
            }
            return Err(http_error(status, body));
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if header("Sec-WebSocket-Accept").map(str::trim) != Some(up.accept.as_str()) {
            return Err(handshake(
                "bad Sec-WebSocket-Accept in the upgrade response",
            ));
        }
        match header("Sec-WebSocket-Protocol").map(str::trim) {
            Some(p) if p == self.subprotocol => {}
            Some(p) => {
                return Err(Error::Protocol(format!(
                    "the service chose the subprotocol `{p}`, not `{}`",
                    self.subprotocol
                )))
            }
            None => {
                return Err(Error::Protocol(format!(
                    "the service did not accept the subprotocol `{}`",
                    self.subprotocol
                )))
            }
        }
        Ok(Some(up.response[head_len..].to_vec()))
    }

    /// Stops the attempt and removes its socket from the poll.
    pub(crate) fn abort(mut self, registry: &Registry) {
        let _ = match &mut self.stage {
            Stage::Tcp(s) => registry.deregister(s),
            Stage::Proxy(t) => registry.deregister(t.get_mut()),
            Stage::Tls(mid) => registry.deregister(mid.get_mut()),
            Stage::WsStart(s) => registry.deregister(s.tcp()),
            Stage::Ws(up) => registry.deregister(up.stream.tcp()),
            Stage::Done => Ok(()),
        };
    }
}

fn tls_step(
    r: std::result::Result<native_tls::TlsStream<TcpStream>, TlsHandshakeError<TcpStream>>,
) -> Result<Stage> {
    match r {
        Ok(s) => Ok(Stage::WsStart(Stream::Tls(Box::new(s)))),
        Err(TlsHandshakeError::WouldBlock(mid)) => Ok(Stage::Tls(mid)),
        Err(TlsHandshakeError::Failure(e)) => Err(Error::tls(e)),
    }
}

/// Status, headers, head length and `Content-Length` of a response head.
type Head = (u16, Vec<(String, String)>, usize, Option<usize>);

/// Parses the response head; `Ok(None)` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            let hs: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let content_length = hs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok());
            Ok(Some((resp.code.unwrap_or(0), hs, len, content_length)))
        }
        Err(e) => Err(handshake(&format!("malformed upgrade response: {e}"))),
    }
}

/// A refused upgrade: its status and (at most 4 KB of) its body. The request, and the token
/// in it, is never part of the error.
fn http_error(status: u16, body: &[u8]) -> Error {
    let body = &body[..body.len().min(4096)];
    Error::Connect(ConnectError::Http {
        status,
        body: String::from_utf8_lossy(body).trim().to_owned(),
    })
}

fn handshake(why: &str) -> Error {
    Error::Connect(ConnectError::Handshake(why.to_owned()))
}

fn closed_during_upgrade() -> Error {
    Error::Connect(ConnectError::Closed {
        code: None,
        reason: "connection closed during the WebSocket upgrade".into(),
    })
}

/// The TLS connector for `options` (system roots plus the added ones).
pub(crate) fn tls_connector(options: &Options) -> Result<TlsConnector> {
    let mut b = TlsConnector::builder();
    for c in &options.root_certificates {
        b.add_root_certificate(c.clone());
    }
    if options.accept_invalid_certs {
        log::warn!("TLS certificate verification is OFF (danger_accept_invalid_certs)");
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build().map_err(Error::tls)
}
