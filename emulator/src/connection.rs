//! The per-connection WebSocket loop: one thread per socket.
//!
//! The thread waits on its socket and its wake-up link (mio), reads and handles every
//! complete frame, then writes what other threads queued in the session — many frames,
//! one flush. A session outlives its socket while it can be recovered.

use super::checks::{check_group, check_size, redact_frame, truncate};
use super::net::{Stream, Waiter};
use super::state::DeferWakes;
use super::state::{call_handler, encode, end_session, forbidden, Command, Hub, Phase, Session};
use super::{EventKind, EventRequest, EventResponse, Observation, Permission, UpstreamEvent};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, Utf8Bytes, WebSocket};
use webpubsub_protocol::{AckError, ClientMessage, Data, Metadata, ServiceMessage};

/// Frames moved from the session per write batch.
const MAX_BATCH: usize = 4096;
/// Frames read per loop turn before writing gets a turn.
const MAX_READS: usize = 1024;
/// How long a graceful close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a socket's life ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame: the session ends.
    ClientClosed,
    /// EOF, reset or I/O error without a close frame: recoverable (reliable sessions).
    Lost(String),
    /// An injected abrupt drop: recoverable.
    Faulted,
    /// The service closed the session for good (REST close, buffer overflow).
    ClosedByService(String),
    /// The emulator stops.
    Stopping,
    /// A recovery attached a new socket to the session.
    TakenOver,
}

pub(crate) struct Connection {
    pub w: Waiter,
    pub ws: WebSocket<Stream>,
    pub hub: Arc<Hub>,
    pub session: Arc<Session>,
    write_blocked: bool,
    batch: Vec<Utf8Bytes>,
}

impl Connection {
    pub fn new(w: Waiter, ws: WebSocket<Stream>, hub: Arc<Hub>, session: Arc<Session>) -> Self {
        Connection {
            w,
            ws,
            hub,
            session,
            write_blocked: false,
            batch: Vec::with_capacity(256),
        }
    }

    /// Runs the socket until it ends, then settles the session.
    pub fn run(mut self) {
        let end = self.run_loop();
        log::debug!(
            "emulator: socket of {} in hub {} ended: {end:?}",
            self.session.id,
            self.hub.name
        );
        let shared = self.w.shared.clone();
        let (hub_name, conn_id) = (self.hub.name.to_string(), self.session.id.clone());
        let dropped = || {
            shared.observe(Observation::Dropped {
                hub: hub_name.clone(),
                connection_id: conn_id.clone(),
            })
        };
        match &end {
            End::TakenOver => {
                self.ws.get_ref().shutdown_abruptly();
            }
            End::Lost(_) | End::Faulted => {
                if let End::Lost(why) = &end {
                    log::debug!("emulator: {} lost its socket: {why}", self.session.id);
                }
                self.ws.get_ref().shutdown_abruptly();
                // A socket that lost the session to a recovery leaves it alone.
                if self.detach(self.session.reliable) {
                    dropped();
                    if !self.session.reliable {
                        end_session(&shared, &self.hub, &self.session, "connection lost");
                    }
                }
            }
            End::ClientClosed => {
                if self.detach(false) {
                    dropped();
                    end_session(&shared, &self.hub, &self.session, "closed by the client");
                }
            }
            End::ClosedByService(reason) => {
                if self.detach(false) {
                    dropped();
                    end_session(&shared, &self.hub, &self.session, reason);
                }
            }
            End::Stopping => {
                let reason = "The service is stopping".to_owned();
                self.close_gracefully(&reason, CloseCode::Away);
                if self.detach(false) {
                    dropped();
                    end_session(&shared, &self.hub, &self.session, &reason);
                }
            }
        }
    }

    /// Detaches this socket from the session if it still owns it. With `recoverable`,
    /// the session waits for a recovery. Returns whether it did.
    fn detach(&self, recoverable: bool) -> bool {
        let mut st = self.session.st.lock();
        if !self.owns(&st.link) || st.phase != Phase::Live {
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

    fn owns(&self, link: &Option<Arc<super::state::Link>>) -> bool {
        link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.w.link))
    }

