//! What a client's driver does when a connection or an attempt ends: recover the session,
//! lose it and reconnect, or stop — and the orderly end of a run, which never blocks the loop.

use super::{Attempt, ClientIo, Closing, Conn, CLOSE_WAIT};
use crate::error::{ConnectError, Error};
use crate::events::Event;
use crate::protocol::websocket::Inbound;
use crate::runtime::{Cx, Item, Next};
use crate::state::AfterClose;
use crate::timers::{ReconnectPlan, RecoveryPlan};
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::time::Instant;

impl ClientIo {
    /// A connection, or an attempt at one, ended with `cause` (and `code`, if it was closed
    /// with a close frame): the session decides what follows (B17).
    pub(super) fn attempt_failed(&mut self, code: Option<u16>, cause: Error, now: Instant) {
        self.conn = Conn::Idle;
        let decision = self
            .core
            .shared
            .lock()
            .session
            .on_socket_closed(code, self.subprotocol.is_reliable());
        self.fail_lost_invocations();
        // B43: a proxy's final refusal (its credentials, its policy, a malformed answer) is not
        // retried like a failure of the service: another attempt or a fresh token cannot
        // change it, and repeating bad proxy credentials can lock the account. The client
        // stops, as when retries are exhausted. (At start it is the start's error, as always.)
        if let Error::Connect(ConnectError::Proxy(p)) = &cause {
            if !p.is_retryable()
                && matches!(
                    decision,
                    AfterClose::RecoveryAttemptFailed | AfterClose::ReconnectAttemptFailed
                )
            {
                log::warn!("{cause}; not retried: the client stops");
                self.exit = true;
                return;
            }
        }
        match decision {
            AfterClose::Stop => {}
            AfterClose::StartFailed => {
                self.exit_error = Some(cause);
                self.exit = true;
            }
            AfterClose::Recover => self.begin_recovery(code, &cause, now),
            AfterClose::RecoveryAttemptFailed => self.recovery_attempt_failed(code, &cause, now),
            AfterClose::SessionLost => {
                log::info!("connection dropped ({cause}); the session cannot be recovered");
                self.drop_code = code;
                self.session_lost(now);
            }
            AfterClose::ReconnectAttemptFailed => self.reconnect_attempt_failed(&cause, now),
        }
    }

    /// B40: invocations written to the connection that ended have an unknown outcome, even
    /// if the session is recovered next; their callers learn it now.
    fn fail_lost_invocations(&mut self) {
        let lost = self.core.shared.lock().session.take_lost_invocations();
        for (invocation_id, waiter) in lost {
            log::debug!("invocation {invocation_id} lost with the connection");
            let _ = waiter.try_send(Err(Error::InvocationLost { invocation_id }));
        }
    }

    /// B14, B18: a recovery episode begins, its first attempt at once.
    fn begin_recovery(&mut self, code: Option<u16>, cause: &Error, now: Instant) {
        log::info!("connection dropped ({cause}); recovering the session");
        self.drop_code = code;
        let opts = &self.core.options;
        self.recovery = Some(RecoveryPlan::new(
            now,
            opts.recovery_window,
            opts.recovery_retry_interval,
        ));
        let ev = self.core.shared.lock().session.recovering_event(code);
        self.emit(ev);
        self.attempt = Attempt::Recover;
        self.next_dial = Some(now);
    }

    /// B18: try again within the window, or the session is lost.
    fn recovery_attempt_failed(&mut self, code: Option<u16>, cause: &Error, now: Instant) {
        let began = self.attempt_began;
        let next = self
            .recovery
            .as_mut()
            .and_then(|p| p.next_try(began, now, code));
        match next {
            Some(t) => {
                log::debug!("recovery attempt failed ({cause}); trying again");
                self.next_dial = Some(t);
            }
            None => {
                log::info!("recovery failed ({cause}); the session is lost");
                self.session_lost(now);
            }
        }
    }

    /// B22: try again per the reconnect policy, or stop when it is exhausted.
    fn reconnect_attempt_failed(&mut self, cause: &Error, now: Instant) {
        match self.reconnect.as_mut().and_then(|p| p.next_try(now)) {
            Some(t) => {
                log::info!("connection attempt failed ({cause}); retrying");
                self.core.shared.lock().session.waiting_to_reconnect();
                self.next_dial = Some(t);
            }
            None => {
                log::warn!("connection attempt failed ({cause}); retries exhausted");
                self.exit = true;
            }
        }
    }

