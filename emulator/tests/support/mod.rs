//! Helpers for the emulator tests: a raw tungstenite client, a tiny HTTP client, and
//! bounded waits on observations.
#![allow(dead_code)]

use crossbeam_channel::Receiver;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use webpubsub_emulator::{Emulator, Observation};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage, Subprotocol};

pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
pub const PLAIN: &str = "json.webpubsub.azure.v1";
pub const PROTOBUF_RELIABLE: &str = "protobuf.reliable.webpubsub.azure.v1";
pub const PROTOBUF: &str = "protobuf.webpubsub.azure.v1";
/// Bound of every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A raw WebSocket client over a blocking TcpStream (or TLS), speaking one subprotocol:
/// it encodes what it sends and decodes what it receives in that codec, and fails the test
/// on a frame of the other kind (text on protobuf, binary on JSON).
pub struct Ws<S: Read + Write = TcpStream> {
    pub ws: WebSocket<S>,
    /// The subprotocol it offered (JSON when it offered none it knows).
    pub subprotocol: Subprotocol,
    /// From the first `connected` message.
    pub connection_id: String,
    pub user_id: Option<String>,
    pub reconnection_token: Option<String>,
}

/// What a refused upgrade looked like.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

pub fn request(
    url: &str,
    subprotocol: Option<&str>,
    bearer: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("valid url");
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

fn tcp_for(url: &str) -> TcpStream {
    let u = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Opens a WebSocket; on success waits for `connected`.
pub fn try_connect(
    url: &str,
    subprotocol: Option<&str>,
    bearer: Option<&str>,
) -> Result<Ws, Refused> {
    let stream = tcp_for(url);
    handshake(request(url, subprotocol, bearer), stream)
}

/// The subprotocol a `Sec-WebSocket-Protocol` request header offers first.
fn offered(req: &tungstenite::handshake::client::Request) -> Subprotocol {
    req.headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| Subprotocol::from_name(p.trim())))
        .unwrap_or(Subprotocol::Json)
}

pub fn handshake<S: Read + Write>(
    req: tungstenite::handshake::client::Request,
    stream: S,
) -> Result<Ws<S>, Refused> {
    let subprotocol = offered(&req);
    match tungstenite::client(req, stream) {
        Ok((ws, _resp)) => {
            let mut c = Ws {
                ws,
                subprotocol,
                connection_id: String::new(),
                user_id: None,
                reconnection_token: None,
            };
            match c.recv() {
                ServiceMessage::Connected {
                    connection_id,
                    user_id,
                    reconnection_token,
                } => {
                    c.connection_id = connection_id;
                    c.user_id = user_id;
                    c.reconnection_token = reconnection_token;
                }
                other => panic!("expected connected, got {other:?}"),
            }
            Ok(c)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(Refused {
            status: resp.status().as_u16(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or(&[])).into_owned(),
        }),
        Err(e) => panic!("handshake failed: {e:?}"),
    }
}

pub fn connect(url: &str) -> Ws {
    try_connect(url, Some(RELIABLE), None).expect("upgrade accepted")
}

pub fn connect_plain(url: &str) -> Ws {
    try_connect(url, Some(PLAIN), None).expect("upgrade accepted")
}

/// Connects speaking `subprotocol`.
pub fn connect_as(subprotocol: Subprotocol, url: &str) -> Ws {
    try_connect(url, Some(subprotocol.name()), None).expect("upgrade accepted")
}

/// One client per subprotocol ([`Subprotocol::ALL`]'s order) in hub `chat` and group `g`,
/// user `u-<subprotocol>`, allowed to publish to groups.
pub fn one_per_subprotocol(emu: &Emulator) -> Vec<Ws> {
    Subprotocol::ALL
        .iter()
        .map(|&p| {
            let url = emu
                .client_url("chat")
                .user_id(format!("u-{p}"))
                .role("webpubsub.sendToGroup")
                .group("g")
                .build();
            connect_as(p, &url)
        })
        .collect()
}

/// The recovery URL of a connection.
pub fn recovery_url(url: &str, c: &Ws) -> String {
    format!(
        "{url}&awps_connection_id={}&awps_reconnection_token={}",
        c.connection_id,
        c.reconnection_token.as_deref().unwrap()
    )
}

/// A simple WebSocket client (no PubSub subprotocol): the socket and the subprotocol the
/// 101 named, if any. `offered` are the subprotocols it offers (none, or unknown ones).
pub fn connect_simple(
    url: &str,
    offered: &[&str],
) -> Result<(WebSocket<TcpStream>, Option<String>), Refused> {
    let mut req = request(url, None, None);
    if !offered.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            offered.join(", ").parse().unwrap(),
        );
    }
    match tungstenite::client(req, tcp_for(url)) {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((ws, chosen))
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err(Refused {
            status: resp.status().as_u16(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or(&[])).into_owned(),
        }),
        Err(e) => panic!("handshake failed: {e:?}"),
    }
}

