//! The upstream event handler: what it is asked, what it answers, and the default one.

use std::sync::Arc;
use webpubsub_protocol::{Data, Metadata};

/// The upstream event handler: called on the connection's thread for every `event` and
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
    /// The metadata the client sent with the `event` or `invoke` (empty: none).
    pub metadata: Metadata,
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
    /// Success with metadata, and data if any: an `invoke` gets both in its
    /// `invokeResponse`; an `event` caller gets the data (if any) as a server message
    /// carrying the metadata. [`with_metadata`](Self::with_metadata) builds it.
    ReplyWithMetadata {
        /// The response's data, if any.
        data: Option<Data>,
        /// The response's metadata.
        metadata: Metadata,
    },
}

impl EventResponse {
    /// The same answer with `metadata` added: [`Accept`](Self::Accept) and
    /// [`Reply`](Self::Reply) become [`ReplyWithMetadata`](Self::ReplyWithMetadata) (a
    /// `Reply` of JSON `null` keeps no data), a `ReplyWithMetadata` gets the entries added;
    /// a [`Fail`](Self::Fail) stays as it is (a failure carries only its error).
    ///
    /// ```
    /// use webpubsub_emulator::EventResponse;
    /// use webpubsub_protocol::{Data, Metadata};
    /// let r = EventResponse::Reply(Data::from("ok")).with_metadata(Metadata::from([("k", "v")]));
    /// assert_eq!(
    ///     r,
    ///     EventResponse::ReplyWithMetadata {
    ///         data: Some(Data::from("ok")),
    ///         metadata: Metadata::from([("k", "v")]),
    ///     }
    /// );
    /// ```
    pub fn with_metadata(self, metadata: Metadata) -> EventResponse {
        match self {
            EventResponse::Accept => EventResponse::ReplyWithMetadata {
                data: None,
                metadata,
            },
            EventResponse::Reply(d) => EventResponse::ReplyWithMetadata {
                data: (d != Data::Json(serde_json::Value::Null)).then_some(d),
                metadata,
            },
            EventResponse::ReplyWithMetadata {
                data,
                metadata: mut mine,
            } => {
                for (k, v) in metadata.iter() {
                    mine.insert(k, v);
                }
                EventResponse::ReplyWithMetadata {
                    data,
                    metadata: mine,
                }
            }
            fail @ EventResponse::Fail(_) => fail,
        }
    }
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
