//! What each client message does to its session, its hub and the groups — one short
//! function per message kind, no sockets.
//!
//! The socket's side (`connection`) decodes nothing and decides nothing: it hands every
//! data frame to [`on_frame`] and acts on the [`Flow`] it gets back, so that another way
//! of carrying frames (an event loop) reuses all of this. Frames are decoded in the
//! session's subprotocol (JSON text or protobuf binary); everything the session answers is
//! encoded in it too.

use crate::checks;
use crate::frames::Outgoing;
use crate::handler::{EventKind, EventRequest, EventResponse};
use crate::hub::Hub;
use crate::session::{AckedRun, Session};
use crate::shared::Shared;
use crate::types::{Observation, Permission, UpstreamEvent};
use std::time::{Duration, Instant};
use webpubsub_protocol::{AckError, ClientMessage, Data, Metadata, ServiceMessage};

/// A data frame as the socket read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Incoming<'a> {
    /// A text frame (JSON subprotocols).
    Text(&'a str),
    /// A binary frame (protobuf subprotocols).
    Binary(&'a [u8]),
}

/// What the socket must do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on reading.
    Continue,
    /// Drop the socket abruptly, as an injected fault asked (`lose_next_ack`); the session
    /// stays recoverable.
    Drop,
}

/// The session a socket speaks for.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub hub: &'a Hub,
    pub session: &'a Session,
}

/// Handles one data frame from the client, then reports it to the observers.
pub(crate) fn on_frame(cx: Ctx<'_>, frame: Incoming<'_>) -> Flow {
    let Some((msg, frame_len)) = decode(cx.session, frame) else {
        return Flow::Continue;
    };
    let observed = cx.shared.observing().then(|| msg.clone());
    let flow = on_message(cx, msg, frame_len);
    if let Some(message) = observed {
        cx.shared.observe(Observation::Request {
            hub: cx.hub.name().to_owned(),
            connection_id: cx.session.id().to_owned(),
            message,
        });
    }
    flow
}

/// The message a frame holds, and the frame's size (what the 1 MB limit measures); `None`
/// for a frame that is skipped: malformed, or of the other kind than the subprotocol's (a
/// text frame on protobuf, a binary frame on JSON).
fn decode(session: &Session, frame: Incoming<'_>) -> Option<(ClientMessage, usize)> {
    let p = session.subprotocol();
    let (decoded, len) = match (frame, p.is_binary()) {
        (Incoming::Text(text), false) => {
            log::trace!("emulator: <- {}: {text}", session.id());
            (ClientMessage::decode(text), text.len())
        }
        (Incoming::Binary(bytes), true) => {
            let decoded = ClientMessage::decode_protobuf(bytes);
            log::trace!("emulator: <- {}: {decoded:?}", session.id());
            (decoded, bytes.len())
        }
        (Incoming::Text(_), true) | (Incoming::Binary(_), false) => {
            let kind = if p.is_binary() { "text" } else { "binary" };
            log::warn!(
                "emulator: skipping a {kind} frame from {}: it speaks {p}",
                session.id()
            );
            return None;
        }
    };
    match decoded {
        Ok(msg) => Some((msg, len)),
        Err(e) => {
            log::warn!(
                "emulator: skipping a malformed frame from {}: {e}",
                session.id()
            );
            None
        }
    }
}

