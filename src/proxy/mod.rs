//! HTTP proxies (B43, PROTOCOL.md §13): which proxy a connection goes through — named by the
//! application, taken from the environment, or none — and the `CONNECT` exchange that opens
//! a tunnel through it, before TLS and the WebSocket upgrade.
//!
//! The choice is made per connection attempt from that attempt's URL, so a recovery and a
//! reconnect take the same proxy as the first connection (and a credential provider that
//! returns another host gets that host's proxy).

mod env;
mod tunnel;

use crate::endpoint::AccessUrl;
use crate::error::{ConnectError, Error, InvalidInput, ProxyError, ProxyErrorKind, Result};
use base64::Engine as _;
use std::fmt;
use url::{Host, Url};

pub(crate) use env::ProxyEnv;
pub(crate) use tunnel::Tunnel;

/// An HTTP proxy that carries the connection through `CONNECT host:port` (for `wss://`,
/// TLS then runs to the service through the tunnel: the certificate is checked against the
/// service's host, not the proxy's).
///
/// Made from a URL `http://[user:password@]host[:port]`; user and password are
/// percent-decoded and sent as `Proxy-Authorization: Basic`. A URL without a scheme is taken
/// as `http://`; the port defaults to 80.
///
/// `Debug` and `Display` show `http://host:port` only: never the credentials.
///
/// ```
/// use webpubsub_client::{Proxy, WebPubSubClient};
/// # fn main() -> Result<(), webpubsub_client::Error> {
/// let proxy = Proxy::new("http://alice:s%3Acret@proxy.example.com:3128")?;
/// assert_eq!(proxy.to_string(), "http://proxy.example.com:3128");
/// let client = WebPubSubClient::builder("wss://example.com/client/hubs/chat?access_token=t")
///     .proxy(proxy)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Without the brackets of an IPv6 address: what the resolver takes.
    host: String,
    port: u16,
    /// The whole `Proxy-Authorization` value (`Basic …`): a secret.
    authorization: Option<String>,
}

/// Why a proxy URL is unusable; the message never quotes the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadProxyUrl {
    Scheme(String),
    Syntax(String),
}

impl Proxy {
    /// Parses a proxy URL. Fails with [`InvalidInput::Proxy`] for bad syntax, a missing host,
    /// or a scheme other than `http` (`https://` and `socks5://` proxies are not supported).
    pub fn new(url: &str) -> Result<Proxy> {
        Proxy::parse(url).map_err(|bad| {
            Error::InvalidInput(InvalidInput::Proxy(match bad {
                BadProxyUrl::Scheme(s) => {
                    format!("the scheme `{s}` is not supported: only http:// proxies")
                }
                BadProxyUrl::Syntax(why) => why,
            }))
        })
    }

    pub(crate) fn parse(text: &str) -> std::result::Result<Proxy, BadProxyUrl> {
        let text = text.trim();
        // `proxy:3128` would parse as the scheme `proxy`: the environment's usual scheme-less
        // form is an http proxy, as curl takes it.
        let url = if text.contains("://") {
            Url::parse(text)
        } else {
            Url::parse(&format!("http://{text}"))
        }
        // `url`'s own messages never quote the input, so they are safe to pass on.
        .map_err(|e| BadProxyUrl::Syntax(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(BadProxyUrl::Scheme(url.scheme().to_owned()));
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(BadProxyUrl::Syntax("no host".into())),
        };
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let mut pair = percent_decode(url.username());
            pair.push(b':');
            pair.extend(percent_decode(url.password().unwrap_or("")));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Proxy {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            authorization,
        })
    }

    /// The proxy's host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with brackets around an IPv6 address: how errors and logs name the proxy.
    pub(crate) fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// An error of this proxy.
    pub(crate) fn error(&self, kind: ProxyErrorKind) -> Error {
        Error::Connect(ConnectError::Proxy(ProxyError {
            proxy: self.name(),
            kind,
        }))
    }

    /// An I/O error while resolving, connecting to or talking to this proxy.
    pub(crate) fn io_error(&self, e: &std::io::Error) -> Error {
        self.error(ProxyErrorKind::Io {
            kind: e.kind(),
            message: e.to_string(),
        })
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.name())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field("credentials", &self.authorization.is_some())
            .finish()
    }
}

impl TryFrom<&str> for Proxy {
    type Error = Error;

    fn try_from(url: &str) -> Result<Proxy> {
        Proxy::new(url)
    }
}

/// The builder's choice of proxy.
#[derive(Debug, Clone)]
pub(crate) enum ProxyConfig {
    /// The proxy variables (read when the builder was made, or given to it).
    Env(Box<ProxyEnv>),
    /// One proxy for every connection.
    Fixed(Proxy),
    /// Always connect directly.
    Off,
}

impl ProxyConfig {
    /// The default: the process environment, read now.
    pub(crate) fn from_process_env() -> ProxyConfig {
        // A value that is not Unicode cannot be a usable URL: taken as unset.
        ProxyConfig::Env(Box::new(ProxyEnv::from_vars(|name| {
            std::env::var(name).ok()
        })))
    }

