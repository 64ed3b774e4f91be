//! A tiny scripted WebSocket "service" for hostile-input tests: it accepts connections on
//! `127.0.0.1:0`, answers with one subprotocol (the reliable JSON one unless the test picks
//! another), and sends whatever the test says — including bytes no real service would send
//! (raw frames written by hand).
//!
//! Every wait is bounded: accepts go through a channel read with a timeout, reads use a
//! socket read timeout.

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
pub const PROTOBUF_RELIABLE: &str = "protobuf.reliable.webpubsub.azure.v1";
/// The access token in [`Server::url`]: a test can look for it in logs.
pub const ACCESS_TOKEN: &str = "hostile-access-token-0123456789";

pub struct Server {
    addr: SocketAddr,
    accepted: Receiver<Conn>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One accepted WebSocket connection.
pub struct Conn {
    pub ws: WebSocket<TcpStream>,
    /// The request target of the upgrade (path and query).
    pub uri: String,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(RELIABLE)
    }

    /// A server that accepts with `subprotocol`.
    pub fn start_with(subprotocol: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("scripted-server".into())
            .spawn(move || {
                loop {
                    let stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    };
                    // `Drop` wakes the blocking accept with a connection of its own.
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    stream
                        .set_write_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut uri = String::new();
                    // The callback's signature is tungstenite's (a large `Err` response).
                    #[allow(clippy::result_large_err)]
                    let ws =
                        tungstenite::accept_hdr(stream, |req: &Request, mut resp: Response| {
                            uri = req.uri().to_string();
                            resp.headers_mut().insert(
                                "Sec-WebSocket-Protocol",
                                HeaderValue::from_static(subprotocol),
                            );
                            Ok(resp)
                        });
                    if let Ok(ws) = ws {
                        let _ = tx.send(Conn { ws, uri });
                    }
                }
            })
            .unwrap();
        Server {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!(
            "ws://{}/client/hubs/hostile?access_token={ACCESS_TOKEN}",
            self.addr
        )
    }

    /// The next accepted connection; panics after `timeout`.
    pub fn accept(&self, timeout: Duration) -> Conn {
        self.accepted
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no connection within {timeout:?}: {e}"))
    }

    /// A connection accepted within `timeout`, if any.
    pub fn try_accept(&self, timeout: Duration) -> Option<Conn> {
        match self.accepted.recv_timeout(timeout) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Conn {
    pub fn text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).unwrap();
    }

    pub fn connected(&mut self, connection_id: &str, reconnection_token: &str) {
        self.text(&format!(
            r#"{{"type":"system","event":"connected","connectionId":"{connection_id}","userId":"u","reconnectionToken":"{reconnection_token}"}}"#
        ));
    }

    /// A server message with text `data` and sequence id `seq`.
    pub fn server_text(&mut self, data: &str, seq: u64) {
        self.text(&format!(
            r#"{{"type":"message","from":"server","dataType":"text","data":"{data}","sequenceId":{seq}}}"#
        ));
    }

    pub fn binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).unwrap();
    }

    /// The next binary frame from the client within `timeout`.
    pub fn read_binary(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Binary(b)) => return Some(b.to_vec()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Writes bytes straight to the socket (hand-made frames; server frames are unmasked).
    pub fn raw(&mut self, bytes: &[u8]) {
        let s = self.ws.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Like [`Conn::raw`], for a write the client may refuse midway (it resets the socket).
    pub fn try_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let s = self.ws.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    /// The next text frame from the client within `timeout`.
    pub fn read_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return None
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads client frames until one contains `needle`, within `timeout`.
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let t = self.read_text(left)?;
            if t.contains(needle) {
                return Some(t);
            }
        }
    }
}

/// A server-to-client (unmasked) frame header and payload.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else if n <= u16::MAX as usize {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}
