//! What the I/O thread does when a connection or an attempt ends: recover the session, lose
//! it and reconnect, or stop — and the orderly shutdown at the end of a run.

use super::{Attempt, Conn, IoThread, Open, CLOSE_WAIT};
use crate::error::{ConnectError, Error};
use crate::events::Event;
use crate::state::{AfterClose, ClientState, ReconnectPlan, RecoveryPlan};
use mio::Events;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

impl IoThread {
    pub(super) fn attempt_failed(&mut self, code: Option<u16>, cause: Error, now: Instant) {
        self.conn = Conn::Idle;
        let decision = self
            .core
            .shared
            .lock()
            .session
            .on_socket_closed(code, self.reliable);
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
            AfterClose::Recover => {
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
            AfterClose::RecoveryAttemptFailed => {
                let next = self
                    .recovery
                    .as_ref()
                    .and_then(|p| p.next_try(self.attempt_began, now, code));
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
            AfterClose::SessionLost => {
                log::info!("connection dropped ({cause}); the session cannot be recovered");
                self.drop_code = code;
                self.session_lost(now);
            }
            AfterClose::ReconnectAttemptFailed => {
                let next = self.reconnect.as_mut().and_then(|p| p.next_try(now));
                match next {
                    Some(t) => {
                        log::info!("connection attempt failed ({cause}); retrying");
                        self.set_state(ClientState::Disconnected);
                        self.next_dial = Some(t);
                    }
                    None => {
                        log::warn!("connection attempt failed ({cause}); retries exhausted");
                        self.exit = true;
                    }
                }
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

    pub(super) fn shutdown(&mut self) {
        let mut close_code = self.drop_code;
        match std::mem::replace(&mut self.conn, Conn::Idle) {
            Conn::Open(mut o) => {
                if o.ready {
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
            let (waiters, event) = sh.session.finish_stop(close_code);
            for w in waiters {
                let _ = w.try_send(Err(Error::Stopped));
            }
            // Stopped before `stopped` fires, so that a handler sees the final state.
            sh.session.state = ClientState::Stopped;
            if sh.run.as_ref().is_some_and(|r| Arc::ptr_eq(r, &self.run)) {
                sh.run = None;
            }
            event
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
