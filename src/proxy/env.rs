//! The proxy variables of the environment, as curl, reqwest and ureq read them (PROTOCOL.md
//! §13): `https_proxy` for `wss://`, `http_proxy` for `ws://`, `all_proxy` as fallback,
//! `no_proxy` for the hosts reached directly; lower case before upper case.
//!
//! Pure: the variables are read once through a function, so that the rules are tested with
//! tables instead of a process environment that tests running in parallel would share.

use super::{BadProxyUrl, Proxy};
use crate::error::{ProxyError, ProxyErrorKind};
use std::fmt;
use std::net::IpAddr;
use url::Host;

/// The proxy variables, read once.
#[derive(Clone)]
pub(crate) struct ProxyEnv {
    https: Option<Var>,
    http: Option<Var>,
    all: Option<Var>,
    no_proxy: NoProxy,
}

/// One proxy variable: its name and its parsed value.
#[derive(Clone)]
struct Var {
    name: &'static str,
    proxy: Result<Proxy, BadProxyUrl>,
}

impl ProxyEnv {
    /// Reads the variables through `get` (`None`: unset). An empty value counts as unset.
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let value = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let var = |lower: &'static str, upper: &'static str| {
            let (name, text) = match value(lower) {
                Some(v) => (lower, v),
                None => (upper, value(upper)?),
            };
            Some(Var {
                name,
                proxy: Proxy::parse(&text),
            })
        };
        let http = if value("REQUEST_METHOD").is_some() {
            // In a CGI program `HTTP_PROXY` comes from the request's `Proxy:` header, which
            // anyone can send ("httpoxy"): only the lower-case name is trusted there.
            value("http_proxy").map(|v| Var {
                name: "http_proxy",
                proxy: Proxy::parse(&v),
            })
        } else {
            var("http_proxy", "HTTP_PROXY")
        };
        ProxyEnv {
            https: var("https_proxy", "HTTPS_PROXY"),
            http,
            all: var("all_proxy", "ALL_PROXY"),
            no_proxy: NoProxy::parse(
                &value("no_proxy")
                    .or_else(|| value("NO_PROXY"))
                    .unwrap_or_default(),
            ),
        }
    }

    /// The proxy for a connection to `host` (`tls`: a `wss://` URL), `None` to connect
    /// directly; an error for a proxy variable that names no usable http proxy.
    pub(crate) fn proxy_for(
        &self,
        tls: bool,
        host: &Host<&str>,
    ) -> Result<Option<Proxy>, ProxyError> {
        let specific = if tls { &self.https } else { &self.http };
        let Some(var) = specific.as_ref().or(self.all.as_ref()) else {
            return Ok(None);
        };
        if self.no_proxy.matches(host) {
            return Ok(None);
        }
        match &var.proxy {
            Ok(p) => Ok(Some(p.clone())),
            Err(bad) => Err(ProxyError {
                proxy: var.name.to_owned(),
                kind: match bad {
                    BadProxyUrl::Scheme(s) => ProxyErrorKind::UnsupportedScheme(s.clone()),
                    BadProxyUrl::Syntax(why) => ProxyErrorKind::InvalidUrl(why.clone()),
                },
            }),
        }
    }
}

impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value may hold a password: only its parsed form is shown.
        match &self.proxy {
            Ok(p) => write!(f, "{}={p:?}", self.name),
            Err(_) => write!(f, "{}=<unusable>", self.name),
        }
    }
}

impl fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyEnv")
            .field("https", &self.https)
            .field("http", &self.http)
            .field("all", &self.all)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The hosts reached directly: `*`, domains (with their subdomains), IP addresses and CIDR
/// ranges. Ports in the list are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    all: bool,
    domains: Vec<String>,
    /// An address with its prefix length (32 or 128 for a single address).
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    /// Parses a comma-separated list; entries it cannot read are skipped.
    pub(crate) fn parse(list: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for entry in list.split(',') {
            let e = entry.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                n.all = true;
            } else if let Some(net) = parse_net(&e) {
                n.nets.push(net);
            } else if let Some(domain) = parse_domain(&e) {
                n.domains.push(domain);
            } else {
                log::debug!("NO_PROXY: skipping an entry that is neither a host nor an address");
            }
        }
        n
    }

    /// Whether a connection to `host` bypasses the proxy.
    pub(crate) fn matches(&self, host: &Host<&str>) -> bool {
        if self.all {
            return true;
        }
        match host {
            Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                self.domains.iter().any(|suffix| {
                    d == *suffix
                        || (d.len() > suffix.len()
                            && d.ends_with(suffix.as_str())
                            && d.as_bytes()[d.len() - suffix.len() - 1] == b'.')
                })
            }
            Host::Ipv4(ip) => self.has_ip(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => self.has_ip(IpAddr::V6(*ip)),
        }
    }

    fn has_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(net, len)| in_net(ip, *net, *len))
    }
}

