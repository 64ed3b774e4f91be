//! One connection session: its queues, sequence ids, ack ids, rights, faults, and the
//! socket that owns it. A session outlives its socket while it can be recovered.
//!
//! The session owns its transitions: the fields are private, and every change is one of
//! the named operations below (`attach`, `detach`, `end`, `deliver`, ...). It knows
//! nothing of sockets beyond the [`Link`] that wakes the one attached.
//!
//! A request whose answer comes from an app server's event handler waits in the session,
//! not in its socket ([`Session::await_answer`]): a recovery in the middle finds it there, so
//! the handler is called once and its answer reaches the client on whichever socket then
//! owns the session.
//!
//! Lock order: `exec`, then `st`. A socket's I/O thread holds `st` only to move frames in or
//! out of the queues, never across I/O or a call into user code.

// Re-exported: the connection code builds grants where it builds sessions.
use crate::frames::{OutFrame, Outgoing, Speaks};
pub(crate) use crate::roles::Grants;
use crate::types::Permission;
use crate::upstream::{EventOutcome, Failure, FailureKind, UpstreamConnection};
use crate::wake::Link;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webpubsub_protocol::{AckError, ServiceMessage, Subprotocol};

/// How many earlier reconnection tokens of a session stay valid besides the current one.
const MAX_EARLIER_TOKENS: usize = 16;

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A socket is attached.
    Live,
    /// The socket dropped at that instant; the session may be recovered until the window ends.
    Dropped(Instant),
    /// Over for good.
    Ended,
}

/// Something a socket's I/O thread must do to it, asked by another thread.
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

/// How much a reliable session keeps unacknowledged before it is closed for good.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnackedLimits {
    pub messages: usize,
    pub bytes: usize,
}

/// What to do with a request that carries an ack id, before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckedRun {
    /// The ack id ran already: answer `Duplicate`.
    Duplicate,
    /// An injected failure: answer `InternalServerError` without running it.
    InjectedFailure,
    /// Run it; with `lose_ack`, drop the socket instead of sending the ack.
    Run { lose_ack: bool },
}

/// Why a socket may no longer act for the session: a recovery attached another one.
#[derive(Debug)]
pub(crate) struct TakenOver;

/// A simple client's `webpubsub_mode=sendToGroup`: its frames go to a group instead of the
/// event handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendToGroupMode {
    pub group: String,
    pub no_echo: bool,
}

/// A request that waits in its session for an event handler's answer (see
/// [`Session::await_answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Awaiting {
    /// An `event`: its reply goes back as a server message, then the ack (if it has an ack
    /// id); `lose_ack` is the injected fault (the ack is lost and the socket dropped).
    Event { ack_id: Option<u64>, lose_ack: bool },
    /// A simple client's frame: its reply goes back as a frame; a failure closes it.
    Simple,
}

/// Where the session's waiting request stands, as its socket sees it.
#[derive(Debug)]
pub(crate) enum Waiting {
    /// Nothing waits: the socket reads on.
    Free,
    /// The answer has not come: the socket reads no further frame.
    Pending,
    /// The answer came: the socket finishes the request with it, then reads on.
    Answered(Awaiting, EventOutcome),
}

enum Wait {
    Pending { ticket: u64, awaiting: Awaiting },
    Answered(Awaiting, EventOutcome),
}

/// Hands an event handler's answer to its session, from any thread and without blocking
/// (a short lock and a wake-up of the socket that owns the session then). Dropped without
/// an answer — the call was abandoned — it answers with a failure, so that nothing waits
/// forever.
pub(crate) struct Answer {
    session: Arc<Session>,
    target: Target,
    answered: bool,
}

enum Target {
    Wait(u64),
    Invocation { id: String, ticket: u64 },
}

impl Answer {
    pub fn complete(mut self, outcome: EventOutcome) {
        self.answered = true;
        self.session.answered(&self.target, outcome);
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.answered {
            let f = Failure::new(
                FailureKind::Unreachable,
                "the call to the event handler was abandoned",
            );
            self.session.answered(&self.target, EventOutcome::Failed(f));
        }
    }
}

/// A message sent to a reliable session and not yet sequence-acked.
struct Unacked {
    seq: u64,
    frame: OutFrame,
    /// Past this instant a recovery does not resend it (its time to live).
    expires: Option<Instant>,
}

