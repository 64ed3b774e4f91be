//! [`Emulator`] and its [`EmulatorBuilder`]: starting, addressing and stopping the service.

use crate::auth;
use crate::client_url::ClientUrlBuilder;
use crate::handle::HubHandle;
use crate::handler::{self, EventHandler, EventRequest, EventResponse};
use crate::server::{self, Server, StartFailure};
use crate::session::UnackedLimits;
use crate::shared::{Config, Shared};
use crate::types::Observation;
use crate::upstream;
use parking_lot::Mutex;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why [`EmulatorBuilder::start`] failed. Each variant keeps its cause as
/// [`source`](std::error::Error::source).
///
/// Converts into an [`io::Error`] (of the cause's kind, for the I/O variants), so `?`
/// works in functions returning `io::Result`.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The TLS identity given to [`EmulatorBuilder::tls`] was refused by the platform's TLS
    /// library.
    TlsIdentity(native_tls::Error),
    /// The address could not be bound: in use, not an address of this machine, or not
    /// allowed.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The bound listener could not be set up (non-blocking mode, its local address, the
    /// readiness poll that watches it).
    Listener(io::Error),
    /// A thread of the emulator could not be spawned.
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::TlsIdentity(e) => write!(f, "the TLS identity was refused: {e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Listener(e) => write!(f, "cannot set up the listener: {e}"),
            StartError::Thread { name, source } => {
                write!(f, "cannot spawn the thread {name}: {source}")
            }
        }
    }
}

impl StdError for StartError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            StartError::TlsIdentity(e) => Some(e),
            StartError::Bind { source, .. } | StartError::Thread { source, .. } => Some(source),
            StartError::Listener(e) => Some(e),
        }
    }
}

