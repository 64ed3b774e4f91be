//! Client options, the builder (its `build` is in `client.rs`), the subprotocol and the
//! access-URL credential.

use crate::endpoint::AccessUrl;
use crate::error::{Cause, ConnectError, Error, Result};
use crate::protocol::Subprotocol;
use crate::proxy::{Proxy, ProxyConfig};
use crate::retry::RetryPolicy;
use crate::runtime::{Runtime, ThreadConfig};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The WebSocket subprotocol the client speaks.
///
/// The four behave the same (B42): the same operations, events, acks and errors; only the
/// encoding differs (JSON text frames or protobuf binary frames), and only the reliable ones
/// recover a dropped connection. See the crate docs' "Subprotocols".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `json.reliable.webpubsub.azure.v1`: sequence ids and session recovery — a dropped
    /// connection is recovered without losing messages. The default.
    #[default]
    JsonReliable,
    /// `json.webpubsub.azure.v1`: no recovery; a drop means a new connection.
    Json,
    /// `protobuf.reliable.webpubsub.azure.v1`: the reliable protocol in protobuf binary
    /// frames — binary payloads travel as raw bytes instead of base64.
    ProtobufReliable,
    /// `protobuf.webpubsub.azure.v1`: protobuf binary frames, no recovery.
    Protobuf,
}

impl Protocol {
    /// All four, the default first.
    pub const ALL: [Protocol; 4] = [
        Protocol::JsonReliable,
        Protocol::Json,
        Protocol::ProtobufReliable,
        Protocol::Protobuf,
    ];

    /// The subprotocol's name on the wire.
    pub fn name(self) -> &'static str {
        self.subprotocol().name()
    }

    /// The protocol crate's subprotocol: which codec the frames use.
    pub fn subprotocol(self) -> Subprotocol {
        match self {
            Protocol::JsonReliable => Subprotocol::JsonReliable,
            Protocol::Json => Subprotocol::Json,
            Protocol::ProtobufReliable => Subprotocol::ProtobufReliable,
            Protocol::Protobuf => Subprotocol::Protobuf,
        }
    }

    /// Whether the protocol supports recovery.
    pub fn is_reliable(self) -> bool {
        self.subprotocol().is_reliable()
    }

    /// Whether it speaks protobuf in binary frames (else JSON in text frames).
    pub fn is_binary(self) -> bool {
        self.subprotocol().is_binary()
    }
}

impl From<Protocol> for Subprotocol {
    fn from(p: Protocol) -> Subprotocol {
        p.subprotocol()
    }
}

/// The error a credential provider may return.
pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

type Provider = dyn Fn() -> std::result::Result<String, ProviderError> + Send + Sync;

/// Where the client gets its access URL: a fixed URL, or a provider called for every new
/// connection (start and reconnect; never for a recovery, B8) — for example a function that
/// asks your server for a fresh token.
///
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct Credential(CredentialKind);

#[derive(Clone)]
enum CredentialKind {
    Url(Result<AccessUrl>),
    Provider(Arc<Provider>),
}

impl Credential {
    /// A fixed client access URL. An invalid URL is reported by
    /// [`build`](crate::WebPubSubClientBuilder::build).
    pub fn from_url(url: &str) -> Credential {
        Credential(CredentialKind::Url(AccessUrl::parse(url)))
    }

    /// A provider called on the I/O thread for every new connection. It may block (for
    /// example on an HTTP request to your server); `stop()` waits for it to return.
    ///
    /// ```
    /// use webpubsub_client::Credential;
    /// let c = Credential::from_fn(|| Ok("wss://example.com/client/hubs/chat?access_token=t".to_owned()));
    /// ```
    pub fn from_fn<F>(provider: F) -> Credential
    where
        F: Fn() -> std::result::Result<String, ProviderError> + Send + Sync + 'static,
    {
        Credential(CredentialKind::Provider(Arc::new(provider)))
    }

