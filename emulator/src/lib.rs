//! A local Azure Web PubSub service for tests and development (feature `emulator`).
//!
//! One TCP port serves the client WebSocket endpoint (`/client/hubs/{hub}` and
//! `/client/?hub={hub}`) and the server REST API (`/api/hubs/{hub}/...`), over plain TCP or
//! TLS. It speaks the two JSON subprotocols, with acks and their deduplication, sequence ids
//! and session recovery, roles and run-time permissions, and upstream events; it lets tests
//! watch what happens ([`Emulator::observe`]) and inject faults ([`HubHandle`]).
//!
//! ```
//! use webpubsub_emulator::Emulator;
//!
//! let emu = Emulator::start().unwrap();
//! let url = emu.client_url("chat").user_id("alice").role("webpubsub.joinLeaveGroup").build();
//! assert!(url.starts_with("ws://127.0.0.1:"));
//! emu.hub("chat").send_to_all("hello"); // nobody connected: nothing to do
//! emu.stop();
//! ```
//!
//! # Choices where the service leaves room
//! - Only `json.reliable.webpubsub.azure.v1` and `json.webpubsub.azure.v1` are served; an
//!   upgrade that offers neither (protobuf, none, unknown) is refused with HTTP 400.
//! - A refused token is HTTP 401 with the reason as a text body, never a WebSocket.
//! - A group name outside 1..=1024 characters, or a payload over 1 MB
//!   ([`MAX_MESSAGE_BYTES`](webpubsub_protocol::MAX_MESSAGE_BYTES)), is answered with an ack
//!   error named [`BAD_REQUEST`] (`"BadRequest"`); the connection stays. Frames over 4 MB end
//!   the connection.
//! - Closes the service makes on purpose (REST or [`HubHandle::close_connection`], unacked
//!   buffer overflow) send `disconnected` then close code 1008, so clients do not try a
//!   recovery that cannot succeed; [`Emulator::stop`] sends `disconnected` and 1001.
//! - A client close frame ends its session; an abrupt drop keeps a reliable session for
//!   the recovery window.
//! - [`EventResponse::Reply`] to an `event` is sent back to the caller as a server message,
//!   as the service does with an event handler's response body.
//! - Every socket loss is reported as [`Observation::Dropped`]; a session that cannot be
//!   recovered any more is then reported as [`Observation::SessionEnded`].
//!
//! # Threads
//! An accept thread, a reaper thread ending sessions whose recovery window passed, and a
//! thread per TCP connection that waits on its socket and a wake-up (mio), reads and
//! handles frames, and writes what other threads queued — many frames per flush. Fan-out
//! encodes a message once; reliable receivers get the sequence id spliced in.
//! Calls to app servers' HTTP event handlers ([`upstream`]) run on `webpubsub-upstream-N`
//! worker threads, started when needed.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod checks;
mod client_url;
mod connection;
mod http;
mod hub;
mod net;
mod rest;
mod server;
mod state;
mod upgrade;
pub mod upstream;

pub use checks::BAD_REQUEST;
pub use client_url::{rest_token, ClientUrlBuilder};
pub use hub::HubHandle;

use parking_lot::Mutex;
use state::{Config, Shared};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use webpubsub_protocol::{ClientMessage, Data};

/// The upstream event handler: called on the connection's thread for every `event` and
/// `invoke`.
pub(crate) type EventHandler = Arc<dyn Fn(&EventRequest) -> EventResponse + Send + Sync>;