fn on_message(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Flow {
    match msg {
        ClientMessage::SequenceAck { sequence_id } => cx.session.sequence_ack(sequence_id),
        ClientMessage::Ping => cx.session.push_control(&ServiceMessage::Pong),
        invoke @ ClientMessage::Invoke { .. } => on_invoke(cx, invoke, frame_len),
        ClientMessage::CancelInvocation { .. } => {}
        ClientMessage::Unknown { kind } => {
            log::debug!("emulator: skipping unknown message type `{kind}`");
        }
        acked => return on_acked(cx, acked, frame_len),
    }
    Flow::Continue
}

/// An `invoke`: the handler's answer is the `invokeResponse`, with its data and metadata;
/// a request the rules refuse is a failed one (`BadRequest`) that never reaches it.
fn on_invoke(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) {
    let checked = checks::request(&msg, frame_len);
    let ClientMessage::Invoke {
        invocation_id,
        event,
        data,
        metadata,
    } = msg
    else {
        unreachable!("on_message passes only invokes")
    };
    let answer = match checked {
        Ok(()) => {
            let req = event_request(cx, EventKind::Invoke, event, data, metadata);
            cx.shared.call_handler(&req)
        }
        Err(e) => {
            return cx.session.push_control(&ServiceMessage::InvokeResponse {
                invocation_id,
                success: false,
                data: None,
                error: Some(e),
                metadata: Metadata::new(),
            })
        }
    };
    let (success, data, error, metadata) = match answer {
        EventResponse::Accept => (true, None, None, Metadata::new()),
        EventResponse::Reply(d) => (true, non_null(d), None, Metadata::new()),
        EventResponse::ReplyWithMetadata { data, metadata } => (true, data, None, metadata),
        EventResponse::Fail(m) => (
            false,
            None,
            Some(AckError::new(AckError::INVOCATION_FAILED, m)),
            Metadata::new(),
        ),
    };
    cx.session.push_control(&ServiceMessage::InvokeResponse {
        invocation_id,
        success,
        data,
        error,
        metadata,
    });
}

/// A handler's data, where JSON `null` means none.
fn non_null(d: Data) -> Option<Data> {
    (d != Data::Json(serde_json::Value::Null)).then_some(d)
}

/// joinGroup, leaveGroup, sendToGroup, event: the requests that may carry an ack id.
fn on_acked(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Flow {
    let Some(id) = msg.ack_id() else {
        let _ = run(cx, msg, frame_len);
        return Flow::Continue;
    };
    let lose_ack = match cx.session.admit(id) {
        AckedRun::Duplicate => {
            let why = format!("Message with ackId {id} was already processed");
            cx.session
                .push_ack(id, Err(AckError::new(AckError::DUPLICATE, why)));
            return Flow::Continue;
        }
        AckedRun::InjectedFailure => {
            let why = "Injected failure: the request was not executed";
            let err = AckError::new(AckError::INTERNAL_SERVER_ERROR, why);
            cx.session.push_ack(id, Err(err));
            return Flow::Continue;
        }
        AckedRun::Run { lose_ack } => lose_ack,
    };
    let result = run(cx, msg, frame_len);
    if result.is_ok() {
        cx.session.executed(id);
    }
    if lose_ack {
        log::debug!(
            "emulator: losing the ack of {id} and dropping {}",
            cx.session.id()
        );
        return Flow::Drop;
    }
    cx.session.push_ack(id, result);
    Flow::Continue
}

/// Runs a request that may carry an ack id, if the rules let it (group and event names,
/// metadata, TTL, the frame's size); the ack says how it went.
fn run(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Result<(), AckError> {
    checks::request(&msg, frame_len)?;
    match msg {
        ClientMessage::JoinGroup { group, .. } => join_group(cx, &group),
        ClientMessage::LeaveGroup { group, .. } => leave_group(cx, &group),
        ClientMessage::SendToGroup {
            group,
            no_echo,
            data,
            ttl_seconds,
            metadata,
            ..
        } => send_to_group(cx, group, no_echo, data, ttl_seconds, metadata),
        ClientMessage::Event {
            event,
            data,
            metadata,
            ..
        } => send_event(cx, event, data, metadata),
        other => {
            log::debug!("emulator: unexpected request {other:?}");
            Ok(())
        }
    }
}

fn join_group(cx: Ctx<'_>, group: &str) -> Result<(), AckError> {
    may_join_or_leave(cx, group)?;
    cx.hub.join(cx.session.id(), group);
    Ok(())
}

fn leave_group(cx: Ctx<'_>, group: &str) -> Result<(), AckError> {
    may_join_or_leave(cx, group)?;
    cx.hub.leave(cx.session.id(), group);
    Ok(())
}

fn may_join_or_leave(cx: Ctx<'_>, group: &str) -> Result<(), AckError> {
    if !cx.session.allows(Permission::JoinLeaveGroup, Some(group)) {
        return Err(checks::forbidden(&format!(
            "Connection has no permission to join or leave group `{group}`"
        )));
    }
    Ok(())
}

/// Publishes to a group: every member receives the message in its own subprotocol, with
/// the publisher's metadata; a reliable member does not get it again on recovery once its
/// time to live passed.
fn send_to_group(
    cx: Ctx<'_>,
    group: String,
    no_echo: bool,
    data: Data,
    ttl_seconds: Option<u32>,
    metadata: Metadata,
) -> Result<(), AckError> {
    if !cx.session.allows(Permission::SendToGroup, Some(&group)) {
        return Err(checks::forbidden(&format!(
            "Connection has no permission to send to group `{group}`"
        )));
    }
    let id = cx.session.id();
    let excluded: &[&str] = if no_echo { &[id] } else { &[] };
    let expires = ttl_seconds.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
    let out = Outgoing::new(ServiceMessage::GroupMessage {
        group,
        data,
        from_user_id: cx.session.user_id().map(str::to_owned),
        sequence_id: None,
        metadata,
    })
    .expiring_at(expires);
    let ServiceMessage::GroupMessage { group, .. } = out.message() else {
        unreachable!("built just above")
    };
    let over = cx
        .hub
        .send_to_group(group, &out, excluded, &cx.shared.cfg.limits);
    cx.shared.end_overflowed(cx.hub, over);
    Ok(())
}

fn send_event(cx: Ctx<'_>, event: String, data: Data, metadata: Metadata) -> Result<(), AckError> {
    cx.hub.record_event(UpstreamEvent {
        connection_id: cx.session.id().to_owned(),
        user_id: cx.session.user_id().map(str::to_owned),
        event: event.clone(),
        data: data.clone(),
        metadata: metadata.clone(),
    });
    let req = event_request(cx, EventKind::Event, event, Some(data), metadata);
    let (data, metadata) = match cx.shared.call_handler(&req) {
        EventResponse::Accept => return Ok(()),
        EventResponse::Reply(d) => (d, Metadata::new()),
        EventResponse::ReplyWithMetadata {
            data: Some(d),
            metadata,
        } => (d, metadata),
        EventResponse::ReplyWithMetadata { data: None, .. } => return Ok(()),
        EventResponse::Fail(m) => return Err(AckError::new(AckError::INVOCATION_FAILED, m)),
    };
    // The service sends an event handler's response body back to the caller as a server
    // message.
    let out = Outgoing::new(ServiceMessage::ServerMessage {
        data,
        sequence_id: None,
        metadata,
    });
    let limits = &cx.shared.cfg.limits;
    if let Some(over) = cx.hub.send_to_connection(cx.session.id(), &out, limits) {
        cx.shared.end_overflowed(cx.hub, over);
    }
    Ok(())
}

fn event_request(
    cx: Ctx<'_>,
    kind: EventKind,
    event: String,
    data: Option<Data>,
    metadata: Metadata,
) -> EventRequest {
    EventRequest {
        kind,
        hub: cx.hub.name().to_owned(),
        connection_id: cx.session.id().to_owned(),
        user_id: cx.session.user_id().map(str::to_owned),
        event,
        data: data.unwrap_or(Data::Json(serde_json::Value::Null)),
        metadata,
    }
}