    /// A fixed URL's parse error, reported at build time.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.0 {
            CredentialKind::Url(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The access URL for a new connection; calls the provider (catching a panic).
    pub(crate) fn access_url(&self) -> Result<AccessUrl> {
        match &self.0 {
            CredentialKind::Url(u) => u.clone(),
            CredentialKind::Provider(p) => {
                let p = p.clone();
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p())) {
                    Ok(Ok(text)) => AccessUrl::parse(&text),
                    // The provider's error is the application's; it is kept as the cause.
                    Ok(Err(e)) => Err(Error::Connect(ConnectError::Credential(Cause::from(e)))),
                    Err(_) => Err(Error::Connect(ConnectError::Credential(Cause::from(
                        "the provider panicked",
                    )))),
                }
            }
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            CredentialKind::Url(Ok(u)) => write!(f, "Credential::Url({u})"),
            CredentialKind::Url(Err(_)) => f.write_str("Credential::Url(<invalid>)"),
            CredentialKind::Provider(_) => f.write_str("Credential::Provider(..)"),
        }
    }
}

impl From<&str> for Credential {
    fn from(url: &str) -> Credential {
        Credential::from_url(url)
    }
}

impl From<String> for Credential {
    fn from(url: String) -> Credential {
        Credential::from_url(&url)
    }
}

impl From<&String> for Credential {
    fn from(url: &String) -> Credential {
        Credential::from_url(url)
    }
}

/// Every option of a client (after `build`).
#[derive(Clone)]
pub(crate) struct Options {
    pub credential: Credential,
    pub protocol: Protocol,
    pub auto_reconnect: bool,
    pub auto_rejoin_groups: bool,
    pub reconnect_retry: RetryPolicy,
    pub message_retry: RetryPolicy,
    pub ack_timeout: Duration,
    pub start_timeout: Duration,
    pub recovery_window: Duration,
    pub recovery_retry_interval: Duration,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    pub max_event_backlog: usize,
    pub user_agent: String,
    pub root_certificates: Vec<native_tls::Certificate>,
    pub accept_invalid_certs: bool,
    pub proxy: ProxyConfig,
    /// The client's own threads (without a shared runtime).
    pub threads: ThreadConfig,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("credential", &self.credential)
            .field("protocol", &self.protocol)
            .field("auto_reconnect", &self.auto_reconnect)
            .field("auto_rejoin_groups", &self.auto_rejoin_groups)
            .field("reconnect_retry", &self.reconnect_retry)
            .field("message_retry", &self.message_retry)
            .field("ack_timeout", &self.ack_timeout)
            .field("start_timeout", &self.start_timeout)
            .field("recovery_window", &self.recovery_window)
            .field("recovery_retry_interval", &self.recovery_retry_interval)
            .field("max_event_backlog", &self.max_event_backlog)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("keep_alive_timeout", &self.keep_alive_timeout)
            .field("user_agent", &self.user_agent)
            .field("root_certificates", &self.root_certificates.len())
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("proxy", &self.proxy)
            .field("threads", &self.threads)
            .finish()
    }
}

/// Builds a [`WebPubSubClient`](crate::WebPubSubClient) with options; see
/// [`WebPubSubClient::builder`](crate::WebPubSubClient::builder).
#[derive(Debug, Clone)]
pub struct WebPubSubClientBuilder {
    options: Options,
    runtime: Option<Runtime>,
}

impl WebPubSubClientBuilder {
    pub(crate) fn new(credential: Credential) -> WebPubSubClientBuilder {
        WebPubSubClientBuilder {
            options: Options {
                credential,
                protocol: Protocol::JsonReliable,
                auto_reconnect: true,
                auto_rejoin_groups: true,
                reconnect_retry: RetryPolicy::fixed(Duration::from_secs(1), u32::MAX)
                    .with_max_delay(Duration::from_secs(120)),
                message_retry: RetryPolicy::default(),
                ack_timeout: Duration::from_secs(30),
                start_timeout: Duration::from_secs(30),
                recovery_window: Duration::from_secs(30),
                recovery_retry_interval: Duration::from_secs(1),
                keep_alive_interval: Duration::from_secs(20),
                keep_alive_timeout: Duration::from_secs(120),
                max_event_backlog: 10_000,
                user_agent: concat!("webpubsub-client-rust/", env!("CARGO_PKG_VERSION")).into(),
                root_certificates: Vec::new(),
                accept_invalid_certs: false,
                proxy: ProxyConfig::from_process_env(),
                threads: ThreadConfig::default(),
            },
            runtime: None,
        }
    }

