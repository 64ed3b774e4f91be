//! The service's state: hubs, connection sessions, groups, users, and message fan-out.
//!
//! Lock order: `Shared::hubs` → `Hub::state` → `Session::st` → `Shared::observers`.
//! A connection thread holds a session lock only to move frames in or out of the
//! session's queues, never across I/O or a call into user code.

use super::{EventHandler, EventRequest, EventResponse, Observation, Permission, UpstreamEvent};
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::Utf8Bytes;
use webpubsub_protocol::{splice_sequence_id, ServiceMessage};

/// Settings fixed when the emulator starts.
pub(crate) struct Config {
    pub access_key: String,
    pub recovery_window: Duration,
    pub max_unacked_messages: usize,
    pub max_unacked_bytes: usize,
    pub tls: Option<native_tls::TlsAcceptor>,
    pub handler: EventHandler,
    /// `http://127.0.0.1:PORT` (or https).
    pub endpoint: String,
}

/// Everything the emulator's threads share.
pub(crate) struct Shared {
    pub cfg: Config,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    observers: Mutex<Vec<Sender<Observation>>>,
    has_observers: AtomicBool,
    pub refuse_recoveries: AtomicBool,
    pub stopping: AtomicBool,
    /// Every live connection thread's wake-up handle, by thread number.
    pub links: Mutex<HashMap<u64, Arc<Link>>>,
    pub threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        Shared {
            cfg,
            hubs: Mutex::new(HashMap::new()),
            observers: Mutex::new(Vec::new()),
            has_observers: AtomicBool::new(false),
            refuse_recoveries: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            links: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The hub of that name, created on first use (hubs exist implicitly in the service).
    pub fn hub(&self, name: &str) -> Arc<Hub> {
        let mut hubs = self.hubs.lock();
        if let Some(h) = hubs.get(name) {
            return h.clone();
        }
        let hub = Arc::new(Hub {
            name: Arc::from(name),
            state: Mutex::new(HubState::default()),
            events: Mutex::new(Vec::new()),
        });
        hubs.insert(name.to_owned(), hub.clone());
        hub
    }

    pub fn all_hubs(&self) -> Vec<Arc<Hub>> {
        self.hubs.lock().values().cloned().collect()
    }

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

    /// Wakes every connection thread (used by `stop`).
    pub fn wake_all(&self) {
        for link in self.links.lock().values() {
            link.wake();
        }
    }
}

/// A connection thread's wake-up: a mio waker plus a flag that coalesces wake-ups, so a
/// burst of queued frames costs one system call.
pub(crate) struct Link {
    pub waker: mio::Waker,
    pub wake_pending: AtomicBool,
}

impl Link {
    pub fn wake(self: &Arc<Self>) {
        // Already pending: a wake-up is on its way (or deferred and on its way).
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(v) => {
                v.push(self.clone());
                true
            }
            None => false,
        });
        if !deferred {
            self.wake_now();
        }
    }

    fn wake_now(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("emulator: cannot wake a connection thread: {e}");
        }
    }
}