    /// B10, B21, B22: the session is over.
    fn session_lost(&mut self, now: Instant) {
        let (lost, event) = self.core.shared.lock().session.lose_session(self.drop_code);
        for (ack_id, waiter) in lost {
            let _ = waiter.try_send(Err(Error::ConnectionLost { ack_id }));
        }
        self.seq.reset();
        self.recovery = None;
        // What the lost connection received before it settled is still delivered.
        self.release_held();
        self.emit(event);
        if self.core.options.auto_reconnect {
            self.reconnect = Some(ReconnectPlan::new(self.core.options.reconnect_retry));
            self.attempt = Attempt::Reconnect;
            self.next_dial = Some(now);
        } else {
            // B11: auto-reconnect off: the client stops (and fires `stopped`).
            self.exit = true;
        }
    }

    // ----- the end of the run -----

    /// The run is to end: a connection still open is closed politely first (see
    /// [`close_step`](Self::close_step)); otherwise the run finishes now.
    pub(super) fn begin_close(&mut self, cx: &mut Cx<'_>) -> Next {
        let mut close_code = self.drop_code;
        match std::mem::replace(&mut self.conn, Conn::Idle) {
            Conn::Open(mut o) => {
                if self.core.shared.lock().session.is_ready() {
                    close_code = Some(1000);
                }
                // The service learns that the session ended on purpose, and unread data does
                // not turn our close into a reset.
                o.link.sock.queue_close(1000);
                let deadline = cx.now + CLOSE_WAIT;
                self.conn = Conn::Open(o);
                self.closing = Some(Closing {
                    deadline,
                    close_code,
                });
                self.close_step(cx)
            }
            Conn::Dialing { dialer, .. } => {
                dialer.abort(cx.registry);
                self.finish_with(cx, close_code)
            }
            Conn::Idle => self.finish_with(cx, close_code),
        }
    }

    /// Waits, without blocking the loop, for the service's answer to our close frame (or the
    /// end of the connection) for at most [`CLOSE_WAIT`]; what else arrives is dropped.
    pub(super) fn close_step(&mut self, cx: &mut Cx<'_>) -> Next {
        let Some(deadline) = self.closing.as_ref().map(|c| c.deadline) else {
            return self.finish(cx);
        };
        let Conn::Open(o) = &mut self.conn else {
            return self.finish(cx);
        };
        let done = match o.link.sock.flush() {
            Err(_) => true,
            Ok(()) => loop {
                match o.link.sock.read(cx.buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        let mut closed = false;
                        let flow = o.reader.feed(&mut cx.buf[..n], &mut |m| {
                            closed |= matches!(m, Inbound::Close(_));
                            if closed {
                                ControlFlow::Break(())
                            } else {
                                ControlFlow::Continue(())
                            }
                        });
                        if closed || flow.is_err() {
                            break true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break cx.now >= deadline,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            },
        };
        if done {
            self.finish(cx)
        } else {
            Next::Wait(Some(deadline))
        }
    }

    /// The end of the run: drop the connection, fail what waits, fire the last events.
    pub(super) fn finish(&mut self, cx: &mut Cx<'_>) -> Next {
        let close_code = match self.closing.take() {
            Some(c) => c.close_code,
            None => self.drop_code,
        };
        self.finish_with(cx, close_code)
    }

    fn finish_with(&mut self, cx: &mut Cx<'_>, close_code: Option<u16>) -> Next {
        // The socket is closed before the run's end is announced: a `stop()` that returns
        // leaves no file descriptor behind.
        match std::mem::replace(&mut self.conn, Conn::Idle) {
            Conn::Open(mut o) => {
                let _ = cx.registry.deregister(o.link.sock.tcp());
            }
            Conn::Dialing { dialer, .. } => dialer.abort(cx.registry),
            Conn::Idle => {}
        }
        let event = {
            let mut sh = self.core.shared.lock();
            let ended = sh.session.finish(close_code);
            for w in ended.waiters {
                let _ = w.try_send(Err(Error::Stopped));
            }
            for w in ended.invocations {
                let _ = w.try_send(Err(Error::Stopped));
            }
            sh.detach_run(&self.run);
            ended.event
        };
        if self.started {
            self.release_held();
            self.emit(event);
            self.emit(Some(Event::Stopped));
        } else {
            let e = self.exit_error.take().unwrap_or(Error::Stopped);
            self.run.start.complete(Err(e));
        }
        self.queue.push(Item::End(self.run.done.clone()));
        log::debug!("the run ends");
        Next::Done
    }
}