    fn run_loop(&mut self) -> End {
        let mut more = true;
        loop {
            let timeout = if more {
                Some(Duration::ZERO)
            } else {
                Some(self.next_timeout())
            };
            if let Err(e) = self.w.wait(timeout) {
                return End::Lost(format!("poll failed: {e}"));
            }
            if self.w.shared.stopping.load(Ordering::Acquire) {
                return End::Stopping;
            }
            let cmd = {
                let mut st = self.session.st.lock();
                if !self.owns(&st.link) {
                    return End::TakenOver;
                }
                st.command.take()
            };
            match cmd {
                Some(Command::Drop) => return End::Faulted,
                Some(Command::DropMidFrame) => {
                    self.write_partial_frame();
                    return End::Faulted;
                }
                Some(Command::Close { reason, flush }) => {
                    if flush {
                        while let Ok(true) = self.write_some() {}
                    }
                    self.close_gracefully(&reason, CloseCode::Policy);
                    return End::ClosedByService(reason);
                }
                None => {}
            }
            let mut budget_spent = true;
            let defer = DeferWakes::begin();
            for _ in 0..MAX_READS {
                match self.ws.read() {
                    Ok(Message::Text(text)) => {
                        // A recovery may have attached a new socket since the check above;
                        // frames still buffered on this one are then dropped (the client
                        // resends its unacknowledged requests on the new socket).
                        let session = self.session.clone();
                        let _exec = session.exec.lock();
                        if !self.owns(&self.session.st.lock().link) {
                            return End::TakenOver;
                        }
                        if let Some(end) = self.handle_text(&text) {
                            return end;
                        }
                    }
                    Ok(Message::Binary(_)) => {
                        log::debug!("emulator: binary frame skipped (JSON subprotocol)");
                    }
                    Ok(Message::Close(_)) => {
                        let _ = self.ws.flush();
                        return End::ClientClosed;
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        budget_spent = false;
                        break;
                    }
                    Err(tungstenite::Error::ConnectionClosed)
                    | Err(tungstenite::Error::AlreadyClosed) => return End::ClientClosed,
                    Err(e) => return End::Lost(e.to_string()),
                }
            }
            drop(defer);
            match self.write_some() {
                Ok(m) => more = m || budget_spent,
                Err(e) => return End::Lost(e.to_string()),
            }
        }
    }

    fn next_timeout(&self) -> Duration {
        let st = self.session.st.lock();
        match st.delayed.front() {
            Some((due, _)) => due.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(1),
        }
    }

    /// Writes a batch of queued frames and flushes once. Returns whether more are queued.
    fn write_some(&mut self) -> io::Result<bool> {
        if self.write_blocked {
            match self.ws.flush() {
                Ok(()) => self.write_blocked = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(false)
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let more = {
            let mut st = self.session.st.lock();
            if !self.owns(&st.link) || st.faults.hold_outbound {
                false
            } else {
                let now = Instant::now();
                while st.delayed.front().is_some_and(|(due, _)| *due <= now) {
                    if let Some((_, f)) = st.delayed.pop_front() {
                        self.batch.push(f);
                    }
                }
                let n = st.pending.len().min(MAX_BATCH);
                self.batch.extend(st.pending.drain(..n));
                !st.pending.is_empty()
            }
        };
        let mut batch = std::mem::take(&mut self.batch);
        if log::log_enabled!(log::Level::Trace) {
            for f in &batch {
                log::trace!("emulator: -> {}: {}", self.session.id, redact_frame(f));
            }
        }
        let mut failed = None;
        for f in batch.drain(..) {
            if failed.is_some() {
                continue;
            }
            match self.ws.write(Message::Text(f)) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                }
                Err(e) => failed = Some(e),
            }
        }
        self.batch = batch;
        if let Some(e) = failed {
            return Err(io::Error::other(e.to_string()));
        }
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        Ok(more && !self.write_blocked)
    }

