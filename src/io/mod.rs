//! The I/O thread (`webpubsub-io`): one mio readiness loop that dials, reads, writes, keeps
//! the timers (sequence acks, keep-alive, recovery and reconnect backoff) and resolves acks.
//!
//! Request threads push onto the session's outbox and wake the loop through a `mio::Waker`;
//! the loop writes every queued frame and flushes once (batching). An idle connected client
//! sleeps in `poll` until the next keep-alive deadline. The socket is edge-triggered: reads go
//! on until `WouldBlock` (or a budget, then the loop comes back at once). User code never runs
//! here: events go to the dispatcher thread.

use crate::client::{Core, RunCtl};
use crate::endpoint::AccessUrl;
use crate::error::{ConnectError, Error, Result};
use crate::events::{run_dispatcher, Event, GroupMessage, ServerMessage};
use crate::protocol::ServiceMessage;
use crate::state::{
    AckResolution, ClientState, ConnectedOutcome, ReconnectPlan, RecoveryPlan, Sequence,
};
use crate::transport::{Dialer, Stream};
use crossbeam_channel::Sender;
use mio::{Events, Poll, Token, Waker};
use std::io::ErrorKind;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::{Message, Utf8Bytes, WebSocket};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Messages read per loop turn before writes and timers get a turn.
const READ_BUDGET: usize = 512;
/// While reading is paused for a full event backlog, how often the loop looks whether it
/// drained (the consumers cannot wake it: one of them may be a user's `Receiver`).
const BACKLOG_RECHECK: Duration = Duration::from_millis(5);
/// How long `stop()` waits for the service to answer our close frame.
const CLOSE_WAIT: Duration = Duration::from_millis(500);
const PING: &str = "{\"type\":\"ping\"}";

mod ended;

/// Starts a run: the dispatcher and I/O threads.
pub(crate) fn spawn(core: Arc<Core>) -> Result<(Arc<RunCtl>, Vec<JoinHandle<()>>)> {
    let io_err = |e: std::io::Error| Error::io(&e);
    let poll = Poll::new().map_err(io_err)?;
    let waker = Waker::new(poll.registry(), WAKER).map_err(io_err)?;
    let run = Arc::new(RunCtl::new(waker));
    core.shared.lock().run = Some(run.clone());
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let registry = core.registry.clone();
    let core_d = core.clone();
    let dispatch = std::thread::Builder::new()
        .name("webpubsub-dispatch".into())
        .spawn(move || {
            core_d.mark_own_thread();
            // Only the address is kept: the dispatcher must not keep the client alive.
            drop(core_d);
            run_dispatcher(events_rx, registry)
        });
    let dispatch = match dispatch {
        Ok(h) => h,
        Err(e) => {
            core.shared.lock().run = None;
            return Err(io_err(e));
        }
    };
    let io_thread = IoThread::new(core.clone(), run.clone(), poll, events_tx);
    let io = std::thread::Builder::new()
        .name("webpubsub-io".into())
        .spawn(move || {
            io_thread.core.mark_own_thread();
            io_thread.main()
        });
    match io {
        Ok(io) => Ok((run, vec![io, dispatch])),
        Err(e) => {
            // The closure (and the events sender) is gone: the dispatcher ends by itself.
            let _ = dispatch.join();
            core.shared.lock().run = None;
            Err(io_err(e))
        }
    }
}

/// What the next connection attempt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Start,
    Recover,
    Reconnect,
}

enum Conn {
    Idle,
    Dialing {
        dialer: Box<Dialer>,
        deadline: Option<Instant>,
    },
    Open(Box<Open>),
}

struct Open {
    ws: WebSocket<Stream>,
    /// Until `connected` arrives: when to give the attempt up.
    deadline: Option<Instant>,
    ready: bool,
    last_recv: Instant,
    next_ping: Option<Instant>,
    /// Not yet read until `WouldBlock`.
    readable: bool,
    /// Reading is paused: too many received events wait for their consumers.
    paused: bool,
    /// Frames written but not flushed.
    dirty: bool,
    /// Why the connection ended: close code and reason, or an error.
    ended: Option<(Option<u16>, Error)>,
}