/// `10.0.0.0/8`, `::1`, `[::1]:8080`, `127.0.0.1:80` → an address and a prefix length.
fn parse_net(e: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match e.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (e, None),
    };
    let ip: IpAddr = if let Some(rest) = addr.strip_prefix('[') {
        rest.split_once(']')?.0.parse().ok()?
    } else if let Ok(ip) = addr.parse() {
        ip
    } else {
        // `127.0.0.1:80`: a port, ignored.
        let (a, port) = addr.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        a.parse::<std::net::Ipv4Addr>().ok()?.into()
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

/// `.example.com`, `*.example.com`, `example.com:443` → `example.com`.
fn parse_domain(e: &str) -> Option<String> {
    let e = match e.rsplit_once(':') {
        Some((d, port)) if port.parse::<u16>().is_ok() => d,
        Some(_) => return None,
        None => e,
    };
    let d = e
        .strip_prefix("*.")
        .or_else(|| e.strip_prefix('.'))
        .unwrap_or(e)
        .trim_end_matches('.');
    let ok = !d.is_empty()
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| d.to_owned())
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        ProxyEnv::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// The proxy (`host:port`) for a URL, `-` for a direct connection, `!kind` for an error.
    fn resolve(vars: &[(&str, &str)], url: &str) -> String {
        let url = url::Url::parse(url).unwrap();
        let host = url.host().unwrap();
        match env(vars).proxy_for(url.scheme() == "wss", &host) {
            Ok(Some(p)) => p.name(),
            Ok(None) => "-".into(),
            Err(e) => format!("!{}:{:?}", e.proxy, e.kind),
        }
    }

    /// What a row checks, the variables, the URL, and the expected `resolve` answer.
    type Row = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn environment_resolution_follows_the_table() {
        const WSS: &str = "wss://svc.webpubsub.azure.com/client/hubs/h";
        const WS: &str = "ws://svc.webpubsub.azure.com/client/hubs/h";
        #[rustfmt::skip]
        let table: &[Row] = &[
            ("nothing set: direct", &[], WSS, "-"),
            ("wss takes HTTPS_PROXY", &[("HTTPS_PROXY", "http://s:1")], WSS, "s:1"),
            ("ws does not take HTTPS_PROXY", &[("HTTPS_PROXY", "http://s:1")], WS, "-"),
            ("ws takes HTTP_PROXY", &[("HTTP_PROXY", "http://h:2")], WS, "h:2"),
            ("wss does not take HTTP_PROXY", &[("HTTP_PROXY", "http://h:2")], WSS, "-"),
            ("ALL_PROXY is the fallback for wss", &[("ALL_PROXY", "http://a:3")], WSS, "a:3"),
            ("ALL_PROXY is the fallback for ws", &[("ALL_PROXY", "http://a:3")], WS, "a:3"),
            ("the specific variable beats ALL_PROXY",
                &[("ALL_PROXY", "http://a:3"), ("HTTPS_PROXY", "http://s:1")], WSS, "s:1"),
            ("lower case beats upper case",
                &[("HTTPS_PROXY", "http://upper:1"), ("https_proxy", "http://lower:1")], WSS, "lower:1"),
            ("lower case beats upper case for http",
                &[("HTTP_PROXY", "http://upper:2"), ("http_proxy", "http://lower:2")], WS, "lower:2"),
            ("lower case beats upper case for all",
                &[("ALL_PROXY", "http://upper:3"), ("all_proxy", "http://lower:3")], WS, "lower:3"),
            ("an empty lower-case value counts as unset",
                &[("https_proxy", " "), ("HTTPS_PROXY", "http://upper:1")], WSS, "upper:1"),
            ("a lower-case ALL_PROXY does not beat an upper-case HTTPS_PROXY",
                &[("all_proxy", "http://a:3"), ("HTTPS_PROXY", "http://s:1")], WSS, "s:1"),
            ("a scheme-less value is an http proxy, port 80 by default",
                &[("HTTPS_PROXY", "proxy.corp")], WSS, "proxy.corp:80"),
            ("CGI: HTTP_PROXY may come from a request header and is ignored",
                &[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:1")], WS, "-"),
            ("CGI: http_proxy is still taken",
                &[("REQUEST_METHOD", "GET"), ("http_proxy", "http://h:2")], WS, "h:2"),
            ("a socks proxy is a typed error naming the variable",
                &[("https_proxy", "socks5://u:p@s:1080")], WSS, "!https_proxy:UnsupportedScheme(\"socks5\")"),
            ("an https proxy is a typed error",
                &[("ALL_PROXY", "https://s:443")], WS, "!ALL_PROXY:UnsupportedScheme(\"https\")"),
            ("a bad URL is a typed error",
                &[("HTTPS_PROXY", "http://s:99999")], WSS, "!HTTPS_PROXY:InvalidUrl(\"invalid port number\")"),
            ("a bypassed host never sees the bad URL",
                &[("HTTPS_PROXY", "socks5://s:1"), ("NO_PROXY", "*")], WSS, "-"),
            // NO_PROXY
            ("NO_PROXY * bypasses everything",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "*")], WSS, "-"),
            ("a bare domain matches itself",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "webpubsub.azure.com")],
                "wss://webpubsub.azure.com/client/hubs/h", "-"),
            ("a bare domain matches subdomains",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "azure.com")], WSS, "-"),
            ("a leading dot matches subdomains",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", ".azure.com")], WSS, "-"),
            ("a leading dot matches the domain itself",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", ".azure.com")],
                "wss://azure.com/client/hubs/h", "-"),
            ("a leading *. is a leading dot",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "*.azure.com")], WSS, "-"),
            ("a suffix that is not a label does not match",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "zure.com")], WSS, "s:1"),
            ("a subdomain entry does not match its parent",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "a.svc.webpubsub.azure.com")], WSS, "s:1"),
            ("matching ignores case and a trailing dot",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "AZURE.com.")],
                "wss://svc.Azure.COM./client/hubs/h", "-"),
            ("a comma list with spaces and empty entries",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", " localhost, ,azure.com ,")], WSS, "-"),
            ("ports in NO_PROXY are ignored",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "azure.com:8443")], WSS, "-"),
            ("ports of the URL are ignored",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "svc.local")],
                "ws://svc.local:8080/client/hubs/h", "-"),
            ("an IPv4 address",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "127.0.0.1")],
                "ws://127.0.0.1:8080/client/hubs/h", "-"),
            ("an IPv4 address with a port",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "127.0.0.1:9999")],
                "ws://127.0.0.1:8080/client/hubs/h", "-"),
            ("another IPv4 address does not match",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "127.0.0.2")],
                "ws://127.0.0.1:8080/client/hubs/h", "h:2"),
            ("an IPv4 CIDR range",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "10.0.0.0/8")],
                "ws://10.20.30.40/client/hubs/h", "-"),
            ("outside the CIDR range",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "10.0.0.0/8")],
                "ws://11.0.0.1/client/hubs/h", "h:2"),
            ("a /0 range is everything of its family",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "0.0.0.0/0")],
                "ws://192.0.2.1/client/hubs/h", "-"),
            ("an IPv6 address, bracketed with a port",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "[::1]:8080")],
                "ws://[::1]:9000/client/hubs/h", "-"),
            ("an IPv6 address, bare",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "0:0::1")],
                "ws://[::1]:9000/client/hubs/h", "-"),
            ("an IPv6 CIDR range",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "fd00::/8")],
                "ws://[fd12::5]/client/hubs/h", "-"),
            ("an IPv4 range does not match IPv6",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "0.0.0.0/0")],
                "ws://[::1]/client/hubs/h", "h:2"),
            ("an IP entry does not match a host name",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "127.0.0.1")],
                "ws://localhost/client/hubs/h", "h:2"),
            ("unreadable entries are skipped, the rest applies",
                &[("HTTP_PROXY", "http://h:2"), ("NO_PROXY", "10.0.0.0/99,a b,svc.local")],
                "ws://svc.local/client/hubs/h", "-"),
            ("lower-case no_proxy beats upper case",
                &[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "azure.com"), ("no_proxy", "other.org")], WSS, "s:1"),
            ("loopback is proxied unless NO_PROXY names it, as with curl",
                &[("HTTP_PROXY", "http://h:2")], "ws://127.0.0.1:8080/client/hubs/h", "h:2"),
        ];
        let mut failures = Vec::new();
        for (what, vars, url, want) in table {
            let got = resolve(vars, url);
            if got != *want {
                failures.push(format!(
                    "{what}: {url} with {vars:?}: got {got}, want {want}"
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn debug_shows_no_password_from_the_environment() {
        let e = env(&[
            ("HTTPS_PROXY", "http://u:SECRET@s:1"),
            ("ALL_PROXY", "socks5://u:SECRET@s:1"),
            ("NO_PROXY", "x.org"),
        ]);
        let shown = format!("{e:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("HTTPS_PROXY"), "{shown}");
    }
}