/// Something that happened in the emulator, for tests to wait on.
///
/// Contains no tokens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observation {
    /// A new connection session started (after its `connected` message was queued).
    Connected {
        /// The hub.
        hub: String,
        /// The new connection id.
        connection_id: String,
        /// The token's `sub`, if any.
        user_id: Option<String>,
        /// Whether it speaks the reliable subprotocol.
        reliable: bool,
    },
    /// A dropped session was recovered on a new socket.
    Recovered {
        /// The hub.
        hub: String,
        /// The recovered connection id.
        connection_id: String,
    },
    /// A socket is gone; a reliable session may still be recovered.
    Dropped {
        /// The hub.
        hub: String,
        /// The connection id.
        connection_id: String,
    },
    /// A session is over for good.
    SessionEnded {
        /// The hub.
        hub: String,
        /// The connection id.
        connection_id: String,
        /// Why (e.g. `closed by the client`, `recovery window expired`, a close reason).
        reason: String,
    },
    /// A decoded client message, reported after it was handled.
    Request {
        /// The hub.
        hub: String,
        /// The sender's connection id.
        connection_id: String,
        /// The message.
        message: ClientMessage,
    },
    /// A recovery attempt was refused (closed with 1008).
    RecoveryRefused {
        /// The hub.
        hub: String,
        /// The connection id the attempt named.
        connection_id: String,
    },
    /// An upgrade or REST request was refused for its token.
    AuthRefused {
        /// The HTTP status (401).
        status: u16,
        /// The reason sent in the body.
        reason: String,
    },
}

/// A run-time permission of a connection (PROTOCOL.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Publish to a group (`webpubsub.sendToGroup[.group]`).
    SendToGroup,
    /// Join or leave a group (`webpubsub.joinLeaveGroup[.group]`).
    JoinLeaveGroup,
}

impl Permission {
    /// The REST name: `sendToGroup` or `joinLeaveGroup`.
    pub fn as_wire(self) -> &'static str {
        match self {
            Permission::SendToGroup => "sendToGroup",
            Permission::JoinLeaveGroup => "joinLeaveGroup",
        }
    }

    /// Parses a REST name, ignoring ASCII case.
    pub fn from_wire(name: &str) -> Option<Permission> {
        [Permission::SendToGroup, Permission::JoinLeaveGroup]
            .into_iter()
            .find(|p| p.as_wire().eq_ignore_ascii_case(name))
    }
}

/// A session as [`HubHandle::connections`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection id.
    pub connection_id: String,
    /// The user, if the token named one.
    pub user_id: Option<String>,
    /// Its groups, sorted.
    pub groups: Vec<String>,
    /// `true` while a socket is attached; `false` while waiting for recovery.
    pub connected: bool,
}

/// An upstream `event` a client sent, as recorded by [`HubHandle::events`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UpstreamEvent {
    /// The sender's connection id.
    pub connection_id: String,
    /// The sender's user, if any.
    pub user_id: Option<String>,
    /// The event name.
    pub event: String,
    /// The payload.
    pub data: Data,
}

/// Which client message an [`EventRequest`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// An `event` message (answered with an ack, if it has an ack id).
    Event,
    /// An `invoke` message (answered with an `invokeResponse`).
    Invoke,
}

/// What the event handler is asked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventRequest {
    /// `event` or `invoke`.
    pub kind: EventKind,
    /// The hub.
    pub hub: String,
    /// The caller's connection id.
    pub connection_id: String,
    /// The caller's user, if any.
    pub user_id: Option<String>,
    /// The event name.
    pub event: String,
    /// The payload; an `invoke` without data gives JSON `null`.
    pub data: Data,
}

/// The event handler's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventResponse {
    /// Success without data.
    Accept,
    /// Success with data: an `invoke` gets it in its `invokeResponse` (JSON `null` means no
    /// data); an `event` caller gets it as a server message (as the service does).
    Reply(Data),
    /// Failure: the ack or `invokeResponse` says `InvocationFailed` with this message.
    Fail(String),
}

/// The default handler: accepts events, echoes invoke data back.
fn default_handler(req: &EventRequest) -> EventResponse {
    match req.kind {
        EventKind::Invoke => EventResponse::Reply(req.data.clone()),
        EventKind::Event => EventResponse::Accept,
    }
}

