//! The session's transitions for requests and their answers: ack ids and invocation ids,
//! registering, parking a retry, the outbox, and what an `ack` or an `invokeResponse`
//! resolves (B21, B24–B30, B38–B40).

use super::{AckResolution, InvokeResolution, Outbound, Session};
use crate::ack_table::{AckOutcome, Pending, RequestKind};
use crate::error::{AckFailure, Error, InvalidInput, InvokeFailure};
use crate::events::Event;
use crate::invocations::InvokeResponse;
use crate::protocol::{AckError, ClientMessage, Data, Metadata};
use crate::wire::WireFrame;

impl<W, I> Session<W, I> {
    // ----- requests (request threads) -----

    /// The next ack id from the counter (B24) for a new request; refused when stopped.
    pub(crate) fn new_ack_id(&mut self) -> Result<u64, Error> {
        if self.is_ending() {
            return Err(Error::Stopped);
        }
        Ok(self.next_id())
    }

    /// The next ack id from the counter (B24), skipping ids still in use.
    pub(super) fn next_id(&mut self) -> u64 {
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
        frame: WireFrame,
        waiter: W,
    ) -> Result<bool, Error> {
        // The same entry as a parked request's, then queued at once.
        self.park(ack_id, kind, frame, waiter)?;
        Ok(self.push(Outbound::Acked(ack_id)))
    }

    /// Parks a request between two attempts (its message-retry backoff, B26): it waits in
    /// the ack table under its ack id, so that a stop fails it and a late ack of an earlier
    /// attempt resolves it, but it is not written until [`unpark`](Self::unpark).
    pub(crate) fn park(
        &mut self,
        ack_id: u64,
        kind: RequestKind,
        frame: WireFrame,
        waiter: W,
    ) -> Result<(), Error> {
        if self.is_ending() {
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
            return Err(Error::InvalidInput(InvalidInput::AckIdInUse(ack_id)));
        }
        Ok(())
    }

    /// The backoff of a parked request is over: it goes out again. Returns whether the I/O
    /// thread needs a wake-up; `false` too if the request is no longer parked (resolved,
    /// stopped).
    pub(crate) fn unpark(&mut self, ack_id: u64) -> bool {
        if self.is_ending() || !self.acks.contains(ack_id) {
            return false;
        }
        self.push(Outbound::Acked(ack_id))
    }

    /// The next invocation id (B40: never repeated within the client's life); refused when
    /// stopped.
    pub(crate) fn new_invocation_id(&mut self) -> Result<u64, Error> {
        if self.is_ending() {
            return Err(Error::Stopped);
        }
        let id = self.next_invocation_id;
        self.next_invocation_id += 1;
        Ok(id)
    }

    /// Registers an invocation before its frame is queued, like [`register`](Self::register).
    /// Returns whether the I/O thread needs a wake-up.
    pub(crate) fn register_invocation(
        &mut self,
        invocation_id: u64,
        frame: WireFrame,
        waiter: I,
    ) -> Result<bool, Error> {
        if self.is_ending() {
            return Err(Error::Stopped);
        }
        self.invocations.insert(invocation_id, frame, waiter);
        Ok(self.push(Outbound::Invocation(invocation_id)))
    }

    /// The caller stopped waiting for an invocation (cancel, timeout, dropped handle; B39):
    /// forget it, and if it went out on the current connection, tell the service with
    /// `cancelInvocation`. Returns whether the I/O thread needs a wake-up.
    pub(crate) fn cancel_invocation(&mut self, invocation_id: u64) -> bool {
        let Some(p) = self.invocations.remove(invocation_id) else {
            return false;
        };
        if !p.sent || self.is_ending() {
            // Never written: the service never heard of it.
            return false;
        }
        let frame = WireFrame::encode(
            &ClientMessage::CancelInvocation {
                invocation_id: invocation_id.to_string(),
            },
            self.subprotocol,
        );
        self.push(Outbound::Frame(frame))
    }

    /// Queues a fire-and-forget frame (B28). Returns whether to wake the I/O thread.
    pub(crate) fn queue_frame(&mut self, frame: WireFrame) -> Result<bool, Error> {
        if self.is_ending() {
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

    /// A caller gave up waiting (ack timeout): forget the request so it is not resent.
    pub(crate) fn abandon(&mut self, ack_id: u64) {
        self.acks.remove(ack_id);
    }

    // ----- the outbox (I/O thread) -----

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

    /// Moves what the outbox holds into `out` if the session is ready, marking acked requests
    /// as sent. Requests already sent (by a resend) or abandoned are skipped. Returns whether
    /// the session is ready (`connected` arrived on the current socket).
    pub(crate) fn drain_outbox(&mut self, out: &mut Vec<WireFrame>) -> bool {
        if !self.ready {
            return false;
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
                Outbound::Invocation(id) => {
                    if let Some(f) = self.invocations.mark_sent(id) {
                        out.push(f.clone());
                    }
                }
            }
        }
        true
    }

    // ----- what the service answers (I/O thread) -----

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
        let result = self.ack_result(ack_id, &p.kind, success, error);
        match p.waiter {
            Some(w) => AckResolution::Caller(w, result),
            None => self.rejoin_resolved(p.kind, result),
        }
    }

    /// B25: success and `Duplicate` are Ok; a successful join or leave updates the groups.
    fn ack_result(
        &mut self,
        ack_id: u64,
        kind: &RequestKind,
        success: bool,
        error: Option<AckError>,
    ) -> Result<AckOutcome, Error> {
        let duplicate = error.as_ref().is_some_and(AckError::is_duplicate);
        if !(success || duplicate) {
            let e = error.unwrap_or_else(|| AckError::new("Unknown", ""));
            return Err(Error::Ack(AckFailure {
                ack_id,
                name: e.name,
                message: e.message,
            }));
        }
        match kind {
            RequestKind::Join(g) => {
                self.groups.insert(g.clone());
            }
            RequestKind::Leave(g) => {
                self.groups.remove(g);
            }
            RequestKind::Other => {}
        }
        Ok(AckOutcome { ack_id, duplicate })
    }

    /// One automatic rejoin answered (B13); the last one settles the connection (B9).
    fn rejoin_resolved(
        &mut self,
        kind: RequestKind,
        result: Result<AckOutcome, Error>,
    ) -> AckResolution<W> {
        let failed = match (result, kind) {
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

    /// An `invokeResponse` (B38): the waiting invocation's result, or nothing if none waits
    /// (a late response after a cancel, a timeout or a drop is dropped, B39, B40).
    pub(crate) fn on_invoke_response(
        &mut self,
        invocation_id: &str,
        success: bool,
        data: Option<Data>,
        error: Option<AckError>,
        metadata: Metadata,
    ) -> InvokeResolution<I> {
        // Our ids are decimal counters; any other id is not ours.
        let Some(id) = invocation_id.parse::<u64>().ok() else {
            return InvokeResolution::Unknown;
        };
        let Some(p) = self.invocations.remove(id) else {
            return InvokeResolution::Unknown;
        };
        let result = if success {
            Ok(InvokeResponse {
                invocation_id: id,
                data,
                metadata,
            })
        } else {
            let e = error.unwrap_or_else(|| AckError::new("Unknown", ""));
            Err(Error::Invoke(InvokeFailure {
                invocation_id: id,
                name: e.name,
                message: e.message,
            }))
        };
        InvokeResolution::Caller(p.waiter, result)
    }
}