/// One connection session.
pub(crate) struct Session {
    id: String,
    user_id: Option<String>,
    /// Fixed for the session's life: every frame it queues is in this codec, and a recovery
    /// must speak it too.
    speaks: Speaks,
    /// Its side of the app server's event handlers, when its hub has any: identity,
    /// connection state and the order of its events, across recoveries.
    upstream: Option<UpstreamConnection>,
    /// A simple client's frames go to this group instead of the event handler.
    send_mode: Option<SendToGroupMode>,
    /// Held while a socket's thread handles one client frame, and by a recovery while it
    /// attaches the new socket: a frame is handled by the socket that owns the session at
    /// that moment, never by a superseded socket concurrently with its successor (which
    /// would run the same ack id twice, or reorder requests).
    exec: Mutex<()>,
    st: Mutex<State>,
}

struct State {
    phase: Phase,
    grants: Grants,
    /// Ack ids whose request was executed.
    ack_ids: HashSet<u64>,
    next_seq: u64,
    unacked: VecDeque<Unacked>,
    unacked_bytes: usize,
    /// Frames waiting to be written to the current socket.
    pending: VecDeque<OutFrame>,
    /// Acks held back by `delay_acks`, with when they are due.
    delayed: VecDeque<(Instant, OutFrame)>,
    link: Option<Arc<Link>>,
    reconnection_token: String,
    /// Tokens issued before the current one. A token stays valid as long as its session (the
    /// service's tokens live about a week), so a recovery whose `connected` message — with
    /// the fresh token — was lost in a cut can still be recovered with the previous one.
    earlier_tokens: VecDeque<String>,
    faults: Faults,
    command: Option<Command>,
    /// Set when the session overflowed while dropped, for the `SessionEnded` observation.
    end_reason: Option<String>,
    /// The request waiting for an event handler's answer (at most one: events go one at a
    /// time, in order).
    wait: Option<Wait>,
    /// `invoke`s sent to the event handler and not answered or cancelled: id → ticket.
    invocations: HashMap<String, u64>,
    /// Tells one wait or invocation from a later one.
    next_ticket: u64,
}

impl State {
    fn wake(&self) {
        if let Some(link) = &self.link {
            link.wake();
        }
    }

    fn owned_by(&self, link: &Arc<Link>) -> bool {
        self.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link))
    }
}

/// The `connected` message of a session.
fn connected(id: &str, user_id: Option<&str>, token: Option<String>) -> ServiceMessage {
    ServiceMessage::Connected {
        connection_id: id.to_owned(),
        user_id: user_id.map(str::to_owned),
        reconnection_token: token,
    }
}

/// What a new session is: who, speaking what, with which rights, and its side of the event
/// handlers.
pub(crate) struct Opening {
    pub id: String,
    pub user_id: Option<String>,
    pub speaks: Speaks,
    pub grants: Grants,
    pub upstream: Option<UpstreamConnection>,
    pub send_mode: Option<SendToGroupMode>,
}

impl Session {
    /// A new session on the socket of `link`, with its `connected` message queued (none for
    /// a simple client).
    pub fn open(opening: Opening, reconnection_token: String, link: Arc<Link>) -> Session {
        let Opening {
            id,
            user_id,
            speaks,
            grants,
            upstream,
            send_mode,
        } = opening;
        let mut st = State {
            phase: Phase::Live,
            grants,
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
            wait: None,
            invocations: HashMap::new(),
            next_ticket: 0,
        };
        let token = speaks.is_reliable().then(|| st.reconnection_token.clone());
        if let Some(hello) = speaks.frame(&connected(&id, user_id.as_deref(), token)) {
            st.pending.push_back(hello);
        }
        Session {
            id,
            user_id,
            speaks,
            upstream,
            send_mode,
            exec: Mutex::new(()),
            st: Mutex::new(st),
        }
    }

    /// The connection id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token's user, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// Whether it speaks a reliable subprotocol.
    pub fn reliable(&self) -> bool {
        self.speaks.is_reliable()
    }

    /// What it speaks.
    pub fn speaks(&self) -> Speaks {
        self.speaks
    }

    /// The PubSub subprotocol it speaks; `None` for a simple client.
    pub fn subprotocol(&self) -> Option<Subprotocol> {
        self.speaks.subprotocol()
    }

    /// Its side of the app server's event handlers, when its hub has any.
    pub fn upstream(&self) -> Option<&UpstreamConnection> {
        self.upstream.as_ref()
    }

