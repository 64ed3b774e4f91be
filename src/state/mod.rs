//! The connection-session state machine, without I/O.
//!
//! [`Session`] is what request threads and the I/O thread share (behind one mutex in
//! `core.rs`): the public state, the session's ids, ack ids, the ack table, the joined
//! groups and the outbox. Its fields are private: every change is one of the named
//! transitions below, called by request threads (`begin_start`, `register`, `request_stop`)
//! or by the I/O thread (`on_connected`, `on_ack`, `on_socket_closed`, `lose_session`,
//! `finish`, ...). Everything here is a plain value driven by method calls, so the rules of
//! BEHAVIOR.md are unit-tested without sockets; the I/O thread's timers, as pure, are in
//! `timers.rs`.

use crate::ack_table::{AckOutcome, AckTable, Pending, RequestKind};
use crate::error::{Error, StateError};
use crate::events::Event;
use crate::invocations::{InvocationTable, InvokeResponse};
use crate::protocol::{ClientMessage, Subprotocol};
use crate::wire::WireFrame;
use std::collections::{BTreeSet, VecDeque};

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

/// An entry of the outbox: what the I/O thread writes once the session is ready.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An acked request; its frame is in the ack table.
    Acked(u64),
    /// An invocation; its frame is in the invocation table.
    Invocation(u64),
    /// A fire-and-forget frame.
    Frame(WireFrame),
}

