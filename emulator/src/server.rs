//! The accept thread, the recovery-window reaper, and the dispatch of each new TCP
//! connection to the WebSocket upgrade or the REST API.

use super::http::{self, ReadError};
use super::net::{Stream, Waiter, SOCKET};
use super::state::{reap_expired, Shared};
use super::{rest, upgrade};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webpubsub_protocol::redact_query;

const LISTENER: mio::Token = mio::Token(0);
const STOP: mio::Token = mio::Token(1);
/// How long a client may take to send a request head (and to finish TLS).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle kept-alive REST connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
        if shared.stopping.load(Ordering::Acquire) {
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

pub(crate) const STOP_TOKEN: mio::Token = STOP;

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
        Ok(handle) => {
            let mut threads = shared.threads.lock();
            threads.retain(|h| !h.is_finished());
            threads.push(handle);
        }
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
        let (req, rest) = match http::read_head(&mut w, &mut s, buf, Instant::now() + timeout) {
            Ok(r) => r,
            Err(ReadError::Eof) => return,
            Err(ReadError::Io(e)) => {
                log::debug!("emulator: reading a request failed: {e}");
                return;
            }
            Err(ReadError::Bad(why)) => {
                let resp = http::response(400, "text/plain", why.as_bytes(), false, false);
                let _ = w.write_all(&mut s, &resp, Instant::now() + HEAD_TIMEOUT);
                return;
            }
        };
        log::debug!("emulator: {} {}", req.method, redact_query(&req.target));
        if let Some(hub) = upgrade::client_hub(&req) {
            return upgrade::handle(w, s, req, hub, rest);
        }
        match rest::serve(&mut w, &mut s, &req, rest) {
            Some(left) => buf = left,
            None => return,
        }
        if w.shared.stopping.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Ends dropped sessions whose recovery window passed, until `stop` says so.
pub(crate) fn reaper_loop(shared: Arc<Shared>, stop: crossbeam_channel::Receiver<()>) {
    let tick = (shared.cfg.recovery_window / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        match stop.recv_timeout(tick) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => reap_expired(&shared),
            _ => return,
        }
    }
}

/// Writes a response (bounded).
pub(crate) fn respond(w: &mut Waiter, s: &mut Stream, bytes: &[u8]) -> bool {
    w.write_all(s, bytes, Instant::now() + HEAD_TIMEOUT).is_ok()
}