    /// A simple client's `webpubsub_mode=sendToGroup`, if it asked for it.
    pub fn send_mode(&self) -> Option<&SendToGroupMode> {
        self.send_mode.as_ref()
    }

    /// `msg` as this session speaks it (`None`: a simple client does not get it).
    pub fn frame(&self, msg: &ServiceMessage) -> Option<OutFrame> {
        self.speaks.frame(msg)
    }

    // ---- the socket that owns the session ----

    /// Whether a recovery with `token` over `subprotocol` may take the session: reliable,
    /// the subprotocol it speaks (its unacked frames are in that codec), not over, inside
    /// the recovery `window`, and a token it issued.
    pub fn accepts_recovery(
        &self,
        token: &str,
        subprotocol: Subprotocol,
        window: Duration,
    ) -> bool {
        let st = self.st.lock();
        self.reliable()
            && self.speaks == Speaks::PubSub(subprotocol)
            && st.phase != Phase::Ended
            && !matches!(st.phase, Phase::Dropped(at) if at.elapsed() >= window)
            && std::iter::once(&st.reconnection_token)
                .chain(st.earlier_tokens.iter())
                .any(|issued| crate::auth::ct_eq(issued, token))
    }

    /// A recovery attaches the socket of `link`: a fresh reconnection token, `connected`,
    /// then everything not sequence-acked whose time to live has not passed (those that
    /// expired are forgotten: the client sees a gap in the sequence ids). A socket the
    /// session still thought alive is woken to notice it lost the session.
    pub fn attach(&self, link: Arc<Link>, fresh_token: String) {
        let hello = self.frame(&connected(
            &self.id,
            self.user_id.as_deref(),
            Some(fresh_token.clone()),
        ));
        let Some(hello) = hello else {
            unreachable!("only reliable sessions are recovered")
        };
        // Waits for a frame the old socket's thread is handling.
        let _exec = self.exec.lock();
        let mut st = self.st.lock();
        let old = st.link.replace(link);
        st.phase = Phase::Live;
        let earlier = std::mem::replace(&mut st.reconnection_token, fresh_token.clone());
        if st.earlier_tokens.len() == MAX_EARLIER_TOKENS {
            st.earlier_tokens.pop_front();
        }
        st.earlier_tokens.push_back(earlier);
        st.pending.clear();
        st.delayed.clear();
        st.command = None;
        st.pending.push_back(hello);
        let now = Instant::now();
        let st = &mut *st;
        st.unacked.retain(|u| {
            let live = u.expires.is_none_or(|at| at > now);
            if !live {
                st.unacked_bytes -= u.frame.len();
            }
            live
        });
        st.pending
            .extend(st.unacked.iter().map(|u| u.frame.clone()));
        if let Some(old) = old {
            old.wake();
        }
    }

    /// The socket of `link` lets go of the session, if it still owns it; with
    /// `recoverable`, the session waits for a recovery. Returns whether it did.
    pub fn detach(&self, link: &Arc<Link>, recoverable: bool) -> bool {
        let mut st = self.st.lock();
        if !st.owned_by(link) || st.phase != Phase::Live {
            return false;
        }
        st.link = None;
        st.pending.clear();
        st.delayed.clear();
        if recoverable {
            st.phase = Phase::Dropped(Instant::now());
        }
        true
    }

    /// The session is over: queues, buffers and the socket are let go. Returns `false` if
    /// it was over already.
    pub fn end(&self) -> bool {
        let mut st = self.st.lock();
        if st.phase == Phase::Ended {
            return false;
        }
        st.phase = Phase::Ended;
        st.pending.clear();
        st.unacked.clear();
        st.unacked_bytes = 0;
        st.delayed.clear();
        st.link = None;
        st.command = None;
        st.wait = None;
        st.invocations.clear();
        true
    }

    /// `true` while a socket is attached.
    pub fn is_connected(&self) -> bool {
        self.st.lock().phase == Phase::Live
    }

    /// Whether it waits for a recovery that can no longer come.
    pub fn recovery_expired(&self, window: Duration) -> bool {
        matches!(self.st.lock().phase, Phase::Dropped(at) if at.elapsed() >= window)
    }

    /// Why it must end, when [`deliver`](Self::deliver) said so.
    pub fn end_reason(&self) -> String {
        self.st.lock().end_reason.clone().unwrap_or_default()
    }

