//! The error type of every client operation.
//!
//! Errors are values to act on, not only text to print: each variant tells apart a caller
//! bug (bad input, wrong state), a connection that could not be made (and why), a timeout
//! (and which one), a request the service refused (with its ack id and the service's error
//! name), and a request whose outcome is unknown because the connection was lost. Where a
//! lower layer failed (an I/O, TLS or WebSocket error, the credential provider's error), the
//! error keeps it as its [`source`](std::error::Error::source).
//!
//! No error ever contains an access token or a reconnection token (B37): URLs are redacted
//! before they reach a message.

use crate::protocol::{AckError, RuleError, MAX_MESSAGE_BYTES};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod proxy;
pub use proxy::{ProxyError, ProxyErrorKind};

/// `Result<T, webpubsub_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something the client refuses before sending anything (B35).
    InvalidInput(InvalidInput),
    /// A connection could not be made, was refused, or failed (the start failure's cause, B3).
    Connect(ConnectError),
    /// A timeout fired; [`TimeoutKind`] says which.
    Timeout(TimeoutKind),
    /// The service answered the request with an error (not `Duplicate`, which is success).
    Ack(AckFailure),
    /// The connection was lost while the request waited for its ack, and the session could
    /// not be recovered: the request may or may not have been executed. The service
    /// remembers ack ids per connection *session*, so a retry with this ack id is
    /// deduplicated only while that session lives (a recovered connection is the same
    /// session); on the new connection that follows a lost session, a retry may deliver the
    /// message a second time (at least once, not exactly once).
    ConnectionLost {
        /// The request's ack id.
        ack_id: u64,
    },
    /// The caller stopped waiting for a request (B39): an invocation's
    /// [`InvokeHandle::cancel`] or an acked request's [`AckCanceller::cancel`], from any
    /// thread. The request's outcome is unknown — it may have been executed — and a late
    /// answer is dropped.
    ///
    ///
    /// [`InvokeHandle::cancel`]: crate::InvokeHandle::cancel
    /// [`AckCanceller::cancel`]: crate::AckCanceller::cancel
    Cancelled(Cancelled),
    /// The service's event handler answered an invocation with an error (B38): the
    /// invocation ran (or was refused) and failed. Never retried by the client.
    Invoke(InvokeFailure),
    /// The connection dropped while an invocation waited for its response (B40): its
    /// outcome is unknown — the event handler may have run. The client fails it even when the
    /// session is then recovered, because nothing in the protocol resends an invocation or
    /// its response after a drop, and it never tries again by itself: the side effects are
    /// the application server's.
    InvocationLost {
        /// The invocation's id.
        invocation_id: u64,
    },
    /// The client is stopped, or was stopped while the request waited.
    Stopped,
    /// The operation is not allowed in the client's current state (B2).
    State(StateError),
    /// The service broke the protocol (for example it chose a subprotocol the client did not
    /// offer).
    Protocol(String),
}

/// Which input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The access URL is unusable: bad syntax, a scheme other than ws/wss/http/https, or no
    /// hub. The message never contains the token.
    Url(String),
    /// A group name is empty or longer than 1024 characters; the text says which.
    GroupName(String),
    /// An event name is empty.
    EventName,
    /// The encoded message is larger than the service accepts (1 MB).
    PayloadTooLarge {
        /// The encoded message's size in bytes.
        size: usize,
        /// The service's limit in bytes.
        max: usize,
    },
    /// The ack id the caller chose is already used by a request still waiting for its ack.
    AckIdInUse(u64),
    /// An option is inconsistent (for example an ack id on a fire-and-forget request).
    Options(String),
    /// A payload could not be serialised.
    Serialize(String),
    /// A value the wire's rules refuse (B35, B41): message metadata (keys, values, their
    /// size), a `sendToGroup`'s time to live, or a `protobuf` payload that is not a
    /// serialised `google.protobuf.Any`. The protocol's [`RuleError`] says which and why.
    Rule(RuleError),
    /// The proxy URL given to [`Proxy::new`](crate::Proxy::new) is unusable: bad syntax, or a
    /// scheme other than `http` (`https://` and `socks5://` proxies are not supported). The
    /// message never contains the password.
    Proxy(String),
}

