//! The outbound HTTP calls: one shared `ureq` agent (a pool of keep-alive connections),
//! a deadline per call, and the retries of §6 with waits that a shutdown cuts short.

use super::cloudevents::{Method, Outbound, METADATA_HEADER_PREFIX};
use super::config::UpstreamConfig;
use super::outcome::{Failure, FailureKind};
use super::response::{Attempt, Reply, RetryPolicy};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io;
use std::time::{Duration, Instant};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use webpubsub_protocol::redact_query;

/// The largest answer read from a handler, as Microsoft's emulator.
pub(crate) const MAX_REPLY_BYTES: u64 = 16 << 20;

/// Idle keep-alive connections are dropped before Node's default 5 s keep-alive timeout,
/// so a call never lands on a socket the app server is closing (a POST on it would fail
/// and cost a retry's backoff).
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);

pub(crate) struct Transport {
    agent: ureq::Agent,
    policy: RetryPolicy,
    /// Disconnected when the engine stops: ends retry waits at once.
    stop: Receiver<()>,
}

impl Transport {
    pub fn new(cfg: &UpstreamConfig, stop: Receiver<()>) -> Transport {
        let roots = if cfg.root_certificates().is_empty() {
            RootCerts::PlatformVerifier
        } else {
            RootCerts::new_with_certs(
                &cfg.root_certificates()
                    .iter()
                    .map(|der| Certificate::from_der(der).to_owned())
                    .collect::<Vec<_>>(),
            )
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(roots)
            .build();
        let config = ureq::Agent::config_builder()
            // Statuses are answers to interpret, not errors.
            .http_status_as_error(false)
            // The service does not follow redirects: a 3xx is a failing status.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // App servers are reached directly; a proxy from the environment (set for a
            // package registry, say) must not capture calls to 127.0.0.1.
            .proxy(None)
            .user_agent(concat!("webpubsub-emulator/", env!("CARGO_PKG_VERSION")))
            .max_idle_age(MAX_IDLE_AGE)
            .max_idle_connections_per_host(cfg.worker_limit())
            .tls_config(tls)
            .build();
        let (max_retries, backoff) = cfg.retry_settings();
        Transport {
            agent: config.new_agent(),
            policy: RetryPolicy {
                max_retries,
                backoff,
            },
            stop,
        }
    }

    /// Closes every connection, interrupting calls in flight.
    pub fn interrupt(&self) {
        self.agent.clone().shutdown();
    }

    /// Sends `req` until it gets an answer that is not retried, retries run out, or
    /// `deadline` passes. Returns the answer (any status) and how many attempts were made.
    pub fn call(
        &self,
        req: &Outbound,
        deadline: Instant,
        retries: bool,
    ) -> (Result<Reply, Failure>, u32) {
        let shown = redact_query(&req.url);
        let mut attempts = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let f = Failure::new(
                    FailureKind::Timeout,
                    format!("{} {shown}: no answer in time", req.method.as_str()),
                );
                return (Err(f), attempts);
            }
            attempts += 1;
            let (attempt, result) = match self.once(req, left) {
                Ok(reply) => (Attempt::Status(reply.status), Ok(reply)),
                Err((attempt, kind, why)) => (
                    attempt,
                    Err(Failure::new(
                        kind,
                        format!("{} {shown}: {why}", req.method.as_str()),
                    )),
                ),
            };
            let delay = if retries {
                self.policy.next_delay(attempts - 1, attempt)
            } else {
                None
            };
            let Some(delay) = delay.filter(|d| Instant::now() + *d < deadline) else {
                return (result, attempts);
            };
            match &result {
                Ok(r) => log::debug!(
                    "upstream: {shown} answered {}; retrying in {delay:?}",
                    r.status
                ),
                Err(f) => log::debug!("upstream: {f}; retrying in {delay:?}"),
            }
            if let Err(RecvTimeoutError::Disconnected) = self.stop.recv_timeout(delay) {
                return (result, attempts);
            }
        }
    }

    fn once(
        &self,
        req: &Outbound,
        timeout: Duration,
    ) -> Result<Reply, (Attempt, FailureKind, String)> {
        let sent = match req.method {
            Method::Post => {
                let mut b = self
                    .agent
                    .post(&req.url)
                    .config()
                    .timeout_global(Some(timeout))
                    .build();
                for (k, v) in &req.headers {
                    b = b.header(k.as_ref(), v.as_bytes());
                }
                b.send(&req.body[..])
            }
            Method::Options => {
                let mut b = self
                    .agent
                    .options(&req.url)
                    .config()
                    .timeout_global(Some(timeout))
                    .build();
                for (k, v) in &req.headers {
                    b = b.header(k.as_ref(), v.as_bytes());
                }
                b.call()
            }
        };
        let mut resp = sent.map_err(|e| classify(&e, false))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let mut reply = Reply {
            status: resp.status().as_u16(),
            content_type: header("content-type"),
            state: header("ce-connectionstate"),
            allowed_origins: resp
                .headers()
                .get_all("webhook-allowed-origin")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect(),
            // Header names come lower-cased.
            metadata: resp
                .headers()
                .iter()
                .filter_map(|(name, value)| {
                    let key = name.as_str().strip_prefix(METADATA_HEADER_PREFIX)?;
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    Some((key.to_owned(), value))
                })
                .filter(|(key, _)| !key.is_empty())
                .collect(),
            body: Vec::new(),
        };
        reply.body = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|e| classify(&e, true))?;
        Ok(reply)
    }
}

