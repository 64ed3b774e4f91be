//! The proxy's failures (B43): which proxy, what it did, and whether another attempt may help.

use std::fmt;

/// A failure of the HTTP proxy between the client and the service (B43): which proxy, and
/// what it did. Never contains the proxy's password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyError {
    /// The proxy as `host:port`, without credentials; for an unusable proxy URL from the
    /// environment, the variable it came from (for example `HTTPS_PROXY`).
    pub proxy: String,
    /// What went wrong.
    pub kind: ProxyErrorKind,
}

/// What the proxy did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyErrorKind {
    /// The proxy answered the `CONNECT` with this status: 407 (it wants credentials, or those
    /// in the proxy URL are wrong), 403 (its policy forbids the service), 502 or 504 (it could
    /// not reach the service), ...
    Status {
        /// The HTTP status code.
        status: u16,
        /// The reason phrase the proxy gave, possibly empty.
        reason: String,
    },
    /// Resolving the proxy's host name, connecting to it, or talking to it failed.
    Io {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The I/O error's text.
        message: String,
    },
    /// The proxy closed the connection before answering the `CONNECT` (some proxies do so
    /// when they cannot reach the service).
    Closed,
    /// The proxy's answer was not an HTTP response, was too large, or was followed by bytes
    /// before the client had sent anything through the tunnel.
    Malformed(String),
    /// The proxy URL from the environment uses a scheme other than `http` (`socks5`,
    /// `https`, ...): this client speaks HTTP `CONNECT` only.
    UnsupportedScheme(String),
    /// The proxy URL from the environment is unusable (the parser's reason).
    InvalidUrl(String),
}

impl ProxyError {
    /// The status the proxy answered the `CONNECT` with, if it answered one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ProxyErrorKind::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Whether another attempt through the same proxy may succeed: the proxy was unreachable
    /// or closed the connection, or answered 408, 429 or 5xx (502: it could not reach the
    /// service). A refusal of its credentials (407) or by its policy (403, other 4xx), a
    /// malformed answer or an unusable proxy URL are final: the same attempt fails the same
    /// way, and repeating bad proxy credentials can lock the account.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ProxyErrorKind::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            ProxyErrorKind::Io { .. } | ProxyErrorKind::Closed => true,
            ProxyErrorKind::Malformed(_)
            | ProxyErrorKind::UnsupportedScheme(_)
            | ProxyErrorKind::InvalidUrl(_) => false,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.proxy;
        match &self.kind {
            ProxyErrorKind::Status { status, reason } => {
                write!(f, "the proxy {p} refused the tunnel with HTTP {status}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                if *status == 407 {
                    f.write_str(
                        " (credentials go in the proxy URL: http://user:password@host:port)",
                    )?;
                }
                Ok(())
            }
            ProxyErrorKind::Io { message, .. } => {
                write!(f, "cannot reach the proxy {p}: {message}")
            }
            ProxyErrorKind::Closed => write!(
                f,
                "the proxy {p} closed the connection before answering the CONNECT"
            ),
            ProxyErrorKind::Malformed(why) => {
                write!(f, "the proxy {p} answered the CONNECT unexpectedly: {why}")
            }
            ProxyErrorKind::UnsupportedScheme(scheme) => write!(
                f,
                "the proxy URL in {p} has the scheme `{scheme}`: only http:// proxies are supported"
            ),
            ProxyErrorKind::InvalidUrl(why) => {
                write!(f, "the proxy URL in {p} is unusable: {why}")
            }
        }
    }
}