/// Why a connection could not be made, or why an open one failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The service refused the WebSocket upgrade with this HTTP status (401: bad or expired
    /// token, 404: unknown hub, ...), and the response body if it had one.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body (lossily decoded), possibly empty.
        body: String,
    },
    /// Resolving the host name, the TCP connection, or the socket failed.
    Io {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The I/O error itself.
        source: Cause,
    },
    /// The TLS handshake failed (for example the certificate is not trusted, B36), or the TLS
    /// configuration could not be built. The cause is the TLS library's error.
    Tls(Cause),
    /// The WebSocket upgrade failed for another reason than an HTTP status: a response that
    /// is not HTTP, too large, or without the right `Sec-WebSocket-Accept`.
    Handshake(String),
    /// The open WebSocket connection failed: the service sent a message larger than the
    /// client accepts (16 MiB), or frames that break RFC 6455. The cause is the WebSocket
    /// library's error.
    WebSocket(Cause),
    /// The connection was closed (before the service's `connected` message, when this is a
    /// start failure).
    Closed {
        /// The WebSocket close code, `None` if the socket closed without a close frame.
        code: Option<u16>,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The access-URL provider returned an error (the cause) or panicked.
    Credential(Cause),
    /// The HTTP proxy in front of the service refused or failed the tunnel (B43): never the
    /// service's answer, which is [`ConnectError::Http`].
    Proxy(ProxyError),
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// `start()` did not see the service's `connected` message within the start timeout.
    Start(Duration),
    /// A request's ack did not arrive in time. The request may or may not have been executed;
    /// retrying with the same ack id is safe within one connection session.
    Ack {
        /// The request's ack id.
        ack_id: u64,
    },
    /// A recovery or reconnect attempt did not open its connection (TCP connect, TLS and
    /// WebSocket handshakes) within the start timeout, or within what was left of the
    /// recovery window.
    Dial,
    /// A recovery or reconnect attempt opened its WebSocket, but the service's `connected`
    /// message did not arrive within the start timeout (or the recovery window).
    Connected,
    /// No frame arrived from the service for the keep-alive timeout: the connection was
    /// considered dead and closed (B32).
    KeepAlive,
    /// An invocation's response did not arrive in time (B38). The client sent
    /// `cancelInvocation` and drops a late response; the outcome is unknown.
    Invoke {
        /// The invocation's id.
        invocation_id: u64,
    },
}

/// A request the service answered with `success: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFailure {
    /// The request's ack id.
    pub ack_id: u64,
    /// The service's error name: `Forbidden`, `InternalServerError`, `InvocationFailed`, or a
    /// name a later service version adds.
    pub name: String,
    /// The service's explanation, possibly empty.
    pub message: String,
}

/// An invocation the service answered with `success: false` (B38).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeFailure {
    /// The invocation's id.
    pub invocation_id: u64,
    /// The service's error name: `InvocationFailed` (the event handler failed or refused
    /// it), or another name the service gives.
    pub name: String,
    /// The service's explanation (the event handler's message), possibly empty.
    pub message: String,
}

/// Which request a caller stopped waiting for (B39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// An acked request ([`AckCanceller::cancel`](crate::AckCanceller::cancel)).
    Request {
        /// The request's ack id.
        ack_id: u64,
    },
    /// An invocation ([`InvokeHandle::cancel`](crate::InvokeHandle::cancel)); the client
    /// sent `cancelInvocation` if the invocation had gone out.
    Invocation {
        /// The invocation's id.
        invocation_id: u64,
    },
}

/// An operation called in a state that does not allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// `start()` on a client that is already started.
    AlreadyStarted,
    /// `start()` while the client is stopping: a `stop()` is in progress, or waits for the
    /// client's threads (then a start from the `stopped` callback it fired is refused).
    Stopping,
}

/// The lower-level error behind a failure (an I/O, TLS or WebSocket error, the credential
/// provider's error), shared so that [`Error`] stays `Clone`. [`Error::source`] returns it.
///
/// Its `Display` and `Debug` show the underlying error's text; two causes are equal when
/// their texts are.
///
/// [`Error::source`]: std::error::Error::source
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps an error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(error))
    }

    /// The underlying error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The underlying error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for Cause {
    fn from(error: Box<dyn std::error::Error + Send + Sync>) -> Cause {
        Cause(Arc::from(error))
    }
}

/// A cause that is only a text (a panic of the credential provider, a test's expectation).
impl From<&str> for Cause {
    fn from(text: &str) -> Cause {
        Cause::from(Box::<dyn std::error::Error + Send + Sync>::from(text))
    }
}

