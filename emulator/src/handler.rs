//! The upstream event handler: what it is asked, what it answers, and the default one.

use std::sync::Arc;
use webpubsub_protocol::Data;

/// The upstream event handler: called on the connection's I/O thread for every `event` and
/// `invoke`.
pub(crate) type EventHandler = Arc<dyn Fn(&EventRequest) -> EventResponse + Send + Sync>;

/// Which client message an [`EventRequest`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// An `event` message (answered with an ack, if it has an ack id).
    Event,
    /// An `invoke` message (answered with an `invokeResponse`).
    Invoke,
}

/// What the event handler is asked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventRequest {
    /// `event` or `invoke`.
    pub kind: EventKind,
    /// The hub.
    pub hub: String,
    /// The caller's connection id.
    pub connection_id: String,
    /// The caller's user, if any.
    pub user_id: Option<String>,
    /// The event name.
    pub event: String,
    /// The payload; an `invoke` without data gives JSON `null`.
    pub data: Data,
}

/// The event handler's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventResponse {
    /// Success without data.
    Accept,
    /// Success with data: an `invoke` gets it in its `invokeResponse` (JSON `null` means no
    /// data); an `event` caller gets it as a server message (as the service does).
    Reply(Data),
    /// Failure: the ack or `invokeResponse` says `InvocationFailed` with this message.
    Fail(String),
}

/// The default handler: accepts events, echoes invoke data back.
pub(crate) fn default_handler() -> EventHandler {
    Arc::new(|req: &EventRequest| match req.kind {
        EventKind::Invoke => EventResponse::Reply(req.data.clone()),
        EventKind::Event => EventResponse::Accept,
    })
}

/// Calls the handler, turning a panic into a failure.
pub(crate) fn call(handler: &EventHandler, req: &EventRequest) -> EventResponse {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(req))) {
        Ok(r) => r,
        Err(_) => EventResponse::Fail("the event handler panicked".into()),
    }
}
