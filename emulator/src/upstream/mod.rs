//! The service → app server path: the emulator calls an application server's event
//! handler over CloudEvents, as Azure Web PubSub does (UPSTREAM.md).
//!
//! - [`UpstreamConfig`] and [`EventHandlerConfig`] say which handler takes which event of
//!   which hub (first match wins), read from the builder, from `--event-handler`
//!   ([`EventHandlerConfig::parse_cli`]) or from a JSON settings file in the shape of
//!   Microsoft's emulator ([`UpstreamConfig::from_json`]).
//! - [`Upstream`] is the engine: it owns a bounded pool of worker threads that make the
//!   HTTP calls (validation first, timeouts, retries), so that no connection ever waits on
//!   another's handler.
//! - [`UpstreamConnection`] is one client connection's side of it: its identity, its
//!   connection state (`ce-connectionState`) and its ordered line of events.
//!
//! # For the connection code
//! Every call returns at once; nothing blocks on HTTP. A blocking event's answer comes to a
//! *completion*, a closure that runs on an upstream worker thread: it should only hand the
//! outcome to the connection (a channel send plus a wake-up), never block.
//!
//! | when | call | completion gets |
//! |---|---|---|
//! | a client's upgrade passed authentication | [`Upstream::connection`], then [`UpstreamConnection::connect`] (only if [`Upstream::routes`] says a handler takes `connect`) | [`ConnectOutcome`]: accepted with the handler's `userId`, `groups`, `roles`, `subprotocol` and state, or refused with a status for the upgrade's answer |
//! | the upgrade completed | [`UpstreamConnection::connected`] with the final user and subprotocol | nothing (fire-and-forget) |
//! | an `event`, an `invoke`, or a simple client's frame | [`UpstreamConnection::user_event`] | [`EventOutcome`]: a reply to send back (before the ack), no reply, or a failure (`InvocationFailed`, or 1011 for a simple client) |
//! | the session ended for good (not a drop that may be recovered) | [`UpstreamConnection::disconnected`] | nothing; sent once, only after `connected` |
//! | the emulator stops | [`Upstream::shutdown`] | queued blocking events complete with [`FailureKind::Stopping`] |
//!
//! Keep the [`UpstreamConnection`] in the session, not the socket: a recovered session
//! goes on with the same state and order.
//!
//! # Order and threads
//! A connection's events, blocking or not, reach its handler one at a time, in the order
//! of the calls: `connected` before the first user event, `disconnected` after the last.
//! Different connections' events run in parallel on up to
//! [`max_workers`](UpstreamConfig::max_workers) threads, started when needed and ended
//! after 30 s without work. A blocking event's [`timeout`](UpstreamConfig::timeout) counts
//! from the moment it starts (after the events before it on its connection).
//!
//! ```
//! use std::time::Duration;
//! use webpubsub_emulator::upstream::{EventOutcome, FailureKind, Upstream, UpstreamConfig};
//! use webpubsub_protocol::{Data, Metadata};
//!
//! // No handler: a user event fails at once, on a worker thread.
//! let upstream = Upstream::new(UpstreamConfig::new(), "http://127.0.0.1:8080", "key");
//! let conn = upstream.connection("chat", "conn1");
//! let (tx, rx) = crossbeam_channel::bounded(1);
//! conn.user_event("echo", Some(Data::from("hi")), Metadata::new(), move |outcome| {
//!     let _ = tx.send(outcome);
//! });
//! match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
//!     EventOutcome::Failed(f) => assert_eq!(f.kind(), FailureKind::NoHandler),
//!     other => panic!("{other:?}"),
//! }
//! upstream.shutdown(Duration::from_secs(5));
//! ```

mod cloudevents;
mod config;
mod outcome;
mod response;
mod transport;
mod workers;