impl From<String> for Cause {
    fn from(text: String) -> Cause {
        Cause::from(Box::<dyn std::error::Error + Send + Sync>::from(text))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cause({:?})", self.0.to_string())
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

impl Error {
    /// Whether trying the same operation again may succeed and is safe: timeouts, lost
    /// connections, the service's transient `InternalServerError`, and connection failures
    /// other than a refused authentication or a TLS or handshake failure; for a proxy's
    /// failure, [`ProxyError::is_retryable`]. Invalid input, `Forbidden` and other definite
    /// rejections, state errors, `Stopped` and a [cancel](Error::Cancelled) are not
    /// retryable; neither is any failure of an invocation ([`Error::Invoke`],
    /// [`Error::InvocationLost`], [`TimeoutKind::Invoke`]), because nothing deduplicates
    /// an invocation: trying again may run the event handler twice (B40).
    ///
    /// This is also the rule by which requests retry on their own
    /// ([`message_retry`](crate::WebPubSubClientBuilder::message_retry), B26).
    pub fn is_retryable(&self) -> bool {
        match self {
            // B40: no protocol deduplicates an invocation, so another try may run the event
            // handler twice; whether that is safe is the application's to decide.
            Error::Timeout(TimeoutKind::Invoke { .. })
            | Error::Invoke(_)
            | Error::InvocationLost { .. }
            | Error::Cancelled(_) => false,
            Error::Timeout(_) | Error::ConnectionLost { .. } => true,
            Error::Ack(a) => a.name == AckError::INTERNAL_SERVER_ERROR,
            Error::Connect(c) => match c {
                ConnectError::Http { status, .. } => *status >= 500 || *status == 429,
                ConnectError::Io { .. }
                | ConnectError::Closed { .. }
                | ConnectError::WebSocket(_) => true,
                ConnectError::Tls(_) | ConnectError::Handshake(_) | ConnectError::Credential(_) => {
                    false
                }
                ConnectError::Proxy(p) => p.is_retryable(),
            },
            _ => false,
        }
    }

    /// The ack id of the request this error belongs to, if any.
    pub fn ack_id(&self) -> Option<u64> {
        match self {
            Error::Ack(a) => Some(a.ack_id),
            Error::ConnectionLost { ack_id } => Some(*ack_id),
            Error::Timeout(TimeoutKind::Ack { ack_id }) => Some(*ack_id),
            Error::InvalidInput(InvalidInput::AckIdInUse(id)) => Some(*id),
            Error::Cancelled(Cancelled::Request { ack_id }) => Some(*ack_id),
            _ => None,
        }
    }

    /// The id of the invocation this error belongs to, if any.
    pub fn invocation_id(&self) -> Option<u64> {
        match self {
            Error::Invoke(f) => Some(f.invocation_id),
            Error::InvocationLost { invocation_id }
            | Error::Timeout(TimeoutKind::Invoke { invocation_id })
            | Error::Cancelled(Cancelled::Invocation { invocation_id }) => Some(*invocation_id),
            _ => None,
        }
    }

    /// The HTTP status of a refused WebSocket upgrade, if that is what this error is.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Connect(ConnectError::Http { status, .. }) => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn io(e: std::io::Error) -> Error {
        Error::Connect(ConnectError::Io {
            kind: e.kind(),
            source: Cause::new(e),
        })
    }

    pub(crate) fn tls(e: native_tls::Error) -> Error {
        Error::Connect(ConnectError::Tls(Cause::new(e)))
    }
}

/// The rules of the wire (names, the size limit) as the client's typed errors (B35).
impl From<RuleError> for Error {
    fn from(e: RuleError) -> Error {
        Error::InvalidInput(match e {
            RuleError::EmptyEventName => InvalidInput::EventName,
            RuleError::MessageTooLarge { size } => InvalidInput::PayloadTooLarge {
                size,
                max: MAX_MESSAGE_BYTES,
            },
            e @ (RuleError::EmptyGroupName | RuleError::GroupNameTooLong { .. }) => {
                // The rule says what it refused ("group name is empty").
                InvalidInput::GroupName(e.to_string())
            }
            // Metadata, TTL, protobuf payloads, and any rule the protocol adds later.
            other => InvalidInput::Rule(other),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(i) => write!(f, "invalid input: {i}"),
            Error::Connect(c) => write!(f, "connection failed: {c}"),
            Error::Timeout(t) => fmt::Display::fmt(t, f),
            Error::Ack(a) => write!(
                f,
                "the service refused request {}: {}{}{}",
                a.ack_id,
                a.name,
                if a.message.is_empty() { "" } else { ": " },
                a.message
            ),
            Error::ConnectionLost { ack_id } => write!(
                f,
                "connection lost while request {ack_id} waited for its ack (outcome unknown)"
            ),
            Error::Cancelled(Cancelled::Request { ack_id }) => write!(
                f,
                "stopped waiting for the ack of request {ack_id} (cancelled; outcome unknown)"
            ),
            Error::Cancelled(Cancelled::Invocation { invocation_id }) => write!(
                f,
                "invocation {invocation_id} was cancelled (outcome unknown)"
            ),
            Error::Invoke(i) => write!(
                f,
                "invocation {} failed: {}{}{}",
                i.invocation_id,
                i.name,
                if i.message.is_empty() { "" } else { ": " },
                i.message
            ),
            Error::InvocationLost { invocation_id } => write!(
                f,
                "connection lost while invocation {invocation_id} waited for its response \
                 (outcome unknown; invocations are not resent)"
            ),
            Error::Stopped => f.write_str("the client is stopped"),
            Error::State(s) => f.write_str(match s {
                StateError::AlreadyStarted => "the client is already started",
                StateError::Stopping => "the client is stopping",
            }),
            Error::Protocol(p) => write!(f, "protocol error: {p}"),
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutKind::Start(d) => write!(
                f,
                "timed out after {d:?} waiting for the service's `connected` message"
            ),
            TimeoutKind::Ack { ack_id } => write!(
                f,
                "timed out waiting for the ack of request {ack_id} (outcome unknown)"
            ),
            TimeoutKind::Dial => f.write_str("timed out opening the connection"),
            TimeoutKind::Connected => {
                f.write_str("timed out waiting for the service's `connected` message")
            }
            TimeoutKind::KeepAlive => f.write_str(
                "no frame from the service within the keep-alive timeout: the connection is dead",
            ),
            TimeoutKind::Invoke { invocation_id } => write!(
                f,
                "timed out waiting for the response of invocation {invocation_id} (cancelled; \
                 outcome unknown)"
            ),
        }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidInput::Url(why) => write!(f, "access URL: {why}"),
            // The protocol's rule says what it refused ("group name is empty").
            InvalidInput::GroupName(why) => f.write_str(why),
            InvalidInput::EventName => f.write_str("event name is empty"),
            InvalidInput::PayloadTooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {max} bytes"
                )
            }
            InvalidInput::AckIdInUse(id) => {
                write!(
                    f,
                    "ack id {id} is used by a request still waiting for its ack"
                )
            }
            InvalidInput::Options(why) => write!(f, "options: {why}"),
            InvalidInput::Serialize(why) => write!(f, "payload cannot be serialised: {why}"),
            InvalidInput::Proxy(why) => write!(f, "proxy URL: {why}"),
            InvalidInput::Rule(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Http { status, body } if body.is_empty() => {
                write!(f, "the service refused the upgrade with HTTP {status}")
            }
            ConnectError::Http { status, body } => {
                write!(
                    f,
                    "the service refused the upgrade with HTTP {status}: {body}"
                )
            }
            ConnectError::Io { source, .. } => write!(f, "I/O error: {source}"),
            ConnectError::Tls(why) => write!(f, "TLS: {why}"),
            ConnectError::Handshake(why) => write!(f, "WebSocket handshake: {why}"),
            ConnectError::WebSocket(why) => write!(f, "WebSocket: {why}"),
            ConnectError::Closed { code, reason } => {
                match code {
                    Some(c) => write!(f, "closed by the service with code {c}")?,
                    None => f.write_str("connection closed without a close frame")?,
                }
                if !reason.is_empty() {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
            ConnectError::Credential(why) => write!(f, "access-URL provider failed: {why}"),
            ConnectError::Proxy(p) => write!(f, "{p}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(
                ConnectError::Io { source: cause, .. }
                | ConnectError::Tls(cause)
                | ConnectError::WebSocket(cause)
                | ConnectError::Credential(cause),
            ) => Some(cause.get_ref()),
            Error::InvalidInput(InvalidInput::Rule(e)) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        assert!(Error::ConnectionLost { ack_id: 1 }.is_retryable());
        assert!(Error::Timeout(TimeoutKind::Ack { ack_id: 1 }).is_retryable());
        assert!(Error::Timeout(TimeoutKind::KeepAlive).is_retryable());
        let ack = |name: &str| {
            Error::Ack(AckFailure {
                ack_id: 1,
                name: name.into(),
                message: String::new(),
            })
        };
        assert!(ack("InternalServerError").is_retryable());
        assert!(!ack("Forbidden").is_retryable());
        assert!(!ack("InvocationFailed").is_retryable());
        assert!(!Error::Stopped.is_retryable());
        let http = |status| {
            Error::Connect(ConnectError::Http {
                status,
                body: String::new(),
            })
        };
        assert!(!http(401).is_retryable());
        assert!(http(503).is_retryable());
        assert_eq!(http(401).http_status(), Some(401));
    }

    #[test]
    fn no_failure_of_an_invocation_is_retryable() {
        // B40
        for e in [
            Error::Timeout(TimeoutKind::Invoke { invocation_id: 1 }),
            Error::InvocationLost { invocation_id: 1 },
            Error::Invoke(InvokeFailure {
                invocation_id: 1,
                name: "InternalServerError".into(),
                message: String::new(),
            }),
            Error::Cancelled(Cancelled::Invocation { invocation_id: 1 }),
        ] {
            assert!(!e.is_retryable(), "{e}");
            assert_eq!(e.invocation_id(), Some(1), "{e}");
            assert_eq!(e.ack_id(), None);
            assert!(
                e.to_string().contains("invocation 1"),
                "{e} names its invocation"
            );
        }
        let e = Error::Cancelled(Cancelled::Request { ack_id: 4 });
        assert!(!e.is_retryable());
        assert_eq!((e.ack_id(), e.invocation_id()), (Some(4), None));
        assert!(e.to_string().contains("outcome unknown"), "{e}");
        assert!(Error::InvocationLost { invocation_id: 2 }
            .to_string()
            .contains("outcome unknown"));
    }

    #[test]
    fn ack_id_is_exposed_where_known() {
        assert_eq!(Error::ConnectionLost { ack_id: 7 }.ack_id(), Some(7));
        assert_eq!(Error::Stopped.ack_id(), None);
    }

    #[test]
    fn the_cause_is_the_source_and_stays_cloneable() {
        let e = Error::io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        let copy = e.clone();
        assert_eq!(e, copy);
        let source = copy.source().expect("the I/O error");
        assert_eq!(source.to_string(), "refused");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        let Error::Connect(ConnectError::Io { kind, source }) = e else {
            panic!()
        };
        assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert!(Error::Stopped.source().is_none());
    }

    #[test]
    fn a_provider_error_is_kept_as_the_source() {
        #[derive(Debug)]
        struct TokenServerDown;
        impl fmt::Display for TokenServerDown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("token server down")
            }
        }
        impl std::error::Error for TokenServerDown {}
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(TokenServerDown);
        let e = Error::Connect(ConnectError::Credential(boxed.into()));
        assert!(e
            .source()
            .and_then(|s| s.downcast_ref::<TokenServerDown>())
            .is_some());
        assert_eq!(
            e,
            Error::Connect(ConnectError::Credential("token server down".into())),
            "causes compare by their text"
        );
    }

