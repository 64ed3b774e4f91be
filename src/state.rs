//! The connection-session state machine, without I/O.
//!
//! [`Session`] is what request threads and the I/O thread share (behind one mutex in
//! `client.rs`): the public state, the session's ids, ack ids, the ack table, the joined
//! groups and the outbox. [`Sequence`], [`RecoveryPlan`] and [`ReconnectPlan`] belong to the
//! I/O thread alone. Everything here is a plain value driven by method calls and the current
//! time, so the rules of BEHAVIOR.md are unit-tested without sockets.

use crate::acks::{AckOutcome, AckTable, Pending};
use crate::error::{AckFailure, Error, StateError};
use crate::events::Event;
use crate::options::RetryPolicy;
use crate::protocol::{AckError, ClientMessage};
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use tungstenite::Utf8Bytes;

/// The client's state (B1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientState {
    /// Not started, or stopped. Requests fail with [`Error::Stopped`].
    Stopped,
    /// Opening a connection (at start, or a new connection after the session was lost).
    Connecting,
    /// Connected: requests go out at once.
    Connected,
    /// The connection dropped; the session is being recovered. Requests wait (B30).
    Recovering,
    /// The session was lost; waiting before the next connection attempt. Requests wait.
    Disconnected,
    /// `stop()` is in progress.
    Stopping,
}

/// What a request does, for the group bookkeeping of B23.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Join(String),
    Leave(String),
    Other,
}

/// An entry of the outbox: what the I/O thread writes once the session is ready.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An acked request; its frame is in the ack table.
    Acked(u64),
    /// A fire-and-forget frame.
    Frame(Utf8Bytes),
}

/// What the service's `connected` message means.
#[derive(Debug, PartialEq)]
pub(crate) enum ConnectedOutcome {
    /// The session was recovered: resend these frames (B21); fire `Recovered` if the session
    /// had fired `Connected`.
    Recovered {
        resend: Vec<Utf8Bytes>,
        event: Option<Event>,
    },
    /// A new connection: write the rejoin frames; `connected` is the event to fire now (when
    /// nothing needs rejoining) or later, when the rejoins settle (B9).
    New {
        rejoin: Vec<Utf8Bytes>,
        connected: Option<Event>,
    },
}

/// What an `ack` resolved.
#[derive(Debug)]
pub(crate) enum AckResolution<W> {
    /// A caller's request: send it the result.
    Caller(W, Result<AckOutcome, Error>),
    /// An automatic rejoin: maybe an event for its failure, maybe `Connected` (settled).
    Rejoin {
        failed: Option<Event>,
        connected: Option<Event>,
    },
    /// No request waits for this ack id (timed out, or a late duplicate).
    Unknown,
}

/// The state shared by request threads and the I/O thread.
#[derive(Debug)]
pub(crate) struct Session<W> {
    pub state: ClientState,
    pub connection_id: Option<String>,
    pub user_id: Option<String>,
    reconnection_token: Option<String>,
    /// `connected` arrived on the current socket: frames may be written.
    ready: bool,
    /// The service knows a session for us (`connected` arrived since the last session loss).
    session_open: bool,
    /// `Connected` fired for this session (kept across recoveries, B19).
    connected_fired: bool,
    /// `start()` waits for this run's first `Connected`.
    pub start_pending: bool,
    rejoins_outstanding: usize,
    next_ack_id: u64,
    pub acks: AckTable<W>,
    groups: BTreeSet<String>,
    outbox: VecDeque<Outbound>,
    /// The I/O thread is asleep in `poll`, or about to be, and has seen an empty outbox: a
    /// new frame needs a wake-up. Cleared when it drains the outbox (it is awake then).
    io_idle: bool,
    last_disconnected_message: Option<String>,
    auto_rejoin: bool,
}

