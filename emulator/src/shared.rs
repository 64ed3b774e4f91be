//! What every thread of the emulator shares: its settings, its hubs, the engine that calls
//! app servers' event handlers, the observers of what happens, whether it stops, and the
//! end of sessions.
//!
//! Lock order: `Shared::hubs` → a hub's tables → a session's lock → `Shared::observers`.

use crate::handler::{self, EventHandler};
use crate::hub::{Hub, Overflowed};
use crate::session::{Session, UnackedLimits};
use crate::types::Observation;
use crate::upstream::Upstream;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Settings fixed when the emulator starts.
pub(crate) struct Config {
    pub access_key: String,
    pub recovery_window: Duration,
    pub limits: UnackedLimits,
    pub tls: Option<native_tls::TlsAcceptor>,
    pub handler: EventHandler,
    /// `http://127.0.0.1:PORT` (or https).
    pub endpoint: String,
    /// Whether the fault routes (`/emulator/faults/...`) are served.
    pub rest_faults: bool,
    /// Each frame written with a system call of its own (`EmulatorBuilder::flush_each_frame`).
    pub flush_each_frame: bool,
}

impl Config {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Everything the emulator's threads share.
pub(crate) struct Shared {
    pub cfg: Config,
    /// Calls the event handlers of the hubs that have them.
    pub upstream: Upstream,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    observers: Mutex<Vec<Sender<Observation>>>,
    has_observers: AtomicBool,
    refuse_recoveries: AtomicBool,
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(cfg: Config, upstream: Upstream) -> Shared {
        Shared {
            cfg,
            upstream,
            hubs: Mutex::new(HashMap::new()),
            observers: Mutex::new(Vec::new()),
            has_observers: AtomicBool::new(false),
            refuse_recoveries: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// The hub of that name, created on first use (hubs exist implicitly in the service).
    pub fn hub(&self, name: &str) -> Arc<Hub> {
        let mut hubs = self.hubs.lock();
        if let Some(h) = hubs.get(name) {
            return h.clone();
        }
        let hub = Arc::new(Hub::new(name));
        hubs.insert(name.to_owned(), hub.clone());
        hub
    }

    fn all_hubs(&self) -> Vec<Arc<Hub>> {
        self.hubs.lock().values().cloned().collect()
    }

    // ---- observers ----

    pub fn subscribe(&self) -> crossbeam_channel::Receiver<Observation> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut obs = self.observers.lock();
        obs.push(tx);
        self.has_observers.store(true, Ordering::Release);
        rx
    }

    pub fn observing(&self) -> bool {
        self.has_observers.load(Ordering::Acquire)
    }

    /// Sends an observation to every live receiver; forgets dropped receivers.
    pub fn observe(&self, o: Observation) {
        if !self.observing() {
            return;
        }
        let mut obs = self.observers.lock();
        obs.retain(|tx| tx.send(o.clone()).is_ok());
        if obs.is_empty() {
            self.has_observers.store(false, Ordering::Release);
        }
    }

    // ---- switches ----

    pub fn set_refuse_recoveries(&self, refuse: bool) {
        self.refuse_recoveries.store(refuse, Ordering::Release);
    }

    pub fn refuses_recoveries(&self) -> bool {
        self.refuse_recoveries.load(Ordering::Acquire)
    }

    /// From now on every thread winds down.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    // ---- the upstream handler ----

    pub fn call_handler(&self, req: &handler::EventRequest) -> handler::EventResponse {
        handler::call(&self.cfg.handler, req)
    }

    // ---- the end of sessions ----

    /// Ends a session for good: removes it from its hub, reports `SessionEnded` and tells
    /// the event handler it is `disconnected` (once; not a drop that may be recovered).
    pub fn end_session(&self, hub: &Hub, session: &Arc<Session>, reason: &str) {
        hub.remove(session.id());
        if !session.end() {
            return;
        }
        if let Some(up) = session.upstream() {
            up.disconnected(reason);
        }
        log::debug!(
            "emulator: session {} in hub {} ended: {reason}",
            session.id(),
            hub.name()
        );
        self.observe(Observation::SessionEnded {
            hub: hub.name().to_owned(),
            connection_id: session.id().to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// Ends the sessions a fan-out found overflowed.
    pub fn end_overflowed(&self, hub: &Hub, overflowed: Overflowed) {
        for s in overflowed.0 {
            self.end_session(hub, &s, &s.end_reason());
        }
    }

    /// Ends every dropped session whose recovery window has passed.
    pub fn reap_expired(&self) {
        for hub in self.all_hubs() {
            for s in hub.expired(self.cfg.recovery_window) {
                self.end_session(&hub, &s, "recovery window expired");
            }
        }
    }

    /// Ends every remaining session (those waiting for recovery, once the sockets are gone).
    pub fn end_all_sessions(&self, reason: &str) {
        for hub in self.all_hubs() {
            for s in hub.sessions() {
                self.end_session(&hub, &s, reason);
            }
        }
    }
}
