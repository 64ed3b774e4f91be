//! What each client message does to its session, its hub and the groups — one short
//! function per message kind, no sockets.
//!
//! The socket's side (`connection`) decodes nothing and decides nothing: it hands every
//! data frame to [`on_frame`] and acts on the [`Flow`] it gets back, so that another way
//! of carrying frames (an event loop) reuses all of this. Frames are decoded in the
//! session's subprotocol (JSON text or protobuf binary); everything the session answers is
//! encoded in it too. A simple client's frames are no messages: each is the user event
//! `message` (or, in `sendToGroup` mode, a message to its group).
//!
//! Events and invokes go to the app server's event handlers when the hub has any
//! (`upstream`), else to the in-process handler:
//! - an `event` (or a simple client's frame) waits in its session for the answer
//!   ([`Flow::Await`]): the connection reads no further frame meanwhile, and [`resume`]
//!   finishes it — the reply as a server message, then the ack;
//! - an `invoke` does not hold the connection up (a `cancelInvocation` behind it must be
//!   read): its `invokeResponse` is queued when the answer comes, unless it was cancelled.
//!   Both go to the handler on the connection's one ordered lane.

use crate::checks;
use crate::frames::{Outgoing, Speaks};
use crate::handler::{EventKind, EventRequest, EventResponse};
use crate::hub::Hub;
use crate::session::{AckedRun, Awaiting, Session};
use crate::shared::Shared;
use crate::types::{Observation, Permission, UpstreamEvent};
use crate::upstream::EventOutcome;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_protocol::{
    check_message_size, AckError, ClientMessage, Data, Metadata, ServiceMessage,
};

/// A data frame as the socket read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Incoming<'a> {
    /// A text frame (JSON subprotocols).
    Text(&'a str),
    /// A binary frame (protobuf subprotocols).
    Binary(&'a [u8]),
}

/// What the socket must do after a frame.
pub(crate) enum Flow {
    /// Go on reading.
    Continue,
    /// Drop the socket abruptly, as an injected fault asked (`lose_next_ack`); the session
    /// stays recoverable.
    Drop,
    /// The frame's handling waits in the session for an event handler's answer
    /// ([`Session::await_answer`]): read no further frame of this connection until it has
    /// come; then [`resume`] finishes it, on the loop of whichever socket owns the session.
    /// Frames to the client still flow meanwhile.
    Await,
    /// Close the connection with this code and reason (a simple client whose event failed,
    /// or that may not send to its group); the session ends.
    Close { code: CloseCode, reason: String },
}

/// The session a socket speaks for.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub hub: &'a Hub,
    pub session: &'a Arc<Session>,
}