/// The next data frame of a simple client (bounded by the socket's read timeout).
pub fn next_frame(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return m,
            Ok(Message::Close(f)) => panic!("closed while waiting for a frame: {f:?}"),
            Ok(_) => {}
            Err(e) => panic!("read failed while waiting for a frame: {e}"),
        }
    }
}

/// Reads until the socket's close frame: its code (`None`: EOF or reset without one), and
/// the data frames before it.
pub fn close_code(ws: &mut WebSocket<TcpStream>) -> (Option<CloseCode>, Vec<Message>) {
    let mut before = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                let _ = ws.flush();
                return (f.map(|f| f.code), before);
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => before.push(m),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("socket still open after the read timeout")
            }
            Err(_) => return (None, before),
        }
    }
}

/// The id of the next connection the emulator reports.
pub fn next_connected(rx: &Receiver<Observation>) -> String {
    wait_for(rx, |o| match o {
        Observation::Connected { connection_id, .. } => Some(connection_id.clone()),
        _ => None,
    })
}

/// Opens a recovery socket; returns the socket before reading anything.
pub fn open_raw(url: &str, subprotocol: &str) -> WebSocket<TcpStream> {
    let (ws, _) = tungstenite::client(request(url, Some(subprotocol), None), tcp_for(url))
        .expect("upgrade accepted");
    ws
}

impl<S: Read + Write> Ws<S> {
    /// Sends `msg` in the client's subprotocol.
    pub fn send(&mut self, msg: ClientMessage) {
        let frame = msg.encode_frame(self.subprotocol);
        let message = if frame.is_binary() {
            Message::binary(frame.into_bytes())
        } else {
            Message::text(String::from_utf8(frame.into_bytes()).unwrap())
        };
        self.ws.send(message).expect("send");
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).expect("send");
    }

    /// A data frame decoded in the client's subprotocol; `None` for control frames. Fails
    /// the test on a frame of the other kind or one that does not decode.
    fn decode(&self, m: &Message) -> Option<ServiceMessage> {
        let binary = match m {
            Message::Text(_) => false,
            Message::Binary(_) => true,
            _ => return None,
        };
        assert_eq!(
            binary,
            self.subprotocol.is_binary(),
            "a {} client got a {} frame: {m:?}",
            self.subprotocol,
            if binary { "binary" } else { "text" }
        );
        let payload = m.clone().into_data();
        Some(
            ServiceMessage::decode_frame(self.subprotocol, &payload)
                .unwrap_or_else(|e| panic!("bad frame {m:?}: {e}")),
        )
    }

    /// The next protocol message (bounded by the socket's read timeout).
    pub fn recv(&mut self) -> ServiceMessage {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => panic!("closed while waiting for a message: {f:?}"),
                Ok(m) => {
                    if let Some(msg) = self.decode(&m) {
                        return msg;
                    }
                }
                Err(e) => panic!("read failed while waiting for a message: {e}"),
            }
        }
    }

    /// The next data frame as it came off the wire (text or binary), unparsed.
    pub fn recv_raw(&mut self) -> Message {
        loop {
            match self.ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => return m,
                Ok(Message::Close(f)) => panic!("closed while waiting for a frame: {f:?}"),
                Ok(_) => {}
                Err(e) => panic!("read failed while waiting for a frame: {e}"),
            }
        }
    }

    /// Skips messages until `f` returns `Some`.
    pub fn recv_until<T>(&mut self, mut f: impl FnMut(&ServiceMessage) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "timed out");
            let m = self.recv();
            if let Some(t) = f(&m) {
                return t;
            }
        }
    }

    /// The ack of `ack_id` (skipping other messages).
    pub fn ack(&mut self, ack_id: u64) -> (bool, Option<String>) {
        self.recv_until(|m| match m {
            ServiceMessage::Ack {
                ack_id: id,
                success,
                error,
            } if *id == ack_id => Some((*success, error.as_ref().map(|e| e.name.clone()))),
            _ => None,
        })
    }

    /// Sends a ping and returns every message that arrived before the pong: proves that
    /// nothing else was queued (the emulator writes one connection's frames in order).
    pub fn drain_until_pong(&mut self) -> Vec<ServiceMessage> {
        self.send(ClientMessage::Ping);
        let mut before = Vec::new();
        loop {
            match self.recv() {
                ServiceMessage::Pong => return before,
                m => before.push(m),
            }
        }
    }

    /// Waits for the socket's end: `Some(code)` for a close frame, `None` for EOF/reset.
    pub fn closed(&mut self) -> (Option<CloseCode>, Vec<ServiceMessage>) {
        let mut seen = Vec::new();
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    // Sends the close reply tungstenite queued, so the server's closing
                    // handshake ends now rather than at its timeout.
                    let _ = self.ws.flush();
                    return (f.map(|f| f.code), seen);
                }
                Ok(m) => seen.extend(self.decode(&m)),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("socket still open after the read timeout")
                }
                Err(_) => return (None, seen),
            }
        }
    }
}