    /// The environment given as name/value pairs instead of the process's.
    pub(crate) fn from_pairs<I, K, V>(vars: I) -> ProxyConfig
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        ProxyConfig::Env(Box::new(ProxyEnv::from_vars(|name| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })))
    }

    /// The proxy for a connection to `url`, or `None` to connect directly.
    pub(crate) fn for_url(&self, url: &AccessUrl) -> Result<Option<Proxy>> {
        match self {
            ProxyConfig::Off => Ok(None),
            ProxyConfig::Fixed(p) => Ok(Some(p.clone())),
            ProxyConfig::Env(env) => {
                let host = url
                    .url()
                    .host()
                    .ok_or_else(|| Error::InvalidInput(InvalidInput::Url("no host".into())))?;
                env.proxy_for(url.is_tls(), &host)
                    .map_err(|e| Error::Connect(ConnectError::Proxy(e)))
            }
        }
    }
}

/// Percent-decoding of URL userinfo: `%XY` becomes the byte, anything else stays (a `+` is
/// a plus, not a space, outside form encoding).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn credentials_are_percent_decoded_into_basic_authorization() {
        let p = Proxy::new("http://al%20ice:p%40ss%3Aw0rd%25+@proxy.corp:3128").unwrap();
        assert_eq!(
            p.authorization(),
            Some(basic("al ice:p@ss:w0rd%+").as_str())
        );
        assert_eq!((p.host(), p.port()), ("proxy.corp", 3128));
        let user_only = Proxy::new("http://bob@proxy.corp:3128").unwrap();
        assert_eq!(user_only.authorization(), Some(basic("bob:").as_str()));
        assert_eq!(
            Proxy::new("http://proxy.corp").unwrap().authorization(),
            None
        );
    }

    #[test]
    fn a_bad_percent_sequence_is_kept_as_it_is() {
        assert_eq!(percent_decode("a%zzb%4"), b"a%zzb%4");
        assert_eq!(percent_decode("%41%"), b"A%");
    }

    #[test]
    fn scheme_less_proxy_urls_are_http_with_port_80_by_default() {
        let p = Proxy::new("proxy.corp:8080").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp:8080");
        let p = Proxy::new("http://proxy.corp/").unwrap();
        assert_eq!(p.port(), 80);
        let p = Proxy::new("http://[::1]:3128").unwrap();
        assert_eq!((p.host(), p.name().as_str()), ("::1", "[::1]:3128"));
    }

    #[test]
    fn socks_and_https_proxies_are_typed_errors_that_say_so() {
        for url in [
            "socks5://u:SECRET@h:1080",
            "https://u:SECRET@h",
            "socks5h://h",
        ] {
            match Proxy::new(url) {
                Err(Error::InvalidInput(InvalidInput::Proxy(why))) => {
                    assert!(why.contains("only http://"), "{why}");
                    assert!(!why.contains("SECRET"), "{why}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(
            Proxy::parse("socks5://h:1080"),
            Err(BadProxyUrl::Scheme("socks5".into()))
        );
        for url in ["http://", "http://u:SECRET@", "http://h:99999", ""] {
            let e = Proxy::new(url).unwrap_err();
            assert!(
                matches!(e, Error::InvalidInput(InvalidInput::Proxy(_))),
                "{url}: {e:?}"
            );
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn debug_and_display_never_show_the_credentials() {
        // B43, like B37 for tokens.
        let p = Proxy::new("http://alice:SECRET@proxy.corp:3128").unwrap();
        for shown in [format!("{p:?}"), p.to_string(), p.name()] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
            // Nor its base64 form.
            assert!(!shown.contains("YWxpY2U6U0VDUkVU"), "{shown}");
        }
        assert!(format!("{p:?}").contains("credentials: true"));
        let e = p.error(ProxyErrorKind::Status {
            status: 407,
            reason: "Proxy Authentication Required".into(),
        });
        for shown in [format!("{e:?}"), e.to_string()] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("proxy.corp:3128"), "{shown}");
        }
    }

    #[test]
    fn an_explicit_proxy_is_used_for_every_url_and_off_for_none() {
        let p = Proxy::new("http://proxy.corp:3128").unwrap();
        let url = AccessUrl::parse("wss://localhost/client/hubs/h").unwrap();
        assert_eq!(
            ProxyConfig::Fixed(p.clone()).for_url(&url).unwrap(),
            Some(p)
        );
        assert_eq!(ProxyConfig::Off.for_url(&url).unwrap(), None);
    }

    #[test]
    fn injected_variables_behave_as_the_environment() {
        let c = ProxyConfig::from_pairs([
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("NO_PROXY", "internal.corp"),
        ]);
        let at = |u: &str| c.for_url(&AccessUrl::parse(u).unwrap()).unwrap();
        assert_eq!(
            at("wss://x.webpubsub.azure.com/client/hubs/h").map(|p| p.name()),
            Some("proxy.corp:3128".to_owned())
        );
        assert_eq!(at("wss://a.internal.corp/client/hubs/h"), None);
        assert_eq!(at("ws://x.webpubsub.azure.com/client/hubs/h"), None);
    }
}
