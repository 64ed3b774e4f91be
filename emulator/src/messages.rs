//! What each client message does to its session, its hub and the groups — one short
//! function per message kind, no sockets.
//!
//! The socket's side (`connection`) decodes nothing and decides nothing: it hands every
//! text frame to [`on_frame`] and acts on the [`Flow`] it gets back, so that another way
//! of carrying frames (an event loop, binary frames) reuses all of this.

use crate::checks;
use crate::handler::{EventKind, EventRequest, EventResponse};
use crate::hub::Hub;
use crate::session::{ack_frame, encode, AckedRun, Session};
use crate::shared::Shared;
use crate::types::{Observation, Permission, UpstreamEvent};
use crate::wake::{self, Awaited, Completer, Link};
use std::sync::Arc;
use webpubsub_protocol::{AckError, ClientMessage, Data, Metadata, ServiceMessage};

/// What the socket must do after a frame.
pub(crate) enum Flow {
    /// Go on reading.
    Continue,
    /// Drop the socket abruptly, as an injected fault asked (`lose_next_ack`); the session
    /// stays recoverable.
    Drop,
    /// The frame's handling waits for another thread (an upstream event handler's answer):
    /// read no further frame of this connection until the [`Completer`] of
    /// [`Ctx::completion`] hands over the rest of the handling, which then runs on the
    /// connection's loop. Frames to the client still flow meanwhile.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "returned once user events call the HTTP event handlers"
        )
    )]
    Await(Awaited<Resume>),
}

/// The rest of a frame's handling, once what it waited for is there (see [`Flow::Await`]).
pub(crate) type Resume = Box<dyn for<'a> FnOnce(Ctx<'a>) -> Flow + Send>;

/// The session a socket speaks for.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub hub: &'a Hub,
    pub session: &'a Session,
    /// The socket's wake-up (see [`Ctx::completion`]).
    pub link: &'a Arc<Link>,
}

impl Ctx<'_> {
    /// The two ends of something this frame's handling waits for: give the `Completer` to
    /// the thread that finishes it (its `complete` never blocks) and return
    /// [`Flow::Await`] with the `Awaited`.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used once user events call the HTTP event handlers"
        )
    )]
    pub fn completion<T>(&self) -> (Completer<T>, Awaited<T>) {
        wake::completion(self.link)
    }
}

/// Handles one text frame from the client, then reports it to the observers.
pub(crate) fn on_frame(cx: Ctx<'_>, frame: &str) -> Flow {
    log::trace!("emulator: <- {}: {}", cx.session.id(), frame);
    let msg = match ClientMessage::decode(frame) {
        Ok(m) => m,
        Err(e) => {
            log::warn!(
                "emulator: skipping a malformed frame from {}: {e}",
                cx.session.id()
            );
            return Flow::Continue;
        }
    };
    let observed = cx.shared.observing().then(|| msg.clone());
    let flow = on_message(cx, msg, frame.len());
    if let Some(message) = observed {
        cx.shared.observe(Observation::Request {
            hub: cx.hub.name().to_owned(),
            connection_id: cx.session.id().to_owned(),
            message,
        });
    }
    flow
}

