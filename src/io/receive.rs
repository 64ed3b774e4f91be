//! What a client's driver does with what it reads: one short handler per message kind of the
//! service. Nothing here runs user code: events go to the dispatcher.

use super::{frame_error, ClientIo, Link, Open};
use crate::error::{ConnectError, Error};
use crate::events::{Event, GroupMessage, ServerMessage};
use crate::protocol::websocket::Inbound;
use crate::protocol::{AckError, Data, Metadata, ProtocolError, ServiceMessage};
use crate::state::{AckResolution, ConnectedOutcome, InvokeResolution};
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::time::Instant;

/// Messages handled per step before writes, timers and the loop's other clients get a turn.
const READ_BUDGET: usize = 512;
/// Slots of the message batch kept between reads (B45: a burst's go).
const KEEP_BATCH: usize = 16;

impl ClientIo {
    /// Reads into the loop's buffer until `WouldBlock`, the end of the connection, or the
    /// budget; frames of an earlier step's read come first. The messages read go to the
    /// dispatcher after each system call's frames, together.
    pub(super) fn read(&mut self, o: &mut Open, buf: &mut [u8], now: Instant) {
        self.read_frames(o, buf, now);
        self.flush_batch();
        if self.batch.capacity() > KEEP_BATCH {
            self.batch = Vec::new();
        }
    }

    fn read_frames(&mut self, o: &mut Open, buf: &mut [u8], now: Instant) {
        let mut handled = 0;
        if o.reader.has_buffered() && !self.feed(o, &mut [], &mut handled, now) {
            return;
        }
        loop {
            match o.link.sock.read(buf) {
                Ok(0) => {
                    o.link.ended = Some((
                        None,
                        Error::Connect(ConnectError::Closed {
                            code: None,
                            reason: "the connection closed without a close frame".into(),
                        }),
                    ));
                    return;
                }
                Ok(n) => {
                    let more = self.feed(o, &mut buf[..n], &mut handled, now);
                    // Before the next read: the callbacks start on these meanwhile.
                    self.flush_batch();
                    if !more {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    o.link.readable = false;
                    // B45: a large frame's buffer goes once the frame is whole.
                    o.reader.trim();
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    o.link.ended = Some((None, Error::io(e)));
                    return;
                }
            }
        }
    }

    /// Hands the complete frames of `bytes` to their handlers; `false` when reading stops
    /// here (the connection ended, or the budget is spent: `readable` stays set, so the
    /// driver runs again next turn).
    fn feed(&mut self, o: &mut Open, bytes: &mut [u8], handled: &mut usize, now: Instant) -> bool {
        let Open { reader, link } = o;
        let flow = reader.feed(bytes, &mut |m| {
            link.last_recv = now;
            self.on_inbound(link, m, now);
            *handled += 1;
            if link.ended.is_some() || *handled >= READ_BUDGET {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match flow {
            Ok(ControlFlow::Continue(())) => true,
            Ok(ControlFlow::Break(())) => false,
            Err(e) => {
                link.ended.get_or_insert((None, frame_error(e)));
                false
            }
        }
    }

    /// One WebSocket message or control frame.
    fn on_inbound(&mut self, l: &mut Link, m: Inbound<'_>, now: Instant) {
        match m {
            Inbound::Text(text) if !self.subprotocol.is_binary() => {
                self.on_message(l, ServiceMessage::decode(text), now)
            }
            Inbound::Binary(bytes) if self.subprotocol.is_binary() => {
                self.on_message(l, ServiceMessage::decode_protobuf(bytes), now)
            }
            Inbound::Text(_) | Inbound::Binary(_) => {
                // B34: the wrong kind of frame for the subprotocol is skipped.
                let (got, uses) = if self.subprotocol.is_binary() {
                    ("text", "binary")
                } else {
                    ("binary", "text")
                };
                log::debug!(
                    "skipping a {got} frame: {} uses {uses} frames",
                    self.subprotocol
                );
            }
            // B32: WebSocket-level pings are answered.
            Inbound::Ping(payload) => l.sock.queue_pong(payload),
            Inbound::Pong(_) => {}
            Inbound::Close(frame) => {
                l.sock.queue_close_reply(frame);
                let (code, reason) = frame
                    .map(|(c, r)| (Some(c), r.to_owned()))
                    .unwrap_or((None, String::new()));
                l.ended = Some((code, Error::Connect(ConnectError::Closed { code, reason })));
            }
        }
    }

    /// One decoded frame, handed to the handler of its kind.
    fn on_message(
        &mut self,
        l: &mut Link,
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
            } => self.on_connected(l, connection_id, user_id, reconnection_token, now),
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
        l: &mut Link,
        connection_id: String,
        user_id: Option<String>,
        reconnection_token: Option<String>,
        now: Instant,
    ) {
        l.deadline = None;
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
                    l.sock.queue(f);
                }
                self.emit(event);
            }
            ConnectedOutcome::New { rejoin, connected } => {
                self.reconnect = None;
                self.drop_code = None;
                self.seq.reset();
                for f in &rejoin {
                    l.sock.queue(f);
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