/// Handles one data frame from the client, then reports it to the observers.
pub(crate) fn on_frame(cx: Ctx<'_>, frame: Incoming<'_>) -> Flow {
    if cx.session.speaks() == Speaks::Simple {
        return on_simple_frame(cx, frame);
    }
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
    let Speaks::PubSub(p) = session.speaks() else {
        unreachable!("on_frame decodes only PubSub frames")
    };
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
        ClientMessage::CancelInvocation { invocation_id } => {
            if cx.session.cancel_invocation(&invocation_id) {
                log::debug!(
                    "emulator: {} cancelled invocation {invocation_id}",
                    cx.session.id()
                );
            }
        }
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
        Ok(()) => match cx.session.upstream() {
            Some(up) => {
                let done = cx.session.invoke_upstream(&invocation_id);
                up.user_event(&event, data, metadata, move |outcome| {
                    done.complete(outcome)
                });
                return;
            }
            None => {
                let req = event_request(cx, EventKind::Invoke, event, data, metadata);
                cx.shared.call_handler(&req)
            }
        },
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

/// What running a request that may carry an ack id gave.
enum Ran {
    /// Done: the ack says how it went.
    Done(Result<(), AckError>),
    /// An `event` went to the app server's event handler: [`resume`] finishes it.
    Awaits,
}

/// joinGroup, leaveGroup, sendToGroup, event: the requests that may carry an ack id.
fn on_acked(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Flow {
    let Some(id) = msg.ack_id() else {
        return match run(cx, msg, frame_len, None, false) {
            Ran::Done(_) => Flow::Continue,
            Ran::Awaits => Flow::Await,
        };
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
    let result = match run(cx, msg, frame_len, Some(id), lose_ack) {
        Ran::Done(result) => result,
        Ran::Awaits => return Flow::Await,
    };
    finish_acked(cx, id, result, lose_ack)
}

/// The ack of a request that ran (or the injected loss of it).
fn finish_acked(cx: Ctx<'_>, id: u64, result: Result<(), AckError>, lose_ack: bool) -> Flow {
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
fn run(
    cx: Ctx<'_>,
    msg: ClientMessage,
    frame_len: usize,
    ack_id: Option<u64>,
    lose_ack: bool,
) -> Ran {
    if let Err(e) = checks::request(&msg, frame_len) {
        return Ran::Done(Err(e));
    }
    Ran::Done(match msg {
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
        } => {
            record_event(cx, &event, &data, &metadata);
            match cx.session.upstream() {
                Some(up) => {
                    let done = cx
                        .session
                        .await_answer(Awaiting::Event { ack_id, lose_ack });
                    up.user_event(&event, Some(data), metadata, move |outcome| {
                        done.complete(outcome)
                    });
                    return Ran::Awaits;
                }
                None => send_event(cx, event, data, metadata),
            }
        }
        other => {
            log::debug!("emulator: unexpected request {other:?}");
            Ok(())
        }
    })
}

/// Finishes a request that waited for an event handler's answer (see [`Flow::Await`]), on
/// the loop of the socket that owns the session now: an `event`'s reply goes back to the
/// caller as a server message, before its ack; a simple client's reply as a frame, and its
/// failure closes it with 1011. The engine logged any failure already.
pub(crate) fn resume(cx: Ctx<'_>, awaiting: Awaiting, outcome: EventOutcome) -> Flow {
    let result = match outcome {
        EventOutcome::Reply(data, metadata) => {
            reply_to_caller(cx, data, metadata);
            Ok(())
        }
        EventOutcome::NoReply(_) => Ok(()),
        EventOutcome::Failed(f) => Err(f.for_client()),
    };
    match awaiting {
        Awaiting::Event { ack_id, lose_ack } => match ack_id {
            Some(id) => {
                let result = result.map_err(|m| AckError::new(AckError::INVOCATION_FAILED, m));
                finish_acked(cx, id, result, lose_ack)
            }
            // Without an ack id, a failure is only logged (the engine did).
            None => Flow::Continue,
        },
        Awaiting::Simple => match result {
            Ok(()) => Flow::Continue,
            Err(reason) => Flow::Close {
                code: CloseCode::Error,
                reason,
            },
        },
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

/// Keeps an event for [`HubHandle::events`](crate::HubHandle::events).
fn record_event(cx: Ctx<'_>, event: &str, data: &Data, metadata: &Metadata) {
    cx.hub.record_event(UpstreamEvent {
        connection_id: cx.session.id().to_owned(),
        user_id: cx.session.user_id().map(str::to_owned),
        event: event.to_owned(),
        data: data.clone(),
        metadata: metadata.clone(),
    });
}

/// An event for the in-process handler.
fn send_event(cx: Ctx<'_>, event: String, data: Data, metadata: Metadata) -> Result<(), AckError> {
    let req = event_request(cx, EventKind::Event, event, Some(data), metadata);
    match in_process_reply(cx.shared.call_handler(&req)) {
        Ok(Some((data, metadata))) => {
            reply_to_caller(cx, data, metadata);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(m) => Err(AckError::new(AckError::INVOCATION_FAILED, m)),
    }
}

/// What the in-process handler's answer to an event sends back, if anything; or its
/// failure's message.
fn in_process_reply(answer: EventResponse) -> Result<Option<(Data, Metadata)>, String> {
    match answer {
        EventResponse::Accept => Ok(None),
        EventResponse::Reply(d) => Ok(Some((d, Metadata::new()))),
        EventResponse::ReplyWithMetadata {
            data: Some(d),
            metadata,
        } => Ok(Some((d, metadata))),
        EventResponse::ReplyWithMetadata { data: None, .. } => Ok(None),
        EventResponse::Fail(m) => Err(m),
    }
}

/// The service sends an event handler's response body back to the caller as a server
/// message (to a simple client: as a frame), queued like any message — a reliable session
/// keeps it until it is sequence-acked, across a recovery.
fn reply_to_caller(cx: Ctx<'_>, data: Data, metadata: Metadata) {
    let out = Outgoing::new(ServiceMessage::ServerMessage {
        data,
        sequence_id: None,
        metadata,
    });
    let limits = &cx.shared.cfg.limits;
    if let Some(over) = cx.hub.send_to_connection(cx.session.id(), &out, limits) {
        cx.shared.end_overflowed(cx.hub, over);
    }
}

/// A simple client's frame (PROTOCOL.md §2): in `sendToGroup` mode a message to its group
/// (which needs the group-send right: without it the connection is closed with 1008, as
/// Microsoft's emulator does); otherwise the user event `message` — text frames as text,
/// binary frames as binary — whose reply comes back as a frame.
fn on_simple_frame(cx: Ctx<'_>, frame: Incoming<'_>) -> Flow {
    let data = match frame {
        Incoming::Text(t) => Data::Text(t.to_owned()),
        Incoming::Binary(b) => Data::Binary(b.to_vec()),
    };
    let len = match &frame {
        Incoming::Text(t) => t.len(),
        Incoming::Binary(b) => b.len(),
    };
    if let Err(e) = check_message_size(len) {
        return Flow::Close {
            code: CloseCode::Size,
            reason: e.to_string(),
        };
    }
    if let Some(mode) = cx.session.send_mode() {
        if !cx
            .session
            .allows(Permission::SendToGroup, Some(&mode.group))
        {
            return Flow::Close {
                code: CloseCode::Policy,
                reason: format!(
                    "Connection has no permission to send to group `{}`",
                    mode.group
                ),
            };
        }
        let (group, no_echo) = (mode.group.clone(), mode.no_echo);
        let _ = send_to_group(cx, group, no_echo, data, None, Metadata::new());
        return Flow::Continue;
    }
    record_event(cx, "message", &data, &Metadata::new());
    if let Some(up) = cx.session.upstream() {
        let done = cx.session.await_answer(Awaiting::Simple);
        up.user_event("message", Some(data), Metadata::new(), move |outcome| {
            done.complete(outcome)
        });
        return Flow::Await;
    }
    let req = event_request(
        cx,
        EventKind::Event,
        "message".into(),
        Some(data),
        Metadata::new(),
    );
    match in_process_reply(cx.shared.call_handler(&req)) {
        Ok(Some((data, metadata))) => {
            reply_to_caller(cx, data, metadata);
            Flow::Continue
        }
        Ok(None) => Flow::Continue,
        Err(reason) => Flow::Close {
            code: CloseCode::Error,
            reason,
        },
    }
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
