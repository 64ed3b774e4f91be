//! What the I/O thread does when a connection or an attempt ends: recover the session, lose
//! it and reconnect, or stop — and the orderly shutdown at the end of a run.

use super::{Attempt, Conn, IoThread, Open, CLOSE_WAIT};
use crate::error::{ConnectError, Error};
use crate::events::Event;
use crate::state::AfterClose;
use crate::timers::{ReconnectPlan, RecoveryPlan};
use mio::Events;
use std::io::ErrorKind;
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

impl IoThread {
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

    /// The end of the run: close the connection, fail what waits, fire the last events.
    pub(super) fn shutdown(&mut self) {
        let mut close_code = self.drop_code;
        match std::mem::replace(&mut self.conn, Conn::Idle) {
            Conn::Open(mut o) => {
                if self.core.shared.lock().session.is_ready() {
                    close_code = Some(1000);
                }
                self.close_politely(&mut o);
                let _ = self.poll.registry().deregister(o.ws.get_mut().tcp());
            }
            Conn::Dialing { dialer, .. } => dialer.abort(self.poll.registry()),
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
        log::debug!("I/O thread exits");
    }

    /// Sends a close frame and waits briefly for the service's answer, so that the service
    /// knows the session ended on purpose and unread data does not turn our close into a reset.
    fn close_politely(&mut self, o: &mut Open) {
        let _ = o.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut events = Events::with_capacity(4);
        loop {
            let _ = o.ws.flush();
            match o.ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if self.poll.poll(&mut events, Some(deadline - now)).is_err() {
                return;
            }
        }
    }
}