/// How a ureq error counts: retried or not, which failure, and why in words (no URL: the
/// caller adds the redacted one).
fn classify(e: &ureq::Error, answered: bool) -> (Attempt, FailureKind, String) {
    use ureq::Error as E;
    let text = redact_query(&e.to_string());
    if answered {
        // The handler answered; only its body failed.
        return match e {
            E::Timeout(_) => (
                Attempt::Timeout,
                FailureKind::Timeout,
                format!("the answer's body did not come in time ({text})"),
            ),
            E::BodyExceedsLimit(_) => (
                Attempt::Unusable,
                FailureKind::BadResponse,
                format!("the answer is larger than {MAX_REPLY_BYTES} bytes"),
            ),
            _ => (
                Attempt::Unusable,
                FailureKind::BadResponse,
                format!("the answer's body could not be read ({text})"),
            ),
        };
    }
    match e {
        E::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => (
            Attempt::NoResponse,
            FailureKind::Unreachable,
            format!("could not connect in time ({text})"),
        ),
        E::Timeout(_) => (
            Attempt::Timeout,
            FailureKind::Timeout,
            format!("no answer in time ({text})"),
        ),
        E::HostNotFound | E::ConnectionFailed => (
            Attempt::NoResponse,
            FailureKind::Unreachable,
            format!("unreachable ({text})"),
        ),
        E::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => (
                Attempt::Timeout,
                FailureKind::Timeout,
                format!("no answer in time ({text})"),
            ),
            io::ErrorKind::NotConnected => (
                Attempt::Unusable,
                FailureKind::Stopping,
                "the emulator is stopping".into(),
            ),
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => (
                Attempt::NoResponse,
                FailureKind::Unreachable,
                format!("unreachable ({text})"),
            ),
            _ => (
                Attempt::NoResponse,
                FailureKind::Unreachable,
                format!("no answer ({text})"),
            ),
        },
        E::Tls(_) | E::NativeTls(_) | E::Der(_) => (
            Attempt::Unusable,
            FailureKind::Unreachable,
            format!("TLS failed ({text})"),
        ),
        E::Protocol(_) => (
            Attempt::Unusable,
            FailureKind::BadResponse,
            format!("a malformed answer ({text})"),
        ),
        _ => (Attempt::Unusable, FailureKind::Unreachable, text),
    }
}