    /// The subprotocol. Defaults to [`Protocol::JsonReliable`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.options.protocol = protocol;
        self
    }

    /// Whether to make a new connection (calling the credential provider again) when the
    /// connection session is lost. When off, a lost session stops the client. Defaults to
    /// `true`.
    pub fn auto_reconnect(mut self, on: bool) -> Self {
        self.options.auto_reconnect = on;
        self
    }

    /// Whether to rejoin, after a new connection, the groups this client joined (B23).
    /// Defaults to `true`.
    pub fn auto_rejoin_groups(mut self, on: bool) -> Self {
        self.options.auto_rejoin_groups = on;
        self
    }

    /// Delays between attempts to make a new connection after the session was lost (the first
    /// attempt is immediate). When retries are exhausted the client stops. Defaults to a fixed
    /// 1 s delay without limit on retries.
    pub fn reconnect_retry(mut self, policy: RetryPolicy) -> Self {
        self.options.reconnect_retry = policy;
        self
    }

    /// Retries of a request after a transient failure (not connected, connection lost, ack
    /// timeout, `InternalServerError`), always with the same ack id (B26), so that the
    /// service executes it once within a connection session. A retry of a request whose
    /// session was lost (close code 1008, recovery window over) goes to a new session that
    /// cannot deduplicate it: such a message may arrive twice. Use [`RetryPolicy::none`] and
    /// handle [`Error::ConnectionLost`](crate::Error::ConnectionLost) yourself where that
    /// matters. Defaults to exponential delays from 0.8 s, 3 retries, at most 120 s.
    pub fn message_retry(mut self, policy: RetryPolicy) -> Self {
        self.options.message_retry = policy;
        self
    }

    /// How long one attempt of a request waits for its ack. Defaults to 30 s.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.options.ack_timeout = timeout;
        self
    }

    /// How long `start()` waits for the service's `connected` message; also bounds each later
    /// connection attempt. Defaults to 30 s.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_timeout = timeout;
        self
    }

    /// How long to keep trying to recover a dropped session (reliable protocol). Defaults to
    /// 30 s.
    pub fn recovery_window(mut self, window: Duration) -> Self {
        self.options.recovery_window = window;
        self
    }

    /// The longest pause between two recovery attempts (B46). The first attempt follows the
    /// drop at once; after a failed one the client tries again after 5 ms, then 10 ms,
    /// 20 ms, … doubling up to this interval, so that a cut during a recovery handshake
    /// costs milliseconds while a service that stays away is not hammered. Defaults to 1 s.
    pub fn recovery_retry_interval(mut self, interval: Duration) -> Self {
        self.options.recovery_retry_interval = interval;
        self
    }

    /// How often to send a `ping` while connected; zero disables it. Defaults to 20 s.
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.options.keep_alive_interval = interval;
        self
    }

    /// After this long without any frame from the service the connection is considered dead:
    /// it is closed and recovered (B32); zero disables the check. Defaults to 120 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.options.keep_alive_timeout = timeout;
        self
    }

    /// How many received events may wait for your callbacks (or for an
    /// [`events()`](crate::WebPubSubClient::events) receiver that is read slowly) before the
    /// client stops reading the socket until they drain to half. This bounds the client's
    /// memory when messages arrive faster than they are consumed; the service then holds the
    /// rest (with the reliable protocol it keeps up to its own limit, then ends the session).
    /// Sequence acks, requests and keep-alive go on meanwhile. An `events()` receiver that is
    /// never read holds the client back: drop it when done. At least 1. Defaults to 10,000.
    pub fn max_event_backlog(mut self, events: usize) -> Self {
        self.options.max_event_backlog = events.max(1);
        self
    }

    /// The `User-Agent` header of the WebSocket upgrade. Defaults to
    /// `webpubsub-client-rust/<version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.options.user_agent = user_agent.into();
        self
    }

    /// Trusts `certificate` as a root for `wss://` connections, besides the system's roots.
    /// Defaults to the system's roots only.
    pub fn add_root_certificate(mut self, certificate: native_tls::Certificate) -> Self {
        self.options.root_certificates.push(certificate);
        self
    }

    /// **Dangerous**: accepts any server certificate and host name for `wss://`, which lets
    /// anyone on the path read and change the traffic, tokens included. For tests against
    /// self-signed servers only. Defaults to `false` (certificates are verified, B36).
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.options.accept_invalid_certs = accept;
        self
    }

    // ----- proxies (B43); the rules are in the crate docs' "Proxies" section -----

    /// Sends every connection (start, recovery, reconnect) through `proxy`, whatever the
    /// environment says. Defaults to the proxy the environment names for each connection
    /// (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`, read when the builder is made).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.options.proxy = ProxyConfig::Fixed(proxy);
        self
    }

    /// Connects directly, never through a proxy, and ignores the proxy variables of the
    /// environment. Defaults to the proxy the environment names.
    pub fn no_proxy(mut self) -> Self {
        self.options.proxy = ProxyConfig::Off;
        self
    }

    /// Takes the proxy variables (the same names and rules) from `vars` instead of the
    /// process environment: for settings an application keeps elsewhere, and for tests that
    /// must not change the environment of the whole process. Variables not in `vars` count
    /// as unset. Defaults to the process environment, read when the builder is made.
    ///
    /// ```
    /// use webpubsub_client::WebPubSubClient;
    /// # fn main() -> Result<(), webpubsub_client::Error> {
    /// let client = WebPubSubClient::builder("wss://example.com/client/hubs/chat?access_token=t")
    ///     .proxy_env([("HTTPS_PROXY", "http://proxy.corp:3128"), ("NO_PROXY", ".corp")])
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn proxy_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        self.options.proxy = ProxyConfig::from_pairs(vars);
        self
    }

    // ----- threads (B44, B45); see the crate docs' "Many clients in one process" -----

    /// Runs the client on `runtime`'s two threads, shared with the other clients built with
    /// it, instead of two threads of its own. Callbacks, backpressure, recovery and
    /// lifecycle stay the client's own; see [`Runtime`]. Defaults to no shared runtime: the
    /// client starts its own two threads for each run.
    pub fn runtime(mut self, runtime: &Runtime) -> Self {
        self.runtime = Some(runtime.clone());
        self
    }

    /// The stack size of the client's own I/O thread, in bytes. It runs the readiness loop,
    /// TLS handshakes, name resolution and the [credential provider](Credential::from_fn) —
    /// never a callback. Ignored with a shared [`runtime`](Self::runtime), whose own
    /// setting applies. Defaults to 256 KiB.
    pub fn io_stack_size(mut self, bytes: usize) -> Self {
        self.options.threads.io_stack_size = bytes;
        self
    }

    /// The stack size of the client's own dispatcher thread, in bytes: **your callbacks run
    /// on it**. Raise it for callbacks that recurse deeply or keep large values on the stack.
    /// Ignored with a shared [`runtime`](Self::runtime), whose own setting applies.
    /// Defaults to 1 MiB (Rust's spawned threads get 2 MiB; only the pages a thread touches
    /// count in its memory, whatever the size).
    pub fn dispatcher_stack_size(mut self, bytes: usize) -> Self {
        self.options.threads.dispatcher_stack_size = bytes;
        self
    }

    /// The checked options and the shared runtime, for `build` (in `client.rs`).
    pub(crate) fn into_parts(self) -> Result<(Options, Option<Runtime>)> {
        self.options.credential.check()?;
        Ok((self.options, self.runtime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_hides_the_token() {
        let c = Credential::from("wss://x/client/hubs/h?access_token=SECRET");
        assert!(!format!("{c:?}").contains("SECRET"));
        let b = WebPubSubClientBuilder::new(c);
        assert!(!format!("{b:?}").contains("SECRET"));
    }

    #[test]
    fn provider_panic_becomes_a_credential_error() {
        let c = Credential::from_fn(|| panic!("boom"));
        assert!(matches!(
            c.access_url(),
            Err(Error::Connect(ConnectError::Credential(_)))
        ));
    }
}
