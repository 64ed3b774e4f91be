//! Connection attempts of a client's driver: which URL (start, recovery, reconnect), the
//! attempt's deadline, and driving the transport's dialer until the WebSocket is open.

use super::{Attempt, ClientIo, Conn, Open};
use crate::endpoint::AccessUrl;
use crate::error::{Error, Result, TimeoutKind};
use crate::runtime::Cx;
use crate::timers::RecoveryPlan;
use crate::transport::Dialer;
use std::time::Instant;

impl ClientIo {
    /// Begins the next connection attempt.
    pub(super) fn dial(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        self.attempt_began = now;
        let dialer = self.attempt_url().and_then(|url| {
            log::debug!("connecting to {url} ({:?})", self.attempt);
            let tls = if url.is_tls() {
                Some(self.core.tls_connector()?)
            } else {
                None
            };
            Dialer::start(url, &self.core.options, tls, cx.registry, cx.token)
        });
        match dialer {
            Ok(dialer) => {
                self.conn = Conn::Dialing {
                    dialer: Box::new(dialer),
                    deadline: self.attempt_deadline(now),
                }
            }
            Err(e) => self.attempt_failed(None, e, now),
        }
    }

    /// The URL of this attempt: the session's recovery URL, or a new one from the credential
    /// (B8: the provider is called for every new connection, never for recovery).
    fn attempt_url(&mut self) -> Result<AccessUrl> {
        match self.attempt {
            Attempt::Recover => {
                let sh = self.core.shared.lock();
                match (&self.access_url, sh.session.recovery_ids()) {
                    (Some(u), Some((id, token))) => Ok(u.recovery(id, token)),
                    _ => Err(Error::Protocol("no session to recover".into())),
                }
            }
            Attempt::Start | Attempt::Reconnect => {
                if self.attempt == Attempt::Reconnect {
                    self.core.shared.lock().session.reconnecting();
                }
                let url = self.core.options.credential.access_url()?;
                self.access_url = Some(url.clone());
                Ok(url)
            }
        }
    }

    /// Until when this attempt may take to open and see `connected`.
    fn attempt_deadline(&self, now: Instant) -> Option<Instant> {
        let timeout = self.core.options.start_timeout;
        match self.attempt {
            // `start()` keeps its own deadline.
            Attempt::Start => None,
            Attempt::Recover => Some(
                (now + timeout).min(self.recovery.as_ref().map_or(now, RecoveryPlan::deadline)),
            ),
            Attempt::Reconnect => Some(now + timeout),
        }
    }

    /// Advances a dial; `true` if the connection state changed.
    pub(super) fn advance_dial(&mut self, cx: &mut Cx<'_>) -> bool {
        let now = cx.now;
        let Conn::Dialing { dialer, deadline } = &mut self.conn else {
            return false;
        };
        let deadline = *deadline;
        match dialer.advance(cx.registry) {
            Ok(Some((stream, leftover))) => {
                self.conn = Conn::Open(Box::new(Open::new(
                    stream,
                    leftover,
                    deadline,
                    now,
                    self.core.options.keep_alive_interval,
                )));
                true
            }
            Ok(None) if deadline.is_some_and(|d| d <= now) => {
                self.abort_dial(cx);
                self.attempt_failed(None, Error::Timeout(TimeoutKind::Dial), now);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.abort_dial(cx);
                self.attempt_failed(None, e, now);
                true
            }
        }
    }

    pub(super) fn abort_dial(&mut self, cx: &mut Cx<'_>) {
        if let Conn::Dialing { dialer, .. } = std::mem::replace(&mut self.conn, Conn::Idle) {
            dialer.abort(cx.registry);
        }
    }
}