impl<W> Session<W> {
    pub(crate) fn new(auto_rejoin: bool) -> Session<W> {
        Session {
            state: ClientState::Stopped,
            connection_id: None,
            user_id: None,
            reconnection_token: None,
            ready: false,
            session_open: false,
            connected_fired: false,
            start_pending: false,
            rejoins_outstanding: 0,
            next_ack_id: 1,
            acks: AckTable::default(),
            groups: BTreeSet::new(),
            outbox: VecDeque::new(),
            io_idle: true,
            last_disconnected_message: None,
            auto_rejoin,
        }
    }

    /// B2: start only from Stopped.
    pub(crate) fn begin_start(&mut self) -> Result<(), Error> {
        match self.state {
            ClientState::Stopped => {
                self.state = ClientState::Connecting;
                self.start_pending = true;
                Ok(())
            }
            ClientState::Stopping => Err(Error::State(StateError::Stopping)),
            _ => Err(Error::State(StateError::AlreadyStarted)),
        }
    }

    /// Whether requests are accepted (they wait while not connected, B30).
    fn accepting(&self) -> bool {
        !matches!(self.state, ClientState::Stopped | ClientState::Stopping)
    }

    /// The next ack id from the counter (B24), skipping ids still in use.
    pub(crate) fn next_id(&mut self) -> u64 {
        loop {
            let id = self.next_ack_id;
            self.next_ack_id = self.next_ack_id.wrapping_add(1).max(1);
            if !self.acks.contains(id) {
                return id;
            }
        }
    }

    /// Registers a request before its frame is queued (B27), so an early ack finds its
    /// waiter. Returns whether the I/O thread needs a wake-up.
    pub(crate) fn register(
        &mut self,
        ack_id: u64,
        kind: RequestKind,
        frame: Utf8Bytes,
        waiter: W,
    ) -> Result<bool, Error> {
        if !self.accepting() {
            return Err(Error::Stopped);
        }
        let fresh = self.acks.insert_new(
            ack_id,
            Pending {
                frame,
                kind,
                sent: false,
                waiter: Some(waiter),
            },
        );
        if !fresh {
            return Err(Error::InvalidInput(crate::error::InvalidInput::AckIdInUse(
                ack_id,
            )));
        }
        Ok(self.push(Outbound::Acked(ack_id)))
    }

    /// Queues a fire-and-forget frame (B28). Returns whether to wake the I/O thread.
    pub(crate) fn queue_frame(&mut self, frame: Utf8Bytes) -> Result<bool, Error> {
        if !self.accepting() {
            return Err(Error::Stopped);
        }
        Ok(self.push(Outbound::Frame(frame)))
    }

    /// The I/O thread needs a wake-up only if it may be idle: when it said it would sleep
    /// ([`Session::io_sleep`]), the outbox was empty (it drains the whole outbox per wake-up;
    /// a non-empty one means someone woke it already) and the session can take frames.
    fn push(&mut self, item: Outbound) -> bool {
        let wake = self.io_idle && self.outbox.is_empty() && self.ready;
        self.outbox.push_back(item);
        wake
    }

    /// The I/O thread is about to block in `poll`: `false` if it must not, because frames wait
    /// that it can write now (a request queued after its last drain, without a wake-up).
    /// Otherwise the next request wakes it.
    pub(crate) fn io_sleep(&mut self) -> bool {
        if self.ready && !self.outbox.is_empty() {
            return false;
        }
        self.io_idle = true;
        true
    }

    /// A caller gave up waiting (ack timeout): forget the request so it is not resent.
    pub(crate) fn abandon(&mut self, ack_id: u64) {
        self.acks.remove(ack_id);
    }

    /// Moves what the outbox holds into `out` if the session is ready, marking acked requests
    /// as sent. Requests already sent (by a resend) or abandoned are skipped.
    pub(crate) fn drain_outbox(&mut self, out: &mut Vec<Utf8Bytes>) {
        if !self.ready {
            return;
        }
        // Awake: it will look at the outbox again before it sleeps (`io_sleep`).
        self.io_idle = false;
        while let Some(item) = self.outbox.pop_front() {
            match item {
                Outbound::Frame(f) => out.push(f),
                Outbound::Acked(id) => {
                    if let Some(p) = self.acks.get_mut(id) {
                        if !p.sent {
                            p.sent = true;
                            out.push(p.frame.clone());
                        }
                    }
                }
            }
        }
    }