struct IoThread {
    core: Arc<Core>,
    run: Arc<RunCtl>,
    poll: Poll,
    events: Sender<Event>,
    reliable: bool,
    conn: Conn,
    seq: Sequence,
    attempt: Attempt,
    attempt_began: Instant,
    next_dial: Option<Instant>,
    access_url: Option<AccessUrl>,
    recovery: Option<RecoveryPlan>,
    reconnect: Option<ReconnectPlan>,
    /// Close code of the drop that began the current recovery (for `Disconnected`).
    drop_code: Option<u16>,
    /// `start()` succeeded: `stopped` fires at the end.
    started: bool,
    exit: bool,
    exit_error: Option<Error>,
    out: Vec<Utf8Bytes>,
    /// Messages of a new connection received before its `Connected` event (which waits for
    /// the rejoin to settle, B9): handed over right after it, in order.
    held: Option<Vec<Event>>,
}

impl IoThread {
    fn new(core: Arc<Core>, run: Arc<RunCtl>, poll: Poll, events: Sender<Event>) -> IoThread {
        let reliable = core.options.protocol.is_reliable();
        IoThread {
            core,
            run,
            poll,
            events,
            reliable,
            conn: Conn::Idle,
            seq: Sequence::default(),
            attempt: Attempt::Start,
            attempt_began: Instant::now(),
            next_dial: Some(Instant::now()),
            access_url: None,
            recovery: None,
            reconnect: None,
            drop_code: None,
            started: false,
            exit: false,
            exit_error: None,
            out: Vec::with_capacity(64),
            held: None,
        }
    }

