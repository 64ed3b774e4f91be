//! The accept thread, the recovery-window reaper, and each new TCP connection's thread:
//! TLS, then HTTP requests read off the socket — handed to the WebSocket upgrade, or
//! answered by the REST API — until an upgrade or a close.

use crate::admission;
use crate::http::{self, BodyDecoder, Request};
use crate::net::{Stream, Waiter, SOCKET};
use crate::rest;
use crate::shared::Shared;
use crate::upgrade;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webpubsub_protocol::redact_query;

const LISTENER: mio::Token = mio::Token(0);
/// The accept thread's wake-up, used by `stop`.
pub(crate) const STOP_TOKEN: mio::Token = mio::Token(1);
/// How long a client may take to send a request head (and to finish TLS).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle kept-alive REST connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a REST body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// Accepts connections until woken by `stop`.
pub(crate) fn accept_loop(
    shared: Arc<Shared>,
    mut listener: mio::net::TcpListener,
    mut poll: mio::Poll,
) {
    if let Err(e) = poll
        .registry()
        .register(&mut listener, LISTENER, mio::Interest::READABLE)
    {
        log::error!("emulator: cannot watch the listener: {e}");
        return;
    }
    let mut events = mio::Events::with_capacity(16);
    loop {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::error!("emulator: accept poll failed: {e}");
                return;
            }
        }
        if shared.stopping() {
            return;
        }
        loop {
            match listener.accept() {
                Ok((tcp, peer)) => {
                    log::trace!("emulator: accepted {peer}");
                    spawn_connection(&shared, tcp);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: log, and try again on the next readiness.
                    log::warn!("emulator: accept failed: {e}");
                    break;
                }
            }
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, tcp: mio::net::TcpStream) {
    let id = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
    let waiter = match Waiter::new(shared.clone(), id) {
        Ok(w) => w,
        Err(e) => {
            log::warn!("emulator: cannot set up a connection: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("webpubsub-emulator-conn".into())
        .spawn(move || serve(waiter, tcp));
    match spawned {
        Ok(handle) => shared.track_thread(handle),
        Err(e) => log::warn!("emulator: cannot spawn a connection thread: {e}"),
    }
}

/// Serves one TCP connection: TLS, then HTTP requests until an upgrade or a close.
fn serve(mut w: Waiter, mut tcp: mio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    if let Err(e) = w.poll.registry().register(
        &mut tcp,
        SOCKET,
        mio::Interest::READABLE | mio::Interest::WRITABLE,
    ) {
        log::warn!("emulator: cannot watch a socket: {e}");
        return;
    }
    let mut s = match w.accept_tls(tcp, Instant::now() + HEAD_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            log::info!("emulator: TLS handshake failed: {e}");
            return;
        }
    };
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let timeout = if first { HEAD_TIMEOUT } else { IDLE_TIMEOUT };
        first = false;
        let (req, rest) = match read_head(&mut w, &mut s, buf, Instant::now() + timeout) {
            Ok(r) => r,
            Err(ReadError::Eof) => return,
            Err(ReadError::Io(e)) => {
                log::debug!("emulator: reading a request failed: {e}");
                return;
            }
            Err(ReadError::Bad(why)) => return bad_request(&mut w, &mut s, &why),
        };
        log::debug!("emulator: {} {}", req.method, redact_query(&req.target));
        if let Some(hub) = admission::client_hub(&req) {
            return upgrade::handle(w, s, req, hub, rest);
        }
        match serve_rest(&mut w, &mut s, &req, rest) {
            Some(left) => buf = left,
            None => return,
        }
        if w.shared.stopping() {
            return;
        }
    }
}

/// Reads the body of a REST request and answers it. Returns the bytes read past it to
/// keep the connection, or `None` to close it.
fn serve_rest(w: &mut Waiter, s: &mut Stream, req: &Request, rest: Vec<u8>) -> Option<Vec<u8>> {
    let (body, left) = match read_body(w, s, req, rest, Instant::now() + BODY_TIMEOUT) {
        Ok(b) => b,
        Err(ReadError::Bad(why)) => {
            bad_request(w, s, &why);
            return None;
        }
        Err(_) => return None,
    };
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let reply = rest::handle(&w.shared, req, &body);
    if reply.status >= 400 {
        log::info!(
            "emulator: REST {} {} -> {}",
            req.method,
            redact_query(&req.target),
            reply.status
        );
    }
    let keep_alive = !req.header_has("connection", "close");
    let resp = http::response(
        reply.status,
        reply.content_type,
        &reply.body,
        keep_alive,
        head_only,
    );
    if !respond(w, s, &resp) || !keep_alive {
        return None;
    }
    Some(left)
}

fn bad_request(w: &mut Waiter, s: &mut Stream, why: &str) {
    let resp = http::response(400, "text/plain", why.as_bytes(), false, false);
    respond(w, s, &resp);
}

/// Writes a response (bounded).
fn respond(w: &mut Waiter, s: &mut Stream, bytes: &[u8]) -> bool {
    w.write_all(s, bytes, Instant::now() + HEAD_TIMEOUT).is_ok()
}

/// Why a request could not be read.
enum ReadError {
    /// The peer closed before sending anything (a normal end of a kept-alive connection).
    Eof,
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Appends what the socket has to `buf`; an EOF here is a request cut short (`what`).
fn fill(
    w: &mut Waiter,
    s: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    what: &str,
) -> Result<usize, ReadError> {
    let mut chunk = [0u8; 16384];
    let n = w.read_some(s, &mut chunk, deadline)?;
    if n == 0 && !buf.is_empty() {
        return Err(ReadError::Bad(format!(
            "connection closed inside the {what}"
        )));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads a request head. Returns it and the bytes read past it.
fn read_head(
    w: &mut Waiter,
    s: &mut Stream,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<(Request, Vec<u8>), ReadError> {
    loop {
        if let Some((req, n)) = http::parse_head(&buf).map_err(ReadError::Bad)? {
            return Ok((req, buf.split_off(n)));
        }
        if fill(w, s, &mut buf, deadline, "request head")? == 0 {
            return Err(ReadError::Eof);
        }
    }
}

/// Reads the body (`Content-Length` or chunked). `buf` holds bytes already read past the
/// head; returns the body and the bytes past it.
fn read_body(
    w: &mut Waiter,
    s: &mut Stream,
    req: &Request,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut decoder = BodyDecoder::new(req).map_err(ReadError::Bad)?;
    loop {
        if let Some(body) = decoder.decode(&mut buf).map_err(ReadError::Bad)? {
            return Ok((body, buf));
        }
        if fill(w, s, &mut buf, deadline, "body")? == 0 {
            return Err(ReadError::Bad("connection closed inside the body".into()));
        }
    }
}

/// Ends dropped sessions whose recovery window passed, until `stop` says so.
pub(crate) fn reaper_loop(shared: Arc<Shared>, stop: crossbeam_channel::Receiver<()>) {
    let tick = (shared.cfg.recovery_window / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        match stop.recv_timeout(tick) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => shared.reap_expired(),
            _ => return,
        }
    }
}
