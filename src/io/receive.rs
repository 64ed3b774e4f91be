//! What the I/O thread does with what it reads: one short handler per message kind of the
//! service. Nothing here runs user code: events go to the dispatcher.

use super::{write, ws_error, IoThread, Open};
use crate::error::{ConnectError, Error};
use crate::events::{Event, GroupMessage, ServerMessage};
use crate::protocol::{AckError, Data, ServiceMessage};
use crate::state::{AckResolution, ConnectedOutcome};
use std::io::ErrorKind;
use std::time::Instant;
use tungstenite::Message;

/// Messages read per loop turn before writes and timers get a turn.
const READ_BUDGET: usize = 512;

impl IoThread {
    /// Reads until `WouldBlock`, the end of the connection, or the budget.
    pub(super) fn read(&mut self, o: &mut Open, now: Instant) {
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

    /// One text frame: decoded, then handed to the handler of its kind.
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
            } => self.on_group_message(group, data, from_user_id, sequence_id, now),
            ServiceMessage::ServerMessage {
                data, sequence_id, ..
            } => self.on_server_message(data, sequence_id, now),
            ServiceMessage::Ack {
                ack_id,
                success,
                error,
            } => self.on_ack(ack_id, success, error),
            ServiceMessage::Connected {
                connection_id,
                user_id,
                reconnection_token,
            } => self.on_connected(o, connection_id, user_id, reconnection_token, now),
            ServiceMessage::Disconnected { message } => self.on_disconnected(message),
            ServiceMessage::Pong => {}
            ServiceMessage::Unknown { kind, sequence_id } => {
                self.on_unknown(&kind, sequence_id, now)
            }
            other => log::debug!("skipping {other:?}"),
        }
    }

    /// B12, B20: in order, once; a redelivery is dropped.
    fn on_group_message(
        &mut self,
        group: String,
        data: Data,
        from_user_id: Option<String>,
        sequence_id: Option<u64>,
        now: Instant,
    ) {
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

    fn on_server_message(&mut self, data: Data, sequence_id: Option<u64>, now: Instant) {
        // Counted as received either way; handed over only if someone listens.
        if self.seq.on_message(sequence_id, now) && self.core.registry.has_listeners() {
            self.emit_message(Event::ServerMessage(ServerMessage { data, sequence_id }));
        }
    }

    /// B25: the waiter gets its result here, on the I/O thread, never on the dispatcher (B15).
    fn on_ack(&mut self, ack_id: u64, success: bool, error: Option<AckError>) {
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

    /// The session is ready: a recovery resends (B21), a new connection rejoins (B23).
    fn on_connected(
        &mut self,
        o: &mut Open,
        connection_id: String,
        user_id: Option<String>,
        reconnection_token: Option<String>,
        now: Instant,
    ) {
        o.deadline = None;
        let outcome = self.core.shared.lock().session.on_connected(
            connection_id,
            user_id,
            reconnection_token,
        );
        self.recovery = None;
        match outcome {
            ConnectedOutcome::Recovered { resend, event } => {
                log::info!("session recovered; resending {} request(s)", resend.len());
                self.seq.on_recovered(now);
                for f in resend {
                    write(o, f);
                }
                self.emit(event);
            }
            ConnectedOutcome::New { rejoin, connected } => {
                self.reconnect = None;
                self.drop_code = None;
                self.seq.reset();
                for f in rejoin {
                    write(o, f);
                }
                if connected.is_none() {
                    // Rejoins are in flight: `Connected` (and what arrives meanwhile) waits
                    // for them.
                    self.held = Some(Vec::new());
                }
                self.on_settled(connected);
            }
        }
    }

    fn on_disconnected(&mut self, message: Option<String>) {
        self.core
            .shared
            .lock()
            .session
            .on_disconnected_message(message);
    }

    fn on_unknown(&mut self, kind: &str, sequence_id: Option<u64>, now: Instant) {
        // B34: skipped, but still counted as received, so the service does not resend it.
        self.seq.on_message(sequence_id, now);
        log::debug!("skipping an unknown message ({kind})");
    }

    /// The new connection is ready for the user (B9): `start()` returns, `Connected` fires.
    pub(super) fn on_settled(&mut self, connected: Option<Event>) {
        let Some(event) = connected else { return };
        let start_pending = self.core.shared.lock().session.take_start_pending();
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
}