    fn main(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            if self.run.stop_requested() || self.exit {
                break;
            }
            self.step(Instant::now());
            if self.run.stop_requested() || self.exit {
                break;
            }
            let mut timeout = self.poll_timeout(Instant::now());
            if timeout != Some(Duration::ZERO) && !self.core.shared.lock().session.io_sleep() {
                // A request came in after the outbox was drained: go round again at once.
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("poll failed: {e}; stopping");
                self.exit_error = Some(Error::io(&e));
                break;
            }
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    if let Conn::Open(o) = &mut self.conn {
                        // A writable edge needs no flag: every turn flushes what is pending.
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            o.readable = true;
                        }
                    }
                }
            }
        }
        self.shutdown();
    }

    /// Does everything that can be done now without blocking.
    fn step(&mut self, now: Instant) {
        // A dial can complete at once (and an open connection may hold data already), so
        // go on while the connection advances; the bound only guards against a loop.
        for _ in 0..4 {
            match &mut self.conn {
                Conn::Idle => {
                    if self.next_dial.is_some_and(|t| t <= now) {
                        self.next_dial = None;
                        self.dial(now);
                        continue;
                    }
                    return;
                }
                Conn::Dialing { .. } => {
                    if !self.advance_dial(now) {
                        return;
                    }
                }
                Conn::Open(_) => {
                    self.service_open(now);
                    return;
                }
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let deadline = match &self.conn {
            Conn::Idle => self.next_dial,
            Conn::Dialing { deadline, .. } => *deadline,
            Conn::Open(o) => {
                if (o.readable && !o.paused) || o.ended.is_some() {
                    return Some(Duration::ZERO);
                }
                if o.paused {
                    return Some(BACKLOG_RECHECK);
                }
                let opts = &self.core.options;
                let dead = (!opts.keep_alive_timeout.is_zero())
                    .then(|| o.last_recv + opts.keep_alive_timeout);
                [o.deadline, o.next_ping, dead, self.seq.deadline()]
                    .into_iter()
                    .flatten()
                    .min()
            }
        };
        deadline.map(|d| d.saturating_duration_since(now))
    }

    fn emit(&self, event: Option<Event>) {
        if let Some(e) = event {
            let _ = self.events.send(e);
        }
    }

    /// A received message event: held while a new connection settles, else handed over.
    fn emit_message(&mut self, event: Event) {
        match &mut self.held {
            Some(held) => held.push(event),
            None => self.emit(Some(event)),
        }
    }

    /// Hands over the messages held while a new connection settled.
    fn release_held(&mut self) {
        for event in self.held.take().into_iter().flatten() {
            self.emit(Some(event));
        }
    }

    fn set_state(&self, state: ClientState) {
        let mut sh = self.core.shared.lock();
        if !matches!(
            sh.session.state,
            ClientState::Stopping | ClientState::Stopped
        ) {
            sh.session.state = state;
        }
    }

    // ----- dialing -----

    fn dial(&mut self, now: Instant) {
        self.attempt_began = now;
        let url = match self.attempt {
            Attempt::Recover => {
                let sh = self.core.shared.lock();
                match (&self.access_url, sh.session.recovery_ids()) {
                    (Some(u), Some((id, token))) => Ok(u.recovery(id, token)),
                    _ => Err(Error::Protocol("no session to recover".into())),
                }
            }
            Attempt::Start | Attempt::Reconnect => {
                if self.attempt == Attempt::Reconnect {
                    self.set_state(ClientState::Connecting);
                }
                // B8: the provider is called for every new connection, never for recovery.
                self.core.options.credential.access_url().inspect(|u| {
                    self.access_url = Some(u.clone());
                })
            }
        };
        let url = match url {
            Ok(u) => u,
            Err(e) => return self.attempt_failed(None, e, now),
        };
        log::debug!("connecting to {url} ({:?})", self.attempt);
        let tls = if url.is_tls() {
            match self.core.tls_connector() {
                Ok(c) => Some(c),
                Err(e) => return self.attempt_failed(None, e, now),
            }
        } else {
            None
        };
        let timeout = self.core.options.start_timeout;
        let deadline = match self.attempt {
            // `start()` keeps its own deadline.
            Attempt::Start => None,
            Attempt::Recover => Some(
                (now + timeout).min(self.recovery.as_ref().map_or(now, RecoveryPlan::deadline)),
            ),
            Attempt::Reconnect => Some(now + timeout),
        };
        match Dialer::start(url, &self.core.options, tls, self.poll.registry(), SOCKET) {
            Ok(dialer) => {
                self.conn = Conn::Dialing {
                    dialer: Box::new(dialer),
                    deadline,
                }
            }
            Err(e) => self.attempt_failed(None, e, now),
        }
    }

    /// Advances a dial; `true` if the connection state changed.
    fn advance_dial(&mut self, now: Instant) -> bool {
        let Conn::Dialing { dialer, deadline } = &mut self.conn else {
            return false;
        };
        let deadline = *deadline;
        match dialer.advance(self.poll.registry()) {
            Ok(Some(ws)) => {
                let ping = self.core.options.keep_alive_interval;
                self.conn = Conn::Open(Box::new(Open {
                    ws,
                    deadline,
                    ready: false,
                    last_recv: now,
                    next_ping: (!ping.is_zero()).then(|| now + ping),
                    // The handshake may have read the first frames already.
                    readable: true,
                    paused: false,
                    dirty: false,
                    ended: None,
                }));
                true
            }
            Ok(None) if deadline.is_some_and(|d| d <= now) => {
                self.abort_dial();
                let e = Error::Connect(ConnectError::Io {
                    kind: ErrorKind::TimedOut,
                    message: "connection attempt timed out".into(),
                });
                self.attempt_failed(None, e, now);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.abort_dial();
                self.attempt_failed(None, e, now);
                true
            }
        }
    }

    fn abort_dial(&mut self) {
        if let Conn::Dialing { dialer, .. } = std::mem::replace(&mut self.conn, Conn::Idle) {
            dialer.abort(self.poll.registry());
        }
    }

    // ----- an open connection -----

    fn service_open(&mut self, now: Instant) {
        let Conn::Open(mut o) = std::mem::replace(&mut self.conn, Conn::Idle) else {
            return;
        };
        self.check_backlog(&mut o, now);
        if o.readable && !o.paused {
            self.read(&mut o, now);
        }
        if o.ended.is_none() {
            self.write_outbox(&mut o);
            self.timers(&mut o, now);
        }
        if o.dirty && o.ended.is_none() {
            match o.ws.flush() {
                Ok(()) => o.dirty = false,
                // Waits for the writable edge; tungstenite keeps the bytes.
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => o.ended = Some((None, ws_error(e))),
            }
        }
        match o.ended.take() {
            None => self.conn = Conn::Open(o),
            Some((code, cause)) => {
                let _ = o.ws.flush();
                let _ = self.poll.registry().deregister(o.ws.get_mut().tcp());
                drop(o);
                log::debug!("connection ended: {cause}");
                self.attempt_failed(code, cause, now);
            }
        }
    }

    /// Bounds the client's memory under a flood: reading pauses while the events waiting for
    /// the dispatcher or the slowest `events()` receiver reach `max_event_backlog`, and resumes
    /// when they drain to half. The socket buffers, then the service, hold the rest.
    fn check_backlog(&mut self, o: &mut Open, now: Instant) {
        let max = self.core.options.max_event_backlog;
        let held = self.held.as_ref().map_or(0, Vec::len);
        let backlog = || held + self.events.len() + self.core.registry.stream_backlog();
        if !o.paused && o.readable && backlog() >= max {
            log::debug!("{max} events wait for their consumers: reading pauses");
            o.paused = true;
        } else if o.paused && backlog() <= max / 2 {
            log::debug!("event backlog drained: reading resumes");
            o.paused = false;
            // Frames waited unread in the socket; the connection was not silent.
            o.last_recv = now;
        }
    }

    fn read(&mut self, o: &mut Open, now: Instant) {
        for _ in 0..READ_BUDGET {
            match o.ws.read() {
                Ok(Message::Text(text)) => {
                    o.last_recv = now;
                    self.on_text(o, &text, now);
                    if o.ended.is_some() {
                        return;
                    }
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.as_str().to_owned()))
                        .unwrap_or((None, String::new()));
                    o.ended = Some((code, Error::Connect(ConnectError::Closed { code, reason })));
                    return;
                }
                Ok(Message::Binary(_)) => {
                    o.last_recv = now;
                    log::debug!("skipping a binary frame: the JSON subprotocols use text frames");
                }
                Ok(_) => {
                    // Ping (tungstenite queued the pong: flush it), pong, raw frame.
                    o.last_recv = now;
                    o.dirty = true;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    o.readable = false;
                    return;
                }
                Err(e) => {
                    o.ended = Some((None, ws_error(e)));
                    return;
                }
            }
        }
        // Budget spent: `readable` stays set, so the loop comes back without waiting.
    }

    fn on_text(&mut self, o: &mut Open, text: &str, now: Instant) {
        let msg = match ServiceMessage::decode(text) {
            Ok(m) => m,
            Err(e) => {
                // B34: logged and skipped; the connection stays up.
                log::warn!("skipping a malformed frame: {e}");
                return;
            }
        };
        match msg {
            ServiceMessage::GroupMessage {
                group,
                data,
                from_user_id,
                sequence_id,
                ..
            } => {
                if !self.seq.on_message(sequence_id, now) {
                    log::debug!("dropping redelivered message {sequence_id:?}");
                } else if self.core.registry.has_listeners() {
                    self.emit_message(Event::GroupMessage(GroupMessage {
                        group,
                        data,
                        from_user_id,
                        sequence_id,
                    }));
                }
            }
            ServiceMessage::ServerMessage {
                data, sequence_id, ..
            } => {
                // Counted as received either way; handed over only if someone listens.
                if self.seq.on_message(sequence_id, now) && self.core.registry.has_listeners() {
                    self.emit_message(Event::ServerMessage(ServerMessage { data, sequence_id }));
                }
            }
            ServiceMessage::Ack {
                ack_id,
                success,
                error,
            } => {
                let r = self
                    .core
                    .shared
                    .lock()
                    .session
                    .on_ack(ack_id, success, error);
                match r {
                    AckResolution::Caller(waiter, result) => {
                        let _ = waiter.try_send(result);
                    }
                    AckResolution::Rejoin { failed, connected } => {
                        self.emit(failed);
                        self.on_settled(connected);
                    }
                    AckResolution::Unknown => log::debug!("ack {ack_id} has no waiter"),
                }
            }
            ServiceMessage::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => {
                o.ready = true;
                o.deadline = None;
                let outcome = self.core.shared.lock().session.on_connected(
                    connection_id,
                    user_id,
                    reconnection_token,
                );
                match outcome {
                    ConnectedOutcome::Recovered { resend, event } => {
                        log::info!("session recovered; resending {} request(s)", resend.len());
                        self.recovery = None;
                        self.seq.on_recovered(now);
                        for f in resend {
                            write(o, f);
                        }
                        self.emit(event);
                    }
                    ConnectedOutcome::New { rejoin, connected } => {
                        self.recovery = None;
                        self.reconnect = None;
                        self.drop_code = None;
                        self.seq.reset();
                        for f in rejoin {
                            write(o, f);
                        }
                        if connected.is_none() {
                            // Rejoins are in flight: `Connected` (and what arrives
                            // meanwhile) waits for them.
                            self.held = Some(Vec::new());
                        }
                        self.on_settled(connected);
                    }
                }
            }
            ServiceMessage::Disconnected { message } => {
                self.core
                    .shared
                    .lock()
                    .session
                    .on_disconnected_message(message);
            }
            ServiceMessage::Pong => {}
            ServiceMessage::Unknown { kind, sequence_id } => {
                // Still counted as received, so the service does not resend it.
                self.seq.on_message(sequence_id, now);
                log::debug!("skipping an unknown message ({kind})");
            }
            other => log::debug!("skipping {other:?}"),
        }
    }

    /// The new connection is ready for the user (B9): `start()` returns, `Connected` fires.
    fn on_settled(&mut self, connected: Option<Event>) {
        let Some(event) = connected else { return };
        let start_pending = std::mem::take(&mut self.core.shared.lock().session.start_pending);
        if start_pending {
            if !self.run.start.complete(Ok(())) {
                // `start()` gave up at this very moment; it stops the client.
                self.exit = true;
                return;
            }
            self.started = true;
        }
        self.emit(Some(event));
        self.release_held();
    }

    fn write_outbox(&mut self, o: &mut Open) {
        let mut out = std::mem::take(&mut self.out);
        self.core.shared.lock().session.drain_outbox(&mut out);
        for f in out.drain(..) {
            write(o, f);
        }
        self.out = out;
    }

    fn timers(&mut self, o: &mut Open, now: Instant) {
        let opts = &self.core.options;
        if o.ready {
            if self.reliable {
                if let Some(id) = self.seq.ack_due(now) {
                    let frame = format!("{{\"type\":\"sequenceAck\",\"sequenceId\":{id}}}");
                    // B31: if the write fails the connection ends, and the ack is sent again
                    // after the recovery.
                    if write(o, frame.into()) {
                        log::trace!("sequenceAck {id}");
                        self.seq.acked(id);
                    }
                }
            }
            if let Some(at) = o.next_ping.filter(|t| *t <= now) {
                write(o, Utf8Bytes::from_static(PING));
                o.next_ping = Some(at.max(now) + opts.keep_alive_interval);
            }
        }
        if !o.paused
            && !opts.keep_alive_timeout.is_zero()
            && now >= o.last_recv + opts.keep_alive_timeout
        {
            // B32: a dead connection is closed and recovered.
            log::warn!(
                "no frame for {:?}: the connection is dead",
                opts.keep_alive_timeout
            );
            o.ended = Some((
                None,
                Error::Connect(ConnectError::Io {
                    kind: ErrorKind::TimedOut,
                    message: "keep-alive timeout".into(),
                }),
            ));
        } else if o.deadline.is_some_and(|d| d <= now) {
            o.ended = Some((
                None,
                Error::Connect(ConnectError::Io {
                    kind: ErrorKind::TimedOut,
                    message: "no `connected` message in time".into(),
                }),
            ));
        }
    }
}

/// Queues a frame; `false` if the connection failed (recorded in `o.ended`).
fn write(o: &mut Open, frame: Utf8Bytes) -> bool {
    match o.ws.write(Message::Text(frame)) {
        Ok(()) => {
            o.dirty = true;
            true
        }
        // The frame is buffered; the flush goes on at the writable edge.
        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
            o.dirty = true;
            true
        }
        Err(e) => {
            if o.ended.is_none() {
                o.ended = Some((None, ws_error(e)));
            }
            false
        }
    }
}

fn ws_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Io(e) => Error::io(&e),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Error::Connect(ConnectError::Closed {
                code: None,
                reason: String::new(),
            })
        }
        other => Error::Connect(ConnectError::Handshake(other.to_string())),
    }
}