/// Options of an [`Emulator`]; start it with [`EmulatorBuilder::start`].
pub struct EmulatorBuilder {
    addr: SocketAddr,
    access_key: Option<String>,
    recovery_window: Duration,
    max_unacked_messages: usize,
    max_unacked_bytes: usize,
    tls: Option<native_tls::Identity>,
    handler: EventHandler,
    upstream: upstream::UpstreamConfig,
}

impl fmt::Debug for EmulatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorBuilder")
            .field("addr", &self.addr)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("recovery_window", &self.recovery_window)
            .field("max_unacked_messages", &self.max_unacked_messages)
            .field("max_unacked_bytes", &self.max_unacked_bytes)
            .field("tls", &self.tls.is_some())
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: None,
            recovery_window: Duration::from_secs(30),
            max_unacked_messages: 1000,
            max_unacked_bytes: 16 << 20,
            tls: None,
            handler: Arc::new(default_handler),
            upstream: upstream::UpstreamConfig::new(),
        }
    }
}

impl EmulatorBuilder {
    /// The address to listen on. Defaults to `127.0.0.1:0` (a free port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The access key that signs tokens. Defaults to a random 43-character key.
    pub fn access_key(mut self, key: impl Into<String>) -> Self {
        self.access_key = Some(key.into());
        self
    }

    /// How long a dropped reliable session can be recovered. Defaults to 30 s.
    pub fn recovery_window(mut self, window: Duration) -> Self {
        self.recovery_window = window;
        self
    }

    /// Most messages a reliable session keeps unacknowledged before it is closed for good.
    /// Defaults to 1000.
    pub fn max_unacked_messages(mut self, n: usize) -> Self {
        self.max_unacked_messages = n;
        self
    }

    /// Most bytes a reliable session keeps unacknowledged before it is closed for good.
    /// Defaults to 16 MiB.
    pub fn max_unacked_bytes(mut self, n: usize) -> Self {
        self.max_unacked_bytes = n;
        self
    }

    /// Serve TLS (wss:// and https://) with this identity. Defaults to plain TCP.
    pub fn tls(mut self, identity: native_tls::Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// The upstream event handler, called for every `event` and `invoke` on the caller's
    /// connection thread. Defaults to accepting events and echoing invoke data. A panic
    /// counts as [`EventResponse::Fail`].
    pub fn event_handler(
        mut self,
        handler: impl Fn(&EventRequest) -> EventResponse + Send + Sync + 'static,
    ) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// The event handlers of app servers that the emulator calls over HTTP (CloudEvents, as
    /// the service does), with their timeouts and retries. Replaces earlier settings.
    /// Defaults to none.
    ///
    /// Not yet called by the connection code: events still go to the in-process
    /// [`event_handler`](Self::event_handler).
    pub fn upstream(mut self, config: upstream::UpstreamConfig) -> Self {
        self.upstream = config;
        self
    }

    /// Appends one HTTP event handler of `hub` (see [`upstream`](Self::upstream)); the
    /// first handler of a hub that takes an event gets it.
    pub fn http_event_handler(mut self, hub: &str, handler: upstream::EventHandlerConfig) -> Self {
        self.upstream = self.upstream.handler(hub, handler);
        self
    }

    /// Binds the port and starts the threads.
    pub fn start(self) -> io::Result<Emulator> {
        let tls = match self.tls {
            Some(id) => Some(native_tls::TlsAcceptor::new(id).map_err(io::Error::other)?),
            None => None,
        };
        let std_listener = std::net::TcpListener::bind(self.addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared::new(Config {
            access_key: self.access_key.unwrap_or_else(|| auth::random_token(32)),
            recovery_window: self.recovery_window,
            max_unacked_messages: self.max_unacked_messages,
            max_unacked_bytes: self.max_unacked_bytes,
            tls,
            handler: self.handler,
            endpoint: format!("{scheme}://{addr}"),
        }));
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), server::STOP_TOKEN)?;
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("webpubsub-emulator-accept".into())
            .spawn(move || server::accept_loop(s, listener, poll))?;
        let (reaper_stop, stop_rx) = crossbeam_channel::bounded(1);
        let s = shared.clone();
        let reaper = std::thread::Builder::new()
            .name("webpubsub-emulator-reaper".into())
            .spawn(move || server::reaper_loop(s, stop_rx))?;
        log::info!("emulator: listening on {}", shared.cfg.endpoint);
        let upstream =
            upstream::Upstream::new(self.upstream, &shared.cfg.endpoint, &shared.cfg.access_key);
        Ok(Emulator {
            shared,
            upstream,
            addr,
            threads: Mutex::new(Some(Threads {
                accept,
                accept_waker: waker,
                reaper,
                reaper_stop,
            })),
        })
    }
}