thread_local! {
    /// Wake-ups a connection thread holds back while it handles a batch of frames.
    static DEFERRED: std::cell::RefCell<Option<Vec<Arc<Link>>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, wake-ups made on this thread are deferred and done once, when it drops:
/// a sender handling a burst wakes each receiver once per burst, not once per message.
pub(crate) struct DeferWakes(());

impl DeferWakes {
    pub fn begin() -> DeferWakes {
        DEFERRED.with(|d| {
            d.borrow_mut().get_or_insert_with(Vec::new);
        });
        DeferWakes(())
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        let links = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        for l in links {
            l.wake_now();
        }
    }
}

/// One hub: its sessions, groups and users, and the upstream events it recorded.
pub(crate) struct Hub {
    pub name: Arc<str>,
    pub state: Mutex<HubState>,
    pub events: Mutex<Vec<UpstreamEvent>>,
}

/// A session's entry in its hub.
pub(crate) struct Entry {
    pub session: Arc<Session>,
    pub groups: BTreeSet<String>,
}

#[derive(Default)]
pub(crate) struct HubState {
    pub sessions: HashMap<String, Entry>,
    /// group → member connection id → session.
    pub groups: HashMap<String, HashMap<String, Arc<Session>>>,
    /// user → connection ids.
    pub users: HashMap<String, HashSet<String>>,
    /// Groups a user was added to through the server API: joined by the user's future
    /// connections too.
    pub user_groups: HashMap<String, HashSet<String>>,
}

impl HubState {
    pub fn join(&mut self, conn_id: &str, group: &str) -> bool {
        let Some(entry) = self.sessions.get_mut(conn_id) else {
            return false;
        };
        entry.groups.insert(group.to_owned());
        self.groups
            .entry(group.to_owned())
            .or_default()
            .insert(conn_id.to_owned(), entry.session.clone());
        true
    }

    pub fn leave(&mut self, conn_id: &str, group: &str) -> bool {
        let Some(entry) = self.sessions.get_mut(conn_id) else {
            return false;
        };
        entry.groups.remove(group);
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(conn_id);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
        true
    }

    /// Removes a session and its memberships.
    pub fn remove(&mut self, conn_id: &str) -> Option<Arc<Session>> {
        let entry = self.sessions.remove(conn_id)?;
        for g in &entry.groups {
            if let Some(members) = self.groups.get_mut(g) {
                members.remove(conn_id);
                if members.is_empty() {
                    self.groups.remove(g);
                }
            }
        }
        if let Some(user) = &entry.session.user_id {
            if let Some(conns) = self.users.get_mut(user) {
                conns.remove(conn_id);
                if conns.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        Some(entry.session)
    }

    pub fn session(&self, conn_id: &str) -> Option<Arc<Session>> {
        self.sessions.get(conn_id).map(|e| e.session.clone())
    }

    pub fn user_sessions(&self, user: &str) -> Vec<Arc<Session>> {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| self.session(id))
            .collect()
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A socket is attached.
    Live,
    /// The socket dropped at that instant; the session may be recovered until the window ends.
    Dropped(Instant),
    /// Over for good.
    Ended,
}

/// Something a connection thread must do to its socket, asked by another thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Abrupt TCP shutdown, no close frame; recoverable.
    Drop,
    /// Write half a frame, then drop abruptly; recoverable.
    DropMidFrame,
    /// `disconnected` with the reason, close frame, session over. `flush` writes what is
    /// queued first.
    Close { reason: String, flush: bool },
}

/// Injected faults of one session.
#[derive(Debug, Default, Clone)]
pub(crate) struct Faults {
    pub lose_next_ack: bool,
    pub fail_next_acks: u32,
    pub hold_outbound: bool,
    pub ack_delay: Duration,
}

/// One connection session: survives socket drops while recoverable.
pub(crate) struct Session {
    pub id: String,
    pub user_id: Option<String>,
    pub reliable: bool,
    /// Held while a socket's thread handles one client frame, and by a recovery while it
    /// attaches the new socket: a frame is handled by the socket that owns the session at
    /// that moment, never by a superseded socket concurrently with its successor (which
    /// would run the same ack id twice, or reorder requests). Lock order: `exec`, then `st`.
    pub exec: Mutex<()>,
    pub st: Mutex<SessionState>,
}

pub(crate) struct SessionState {
    pub phase: Phase,
    pub perms: HashSet<(Permission, Option<String>)>,
    /// Ack ids whose request was executed.
    pub ack_ids: HashSet<u64>,
    pub next_seq: u64,
    pub unacked: VecDeque<(u64, Utf8Bytes)>,
    pub unacked_bytes: usize,
    /// Frames waiting to be written to the current socket.
    pub pending: VecDeque<Utf8Bytes>,
    /// Acks held back by `delay_acks`, with when they are due.
    pub delayed: VecDeque<(Instant, Utf8Bytes)>,
    pub link: Option<Arc<Link>>,
    pub reconnection_token: String,
    /// Tokens issued before the current one. A token stays valid as long as its session (the
    /// service's tokens live about a week), so a recovery whose `connected` message — with
    /// the fresh token — was lost in a cut can still be recovered with the previous one.
    pub earlier_tokens: VecDeque<String>,
    pub faults: Faults,
    pub command: Option<Command>,
    /// Set when the session ended, for the `SessionEnded` observation.
    pub end_reason: Option<String>,
}

impl Session {
    pub fn new(
        id: String,
        user_id: Option<String>,
        reliable: bool,
        perms: HashSet<(Permission, Option<String>)>,
        reconnection_token: String,
        link: Arc<Link>,
    ) -> Session {
        Session {
            id,
            user_id,
            reliable,
            exec: Mutex::new(()),
            st: Mutex::new(SessionState {
                phase: Phase::Live,
                perms,
                ack_ids: HashSet::new(),
                next_seq: 1,
                unacked: VecDeque::new(),
                unacked_bytes: 0,
                pending: VecDeque::new(),
                delayed: VecDeque::new(),
                link: Some(link),
                reconnection_token,
                earlier_tokens: VecDeque::new(),
                faults: Faults::default(),
                command: None,
                end_reason: None,
            }),
        }
    }

    /// Queues a control frame (ack, pong, system message) for the current socket.
    pub fn push_control(&self, frame: Utf8Bytes) {
        let mut st = self.st.lock();
        if st.phase == Phase::Live {
            st.pending.push_back(frame);
            st.wake();
        }
    }

    /// Gives the session a command for its socket; `false` if no socket is attached.
    pub fn command(&self, cmd: Command) -> bool {
        let mut st = self.st.lock();
        if st.phase != Phase::Live {
            return false;
        }
        st.command = Some(cmd);
        st.wake();
        true
    }

    /// Delivers a `message` whose encoding (`body`) has no sequence id.
    ///
    /// Reliable sessions splice in their next sequence id and keep the frame until it is
    /// sequence-acked; a session whose unacked buffer overflows is closed for good.
    /// Returns `true` when the session must now be ended (it overflowed while no socket
    /// was attached).
    pub fn deliver(&self, body: &Utf8Bytes, cfg: &Config) -> bool {
        let mut st = self.st.lock();
        match st.phase {
            Phase::Ended => return false,
            Phase::Dropped(_) if !self.reliable => return false,
            _ => {}
        }
        if !self.reliable {
            st.pending.push_back(body.clone());
            st.wake();
            return false;
        }
        if st
            .command
            .as_ref()
            .is_some_and(|c| matches!(c, Command::Close { .. }))
        {
            return false; // closing for good already
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut frame = String::with_capacity(body.len() + 24);
        splice_sequence_id(body.as_str(), seq, &mut frame);
        let frame = Utf8Bytes::from(frame);
        st.unacked_bytes += frame.len();
        st.unacked.push_back((seq, frame.clone()));
        if st.unacked.len() > cfg.max_unacked_messages || st.unacked_bytes > cfg.max_unacked_bytes {
            let reason = format!(
                "Too many unacknowledged messages ({} messages, {} bytes; limits {} / {}): the client does not send sequenceAck fast enough",
                st.unacked.len(),
                st.unacked_bytes,
                cfg.max_unacked_messages,
                cfg.max_unacked_bytes
            );
            log::info!("emulator: closing {}: {reason}", self.id);
            st.unacked.clear();
            st.unacked_bytes = 0;
            if st.phase == Phase::Live {
                st.command = Some(Command::Close {
                    reason,
                    flush: false,
                });
                st.wake();
                return false;
            }
            st.end_reason = Some(reason);
            return true;
        }
        if st.phase == Phase::Live {
            st.pending.push_back(frame);
            st.wake();
        }
        false
    }

    pub fn has_permission(&self, perm: Permission, group: Option<&str>) -> bool {
        let st = self.st.lock();
        st.perms.contains(&(perm, None))
            || group.is_some_and(|g| st.perms.contains(&(perm, Some(g.to_owned()))))
    }
}

impl SessionState {
    pub fn wake(&self) {
        if let Some(link) = &self.link {
            link.wake();
        }
    }

    /// Drops every unacked message up to `seq`.
    pub fn sequence_ack(&mut self, seq: u64) {
        while let Some((s, f)) = self.unacked.front() {
            if *s > seq {
                break;
            }
            self.unacked_bytes -= f.len();
            self.unacked.pop_front();
        }
    }
}

/// Parses token roles into permissions: `webpubsub.joinLeaveGroup[.group]`,
/// `webpubsub.sendToGroup[.group]`; other roles are ignored.
pub(crate) fn roles_to_perms(roles: &[String]) -> HashSet<(Permission, Option<String>)> {
    let mut set = HashSet::new();
    for role in roles {
        for (prefix, perm) in [
            ("webpubsub.joinLeaveGroup", Permission::JoinLeaveGroup),
            ("webpubsub.sendToGroup", Permission::SendToGroup),
        ] {
            if role == prefix {
                set.insert((perm, None));
            } else if let Some(group) = role
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
            {
                set.insert((perm, Some(group.to_owned())));
            }
        }
    }
    set
}

/// Encodes a `message` once, without sequence id, for fan-out.
pub(crate) fn encode_body(msg: &ServiceMessage) -> Utf8Bytes {
    let mut out = String::with_capacity(96);
    msg.encode_into(&mut out);
    Utf8Bytes::from(out)
}

pub(crate) fn encode(msg: &ServiceMessage) -> Utf8Bytes {
    encode_body(msg)
}

/// Ends a session for good: removes it from its hub and reports `SessionEnded`.
pub(crate) fn end_session(shared: &Shared, hub: &Hub, session: &Arc<Session>, reason: &str) {
    hub.state.lock().remove(&session.id);
    {
        let mut st = session.st.lock();
        if st.phase == Phase::Ended {
            return;
        }
        st.phase = Phase::Ended;
        st.pending.clear();
        st.unacked.clear();
        st.unacked_bytes = 0;
        st.delayed.clear();
        st.link = None;
        st.command = None;
    }
    log::debug!(
        "emulator: session {} in hub {} ended: {reason}",
        session.id,
        hub.name
    );
    shared.observe(Observation::SessionEnded {
        hub: hub.name.to_string(),
        connection_id: session.id.clone(),
        reason: reason.to_owned(),
    });
}

/// Ends every dropped session whose recovery window has passed.
pub(crate) fn reap_expired(shared: &Shared) {
    let window = shared.cfg.recovery_window;
    for hub in shared.all_hubs() {
        let expired: Vec<Arc<Session>> = {
            let st = hub.state.lock();
            st.sessions
                .values()
                .filter(|e| {
                    matches!(e.session.st.lock().phase, Phase::Dropped(at) if at.elapsed() >= window)
                })
                .map(|e| e.session.clone())
                .collect()
        };
        for s in expired {
            end_session(shared, &hub, &s, "recovery window expired");
        }
    }
}

/// Calls the upstream handler, turning a panic into a failure.
pub(crate) fn call_handler(shared: &Shared, req: &EventRequest) -> EventResponse {
    let handler = &shared.cfg.handler;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req))) {
        Ok(r) => r,
        Err(_) => EventResponse::Fail("the event handler panicked".into()),
    }
}