    /// The service's `connected` message (B9, B19, B21).
    pub(crate) fn on_connected(
        &mut self,
        connection_id: String,
        user_id: Option<String>,
        reconnection_token: Option<String>,
    ) -> ConnectedOutcome {
        self.ready = true;
        let recovered = self.session_open
            && self.state == ClientState::Recovering
            && self.connection_id.as_deref() == Some(connection_id.as_str());
        self.reconnection_token = reconnection_token;
        if recovered {
            if self.rejoins_outstanding == 0 {
                self.state = ClientState::Connected;
            } else {
                self.state = ClientState::Connecting;
            }
            let resend = self.acks.sent_frames().cloned().collect();
            let event = self
                .connected_fired
                .then_some(Event::Recovered { connection_id });
            return ConnectedOutcome::Recovered { resend, event };
        }
        // A new connection: a new session.
        self.session_open = true;
        self.connected_fired = false;
        self.last_disconnected_message = None;
        self.connection_id = Some(connection_id);
        self.user_id = user_id;
        let mut rejoin = Vec::new();
        if self.auto_rejoin {
            let groups: Vec<String> = self.groups.iter().cloned().collect();
            for group in groups {
                let id = self.next_id();
                let frame: Utf8Bytes = ClientMessage::JoinGroup {
                    group: group.clone(),
                    ack_id: Some(id),
                }
                .encode()
                .into();
                rejoin.push(frame.clone());
                self.acks.insert(
                    id,
                    Pending {
                        frame,
                        kind: RequestKind::Join(group),
                        sent: true,
                        waiter: None,
                    },
                );
            }
        }
        self.rejoins_outstanding = rejoin.len();
        let connected = if rejoin.is_empty() {
            self.settle()
        } else {
            self.state = ClientState::Connecting;
            None
        };
        ConnectedOutcome::New { rejoin, connected }
    }

    /// The rejoins settled: the connection is ready for the user (B9).
    fn settle(&mut self) -> Option<Event> {
        self.state = ClientState::Connected;
        if self.connected_fired {
            return None;
        }
        self.connected_fired = true;
        Some(Event::Connected {
            connection_id: self.connection_id.clone().unwrap_or_default(),
            user_id: self.user_id.clone(),
        })
    }

    /// An `ack` (B25) and the group bookkeeping it implies (B23).
    pub(crate) fn on_ack(
        &mut self,
        ack_id: u64,
        success: bool,
        error: Option<AckError>,
    ) -> AckResolution<W> {
        let Some(p) = self.acks.remove(ack_id) else {
            return AckResolution::Unknown;
        };
        let duplicate = error.as_ref().is_some_and(AckError::is_duplicate);
        let result = if success || duplicate {
            match &p.kind {
                RequestKind::Join(g) => {
                    self.groups.insert(g.clone());
                }
                RequestKind::Leave(g) => {
                    self.groups.remove(g);
                }
                RequestKind::Other => {}
            }
            Ok(AckOutcome { ack_id, duplicate })
        } else {
            let e = error.unwrap_or_else(|| AckError::new("Unknown", ""));
            Err(Error::Ack(AckFailure {
                ack_id,
                name: e.name,
                message: e.message,
            }))
        };
        match p.waiter {
            Some(w) => AckResolution::Caller(w, result),
            None => {
                let failed = match (result, p.kind) {
                    (Err(error), RequestKind::Join(group)) => {
                        // The last operation on this group failed: stop rejoining it.
                        self.groups.remove(&group);
                        Some(Event::RejoinGroupFailed { group, error })
                    }
                    _ => None,
                };
                self.rejoins_outstanding = self.rejoins_outstanding.saturating_sub(1);
                let connected = if self.rejoins_outstanding == 0 && self.ready {
                    self.settle()
                } else {
                    None
                };
                AckResolution::Rejoin { failed, connected }
            }
        }
    }

