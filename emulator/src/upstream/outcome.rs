//! What the callers give the engine (a connect request) and what their completions get
//! back (outcomes and failures).

use serde_json::{Map, Value};
use std::fmt;
use webpubsub_protocol::{Data, Metadata};

/// What the `connect` event tells the handler about a client that is upgrading.
///
/// `access_token` (and the other secret query parameters) and `Authorization` are left out
/// of the event's body, whatever is given here.
///
/// ```
/// use webpubsub_emulator::upstream::ConnectRequest;
///
/// let req = ConnectRequest::new()
///     .user_id("alice")
///     .query("room", "lobby")
///     .header("User-Agent", "test")
///     .subprotocol("json.reliable.webpubsub.azure.v1");
/// assert_eq!(req.subprotocols(), ["json.reliable.webpubsub.azure.v1"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectRequest {
    pub(crate) user_id: Option<String>,
    pub(crate) claims: Map<String, Value>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
}

impl ConnectRequest {
    /// An empty request: no user, claims, query, headers or subprotocols.
    pub fn new() -> ConnectRequest {
        ConnectRequest::default()
    }

    /// The token's user (`sub`), sent as `ce-userId`.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The token's claims, as decoded from it. Each becomes a string array in the body.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = claims;
        self
    }

    /// A query parameter of the upgrade request (decoded).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// A header of the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A subprotocol the client offers, in the client's order.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }

    /// The subprotocols the client offers.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
}

/// Why an event did not get a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// No handler of the hub takes the event.
    NoHandler,
    /// The handler's URL failed abuse protection (UPSTREAM.md §5).
    Validation,
    /// The handler answered with this non-2xx status.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// No response at all: connection refused or reset, name not resolved, TLS failed.
    Unreachable,
    /// A 2xx answer the service cannot use: bad JSON, an invalid group, a subprotocol the
    /// client did not offer, text that is not UTF-8, a body too large.
    BadResponse,
    /// The emulator is stopping.
    Stopping,
}

/// An event's failure: its kind and a message for logs.
///
/// The message names the handler's URL (secret query values hidden) and is meant for the
/// emulator's log; tell clients only that the invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    kind: FailureKind,
    message: String,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// What happened, for logs.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A `connect` handler's acceptance: what it changes. `None` keeps what the token said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectAccepted {
    /// The user id the connection takes instead of the token's `sub`.
    pub user_id: Option<String>,
    /// The groups the connection joins at once, instead of the token's `webpubsub.group`.
    pub groups: Option<Vec<String>>,
    /// The roles (PROTOCOL.md §8) the connection has, instead of the token's `role`.
    pub roles: Option<Vec<String>>,
    /// The subprotocol the handler picked; always one the client offered.
    pub subprotocol: Option<String>,
    /// The connection state the handler set (`ce-connectionState`), if it set one. The
    /// engine keeps it and sends it with the connection's later events.
    pub state: Option<String>,
    /// `false` when no handler takes `connect`: nothing was sent, nothing changes.
    pub handled: bool,
}

/// What a `connect` completion gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The upgrade goes on, shaped by the handler's answer.
    Accepted(ConnectAccepted),
    /// The upgrade is refused with `status`: the handler's own non-2xx status, or 500 when
    /// the handler could not be reached or answered something unusable (`failure` says
    /// which). The handler's body is never forwarded.
    Refused {
        /// The HTTP status of the refused upgrade.
        status: u16,
        /// Why, for logs.
        failure: Failure,
    },
}

/// What a user event (or `invoke`) completion gets.
///
/// The metadata of a reply comes from the answer's `x-webpubsub-metadata-<key>` headers
/// (keys in lower case), checked with the protocol's rules; an entry that breaks them is
/// logged and dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// The handler answered with a body: send it back to the caller, with the answer's
    /// metadata. Its data type comes from the response's `Content-Type`: `text/plain` text,
    /// `application/json` JSON, anything else binary.
    Reply(Data, Metadata),
    /// The handler answered 2xx without a body (204, or 200 with an empty body); an
    /// `invokeResponse` still carries the answer's metadata.
    NoReply(Metadata),
    /// No usable answer: for a PubSub client an ack (or `invokeResponse`) with
    /// `InvocationFailed`; for a simple client a close with 1011.
    Failed(Failure),
}

impl Failure {
    /// What the client is told about the failure (the ack's or `invokeResponse`'s error
    /// message): what went wrong, without the handler's URL.
    pub fn for_client(&self) -> String {
        match self.kind {
            FailureKind::NoHandler => "No event handler takes this event".into(),
            FailureKind::Validation => {
                "The event handler's endpoint did not pass abuse protection".into()
            }
            FailureKind::Status(s) => format!("The event handler answered {s}"),
            FailureKind::Timeout => "The event handler did not answer in time".into(),
            FailureKind::Unreachable => "The event handler could not be reached".into(),
            FailureKind::BadResponse => "The event handler's answer could not be used".into(),
            FailureKind::Stopping => "The service is stopping".into(),
        }
    }
}