impl From<StartError> for io::Error {
    fn from(e: StartError) -> io::Error {
        let kind = match &e {
            StartError::TlsIdentity(_) => io::ErrorKind::InvalidInput,
            StartError::Bind { source, .. } | StartError::Thread { source, .. } => source.kind(),
            StartError::Listener(source) => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Options of an [`Emulator`]; start it with [`EmulatorBuilder::start`].
pub struct EmulatorBuilder {
    addr: SocketAddr,
    access_key: Option<String>,
    recovery_window: Duration,
    limits: UnackedLimits,
    tls: Option<native_tls::Identity>,
    handler: EventHandler,
    upstream: upstream::UpstreamConfig,
    io_threads: Option<usize>,
    rest_faults: bool,
    flush_each_frame: bool,
}

impl fmt::Debug for EmulatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorBuilder")
            .field("addr", &self.addr)
            .field("access_key", &self.access_key.as_ref().map(|_| "***"))
            .field("recovery_window", &self.recovery_window)
            .field("max_unacked_messages", &self.limits.messages)
            .field("max_unacked_bytes", &self.limits.bytes)
            .field("tls", &self.tls.is_some())
            .field("upstream", &self.upstream)
            .field("io_threads", &self.io_threads)
            .field("rest_faults", &self.rest_faults)
            .field("flush_each_frame", &self.flush_each_frame)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: None,
            recovery_window: Duration::from_secs(30),
            limits: UnackedLimits {
                messages: 1000,
                bytes: 16 << 20,
            },
            tls: None,
            handler: handler::default_handler(),
            upstream: upstream::UpstreamConfig::new(),
            io_threads: None,
            rest_faults: false,
            flush_each_frame: false,
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
        self.limits.messages = n;
        self
    }

    /// Most bytes a reliable session keeps unacknowledged before it is closed for good.
    /// Defaults to 16 MiB.
    pub fn max_unacked_bytes(mut self, n: usize) -> Self {
        self.limits.bytes = n;
        self
    }

    /// Serve TLS (wss:// and https://) with this identity. Defaults to plain TCP.
    pub fn tls(mut self, identity: native_tls::Identity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// The upstream event handler, called for every `event` and `invoke` on the I/O thread
    /// that serves the caller's connection: keep it quick, since that thread's other
    /// connections wait while it runs (a slow app server belongs behind
    /// [`http_event_handler`](Self::http_event_handler)). Defaults to accepting events and
    /// echoing invoke data. A panic counts as [`EventResponse::Fail`].
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
    /// A hub with handlers sends them every connection's events (see the crate docs'
    /// "Event handlers"); a hub without keeps the in-process
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

    /// How many I/O threads serve the sockets (at least one; see the crate docs'
    /// "Threads"). Defaults to one per core, at most 4.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = Some(n.max(1));
        self
    }

    /// Serve the fault-injection routes under `/emulator/faults` (see the crate docs, "Faults
    /// over HTTP"), so that tests in any language can drop connections, lose or fail acks
    /// and refuse recoveries. Defaults to off: every such path is then a 404.
    pub fn rest_faults(mut self, on: bool) -> Self {
        self.rest_faults = on;
        self
    }

    /// Write each frame to the socket with a system call of its own, as a server that
    /// flushes after every message does, instead of gathering what a session queued into
    /// writes of up to 64 KiB. Off by default; on, a client's reads then mostly find one frame
    /// each — the way to measure a client's cost per read rather than per frame (the
    /// binary's `--flush-each-frame`). What is sent, and in which order, stays the same.
    pub fn flush_each_frame(mut self, on: bool) -> Self {
        self.flush_each_frame = on;
        self
    }

    /// Binds the port and starts the threads.
    pub fn start(self) -> Result<Emulator, StartError> {
        let tls = match self.tls {
            Some(id) => Some(native_tls::TlsAcceptor::new(id).map_err(StartError::TlsIdentity)?),
            None => None,
        };
        let bind = |source| StartError::Bind {
            addr: self.addr,
            source,
        };
        let std_listener = std::net::TcpListener::bind(self.addr).map_err(bind)?;
        std_listener
            .set_nonblocking(true)
            .map_err(StartError::Listener)?;
        let addr = std_listener.local_addr().map_err(StartError::Listener)?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let access_key = self.access_key.unwrap_or_else(|| auth::random_token(32));
        let endpoint = format!("{scheme}://{addr}");
        let upstream = upstream::Upstream::new(self.upstream, &endpoint, &access_key);
        let cfg = Config {
            access_key,
            recovery_window: self.recovery_window,
            limits: self.limits,
            tls,
            handler: self.handler,
            endpoint,
            rest_faults: self.rest_faults,
            flush_each_frame: self.flush_each_frame,
        };
        let shared = Arc::new(Shared::new(cfg, upstream));
        let loops = self.io_threads.unwrap_or_else(server::default_loops);
        let server = server::start(shared.clone(), listener, loops).map_err(|e| match e {
            StartFailure::Setup(e) => StartError::Listener(e),
            StartFailure::Spawn(source) => StartError::Thread {
                name: "webpubsub-emulator-io",
                source,
            },
        })?;
        let emulator = Emulator {
            shared,
            addr,
            server: Mutex::new(Some(server)),
        };
        log::info!("emulator: listening on {}", emulator.shared.cfg.endpoint);
        Ok(emulator)
    }
}

/// A running emulator. Stops when dropped.
///
/// ```
/// use webpubsub_emulator::Emulator;
///
/// let emu = Emulator::start().unwrap();
/// assert!(emu.endpoint().starts_with("http://127.0.0.1:"));
/// assert!(emu.connection_string().starts_with("Endpoint=http://127.0.0.1:"));
/// emu.stop(); // or let it drop
/// ```
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<Server>>,
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
    pub fn start() -> Result<Emulator, StartError> {
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
        ClientUrlBuilder::new(&self.shared.cfg, hub)
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
        self.shared.set_refuse_recoveries(refuse);
    }

    /// Stops: sends `disconnected` to every client, closes every socket, joins every
    /// thread. Idempotent; also done on drop. Bounded (a few seconds at most), unless
    /// the event handler blocks.
    pub fn stop(&self) {
        let Some(server) = self.server.lock().take() else {
            return;
        };
        self.shared.request_stop();
        // Each I/O thread closes its sockets (`disconnected`, 1001) and ends.
        server.join();
        // Sessions waiting for recovery end now.
        self.shared.end_all_sessions("The service is stopping");
        // After the sessions ended: their `disconnected` events still go out.
        self.shared.upstream.shutdown(Duration::from_secs(3));
        log::info!("emulator: stopped {}", self.shared.cfg.endpoint);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_a_bind_error_that_keeps_its_cause() {
        let first = Emulator::start().unwrap();
        let err = Emulator::builder().addr(first.addr()).start().unwrap_err();
        match &err {
            StartError::Bind { addr, source } => {
                assert_eq!(*addr, first.addr());
                assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
        assert!(err.to_string().contains(&first.addr().to_string()), "{err}");
        assert!(err.source().is_some());
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::AddrInUse);
    }
}