    /// The service's `disconnected` message: its reason goes into the `Disconnected` event.
    pub(crate) fn on_disconnected_message(&mut self, message: Option<String>) {
        self.last_disconnected_message = message;
    }

    /// The socket closed. Decides whether to recover (B17); `reliable` is the protocol's.
    pub(crate) fn on_socket_closed(
        &mut self,
        close_code: Option<u16>,
        reliable: bool,
    ) -> AfterClose {
        self.ready = false;
        match self.state {
            ClientState::Stopping | ClientState::Stopped => return AfterClose::Stop,
            ClientState::Recovering => return AfterClose::RecoveryAttemptFailed,
            _ => {}
        }
        if !self.session_open {
            return if self.start_pending {
                AfterClose::StartFailed
            } else {
                AfterClose::ReconnectAttemptFailed
            };
        }
        if reliable
            && self.connection_id.is_some()
            && self.reconnection_token.is_some()
            && close_code != Some(1008)
        {
            self.state = ClientState::Recovering;
            AfterClose::Recover
        } else {
            AfterClose::SessionLost
        }
    }

    /// Whether `Recovering` should fire for a recovery that starts now (B14).
    pub(crate) fn recovering_event(&self, close_code: Option<u16>) -> Option<Event> {
        self.connected_fired.then(|| Event::Recovering {
            connection_id: self.connection_id.clone().unwrap_or_default(),
            close_code,
        })
    }

    /// The connection id and token for the recovery URL (B18).
    pub(crate) fn recovery_ids(&self) -> Option<(&str, &str)> {
        Some((
            self.connection_id.as_deref()?,
            self.reconnection_token.as_deref()?,
        ))
    }

    /// The session is lost (recovery impossible or failed, B10, B21): forget it, take the
    /// requests written to it (their callers get `ConnectionLost`), and say whether
    /// `Disconnected` fires. Requests not yet written stay queued for the next connection.
    pub(crate) fn lose_session(
        &mut self,
        close_code: Option<u16>,
    ) -> (Vec<(u64, W)>, Option<Event>) {
        let event = self.connected_fired.then(|| Event::Disconnected {
            connection_id: self.connection_id.clone(),
            message: self.last_disconnected_message.clone(),
            close_code,
        });
        let lost = self
            .acks
            .take_sent()
            .into_iter()
            .filter_map(|(id, p)| p.waiter.map(|w| (id, w)))
            .collect();
        self.ready = false;
        self.session_open = false;
        self.connected_fired = false;
        self.connection_id = None;
        self.reconnection_token = None;
        self.rejoins_outstanding = 0;
        self.last_disconnected_message = None;
        if self.accepting() {
            self.state = ClientState::Disconnected;
        }
        (lost, event)
    }

    /// `stop()` (B5): every waiting request fails with `Stopped`; `Disconnected` fires if the
    /// session had fired `Connected`. Groups are remembered (B7).
    pub(crate) fn finish_stop(&mut self, close_code: Option<u16>) -> (Vec<W>, Option<Event>) {
        self.state = ClientState::Stopping;
        let (_, event) = self.lose_session(close_code);
        let waiters = self
            .acks
            .take_all()
            .into_iter()
            .filter_map(|(_, p)| p.waiter)
            .collect();
        self.outbox.clear();
        self.start_pending = false;
        self.user_id = None;
        (waiters, event)
    }

    /// The groups the client would rejoin.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &String> {
        self.groups.iter()
    }
}

/// What to do after the socket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterClose {
    /// Start a recovery episode (B17).
    Recover,
    /// One recovery attempt failed; the [`RecoveryPlan`] decides.
    RecoveryAttemptFailed,
    /// The session cannot be recovered.
    SessionLost,
    /// The first connection of `start()` failed (B3, B4).
    StartFailed,
    /// A new-connection attempt failed; the [`ReconnectPlan`] decides.
    ReconnectAttemptFailed,
    /// The client is stopping.
    Stop,
}