/// What the service's `connected` message means.
#[derive(Debug, PartialEq)]
pub(crate) enum ConnectedOutcome {
    /// The session was recovered: resend these frames (B21); fire `Recovered` if the session
    /// had fired `Connected`.
    Recovered {
        resend: Vec<WireFrame>,
        event: Option<Event>,
    },
    /// A new connection: write the rejoin frames; `connected` is the event to fire now (when
    /// nothing needs rejoining) or later, when the rejoins settle (B9).
    New {
        rejoin: Vec<WireFrame>,
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

/// What an `invokeResponse` resolved.
#[derive(Debug)]
pub(crate) enum InvokeResolution<I> {
    /// The invocation's caller: send it the result.
    Caller(I, Result<InvokeResponse, Error>),
    /// No invocation waits for this id: cancelled, timed out or failed by a drop (B39,
    /// B40), or not one of ours. The response is dropped.
    Unknown,
}

/// What the end of a run leaves to notify (B5).
#[derive(Debug)]
pub(crate) struct Ended<W, I> {
    /// Every request still waiting for its ack: it fails with `Stopped`.
    pub waiters: Vec<W>,
    /// Every invocation still waiting for its response: it fails with `Stopped`.
    pub invocations: Vec<I>,
    /// `Disconnected`, if the session had fired `Connected`.
    pub event: Option<Event>,
}

/// The state shared by request threads and the I/O thread (the transitions of requests and
/// their answers are in `requests.rs`). `W` is what waits for an ack,
/// `I` what waits for an invocation's response.
#[derive(Debug)]
pub(crate) struct Session<W, I = W> {
    state: ClientState,
    connection_id: Option<String>,
    user_id: Option<String>,
    reconnection_token: Option<String>,
    /// `connected` arrived on the current socket: frames may be written. The one place the
    /// I/O thread learns it too (`drain_outbox`, `is_ready`).
    ready: bool,
    /// The service knows a session for us (`connected` arrived since the last session loss).
    session_open: bool,
    /// `Connected` fired for this session (kept across recoveries, B19).
    connected_fired: bool,
    /// `start()` waits for this run's first `Connected`.
    start_pending: bool,
    /// `stop()` calls still waiting for the client's threads to end. A start meanwhile (from
    /// the `stopped` callback of that very stop) would undo the stop its caller waits for.
    stop_waiters: usize,
    rejoins_outstanding: usize,
    next_ack_id: u64,
    acks: AckTable<W>,
    /// Never reset: invocation ids do not repeat within the client's life (B40).
    next_invocation_id: u64,
    invocations: InvocationTable<I>,
    /// Invocations written to a connection that ended, for the I/O thread to fail (B40).
    lost_invocations: Vec<(u64, I)>,
    /// The codec of the frames the session writes itself (rejoins, `cancelInvocation`).
    subprotocol: Subprotocol,
    groups: BTreeSet<String>,
    outbox: VecDeque<Outbound>,
    /// The I/O thread is asleep in `poll`, or about to be, and has seen an empty outbox: a
    /// new frame needs a wake-up. Cleared when it drains the outbox (it is awake then).
    io_idle: bool,
    last_disconnected_message: Option<String>,
    auto_rejoin: bool,
}

impl<W, I> Session<W, I> {
    pub(crate) fn new(auto_rejoin: bool, subprotocol: Subprotocol) -> Session<W, I> {
        Session {
            state: ClientState::Stopped,
            connection_id: None,
            user_id: None,
            reconnection_token: None,
            ready: false,
            session_open: false,
            connected_fired: false,
            start_pending: false,
            stop_waiters: 0,
            rejoins_outstanding: 0,
            next_ack_id: 1,
            acks: AckTable::default(),
            next_invocation_id: 1,
            invocations: InvocationTable::default(),
            lost_invocations: Vec::new(),
            subprotocol,
            groups: BTreeSet::new(),
            outbox: VecDeque::new(),
            io_idle: true,
            last_disconnected_message: None,
            auto_rejoin,
        }
    }

    // ----- what anyone may read -----

    /// The current state (B1).
    pub(crate) fn state(&self) -> ClientState {
        self.state
    }

    /// The connection id of the current session.
    pub(crate) fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// The user id the service reported for the current connection.
    pub(crate) fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The groups the client would rejoin.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &String> {
        self.groups.iter()
    }

    /// Whether `connected` arrived on the current socket.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether the client is stopping or stopped: the one definition of "ending", which
    /// refuses requests and freezes the state against the I/O thread's transitions.
    fn is_ending(&self) -> bool {
        matches!(self.state, ClientState::Stopping | ClientState::Stopped)
    }

    /// Whether a stop was requested (and the run has not finished yet).
    pub(crate) fn is_stopping(&self) -> bool {
        self.state == ClientState::Stopping
    }

    /// Every transition the I/O thread drives goes through here: none may undo a stop.
    fn move_to(&mut self, state: ClientState) {
        if !self.is_ending() {
            self.state = state;
        }
    }

    // ----- lifecycle -----

    /// B2: start only from Stopped, and not while a `stop()` call waits for the threads.
    pub(crate) fn begin_start(&mut self) -> Result<(), Error> {
        match self.state {
            ClientState::Stopped if self.stop_waiters == 0 => {
                self.state = ClientState::Connecting;
                self.start_pending = true;
                Ok(())
            }
            ClientState::Stopped | ClientState::Stopping => Err(Error::State(StateError::Stopping)),
            _ => Err(Error::State(StateError::AlreadyStarted)),
        }
    }

    /// The run of a `begin_start` could not be set up (no threads): back to Stopped.
    pub(crate) fn abort_start(&mut self) {
        self.state = ClientState::Stopped;
        self.start_pending = false;
    }

    /// `stop()` (B5): a run in progress is to end; requests are refused from now on.
    /// `caller_waits`: the caller waits for the threads to end (it is not one of them) and
    /// reports [`stop_returned`](Self::stop_returned) when they did.
    pub(crate) fn request_stop(&mut self, caller_waits: bool) {
        if self.state != ClientState::Stopped {
            self.state = ClientState::Stopping;
        }
        if caller_waits {
            self.stop_waiters += 1;
        }
    }

    /// A waiting `stop()` call saw the threads end.
    pub(crate) fn stop_returned(&mut self) {
        self.stop_waiters = self.stop_waiters.saturating_sub(1);
    }

    /// `start()` waits for this run's first `Connected`; `true` once, for the run that has
    /// it pending.
    pub(crate) fn take_start_pending(&mut self) -> bool {
        std::mem::take(&mut self.start_pending)
    }

    /// The I/O thread opens a new connection after the session was lost (B22).
    pub(crate) fn reconnecting(&mut self) {
        self.move_to(ClientState::Connecting);
    }

    /// A new-connection attempt failed; the next one waits for its backoff.
    pub(crate) fn waiting_to_reconnect(&mut self) {
        self.move_to(ClientState::Disconnected);
    }

    /// The run ends (B5): every waiting request and invocation fails with `Stopped`;
    /// `Disconnected` fires if the session had fired `Connected`. Groups are remembered (B7).
    /// The state is Stopped before any event of the end fires, so that a handler sees the
    /// final state.
    pub(crate) fn finish(&mut self, close_code: Option<u16>) -> Ended<W, I> {
        self.state = ClientState::Stopping;
        let (_, event) = self.lose_session(close_code);
        let waiters = self
            .acks
            .take_all()
            .into_iter()
            .filter_map(|(_, p)| p.waiter)
            .collect();
        let invocations = std::mem::take(&mut self.lost_invocations)
            .into_iter()
            .chain(self.invocations.take_all())
            .map(|(_, w)| w)
            .collect();
        self.outbox.clear();
        self.start_pending = false;
        self.user_id = None;
        self.state = ClientState::Stopped;
        Ended {
            waiters,
            invocations,
            event,
        }
    }

    // ----- what the service says (I/O thread) -----

    /// The service's `connected` message (B9, B19, B21).
    pub(crate) fn on_connected(
        &mut self,
        connection_id: String,
        user_id: Option<String>,
        reconnection_token: Option<String>,
    ) -> ConnectedOutcome {
        self.ready = true;
        // A recovery keeps the connection id; any other `connected` is a new session.
        let recovered = self.session_open
            && self.state == ClientState::Recovering
            && self.connection_id.as_deref() == Some(connection_id.as_str());
        self.reconnection_token = reconnection_token;
        if recovered {
            self.recovered(connection_id)
        } else {
            self.new_session(connection_id, user_id)
        }
    }

    /// The session survived the drop: resend what was written to it (B21).
    fn recovered(&mut self, connection_id: String) -> ConnectedOutcome {
        self.move_to(if self.rejoins_outstanding == 0 {
            ClientState::Connected
        } else {
            ClientState::Connecting
        });
        let resend = self.acks.sent_frames().cloned().collect();
        let event = self
            .connected_fired
            .then_some(Event::Recovered { connection_id });
        ConnectedOutcome::Recovered { resend, event }
    }

    /// A new connection is a new session (B19): rejoin the client's groups (B23), and fire
    /// `Connected` once they settled (B9).
    fn new_session(&mut self, connection_id: String, user_id: Option<String>) -> ConnectedOutcome {
        self.session_open = true;
        self.connected_fired = false;
        self.last_disconnected_message = None;
        self.connection_id = Some(connection_id);
        self.user_id = user_id;
        let rejoin = if self.auto_rejoin {
            self.rejoin_requests()
        } else {
            Vec::new()
        };
        self.rejoins_outstanding = rejoin.len();
        let connected = if rejoin.is_empty() {
            self.settle()
        } else {
            self.move_to(ClientState::Connecting);
            None
        };
        ConnectedOutcome::New { rejoin, connected }
    }

    /// A `joinGroup` per remembered group, registered as the client's own requests.
    fn rejoin_requests(&mut self) -> Vec<WireFrame> {
        let groups: Vec<String> = self.groups.iter().cloned().collect();
        let mut frames = Vec::with_capacity(groups.len());
        for group in groups {
            let id = self.next_id();
            let frame = WireFrame::encode(
                &ClientMessage::JoinGroup {
                    group: group.clone(),
                    ack_id: Some(id),
                },
                self.subprotocol,
            );
            frames.push(frame.clone());
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
        frames
    }

    /// The rejoins settled: the connection is ready for the user (B9).
    fn settle(&mut self) -> Option<Event> {
        self.move_to(ClientState::Connected);
        if self.connected_fired {
            return None;
        }
        self.connected_fired = true;
        Some(Event::Connected {
            connection_id: self.connection_id.clone().unwrap_or_default(),
            user_id: self.user_id.clone(),
        })
    }

    /// The service's `disconnected` message: its reason goes into the `Disconnected` event.
    pub(crate) fn on_disconnected_message(&mut self, message: Option<String>) {
        self.last_disconnected_message = message;
    }

    // ----- the end of a connection (I/O thread) -----

    /// The socket closed. Decides whether to recover (B17); `reliable` is the protocol's.
    pub(crate) fn on_socket_closed(
        &mut self,
        close_code: Option<u16>,
        reliable: bool,
    ) -> AfterClose {
        self.ready = false;
        // B40: an invocation written to this connection has an unknown outcome now, whatever
        // follows (recovery included): nothing resends it or its response.
        let lost = self.invocations.take_sent();
        self.lost_invocations.extend(lost);
        if self.is_ending() {
            return AfterClose::Stop;
        }
        if self.state == ClientState::Recovering {
            return AfterClose::RecoveryAttemptFailed;
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
            self.move_to(ClientState::Recovering);
            AfterClose::Recover
        } else {
            AfterClose::SessionLost
        }
    }

    /// The invocations the last connection's end left with an unknown outcome (B40): their
    /// callers get `InvocationLost`.
    pub(crate) fn take_lost_invocations(&mut self) -> Vec<(u64, I)> {
        std::mem::take(&mut self.lost_invocations)
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
        self.move_to(ClientState::Disconnected);
        (lost, event)
    }
}

/// What to do after the socket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterClose {
    /// Start a recovery episode (B17).
    Recover,
    /// One recovery attempt failed; the recovery plan decides.
    RecoveryAttemptFailed,
    /// The session cannot be recovered.
    SessionLost,
    /// The first connection of `start()` failed (B3, B4).
    StartFailed,
    /// A new-connection attempt failed; the reconnect plan decides.
    ReconnectAttemptFailed,
    /// The client is stopping.
    Stop,
}

mod requests;

#[cfg(test)]
mod tests;
