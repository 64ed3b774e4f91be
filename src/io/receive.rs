//! What the I/O thread does with what it reads: one short handler per message kind of the
//! service. Nothing here runs user code: events go to the dispatcher.

use super::{write, ws_error, IoThread, Open};
use crate::error::{ConnectError, Error};
use crate::events::{Event, GroupMessage, ServerMessage};
use crate::protocol::{AckError, Data, Metadata, ProtocolError, ServiceMessage};
use crate::state::{AckResolution, ConnectedOutcome, InvokeResolution};
use std::io::ErrorKind;
use std::time::Instant;
use tungstenite::Message;

/// Messages read per loop turn before writes and timers get a turn.
const READ_BUDGET: usize = 512;

impl IoThread {
    /// Reads until `WouldBlock`, the end of the connection, or the budget.
    pub(super) fn read(&mut self, o: &mut Open, now: Instant) {
        // No poll runs until this turn ends, so no readiness edge is lost meanwhile.
        o.ws.get_mut().trust_short_reads(true);
        self.read_turn(o, now);
        o.ws.get_mut().trust_short_reads(false);
    }

    fn read_turn(&mut self, o: &mut Open, now: Instant) {
        for _ in 0..READ_BUDGET {
            match o.ws.read() {
                Ok(Message::Text(text)) if !self.subprotocol.is_binary() => {
                    o.last_recv = now;
                    self.on_message(o, ServiceMessage::decode(&text), now);
                    if o.ended.is_some() {
                        return;
                    }
                }
                Ok(Message::Binary(bytes)) if self.subprotocol.is_binary() => {
                    o.last_recv = now;
                    self.on_message(o, ServiceMessage::decode_protobuf(&bytes), now);
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
                Ok(Message::Text(_) | Message::Binary(_)) => {
                    // B34: the wrong kind of frame for the subprotocol is skipped.
                    o.last_recv = now;
                    log::debug!(
                        "skipping a {} frame: {} uses {} frames",
                        if self.subprotocol.is_binary() {
                            "text"
                        } else {
                            "binary"
                        },
                        self.subprotocol,
                        if self.subprotocol.is_binary() {
                            "binary"
                        } else {
                            "text"
                        }
                    );
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

    /// One decoded frame, handed to the handler of its kind.
    fn on_message(
        &mut self,
        o: &mut Open,
        decoded: Result<ServiceMessage, ProtocolError>,
        now: Instant,
    ) {
        let msg = match decoded {
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
                metadata,
            } => self.on_group_message(
                GroupMessage {
                    group,
                    data,
                    from_user_id,
                    sequence_id,
                    metadata,
                },
                now,
            ),
            ServiceMessage::ServerMessage {
                data,
                sequence_id,
                metadata,
            } => self.on_server_message(
                ServerMessage {
                    data,
                    sequence_id,
                    metadata,
                },
                now,
            ),
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
            ServiceMessage::InvokeResponse {
                invocation_id,
                success,
                data,
                error,
                metadata,
            } => self.on_invoke_response(&invocation_id, success, data, error, metadata),
            ServiceMessage::Pong => {}
            ServiceMessage::Unknown { kind, sequence_id } => {
                self.on_unknown(&kind, sequence_id, now)
            }
            other => log::debug!("skipping {other:?}"),
        }
    }

    /// B12, B20: in order, once; a redelivery is dropped.
    fn on_group_message(&mut self, m: GroupMessage, now: Instant) {
        if !self.seq.on_message(m.sequence_id, now) {
            log::debug!("dropping redelivered message {:?}", m.sequence_id);
        } else if self.core.registry.has_listeners() {
            self.emit_message(Event::GroupMessage(m));
        }
    }

    fn on_server_message(&mut self, m: ServerMessage, now: Instant) {
        // Counted as received either way; handed over only if someone listens.
        if self.seq.on_message(m.sequence_id, now) && self.core.registry.has_listeners() {
            self.emit_message(Event::ServerMessage(m));
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

    /// B38: the invocation's waiter gets its result here, on the I/O thread. A response no
    /// invocation waits for (cancelled, timed out, failed by a drop) is dropped (B39, B40).
    fn on_invoke_response(
        &mut self,
        invocation_id: &str,
        success: bool,
        data: Option<Data>,
        error: Option<AckError>,
        metadata: Metadata,
    ) {
        let r = self.core.shared.lock().session.on_invoke_response(
            invocation_id,
            success,
            data,
            error,
            metadata,
        );
        match r {
            InvokeResolution::Caller(waiter, result) => {
                let _ = waiter.try_send(result);
            }
            InvokeResolution::Unknown => {
                log::debug!("dropping the response of invocation {invocation_id:?}: none waits")
            }
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
        let episode = self.recovery.take().map(|p| p.progress(now));
        match outcome {
            ConnectedOutcome::Recovered { resend, event } => {
                let (took, failed) = episode.unwrap_or_default();
                log::info!(
                    "session recovered after {took:?} ({failed} failed attempt(s)); resending {} \
                     request(s)",
                    resend.len()
                );
                self.seq.on_recovered(now);
                for f in &resend {
                    write(o, f);
                }
                self.emit(event);
            }
            ConnectedOutcome::New { rejoin, connected } => {
                self.reconnect = None;
                self.drop_code = None;
                self.seq.reset();
                for f in &rejoin {
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