/// Waits for the first observation `f` accepts.
pub fn wait_for<T>(rx: &Receiver<Observation>, mut f: impl FnMut(&Observation) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(o) => {
                if let Some(t) = f(&o) {
                    return t;
                }
            }
            Err(_) => panic!("timed out waiting for an observation"),
        }
    }
}

pub fn wait_dropped(rx: &Receiver<Observation>, id: &str) {
    wait_for(rx, |o| match o {
        Observation::Dropped { connection_id, .. } if connection_id == id => Some(()),
        _ => None,
    })
}

pub fn wait_ended(rx: &Receiver<Observation>, id: &str) -> String {
    wait_for(rx, |o| match o {
        Observation::SessionEnded {
            connection_id,
            reason,
            ..
        } if connection_id == id => Some(reason.clone()),
        _ => None,
    })
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Sends one HTTP request over a fresh TcpStream (`Connection: close`).
pub fn http(
    emu: &Emulator,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(emu.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        emu.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse_response(&out)
}

pub fn parse_response(out: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    HttpResponse {
        status,
        body: body.to_owned(),
    }
}

/// A REST call signed as the server SDKs sign it (`aud` = full URL).
pub fn rest(
    emu: &Emulator,
    method: &str,
    path_and_query: &str,
    ct: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let url = format!("{}{path_and_query}", emu.endpoint());
    let token = webpubsub_emulator::rest_token(emu.access_key(), &url, Duration::from_secs(60));
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = ct {
        headers.push(("Content-Type", ct));
    }
    http(emu, method, path_and_query, &headers, body)
}

/// A signed REST call with extra headers (metadata, a content type).
pub fn rest_with(
    emu: &Emulator,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let url = format!("{}{path_and_query}", emu.endpoint());
    let token = webpubsub_emulator::rest_token(emu.access_key(), &url, Duration::from_secs(60));
    let auth = format!("Bearer {token}");
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    http(emu, method, path_and_query, &all, body)
}

impl HttpResponse {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// `joinGroup` of `group` with an ack id.
pub fn join(group: &str, ack: u64) -> ClientMessage {
    ClientMessage::JoinGroup {
        group: group.into(),
        ack_id: Some(ack),
    }
}

/// `sendToGroup` of `data` to `group` (echo on, no TTL, no metadata).
pub fn publish(group: &str, ack: Option<u64>, data: impl Into<Data>) -> ClientMessage {
    ClientMessage::SendToGroup {
        group: group.into(),
        ack_id: ack,
        no_echo: false,
        data: data.into(),
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
}