    /// Fault: the header of a 100-byte text frame and 10 bytes of it, then nothing.
    fn write_partial_frame(&mut self) {
        let _ = self.ws.flush();
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut partial = vec![0x81u8, 100];
        partial.extend_from_slice(br#"{"type":"m"#);
        let stream = self.ws.get_mut();
        let mut buf: &[u8] = &partial;
        while !buf.is_empty() && Instant::now() < deadline {
            match stream.write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        let _ = stream.flush();
    }

    /// `disconnected`, then a close frame, then waits (bounded) for the client's close
    /// reply so that the frames are not lost to a TCP reset.
    fn close_gracefully(&mut self, reason: &str, code: CloseCode) {
        let frame = encode(&ServiceMessage::Disconnected {
            message: Some(reason.to_owned()),
        });
        let _ = self.ws.write(Message::Text(frame));
        let _ = self.ws.close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(truncate(reason, 120)),
        }));
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            let r = self.ws.flush().and_then(|_| self.ws.read().map(|_| ()));
            match r {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    // Not `wait_until`: it refuses to wait while the emulator stops, and a
                    // stop should still say goodbye.
                    if now >= deadline || self.w.wait(Some(deadline - now)).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn handle_text(&mut self, text: &str) -> Option<End> {
        log::trace!("emulator: <- {}: {}", self.session.id, text);
        let msg = match ClientMessage::decode(text) {
            Ok(m) => m,
            Err(e) => {
                log::warn!(
                    "emulator: skipping a malformed frame from {}: {e}",
                    self.session.id
                );
                return None;
            }
        };
        let observed = self.w.shared.observing().then(|| msg.clone());
        let end = self.handle(msg);
        if let Some(message) = observed {
            self.w.shared.observe(Observation::Request {
                hub: self.hub.name.to_string(),
                connection_id: self.session.id.clone(),
                message,
            });
        }
        end
    }

    fn handle(&mut self, msg: ClientMessage) -> Option<End> {
        match msg {
            ClientMessage::SequenceAck { sequence_id } => {
                if self.session.reliable {
                    self.session.st.lock().sequence_ack(sequence_id);
                }
                None
            }
            ClientMessage::Ping => {
                self.session.push_control(encode(&ServiceMessage::Pong));
                None
            }
            ClientMessage::Invoke {
                invocation_id,
                event,
                data,
                ..
            } => {
                let req = self.event_request(EventKind::Invoke, event, data);
                let reply = match call_handler(&self.w.shared, &req) {
                    EventResponse::Accept => ServiceMessage::InvokeResponse {
                        invocation_id,
                        success: true,
                        data: None,
                        error: None,
                        metadata: Metadata::default(),
                    },
                    EventResponse::Reply(d) => ServiceMessage::InvokeResponse {
                        invocation_id,
                        success: true,
                        data: (d != Data::Json(serde_json::Value::Null)).then_some(d),
                        error: None,
                        metadata: Metadata::default(),
                    },
                    EventResponse::Fail(m) => ServiceMessage::InvokeResponse {
                        invocation_id,
                        success: false,
                        data: None,
                        error: Some(AckError::new(AckError::INVOCATION_FAILED, m)),
                        metadata: Metadata::default(),
                    },
                };
                self.session.push_control(encode(&reply));
                None
            }
            ClientMessage::CancelInvocation { .. } => None,
            ClientMessage::Unknown { kind } => {
                log::debug!("emulator: skipping unknown message type `{kind}`");
                None
            }
            acked => self.handle_acked(acked),
        }
    }

    /// joinGroup, leaveGroup, sendToGroup, event: the requests that may carry an ack id.
    fn handle_acked(&mut self, msg: ClientMessage) -> Option<End> {
        let ack_id = msg.ack_id();
        let mut lose = false;
        if let Some(id) = ack_id {
            let mut st = self.session.st.lock();
            if st.ack_ids.contains(&id) {
                drop(st);
                self.ack(
                    id,
                    Err(AckError::new(
                        AckError::DUPLICATE,
                        format!("Message with ackId {id} was already processed"),
                    )),
                );
                return None;
            }
            if st.faults.fail_next_acks > 0 {
                st.faults.fail_next_acks -= 1;
                drop(st);
                self.ack(
                    id,
                    Err(AckError::new(
                        AckError::INTERNAL_SERVER_ERROR,
                        "Injected failure: the request was not executed",
                    )),
                );
                return None;
            }
            lose = std::mem::take(&mut st.faults.lose_next_ack);
        }
        let result = self.execute(msg);
        let id = ack_id?;
        if result.is_ok() {
            self.session.st.lock().ack_ids.insert(id);
        }
        if lose {
            log::debug!(
                "emulator: losing the ack of {id} and dropping {}",
                self.session.id
            );
            return Some(End::Faulted);
        }
        self.ack(id, result);
        None
    }

    fn ack(&mut self, ack_id: u64, result: Result<(), AckError>) {
        let (success, error) = match result {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        };
        let frame = encode(&ServiceMessage::Ack {
            ack_id,
            success,
            error,
        });
        let mut st = self.session.st.lock();
        let delay = st.faults.ack_delay;
        if delay.is_zero() {
            st.pending.push_back(frame);
        } else {
            st.delayed.push_back((Instant::now() + delay, frame));
        }
    }

    fn execute(&mut self, msg: ClientMessage) -> Result<(), AckError> {
        let shared = self.w.shared.clone();
        let id = self.session.id.clone();
        match msg {
            ClientMessage::JoinGroup { group, .. } => {
                self.check_join_leave(&group)?;
                self.hub.state.lock().join(&id, &group);
                Ok(())
            }
            ClientMessage::LeaveGroup { group, .. } => {
                self.check_join_leave(&group)?;
                self.hub.state.lock().leave(&id, &group);
                Ok(())
            }
            ClientMessage::SendToGroup {
                group,
                no_echo,
                data,
                ..
            } => {
                check_group(&group)?;
                check_size(&data)?;
                if !self
                    .session
                    .has_permission(Permission::SendToGroup, Some(&group))
                {
                    return Err(forbidden(&format!(
                        "Connection has no permission to send to group `{group}`"
                    )));
                }
                let msg = ServiceMessage::GroupMessage {
                    group,
                    data,
                    from_user_id: self.session.user_id.clone(),
                    sequence_id: None,
                    metadata: Metadata::default(),
                };
                let group = match &msg {
                    ServiceMessage::GroupMessage { group, .. } => group.as_str(),
                    _ => "",
                };
                let excluded: &[&str] = if no_echo { &[id.as_str()] } else { &[] };
                self.hub
                    .send_message_to_group(&shared, group, &msg, excluded);
                Ok(())
            }
            ClientMessage::Event { event, data, .. } => {
                check_size(&data)?;
                self.hub.record_event(UpstreamEvent {
                    connection_id: id.clone(),
                    user_id: self.session.user_id.clone(),
                    event: event.clone(),
                    data: data.clone(),
                });
                let req = self.event_request(EventKind::Event, event, Some(data));
                match call_handler(&shared, &req) {
                    EventResponse::Accept => Ok(()),
                    EventResponse::Reply(d) => {
                        // The service sends an event handler's response body back to the
                        // caller as a server message.
                        self.hub.send_to_connection(&shared, &id, d);
                        Ok(())
                    }
                    EventResponse::Fail(m) => Err(AckError::new(AckError::INVOCATION_FAILED, m)),
                }
            }
            other => {
                log::debug!("emulator: unexpected request {other:?}");
                Ok(())
            }
        }
    }

    fn check_join_leave(&self, group: &str) -> Result<(), AckError> {
        check_group(group)?;
        if !self
            .session
            .has_permission(Permission::JoinLeaveGroup, Some(group))
        {
            return Err(forbidden(&format!(
                "Connection has no permission to join or leave group `{group}`"
            )));
        }
        Ok(())
    }

    fn event_request(&self, kind: EventKind, event: String, data: Option<Data>) -> EventRequest {
        EventRequest {
            kind,
            hub: self.hub.name.to_string(),
            connection_id: self.session.id.clone(),
            user_id: self.session.user_id.clone(),
            event,
            data: data.unwrap_or(Data::Json(serde_json::Value::Null)),
        }
    }
}