/// Timing of one recovery episode (B18): first try at once, then every `interval`, for at
/// most `window`; a close code 1008 ends it at once.
#[derive(Debug, Clone)]
pub(crate) struct RecoveryPlan {
    deadline: Instant,
    interval: Duration,
}

impl RecoveryPlan {
    pub(crate) fn new(now: Instant, window: Duration, interval: Duration) -> RecoveryPlan {
        RecoveryPlan {
            deadline: now + window,
            interval,
        }
    }

    /// The deadline of the whole episode; an attempt still dialing then is abandoned.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// After a failed attempt that started at `attempt_start`: when to try again, or `None`
    /// to give up.
    pub(crate) fn next_try(
        &self,
        attempt_start: Instant,
        now: Instant,
        close_code: Option<u16>,
    ) -> Option<Instant> {
        if close_code == Some(1008) {
            return None;
        }
        let next = (attempt_start + self.interval).max(now);
        (next < self.deadline).then_some(next)
    }
}

/// Timing of new-connection attempts after a session loss (B22): first at once, then per the
/// reconnect retry policy.
#[derive(Debug, Clone)]
pub(crate) struct ReconnectPlan {
    retries: u32,
    policy: RetryPolicy,
}

impl ReconnectPlan {
    pub(crate) fn new(policy: RetryPolicy) -> ReconnectPlan {
        ReconnectPlan { retries: 0, policy }
    }

    /// After a failed attempt: when to try again, or `None` when retries are exhausted.
    pub(crate) fn next_try(&mut self, now: Instant) -> Option<Instant> {
        self.retries = self.retries.saturating_add(1);
        self.policy.delay_for(self.retries).map(|d| now + d)
    }
}

/// Sequence ids of the reliable protocol (B20, B31).
#[derive(Debug, Default, Clone)]
pub(crate) struct Sequence {
    largest: u64,
    acked: u64,
    since_ack: u32,
    due: Option<Instant>,
}

/// Send a `sequenceAck` at once when this many new messages arrived since the last one.
pub(crate) const SEQUENCE_ACK_BATCH: u32 = 300;
/// Send a `sequenceAck` at most this long after something new arrived.
pub(crate) const SEQUENCE_ACK_DELAY: Duration = Duration::from_secs(1);

impl Sequence {
    /// A message arrived; `false` means it is a redelivery to drop silently (B20).
    pub(crate) fn on_message(&mut self, sequence_id: Option<u64>, now: Instant) -> bool {
        let Some(id) = sequence_id else {
            return true;
        };
        let fresh = id > self.largest;
        if fresh {
            self.largest = id;
            self.since_ack += 1;
        } else {
            // The service resends what it thinks we lack: our last ack did not reach it.
            self.acked = self.acked.min(id.saturating_sub(1));
        }
        if self.since_ack >= SEQUENCE_ACK_BATCH {
            self.due = Some(now);
        } else if self.due.is_none() {
            self.due = Some(now + SEQUENCE_ACK_DELAY);
        }
        fresh
    }

    /// The id to acknowledge now, if an ack is due.
    pub(crate) fn ack_due(&self, now: Instant) -> Option<u64> {
        match self.due {
            Some(due) if due <= now && self.largest > 0 && self.largest > self.acked => {
                Some(self.largest)
            }
            _ => None,
        }
    }

    /// When the next ack is due, for the poll timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due.filter(|_| self.largest > self.acked)
    }

    /// The ack for `id` was written.
    pub(crate) fn acked(&mut self, id: u64) {
        self.acked = id;
        self.since_ack = 0;
        self.due = None;
    }

    /// After a recovery: tell the service soon where we are, in case our last ack was lost.
    pub(crate) fn on_recovered(&mut self, now: Instant) {
        if self.largest > 0 {
            self.acked = 0;
            self.due = Some(now);
        }
    }

    /// A new session starts counting from 1 (B19).
    pub(crate) fn reset(&mut self) {
        *self = Sequence::default();
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