    /// The command for the socket of `link`, if any.
    pub fn take_command(&self, link: &Arc<Link>) -> Result<Option<Command>, TakenOver> {
        let mut st = self.st.lock();
        if !st.owned_by(link) {
            return Err(TakenOver);
        }
        Ok(st.command.take())
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

    /// The right to handle one client frame on the socket of `link`, held until the guard
    /// drops; refused when a recovery attached another socket.
    pub fn exec(&self, link: &Arc<Link>) -> Result<MutexGuard<'_, ()>, TakenOver> {
        let guard = self.exec.lock();
        if !self.st.lock().owned_by(link) {
            return Err(TakenOver);
        }
        Ok(guard)
    }

    // ---- outbound frames ----

    /// Queues a control message (pong, invoke response) for the current socket.
    pub fn push_control(&self, msg: &ServiceMessage) {
        let Some(frame) = self.frame(msg) else {
            return;
        };
        let mut st = self.st.lock();
        if st.phase == Phase::Live {
            st.pending.push_back(frame);
            st.wake();
        }
    }

    /// Queues the ack of `ack_id` for `result`, held back if `delay_acks` asks so. Called
    /// on the socket's own thread while it handles the request, so no wake-up is needed.
    pub fn push_ack(&self, ack_id: u64, result: Result<(), AckError>) {
        let (success, error) = match result {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        };
        let Some(frame) = self.frame(&ServiceMessage::Ack {
            ack_id,
            success,
            error,
        }) else {
            return;
        };
        let mut st = self.st.lock();
        let delay = st.faults.ack_delay;
        if delay.is_zero() {
            st.pending.push_back(frame);
        } else {
            st.delayed.push_back((Instant::now() + delay, frame));
        }
    }

