//! Opening a connection without blocking: TCP connect, TLS handshake and WebSocket client
//! handshake, each driven through `WouldBlock` by the I/O thread's poll, so that `stop()`
//! interrupts any of them.

use crate::endpoint::AccessUrl;
use crate::error::{ConnectError, Error, Result};
use crate::options::Options;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use native_tls::{HandshakeError as TlsHandshakeError, MidHandshakeTlsStream, TlsConnector};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

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

/// The WebSocket configuration: frames up to the service's message limit plus headroom.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

enum Stage {
    Tcp(TcpStream),
    Tls(MidHandshakeTlsStream<TcpStream>),
    WsStart(Stream),
    Ws(MidHandshake<ClientHandshake<Stream>>),
    Done,
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
        let addrs: Vec<SocketAddr> = (url.host(), url.port())
            .to_socket_addrs()
            .map_err(|e| Error::io(&e))?
            .collect();
        let mut d = Dialer {
            stage: Stage::Done,
            url,
            addrs: addrs.into_iter(),
            tls,
            subprotocol: options.protocol.name(),
            user_agent: options.user_agent.clone(),
            token,
        };
        d.connect_next(registry, None)?;
        Ok(d)
    }

    fn connect_next(&mut self, registry: &Registry, last: Option<io::Error>) -> Result<()> {
        let mut last = last;
        for addr in self.addrs.by_ref() {
            match TcpStream::connect(addr) {
                Ok(mut s) => {
                    registry
                        .register(&mut s, self.token, Interest::READABLE | Interest::WRITABLE)
                        .map_err(|e| Error::io(&e))?;
                    self.stage = Stage::Tcp(s);
                    return Ok(());
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
        Err(Error::io(&e))
    }

    /// Drives the attempt as far as the socket allows. `Ok(None)`: waiting for readiness.
    pub(crate) fn advance(&mut self, registry: &Registry) -> Result<Option<WebSocket<Stream>>> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Tcp(mut s) => {
                    if let Some(e) = s.take_error().map_err(|e| Error::io(&e))? {
                        let _ = registry.deregister(&mut s);
                        self.connect_next(registry, Some(e))?;
                        continue;
                    }
                    match s.peer_addr() {
                        Ok(_) => {}
                        Err(e)
                            if e.kind() == io::ErrorKind::NotConnected
                                || e.kind() == io::ErrorKind::WouldBlock =>
                        {
                            self.stage = Stage::Tcp(s);
                            return Ok(None);
                        }
                        Err(e) => {
                            let _ = registry.deregister(&mut s);
                            self.connect_next(registry, Some(e))?;
                            continue;
                        }
                    }
                    let _ = s.set_nodelay(true);
                    match &self.tls {
                        None => self.stage = Stage::WsStart(Stream::Plain(s)),
                        Some(c) => {
                            let host = self.url.host().trim_matches(['[', ']']).to_owned();
                            self.stage = tls_step(c.connect(&host, s))?;
                        }
                    }
                }
                Stage::Tls(mid) => {
                    self.stage = tls_step(mid.handshake())?;
                    if matches!(self.stage, Stage::Tls(_)) {
                        return Ok(None);
                    }
                }
                Stage::WsStart(stream) => {
                    let request = self.request()?;
                    let r =
                        tungstenite::client::client_with_config(request, stream, Some(ws_config()));
                    if let Some(ws) = self.ws_step(r)? {
                        return Ok(Some(ws));
                    }
                    return Ok(None);
                }
                Stage::Ws(mid) => {
                    if let Some(ws) = self.ws_step(mid.handshake())? {
                        return Ok(Some(ws));
                    }
                    return Ok(None);
                }
                Stage::Done => {
                    return Err(Error::Connect(ConnectError::Handshake(
                        "connection attempt already finished".into(),
                    )))
                }
            }
        }
    }

    fn request(&self) -> Result<tungstenite::handshake::client::Request> {
        let mut req = self
            .url
            .url()
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Connect(ConnectError::Handshake(e.to_string())))?;
        let h = req.headers_mut();
        h.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(self.subprotocol),
        );
        if let Ok(ua) = HeaderValue::from_str(&self.user_agent) {
            h.insert("User-Agent", ua);
        }
        Ok(req)
    }

    fn ws_step(
        &mut self,
        r: std::result::Result<
            (WebSocket<Stream>, tungstenite::handshake::client::Response),
            HandshakeError<ClientHandshake<Stream>>,
        >,
    ) -> Result<Option<WebSocket<Stream>>> {
        match r {
            Ok((ws, _response)) => Ok(Some(ws)),
            Err(HandshakeError::Interrupted(mid)) => {
                self.stage = Stage::Ws(mid);
                Ok(None)
            }
            Err(HandshakeError::Failure(e)) => Err(handshake_error(e)),
        }
    }

    /// Stops the attempt and removes its socket from the poll.
    pub(crate) fn abort(mut self, registry: &Registry) {
        let _ = match &mut self.stage {
            Stage::Tcp(s) => registry.deregister(s),
            Stage::Tls(mid) => registry.deregister(mid.get_mut()),
            Stage::WsStart(s) => registry.deregister(s.tcp()),
            Stage::Ws(mid) => registry.deregister(mid.get_mut().get_mut().tcp()),
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
        Err(TlsHandshakeError::Failure(e)) => Err(Error::Connect(ConnectError::Tls(e.to_string()))),
    }
}

/// Maps a handshake failure; the request (and its token) is never part of the message.
fn handshake_error(e: tungstenite::Error) -> Error {
    use tungstenite::error::ProtocolError as P;
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .unwrap_or_default();
            Error::Connect(ConnectError::Http {
                status: resp.status().as_u16(),
                body,
            })
        }
        tungstenite::Error::Io(e) => Error::io(&e),
        tungstenite::Error::Protocol(P::SecWebSocketSubProtocolError(s)) => {
            Error::Protocol(format!("the service did not accept the subprotocol: {s}"))
        }
        tungstenite::Error::Tls(t) => Error::Connect(ConnectError::Tls(t.to_string())),
        other => Error::Connect(ConnectError::Handshake(other.to_string())),
    }
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
    b.build()
        .map_err(|e| Error::Connect(ConnectError::Tls(e.to_string())))
}
