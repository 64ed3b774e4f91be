//! [`Emulator`] and its [`EmulatorBuilder`]: starting, addressing and stopping the service.

use crate::auth;
use crate::client_url::ClientUrlBuilder;
use crate::handle::HubHandle;
use crate::handler::{self, EventHandler, EventRequest, EventResponse};
use crate::server;
use crate::session::UnackedLimits;
use crate::shared::{Config, Shared};
use crate::types::Observation;
use parking_lot::Mutex;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Options of an [`Emulator`]; start it with [`EmulatorBuilder::start`].
pub struct EmulatorBuilder {
    addr: SocketAddr,
    access_key: Option<String>,
    recovery_window: Duration,
    limits: UnackedLimits,
    tls: Option<native_tls::Identity>,
    handler: EventHandler,
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
            limits: self.limits,
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
        Ok(Emulator {
            shared,
            addr,
            threads: Mutex::new(Some(Threads {
                accept,
                accept_waker: waker,
                reaper: Some(reaper),
                reaper_stop,
            })),
        })
    }
}

struct Threads {
    accept: JoinHandle<()>,
    accept_waker: mio::Waker,
    reaper: Option<JoinHandle<()>>,
    reaper_stop: crossbeam_channel::Sender<()>,
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
        let Some(t) = self.threads.lock().take() else {
            return;
        };
        self.shared.request_stop();
        let _ = t.accept_waker.wake();
        let _ = t.accept.join();
        let _ = t.reaper_stop.send(());
        if let Some(reaper) = t.reaper {
            let _ = reaper.join();
        }
        loop {
            self.shared.wake_all();
            let threads = self.shared.take_threads();
            if threads.is_empty() {
                break;
            }
            for th in threads {
                let _ = th.join();
            }
        }
        // Sessions waiting for recovery end now.
        self.shared.end_all_sessions("The service is stopping");
        log::info!("emulator: stopped {}", self.shared.cfg.endpoint);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