    #[test]
    fn every_timeout_says_which_one_fired() {
        let texts: Vec<String> = [
            TimeoutKind::Start(Duration::from_secs(1)),
            TimeoutKind::Ack { ack_id: 3 },
            TimeoutKind::Dial,
            TimeoutKind::Connected,
            TimeoutKind::KeepAlive,
            TimeoutKind::Invoke { invocation_id: 3 },
        ]
        .into_iter()
        .map(|t| Error::Timeout(t).to_string())
        .collect();
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(texts[1].contains('3'));
        assert!(texts[4].contains("keep-alive"));
    }

    #[test]
    fn rule_errors_become_typed_invalid_input() {
        assert!(matches!(
            Error::from(crate::protocol::check_group_name("").unwrap_err()),
            Error::InvalidInput(InvalidInput::GroupName(t)) if t.contains("empty")
        ));
        assert_eq!(
            Error::from(crate::protocol::check_event_name("").unwrap_err()),
            Error::InvalidInput(InvalidInput::EventName)
        );
        assert_eq!(
            Error::from(crate::protocol::check_ttl_seconds(301).unwrap_err()),
            Error::InvalidInput(InvalidInput::Rule(RuleError::TtlOutOfRange {
                seconds: 301
            }))
        );
        let meta = Error::from(
            crate::protocol::check_metadata(&crate::protocol::Metadata::from([("a b", "v")]))
                .unwrap_err(),
        );
        assert!(matches!(
            &meta,
            Error::InvalidInput(InvalidInput::Rule(RuleError::InvalidMetadataKey { .. }))
        ));
        assert!(
            std::error::Error::source(&meta).is_some(),
            "the rule is the source"
        );
        assert_eq!(
            Error::from(crate::protocol::check_message_size(MAX_MESSAGE_BYTES + 1).unwrap_err()),
            Error::InvalidInput(InvalidInput::PayloadTooLarge {
                size: MAX_MESSAGE_BYTES + 1,
                max: MAX_MESSAGE_BYTES
            })
        );
    }
}