    /// Delivers a `message` in this session's subprotocol.
    ///
    /// Reliable sessions splice their next sequence id into the shared encoding and keep
    /// the frame until it is sequence-acked; a session whose unacked buffer overflows is
    /// closed for good. Returns `true` when the session must now be ended (it overflowed
    /// while no socket was attached).
    pub fn deliver(&self, out: &Outgoing, limits: &UnackedLimits) -> bool {
        let reliable = self.reliable();
        // The first receiver of a codec encodes the message: before the lock, which the
        // socket's thread needs to write.
        let shared = match self.speaks {
            Speaks::PubSub(p) => out.frame(p),
            Speaks::Simple => out.raw(),
        };
        let mut st = self.st.lock();
        match st.phase {
            Phase::Ended => return false,
            Phase::Dropped(_) if !reliable => return false,
            _ => {}
        }
        if !reliable {
            st.pending.push_back(shared);
            st.wake();
            return false;
        }
        if matches!(st.command, Some(Command::Close { .. })) {
            return false; // closing for good already
        }
        let Speaks::PubSub(p) = self.speaks else {
            unreachable!("only PubSub subprotocols are reliable")
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        let frame = out.sequenced(p, seq);
        st.unacked_bytes += frame.len();
        st.unacked.push_back(Unacked {
            seq,
            frame: frame.clone(),
            expires: out.expires(),
        });
        if st.unacked.len() > limits.messages || st.unacked_bytes > limits.bytes {
            return self.overflow(&mut st, limits);
        }
        if st.phase == Phase::Live {
            st.pending.push_back(frame);
            st.wake();
        }
        false
    }

    fn overflow(&self, st: &mut State, limits: &UnackedLimits) -> bool {
        let reason = format!(
            "Too many unacknowledged messages ({} messages, {} bytes; limits {} / {}): the client does not send sequenceAck fast enough",
            st.unacked.len(),
            st.unacked_bytes,
            limits.messages,
            limits.bytes
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
        true
    }

    /// The client acknowledged every message up to `seq` (reliable sessions only).
    pub fn sequence_ack(&self, seq: u64) {
        if !self.reliable() {
            return;
        }
        let mut st = self.st.lock();
        while let Some(u) = st.unacked.front() {
            if u.seq > seq {
                break;
            }
            st.unacked_bytes -= u.frame.len();
            st.unacked.pop_front();
        }
    }

    /// When the first held-back ack is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.st.lock().delayed.front().map(|(due, _)| *due)
    }

    /// Moves the frames due on the socket of `link` into `out`: held-back acks whose time
    /// came, then at most `max` queued frames. Returns whether more are queued. Nothing
    /// moves while outbound frames are held or another socket owns the session.
    pub fn take_outbound(&self, link: &Arc<Link>, max: usize, out: &mut Vec<OutFrame>) -> bool {
        let mut st = self.st.lock();
        if !st.owned_by(link) || st.faults.hold_outbound {
            return false;
        }
        let now = Instant::now();
        while st.delayed.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, f)) = st.delayed.pop_front() {
                out.push(f);
            }
        }
        let n = st.pending.len().min(max);
        out.extend(st.pending.drain(..n));
        !st.pending.is_empty()
    }

    /// Lets go of queue space a burst left behind (called by the socket when it is idle),
    /// so that an idle session holds little whatever it went through.
    pub fn trim(&self) {
        let mut st = self.st.lock();
        shrink(&mut st.pending);
        shrink(&mut st.unacked);
        shrink(&mut st.delayed);
    }

    // ---- requests with ack ids ----

    /// What to do with a request carrying `ack_id`, before it runs.
    pub fn admit(&self, ack_id: u64) -> AckedRun {
        let mut st = self.st.lock();
        if st.ack_ids.contains(&ack_id) {
            return AckedRun::Duplicate;
        }
        if st.faults.fail_next_acks > 0 {
            st.faults.fail_next_acks -= 1;
            return AckedRun::InjectedFailure;
        }
        AckedRun::Run {
            lose_ack: std::mem::take(&mut st.faults.lose_next_ack),
        }
    }

    /// The request of `ack_id` ran: a repeat of it is a duplicate.
    pub fn executed(&self, ack_id: u64) {
        self.st.lock().ack_ids.insert(ack_id);
    }

    // ---- requests waiting for an event handler ----

    /// The request being handled waits for an event handler's answer: give the [`Answer`]
    /// to the call. Until it completes, no socket of the session reads a further frame
    /// ([`waiting`](Self::waiting)); once it has, the socket that owns the session then
    /// finishes the request.
    pub fn await_answer(self: &Arc<Self>, awaiting: Awaiting) -> Answer {
        let mut st = self.st.lock();
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        debug_assert!(st.wait.is_none(), "one request waits at a time");
        st.wait = Some(Wait::Pending { ticket, awaiting });
        Answer {
            session: self.clone(),
            target: Target::Wait(ticket),
            answered: false,
        }
    }

    /// Where the waiting request stands, for the socket of `link`; an answer is taken out
    /// (the socket finishes the request with it).
    pub fn waiting(&self, link: &Arc<Link>) -> Result<Waiting, TakenOver> {
        let mut st = self.st.lock();
        if !st.owned_by(link) {
            return Err(TakenOver);
        }
        Ok(match st.wait.take() {
            None => Waiting::Free,
            Some(Wait::Answered(a, outcome)) => Waiting::Answered(a, outcome),
            Some(pending) => {
                st.wait = Some(pending);
                Waiting::Pending
            }
        })
    }

    /// An `invoke` went to the event handler: its `invokeResponse` is queued when the answer
    /// comes, unless it was cancelled first.
    pub fn invoke_upstream(self: &Arc<Self>, invocation_id: &str) -> Answer {
        let mut st = self.st.lock();
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.invocations.insert(invocation_id.to_owned(), ticket);
        Answer {
            session: self.clone(),
            target: Target::Invocation {
                id: invocation_id.to_owned(),
                ticket,
            },
            answered: false,
        }
    }

    /// `cancelInvocation`: the answer of that invocation, if it comes, is dropped. Returns
    /// whether it was waiting.
    pub fn cancel_invocation(&self, invocation_id: &str) -> bool {
        self.st.lock().invocations.remove(invocation_id).is_some()
    }

    fn answered(&self, target: &Target, outcome: EventOutcome) {
        match target {
            Target::Wait(ticket) => {
                let mut st = self.st.lock();
                let Some(Wait::Pending {
                    ticket: t,
                    awaiting,
                }) = &st.wait
                else {
                    return; // the session ended
                };
                if t != ticket {
                    return;
                }
                let awaiting = *awaiting;
                st.wait = Some(Wait::Answered(awaiting, outcome));
                st.wake();
            }
            Target::Invocation { id, ticket } => {
                let response = invoke_response(id, outcome);
                let Some(frame) = self.frame(&response) else {
                    return;
                };
                let mut st = self.st.lock();
                if st.invocations.get(id) != Some(ticket) {
                    log::debug!(
                        "emulator: dropping the answer to invocation {id} of {}: cancelled",
                        self.id
                    );
                    return;
                }
                st.invocations.remove(id);
                if st.phase == Phase::Live {
                    st.pending.push_back(frame);
                    st.wake();
                }
            }
        }
    }

    // ---- rights and faults ----

    /// Whether it may do `perm` on `group` (`None`: on every group).
    pub fn allows(&self, perm: Permission, group: Option<&str>) -> bool {
        self.st.lock().grants.allows(perm, group)
    }

    /// Grants `perm` for one group (`Some`) or every group (`None`).
    pub fn grant(&self, perm: Permission, group: Option<&str>) {
        self.st.lock().grants.grant(perm, group);
    }

    /// Revokes `perm`: `None` for every group, every pattern and every single-group grant of
    /// it; `Some(g)` for `g` only (even where a pattern or the every-group right covers it).
    pub fn revoke(&self, perm: Permission, group: Option<&str>) {
        self.st.lock().grants.revoke(perm, group);
    }

    /// Changes the injected faults, and wakes the socket (held frames may go now).
    pub fn inject(&self, f: impl FnOnce(&mut Faults)) {
        let mut st = self.st.lock();
        f(&mut st.faults);
        st.wake();
    }
}