pub use config::{
    ConfigError, EventHandlerConfig, HandlerEvent, LoadedConfig, SystemEvent, UpstreamConfig,
    UserEventPattern, DEFAULT_MAX_RETRIES, DEFAULT_MAX_WORKERS, DEFAULT_RETRY_BACKOFF,
    DEFAULT_TIMEOUT,
};
pub use outcome::{
    ConnectAccepted, ConnectOutcome, ConnectRequest, EventOutcome, Failure, FailureKind,
};

use cloudevents::{Event, Identity, Outbound, Service};
use parking_lot::Mutex;
use response::Reply;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use transport::Transport;
use webpubsub_protocol::{redact_query, Data, Metadata};
use workers::{Lane, Pool};

/// How long calls already in flight get after [`Upstream::shutdown`]'s bound before they
/// are abandoned.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// The engine that calls event handlers. Stops (bounded, 5 s) when dropped.
pub struct Upstream {
    engine: Arc<Engine>,
}

/// A cached validation verdict: passed, or refused with the reason.
type Verdict = Result<(), String>;

struct Engine {
    config: UpstreamConfig,
    service: Service,
    transport: Transport,
    pool: Pool,
    /// Validation verdicts by validation URL. A cell's lock is held while its URL is being
    /// validated, so that one request validates it and the others wait for the verdict.
    validations: Mutex<HashMap<String, Arc<Mutex<Option<Verdict>>>>>,
    stopping: AtomicBool,
    /// Dropped at shutdown: ends retry waits.
    stop_tx: Mutex<Option<crossbeam_channel::Sender<()>>>,
    /// Set at shutdown: no call may run past it.
    drain_deadline: Mutex<Option<Instant>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("hubs", &self.engine.config.hubs().count())
            .field("workers", &self.engine.pool.workers())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An engine for `config`, speaking for the service at `endpoint` (the emulator's
    /// `http://host:port`: `WebHook-Request-Origin` is its host) and signing requests with
    /// `access_key`. Starts no thread until the first event.
    pub fn new(config: UpstreamConfig, endpoint: &str, access_key: &str) -> Upstream {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let transport = Transport::new(&config, stop_rx);
        let pool = Pool::new(config.worker_limit(), "webpubsub-upstream");
        Upstream {
            engine: Arc::new(Engine {
                service: Service::from_endpoint(endpoint, access_key),
                config,
                transport,
                pool,
                validations: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                stop_tx: Mutex::new(Some(stop_tx)),
                drain_deadline: Mutex::new(None),
            }),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.engine.config
    }

    /// Whether a handler of `hub` takes `event`.
    pub fn routes(&self, hub: &str, event: HandlerEvent<'_>) -> bool {
        self.engine.config.route(hub, event).is_some()
    }

    /// Whether `hub` has event handlers at all: its connections' events go to them (and an
    /// event none of them takes fails, as in the service); a hub without any keeps the
    /// emulator's own behaviour (the in-process handler).
    pub fn serves(&self, hub: &str) -> bool {
        self.engine.config.serves(hub)
    }

    /// The upstream side of a new connection (before its `connect` event).
    pub fn connection(&self, hub: &str, connection_id: &str) -> UpstreamConnection {
        UpstreamConnection {
            inner: Arc::new(ConnInner {
                engine: self.engine.clone(),
                hub: hub.to_owned(),
                connection_id: connection_id.to_owned(),
                lane: Arc::new(Lane::default()),
                ident: Mutex::new(ConnIdentity::default()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Worker threads alive now.
    pub fn worker_threads(&self) -> usize {
        self.engine.pool.workers()
    }

    /// Stops: blocking events not yet started complete with [`FailureKind::Stopping`];
    /// queued `connected`/`disconnected` events are still sent, once each, within `bound`;
    /// calls still running after `bound` are cut off (their sockets closed). Joins the
    /// workers. Idempotent. Takes at most `bound` plus 2 s.
    pub fn shutdown(&self, bound: Duration) {
        let e = &self.engine;
        if e.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = Instant::now() + bound;
        *e.drain_deadline.lock() = Some(deadline);
        e.stop_tx.lock().take();
        let left = e
            .pool
            .shutdown(deadline, INTERRUPT_GRACE, || e.transport.interrupt());
        if left > 0 {
            log::warn!("upstream: {left} worker(s) still in a call after the shutdown bound; they end with it");
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

impl Engine {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The deadline of an event starting now.
    fn deadline(&self) -> Instant {
        let d = Instant::now() + self.config.timeout_value();
        match *self.drain_deadline.lock() {
            Some(stop) => d.min(stop),
            None => d,
        }
    }

    /// Abuse protection of `handler`'s URL for `hub`: once per URL while it passes or the
    /// handler refused it; again next time when it could not be reached.
    fn validate(
        &self,
        handler: &EventHandlerConfig,
        hub: &str,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let url = handler.url_for(hub, "validate");
        let shown = redact_query(&url);
        let cell = self
            .validations
            .lock()
            .entry(url.clone())
            .or_default()
            .clone();
        let Some(mut verdict) = cell.try_lock_until(deadline) else {
            return Err(Failure::new(
                FailureKind::Timeout,
                format!("the validation of {shown} did not finish in time"),
            ));
        };
        if let Some(v) = &*verdict {
            return v
                .clone()
                .map_err(|why| Failure::new(FailureKind::Validation, why));
        }
        let req = cloudevents::validation_request(&self.service, url);
        let (result, _) = self.transport.call(&req, deadline, !self.stopping());
        let reply = result?;
        match response::validation_passes(&reply, &self.service.host, self.service.port) {
            Ok(()) => {
                log::info!("upstream: {shown} passed validation");
                *verdict = Some(Ok(()));
                Ok(())
            }
            Err(why) => {
                let why = format!("{shown} {why}; no event goes to this handler");
                log::warn!("upstream: validation failed: {why}");
                *verdict = Some(Err(why.clone()));
                Err(Failure::new(FailureKind::Validation, why))
            }
        }
    }
}

/// One connection's side of the engine: identity, connection state, ordered events.
/// Cheap to clone; keep it with the session (it outlives a recovered socket).
#[derive(Clone)]
pub struct UpstreamConnection {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    engine: Arc<Engine>,
    hub: String,
    connection_id: String,
    lane: Arc<Lane>,
    ident: Mutex<ConnIdentity>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct ConnIdentity {
    user_id: Option<String>,
    subprotocol: Option<String>,
    state: Option<String>,
    established: bool,
    disconnected: bool,
}

impl fmt::Debug for UpstreamConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConnection")
            .field("hub", &self.inner.hub)
            .field("connection_id", &self.inner.connection_id)
            .finish_non_exhaustive()
    }
}

impl UpstreamConnection {
    /// The hub.
    pub fn hub(&self) -> &str {
        &self.inner.hub
    }

    /// The connection id.
    pub fn connection_id(&self) -> &str {
        &self.inner.connection_id
    }

    /// The connection state a handler set last (`ce-connectionState`), sent with every
    /// later event.
    pub fn state(&self) -> Option<String> {
        self.inner.ident.lock().state.clone()
    }

    /// Sends `connect` (blocking: the upgrade waits for `done`). When no handler takes
    /// `connect`, `done` gets an acceptance that changes nothing (`handled: false`).
    pub fn connect(
        &self,
        request: ConnectRequest,
        done: impl FnOnce(ConnectOutcome) + Send + 'static,
    ) {
        let me = self.clone();
        self.submit(move || done(me.run_connect(&request)));
    }

    /// The connection is established with this user and subprotocol (after the handler's
    /// changes): records them for later events and sends `connected` (fire-and-forget).
    pub fn connected(&self, user_id: Option<&str>, subprotocol: Option<&str>) {
        {
            let mut id = self.inner.ident.lock();
            id.user_id = user_id.map(str::to_owned);
            id.subprotocol = subprotocol.map(str::to_owned);
            id.established = true;
        }
        let me = self.clone();
        self.submit(move || me.run_notification(&Event::Connected));
    }

    /// Sends a user event (an `event` or `invoke` message, or a simple client's frame as
    /// the event `message`) with its data, if any, and the client's metadata (as
    /// `x-webpubsub-metadata-<key>` headers); `done` gets the handler's answer.
    pub fn user_event(
        &self,
        event: &str,
        data: Option<Data>,
        metadata: Metadata,
        done: impl FnOnce(EventOutcome) + Send + 'static,
    ) {
        let me = self.clone();
        let event = event.to_owned();
        self.submit(move || done(me.run_user_event(&event, data.as_ref(), &metadata)));
    }

    /// The session ended for good: sends `disconnected` with `reason`, once, and only if
    /// [`connected`](Self::connected) was called (fire-and-forget).
    pub fn disconnected(&self, reason: &str) {
        {
            let mut id = self.inner.ident.lock();
            if !id.established || id.disconnected {
                return;
            }
            id.disconnected = true;
        }
        let me = self.clone();
        let reason = reason.to_owned();
        self.submit(move || me.run_notification(&Event::Disconnected(&reason)));
    }

    fn submit(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(job) = self
            .inner
            .engine
            .pool
            .submit(&self.inner.lane, Box::new(job))
        {
            // Stopped: the job finds the engine stopping and completes at once.
            job();
        }
    }

    fn describe(&self, event: &str) -> String {
        format!(
            "event `{event}` of connection {} in hub {}",
            self.inner.connection_id, self.inner.hub
        )
    }

    fn run_connect(&self, request: &ConnectRequest) -> ConnectOutcome {
        let e = &self.inner.engine;
        if e.stopping() {
            return ConnectOutcome::Refused {
                status: 503,
                failure: Failure::new(FailureKind::Stopping, "the emulator is stopping"),
            };
        }
        if e.config
            .route(&self.inner.hub, HandlerEvent::System(SystemEvent::Connect))
            .is_none()
        {
            return ConnectOutcome::Accepted(ConnectAccepted::default());
        }
        let event = Event::Connect(request);
        let outcome = match self.exchange(&event, request.user_id.as_deref()) {
            Ok((reply, url)) => response::connect_outcome(&reply, &request.subprotocols, &url),
            Err(failure) => ConnectOutcome::Refused {
                status: 500,
                failure,
            },
        };
        match &outcome {
            ConnectOutcome::Accepted(a) => {
                let mut id = self.inner.ident.lock();
                id.user_id = a.user_id.clone().or_else(|| request.user_id.clone());
                id.subprotocol = a.subprotocol.clone();
            }
            ConnectOutcome::Refused { status, failure } => {
                log::warn!(
                    "upstream: {}: {failure}; the upgrade is refused with {status}",
                    self.describe("connect")
                );
            }
        }
        outcome
    }

    fn run_user_event(&self, name: &str, data: Option<&Data>, metadata: &Metadata) -> EventOutcome {
        if self.inner.engine.stopping() {
            return EventOutcome::Failed(Failure::new(
                FailureKind::Stopping,
                "the emulator is stopping",
            ));
        }
        let event = Event::User {
            name,
            data,
            metadata,
        };
        let user = self.inner.ident.lock().user_id.clone();
        let outcome = match self.exchange(&event, user.as_deref()) {
            Ok((reply, url)) => response::event_outcome(&reply, name, &url),
            Err(f) => EventOutcome::Failed(f),
        };
        if let EventOutcome::Failed(f) = &outcome {
            log::warn!("upstream: {}: {f}", self.describe(name));
        }
        outcome
    }

    fn run_notification(&self, event: &Event<'_>) {
        let user = self.inner.ident.lock().user_id.clone();
        match self.exchange(event, user.as_deref()) {
            Ok((reply, url)) if !reply.is_success() => log::warn!(
                "upstream: {}: {url} answered {}",
                self.describe(event.name()),
                reply.status
            ),
            Ok(_) => {}
            Err(f) if f.kind() == FailureKind::NoHandler => {}
            Err(f) => log::warn!("upstream: {}: {f}", self.describe(event.name())),
        }
    }

    /// Routes, validates and sends `event`; a 2xx answer's `ce-connectionState` becomes the
    /// connection's state. Returns the answer (any status) and the URL, redacted.
    fn exchange(
        &self,
        event: &Event<'_>,
        user_id: Option<&str>,
    ) -> Result<(Reply, String), Failure> {
        let e = &self.inner.engine;
        let hub = &self.inner.hub;
        let routed = match event {
            Event::Connect(_) => HandlerEvent::System(SystemEvent::Connect),
            Event::Connected => HandlerEvent::System(SystemEvent::Connected),
            Event::Disconnected(_) => HandlerEvent::System(SystemEvent::Disconnected),
            Event::User { name, .. } => HandlerEvent::User(name),
        };
        let Some(handler) = e.config.route(hub, routed) else {
            return Err(Failure::new(
                FailureKind::NoHandler,
                format!(
                    "no event handler of hub {hub} takes event `{}`",
                    event.name()
                ),
            ));
        };
        let deadline = e.deadline();
        e.validate(handler, hub, deadline)?;
        let url = handler.url_for(hub, event.name());
        let shown = redact_query(&url);
        let req: Outbound = {
            let id = self.inner.ident.lock();
            let who = Identity {
                hub,
                connection_id: &self.inner.connection_id,
                user_id,
                subprotocol: id.subprotocol.as_deref(),
                state: id.state.as_deref(),
            };
            let ce_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            cloudevents::event_request(&e.service, &who, event, ce_id, SystemTime::now(), url)
        };
        let (result, attempts) = e.transport.call(&req, deadline, !e.stopping());
        let reply = result?;
        if attempts > 1 {
            log::info!(
                "upstream: {shown} answered {} after {attempts} attempts",
                reply.status
            );
        }
        if reply.is_success() {
            if let Some(state) = &reply.state {
                self.inner.ident.lock().state = Some(state.clone()).filter(|s| !s.is_empty());
            }
        }
        Ok((reply, shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_types_can_cross_threads() {
        fn check<T: Send + Sync>() {}
        check::<Upstream>();
        check::<UpstreamConnection>();
        check::<UpstreamConfig>();
        check::<ConnectOutcome>();
        check::<EventOutcome>();
    }

    #[test]
    fn disconnected_is_sent_only_after_connected_and_once() {
        let up = Upstream::new(UpstreamConfig::new(), "http://127.0.0.1:1", "k");
        let c = up.connection("h", "c");
        c.disconnected("never connected");
        assert!(!c.inner.ident.lock().disconnected);
        c.connected(Some("u"), None);
        c.disconnected("bye");
        assert!(c.inner.ident.lock().disconnected);
        c.disconnected("again");
        up.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn after_shutdown_events_complete_at_once_with_stopping() {
        let up = Upstream::new(UpstreamConfig::new(), "http://127.0.0.1:1", "k");
        up.shutdown(Duration::from_secs(5));
        let c = up.connection("h", "c");
        let (tx, rx) = crossbeam_channel::bounded(2);
        let t = tx.clone();
        c.user_event("e", None, Metadata::new(), move |o| {
            t.send(format!("{o:?}")).unwrap()
        });
        c.connect(ConnectRequest::new(), move |o| {
            tx.send(format!("{o:?}")).unwrap()
        });
        assert!(rx.try_recv().unwrap().contains("Stopping"));
        assert!(rx.try_recv().unwrap().contains("Stopping"));
        assert_eq!(up.worker_threads(), 0);
    }
}
