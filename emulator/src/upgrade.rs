//! The socket side of a WebSocket upgrade on `/client/hubs/{hub}` and `/client/?hub={hub}`:
//! writes the refusal or the 101 that `admission` decided, then runs the connection.

use crate::admission::{self, Handshake, Refusal};
use crate::connection::Connection;
use crate::http::{self, Request};
use crate::net::{Stream, Waiter};
use std::io;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};
use webpubsub_protocol::MAX_MESSAGE_BYTES;

/// How long the handshake's answer may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn ws_config() -> WebSocketConfig {
    // Frames over 1 MB get an ack error; only frames far beyond it end the connection.
    WebSocketConfig::default()
        .max_message_size(Some(4 * MAX_MESSAGE_BYTES))
        .max_frame_size(Some(4 * MAX_MESSAGE_BYTES))
        .write_buffer_size(64 * 1024)
}

/// Handles an upgrade request on a client path. Returns when the socket is done.
pub(crate) fn handle(w: Waiter, s: Stream, req: Request, hub_name: String, leftover: Vec<u8>) {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let hs = match admission::handshake(&req) {
        Ok(hs) => hs,
        Err(r) => return refuse(w, s, &req, r, deadline),
    };
    match admission::recovery_attempt(&req) {
        Some(attempt) => recover(w, s, hub_name, &hs, attempt, leftover, deadline),
        None => connect(w, s, req, hub_name, &hs, leftover, deadline),
    }
}

/// A recovery: the session moves to this socket, or the socket is closed with 1008.
fn recover(
    mut w: Waiter,
    mut s: Stream,
    hub_name: String,
    hs: &Handshake,
    attempt: admission::RecoveryAttempt,
    leftover: Vec<u8>,
    deadline: Instant,
) {
    let shared = w.shared.clone();
    let hub = shared.hub(&hub_name);
    let session = admission::recoverable(&shared, &hub, &attempt);
    if !switch(&mut w, &mut s, hs, deadline) {
        return;
    }
    let mut ws = WebSocket::from_partially_read(s, leftover, Role::Server, Some(ws_config()));
    let Some(session) = session else {
        admission::recovery_refused(&shared, &hub, attempt);
        return close_policy(
            &mut w,
            &mut ws,
            "Invalid or expired reconnection token, or the session is closed",
        );
    };
    admission::recover(&shared, &hub, &session, w.link.clone());
    Connection::new(w, ws, hub, session).run()
}

/// A new connection: its token is checked before the 101.
fn connect(
    mut w: Waiter,
    mut s: Stream,
    req: Request,
    hub_name: String,
    hs: &Handshake,
    leftover: Vec<u8>,
    deadline: Instant,
) {
    let shared = w.shared.clone();
    let admitted = match admission::admit(&shared, &req, &hub_name) {
        Ok(a) => a,
        Err(r) => return refuse(w, s, &req, r, deadline),
    };
    if !switch(&mut w, &mut s, hs, deadline) {
        return;
    }
    let ws = WebSocket::from_partially_read(s, leftover, Role::Server, Some(ws_config()));
    let hub = shared.hub(&hub_name);
    let session = admission::open(&shared, &hub, admitted, hs, w.link.clone());
    Connection::new(w, ws, hub, session).run()
}

/// Answers with an HTTP error; the socket closes.
fn refuse(mut w: Waiter, mut s: Stream, req: &Request, r: Refusal, deadline: Instant) {
    admission::refused(&w.shared, req, &r);
    let resp = http::response(
        r.status,
        "text/plain; charset=utf-8",
        r.reason.as_bytes(),
        false,
        false,
    );
    let _ = w.write_all(&mut s, &resp, deadline);
}

/// Writes the 101 response. Returns false if the socket failed.
fn switch(w: &mut Waiter, s: &mut Stream, hs: &Handshake, deadline: Instant) -> bool {
    let accept = tungstenite::handshake::derive_accept_key(hs.key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        hs.subprotocol
    );
    match w.write_all(s, resp.as_bytes(), deadline) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("emulator: writing the 101 response failed: {e}");
            false
        }
    }
}

/// Closes a just-accepted WebSocket with 1008 (bounded).
fn close_policy(w: &mut Waiter, ws: &mut WebSocket<Stream>, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: Utf8Bytes::from(reason),
    }));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = ws.flush().and_then(|_| ws.read().map(|_: Message| ()));
        match r {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if w.wait_until(deadline).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}