/// The `invokeResponse` an event handler's answer makes.
pub(crate) fn invoke_response(invocation_id: &str, outcome: EventOutcome) -> ServiceMessage {
    let (success, data, error, metadata) = match outcome {
        EventOutcome::Reply(data, metadata) => (true, Some(data), None, metadata),
        EventOutcome::NoReply(metadata) => (true, None, None, metadata),
        EventOutcome::Failed(f) => (
            false,
            None,
            Some(AckError::new(AckError::INVOCATION_FAILED, f.for_client())),
            Default::default(),
        ),
    };
    ServiceMessage::InvokeResponse {
        invocation_id: invocation_id.to_owned(),
        success,
        data,
        error,
        metadata,
    }
}

/// Shrinks a queue that is mostly empty space.
fn shrink<T>(q: &mut VecDeque<T>) {
    const KEEP: usize = 16;
    if q.capacity() > KEEP && q.capacity() > 4 * q.len() {
        q.shrink_to(KEEP.max(2 * q.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str, p: Subprotocol, grants: Grants, token: &str, link: Arc<Link>) -> Session {
        let opening = Opening {
            id: id.into(),
            user_id: None,
            speaks: Speaks::PubSub(p),
            grants,
            upstream: None,
            send_mode: None,
        };
        Session::open(opening, token.into(), link)
    }

    fn link() -> Arc<Link> {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        Arc::new(Link::new(crate::wake::Notify::new(waker), 0))
    }

    const JR: Subprotocol = Subprotocol::JsonReliable;
    const WINDOW: Duration = Duration::from_secs(30);

    const LIMITS: UnackedLimits = UnackedLimits {
        messages: 2,
        bytes: usize::MAX,
    };

    fn frames(s: &Session, l: &Arc<Link>) -> Vec<String> {
        let mut out = Vec::new();
        s.take_outbound(l, usize::MAX, &mut out);
        out.iter()
            .map(|f| match f {
                OutFrame::Text(t) => t.as_str().to_owned(),
                OutFrame::Binary(b) => panic!("a JSON session queued a binary frame: {b:?}"),
            })
            .collect()
    }

    fn server_message() -> Outgoing {
        Outgoing::new(ServiceMessage::ServerMessage {
            data: "x".into(),
            sequence_id: None,
            metadata: Default::default(),
        })
    }

    #[test]
    fn a_recovery_resends_what_was_not_sequence_acked_after_a_fresh_connected() {
        let (a, b) = (link(), link());
        let s = open(
            "c",
            Subprotocol::JsonReliable,
            Grants::default(),
            "t1",
            a.clone(),
        );
        let body = server_message();
        assert!(!s.deliver(&body, &LIMITS));
        assert!(!s.deliver(&body, &LIMITS));
        s.sequence_ack(1);
        assert!(s.detach(&a, true));
        assert!(!s.is_connected());
        assert!(s.accepts_recovery("t1", JR, WINDOW));
        assert!(!s.accepts_recovery("t2", JR, WINDOW));
        assert!(
            !s.accepts_recovery("t1", Subprotocol::ProtobufReliable, WINDOW),
            "a recovery speaks the session's subprotocol"
        );
        s.attach(b.clone(), "t2".into());
        let sent = frames(&s, &b);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].contains(r#""reconnectionToken":"t2""#));
        assert!(sent[1].contains(r#""sequenceId":2"#));
        assert!(
            matches!(s.take_command(&a), Err(TakenOver)),
            "the old socket lost it"
        );
        assert!(
            s.accepts_recovery("t1", JR, WINDOW),
            "earlier tokens stay valid"
        );
    }

    #[test]
    fn a_waiting_request_survives_a_recovery_and_is_finished_by_the_new_socket() {
        let (a, b) = (link(), link());
        let s = Arc::new(open("c", JR, Grants::default(), "t", a.clone()));
        let waiting = Awaiting::Event {
            ack_id: Some(7),
            lose_ack: false,
        };
        let answer = s.await_answer(waiting);
        assert!(matches!(s.waiting(&a), Ok(Waiting::Pending)));
        // The socket drops and a recovery attaches another one; the answer comes later.
        assert!(s.detach(&a, true));
        s.attach(b.clone(), "t2".into());
        assert!(matches!(s.waiting(&a), Err(TakenOver)));
        assert!(matches!(s.waiting(&b), Ok(Waiting::Pending)));
        answer.complete(EventOutcome::NoReply(Default::default()));
        match s.waiting(&b) {
            Ok(Waiting::Answered(w, EventOutcome::NoReply(_))) => assert_eq!(w, waiting),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.waiting(&b), Ok(Waiting::Free)), "taken once");
    }

    #[test]
    fn an_abandoned_answer_fails_and_an_ended_session_ignores_it() {
        let a = link();
        let s = Arc::new(open("c", JR, Grants::default(), "t", a.clone()));
        drop(s.await_answer(Awaiting::Simple));
        assert!(matches!(
            s.waiting(&a),
            Ok(Waiting::Answered(Awaiting::Simple, EventOutcome::Failed(_)))
        ));
        let answer = s.await_answer(Awaiting::Simple);
        assert!(s.end());
        answer.complete(EventOutcome::NoReply(Default::default()));
        assert!(s.st.lock().wait.is_none());
    }

    #[test]
    fn an_invocations_answer_is_queued_unless_it_was_cancelled() {
        let a = link();
        let s = Arc::new(open(
            "c",
            Subprotocol::Json,
            Grants::default(),
            "t",
            a.clone(),
        ));
        frames(&s, &a); // connected
        let first = s.invoke_upstream("1");
        let second = s.invoke_upstream("2");
        assert!(s.cancel_invocation("2"));
        assert!(!s.cancel_invocation("2"));
        second.complete(EventOutcome::NoReply(Default::default()));
        first.complete(EventOutcome::Reply("hi".into(), Default::default()));
        let sent = frames(&s, &a);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let m = ServiceMessage::decode(&sent[0]).unwrap();
        assert!(
            matches!(
                m,
                ServiceMessage::InvokeResponse { ref invocation_id, success: true, .. } if invocation_id == "1"
            ),
            "{m:?}"
        );
    }

    #[test]
    fn a_recovery_does_not_resend_messages_whose_time_to_live_passed() {
        // PROTOCOL.md §11: the service may drop a message not delivered in time.
        let (a, b) = (link(), link());
        let s = open("c", JR, Grants::default(), "t", a.clone());
        let past = Instant::now() - Duration::from_millis(1);
        let later = Instant::now() + Duration::from_secs(300);
        assert!(!s.deliver(&server_message().expiring_at(Some(past)), &LIMITS));
        assert!(!s.deliver(&server_message().expiring_at(Some(later)), &LIMITS));
        assert!(s.detach(&a, true));
        s.attach(b.clone(), "t2".into());
        let sent = frames(&s, &b);
        assert_eq!(
            sent.len(),
            2,
            "connected, then the unexpired message: {sent:?}"
        );
        assert!(sent[1].contains(r#""sequenceId":2"#), "{sent:?}");
        assert_eq!(
            s.st.lock().unacked_bytes,
            sent[1].len(),
            "the expired one is forgotten"
        );
    }

    #[test]
    fn a_protobuf_session_queues_binary_frames_and_splices_its_sequence_ids() {
        let a = link();
        let p = Subprotocol::ProtobufReliable;
        let s = open("c", p, Grants::default(), "t", a.clone());
        assert!(!s.deliver(&server_message(), &LIMITS));
        s.push_ack(7, Ok(()));
        let mut out = Vec::new();
        s.take_outbound(&a, usize::MAX, &mut out);
        let decoded: Vec<ServiceMessage> = out
            .into_iter()
            .map(|f| match f {
                OutFrame::Binary(b) => ServiceMessage::decode_protobuf(&b).unwrap(),
                OutFrame::Text(t) => panic!("a protobuf session queued text: {t}"),
            })
            .collect();
        assert!(matches!(
            &decoded[0],
            ServiceMessage::Connected { reconnection_token: Some(t), .. } if t == "t"
        ));
        assert_eq!(decoded[1].sequence_id(), Some(1));
        assert!(matches!(
            decoded[2],
            ServiceMessage::Ack {
                ack_id: 7,
                success: true,
                ..
            }
        ));
    }

    #[test]
    fn an_overflow_while_dropped_ends_the_session_and_while_live_closes_it() {
        let a = link();
        let body = server_message();
        let live = open(
            "c",
            Subprotocol::JsonReliable,
            Grants::default(),
            "t",
            a.clone(),
        );
        for _ in 0..2 {
            assert!(!live.deliver(&body, &LIMITS));
        }
        assert!(!live.deliver(&body, &LIMITS));
        assert!(matches!(
            live.take_command(&a),
            Ok(Some(Command::Close { flush: false, .. }))
        ));
        let dropped = open(
            "d",
            Subprotocol::JsonReliable,
            Grants::default(),
            "t",
            a.clone(),
        );
        assert!(dropped.detach(&a, true));
        for _ in 0..2 {
            assert!(!dropped.deliver(&body, &LIMITS));
        }
        assert!(dropped.deliver(&body, &LIMITS));
        assert!(dropped.end_reason().contains("Too many unacknowledged"));
    }

    #[test]
    fn queues_shrink_back_once_a_burst_has_passed() {
        let a = link();
        let s = open(
            "c",
            Subprotocol::JsonReliable,
            Grants::default(),
            "t",
            a.clone(),
        );
        let body = server_message();
        let limits = UnackedLimits {
            messages: usize::MAX,
            bytes: usize::MAX,
        };
        for _ in 0..10_000 {
            assert!(!s.deliver(&body, &limits));
        }
        assert_eq!(frames(&s, &a).len(), 10_001);
        s.sequence_ack(10_000);
        s.trim();
        let st = s.st.lock();
        assert!(st.pending.capacity() <= 16, "{}", st.pending.capacity());
        assert!(st.unacked.capacity() <= 16, "{}", st.unacked.capacity());
    }

    #[test]
    fn acked_requests_run_once_and_faults_are_used_up() {
        let s = open("c", Subprotocol::Json, Grants::default(), "t", link());
        s.inject(|f| {
            f.fail_next_acks = 1;
            f.lose_next_ack = true;
        });
        assert_eq!(s.admit(1), AckedRun::InjectedFailure);
        assert_eq!(s.admit(1), AckedRun::Run { lose_ack: true });
        assert_eq!(s.admit(1), AckedRun::Run { lose_ack: false });
        s.executed(1);
        assert_eq!(s.admit(1), AckedRun::Duplicate);
    }

    #[test]
    fn roles_grant_permissions_for_every_group_or_one() {
        let roles = [
            "webpubsub.joinLeaveGroup".to_owned(),
            "webpubsub.sendToGroup.g".to_owned(),
        ];
        let s = open(
            "c",
            Subprotocol::Json,
            Grants::from_roles(&roles),
            "t",
            link(),
        );
        assert!(s.allows(Permission::JoinLeaveGroup, Some("any")));
        assert!(s.allows(Permission::SendToGroup, Some("g")));
        assert!(!s.allows(Permission::SendToGroup, Some("h")));
        assert!(!s.allows(Permission::SendToGroup, None));
        s.revoke(Permission::SendToGroup, None);
        assert!(!s.allows(Permission::SendToGroup, Some("g")));
        s.grant(Permission::SendToGroup, None);
        assert!(s.allows(Permission::SendToGroup, Some("h")));
    }
}