fn on_message(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Flow {
    match msg {
        ClientMessage::SequenceAck { sequence_id } => cx.session.sequence_ack(sequence_id),
        ClientMessage::Ping => cx.session.push_control(encode(&ServiceMessage::Pong)),
        ClientMessage::Invoke {
            invocation_id,
            event,
            data,
            ..
        } => on_invoke(cx, invocation_id, event, data),
        ClientMessage::CancelInvocation { .. } => {}
        ClientMessage::Unknown { kind } => {
            log::debug!("emulator: skipping unknown message type `{kind}`");
        }
        acked => return on_acked(cx, acked, frame_len),
    }
    Flow::Continue
}

fn on_invoke(cx: Ctx<'_>, invocation_id: String, event: String, data: Option<Data>) {
    let req = event_request(cx, EventKind::Invoke, event, data);
    let (success, data, error) = match cx.shared.call_handler(&req) {
        EventResponse::Accept => (true, None, None),
        EventResponse::Reply(d) => (
            true,
            (d != Data::Json(serde_json::Value::Null)).then_some(d),
            None,
        ),
        EventResponse::Fail(m) => (
            false,
            None,
            Some(AckError::new(AckError::INVOCATION_FAILED, m)),
        ),
    };
    cx.session
        .push_control(encode(&ServiceMessage::InvokeResponse {
            invocation_id,
            success,
            data,
            error,
            metadata: Metadata::new(),
        }));
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
                .push_ack(ack_frame(id, Err(AckError::new(AckError::DUPLICATE, why))));
            return Flow::Continue;
        }
        AckedRun::InjectedFailure => {
            let why = "Injected failure: the request was not executed";
            let err = AckError::new(AckError::INTERNAL_SERVER_ERROR, why);
            cx.session.push_ack(ack_frame(id, Err(err)));
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
    cx.session.push_ack(ack_frame(id, result));
    Flow::Continue
}

/// Runs a request that may carry an ack id; the ack says how it went.
fn run(cx: Ctx<'_>, msg: ClientMessage, frame_len: usize) -> Result<(), AckError> {
    match msg {
        ClientMessage::JoinGroup { group, .. } => join_group(cx, &group),
        ClientMessage::LeaveGroup { group, .. } => leave_group(cx, &group),
        ClientMessage::SendToGroup {
            group,
            no_echo,
            data,
            ..
        } => send_to_group(cx, group, no_echo, data, frame_len),
        ClientMessage::Event { event, data, .. } => send_event(cx, event, data, frame_len),
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
    checks::group(group)?;
    if !cx.session.allows(Permission::JoinLeaveGroup, Some(group)) {
        return Err(checks::forbidden(&format!(
            "Connection has no permission to join or leave group `{group}`"
        )));
    }
    Ok(())
}

fn send_to_group(
    cx: Ctx<'_>,
    group: String,
    no_echo: bool,
    data: Data,
    frame_len: usize,
) -> Result<(), AckError> {
    checks::group(&group)?;
    checks::frame_size(frame_len)?;
    if !cx.session.allows(Permission::SendToGroup, Some(&group)) {
        return Err(checks::forbidden(&format!(
            "Connection has no permission to send to group `{group}`"
        )));
    }
    let id = cx.session.id();
    let excluded: &[&str] = if no_echo { &[id] } else { &[] };
    let msg = ServiceMessage::GroupMessage {
        group,
        data,
        from_user_id: cx.session.user_id().map(str::to_owned),
        sequence_id: None,
        metadata: Metadata::new(),
    };
    let ServiceMessage::GroupMessage { group, .. } = &msg else {
        unreachable!("built just above")
    };
    let over = cx
        .hub
        .send_to_group(group, &msg, excluded, &cx.shared.cfg.limits);
    cx.shared.end_overflowed(cx.hub, over);
    Ok(())
}

fn send_event(cx: Ctx<'_>, event: String, data: Data, frame_len: usize) -> Result<(), AckError> {
    checks::frame_size(frame_len)?;
    cx.hub.record_event(UpstreamEvent {
        connection_id: cx.session.id().to_owned(),
        user_id: cx.session.user_id().map(str::to_owned),
        event: event.clone(),
        data: data.clone(),
    });
    let req = event_request(cx, EventKind::Event, event, Some(data));
    match cx.shared.call_handler(&req) {
        EventResponse::Accept => Ok(()),
        EventResponse::Reply(d) => {
            // The service sends an event handler's response body back to the caller as a
            // server message.
            let limits = &cx.shared.cfg.limits;
            if let Some(over) = cx.hub.send_to_connection(cx.session.id(), d, limits) {
                cx.shared.end_overflowed(cx.hub, over);
            }
            Ok(())
        }
        EventResponse::Fail(m) => Err(AckError::new(AckError::INVOCATION_FAILED, m)),
    }
}

fn event_request(cx: Ctx<'_>, kind: EventKind, event: String, data: Option<Data>) -> EventRequest {
    EventRequest {
        kind,
        hub: cx.hub.name().to_owned(),
        connection_id: cx.session.id().to_owned(),
        user_id: cx.session.user_id().map(str::to_owned),
        event,
        data: data.unwrap_or(Data::Json(serde_json::Value::Null)),
    }
}