struct Threads {
    accept: JoinHandle<()>,
    accept_waker: mio::Waker,
    reaper: JoinHandle<()>,
    reaper_stop: crossbeam_channel::Sender<()>,
}

/// A running emulator. Stops when dropped.
pub struct Emulator {
    shared: Arc<Shared>,
    /// Calls app servers' event handlers; sessions will reach it through `Shared` once the
    /// connection code uses it.
    upstream: upstream::Upstream,
    addr: SocketAddr,
    threads: Mutex<Option<Threads>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("endpoint", &self.shared.cfg.endpoint)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with a free port and a random access key.
    pub fn start() -> io::Result<Emulator> {
        EmulatorBuilder::default().start()
    }

    /// A builder for other options.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        self.shared.cfg.endpoint.clone()
    }

    /// The access key (a secret: do not log it).
    pub fn access_key(&self) -> &str {
        &self.shared.cfg.access_key
    }

    /// `Endpoint=http://127.0.0.1:PORT;AccessKey=...;Version=1.0;`, as the server SDKs read it.
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint={};AccessKey={};Version=1.0;",
            self.shared.cfg.endpoint, self.shared.cfg.access_key
        )
    }

    /// A builder for a client access URL of `hub`, signed with the access key.
    pub fn client_url(&self, hub: &str) -> ClientUrlBuilder {
        ClientUrlBuilder::new(&self.shared, hub)
    }

    /// A new receiver of every [`Observation`] from now on.
    pub fn observe(&self) -> crossbeam_channel::Receiver<Observation> {
        self.shared.subscribe()
    }

    /// A handle for server-side operations on `hub`.
    pub fn hub(&self, hub: &str) -> HubHandle {
        HubHandle::new(self.shared.clone(), hub)
    }

    /// While `true`, every recovery attempt is accepted as a WebSocket and then closed
    /// with 1008.
    pub fn refuse_recoveries(&self, refuse: bool) {
        self.shared
            .refuse_recoveries
            .store(refuse, Ordering::Release);
    }

    /// Stops: sends `disconnected` to every client, closes every socket, joins every
    /// thread. Idempotent; also done on drop. Bounded (a few seconds at most), unless
    /// the event handler blocks.
    pub fn stop(&self) {
        let Some(t) = self.threads.lock().take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::Release);
        let _ = t.accept_waker.wake();
        let _ = t.accept.join();
        let _ = t.reaper_stop.send(());
        let _ = t.reaper.join();
        loop {
            self.shared.wake_all();
            let threads = std::mem::take(&mut *self.shared.threads.lock());
            if threads.is_empty() {
                break;
            }
            for th in threads {
                let _ = th.join();
            }
        }
        // Sessions waiting for recovery end now.
        for hub in self.shared.all_hubs() {
            let sessions: Vec<_> = hub
                .state
                .lock()
                .sessions
                .values()
                .map(|e| e.session.clone())
                .collect();
            for s in sessions {
                state::end_session(&self.shared, &hub, &s, "The service is stopping");
            }
        }
        // After the sessions ended: their `disconnected` events still go out.
        self.upstream.shutdown(Duration::from_secs(3));
        log::info!("emulator: stopped {}", self.shared.cfg.endpoint);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
