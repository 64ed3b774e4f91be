//! Access URLs: validation (B35), the recovery URL (B18) and redaction of tokens (B37).

use crate::error::{Error, InvalidInput};
use crate::protocol::redact_query;
use std::fmt;
use url::Url;

/// A checked client access URL (`ws[s]://host/client/hubs/{hub}?access_token=...`).
///
/// Its `Debug` and `Display` redact the tokens.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AccessUrl {
    url: Url,
}

impl AccessUrl {
    /// Parses and checks an access URL: scheme ws/wss/http/https (http(s) becomes ws(s)), a
    /// host, and a hub in the path (`/client/hubs/{hub}`) or the query (`hub=`).
    pub(crate) fn parse(text: &str) -> Result<AccessUrl, Error> {
        let bad = |why: String| Error::InvalidInput(InvalidInput::Url(why));
        // `url`'s own messages never quote the input, so they are safe to pass on.
        let mut url = Url::parse(text.trim()).map_err(|e| bad(e.to_string()))?;
        let scheme = match url.scheme() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            other => {
                return Err(bad(format!(
                    "scheme `{other}` is not one of ws, wss, http, https"
                )))
            }
        };
        if url.scheme() != scheme {
            // Switching between special schemes always succeeds.
            let _ = url.set_scheme(scheme);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        let in_path = {
            let segs: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
            segs.windows(3)
                .any(|w| w[0] == "client" && w[1] == "hubs" && !w[2].is_empty())
        };
        let in_query = url.query_pairs().any(|(k, v)| k == "hub" && !v.is_empty());
        if !in_path && !in_query {
            return Err(bad(
                "no hub: expected a path `/client/hubs/{hub}` or a query parameter `hub=`".into(),
            ));
        }
        url.set_fragment(None);
        Ok(AccessUrl { url })
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    pub(crate) fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    pub(crate) fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// The recovery URL: this URL plus `awps_connection_id` and `awps_reconnection_token`
    /// (replacing any earlier ones), percent-encoded (B18).
    pub(crate) fn recovery(&self, connection_id: &str, reconnection_token: &str) -> AccessUrl {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "awps_connection_id" && k != "awps_reconnection_token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            q.append_pair("awps_connection_id", connection_id);
            q.append_pair("awps_reconnection_token", reconnection_token);
        }
        AccessUrl { url }
    }
}

impl fmt::Display for AccessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for AccessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessUrl({self})")
    }
}

/// The URL with the values of secret query parameters (the protocol's list: the access
/// token, the reconnection token, ...) replaced by the protocol's marker; also drops any user
/// info.
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    redact_query(shown.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> String {
        match AccessUrl::parse(text) {
            Err(Error::InvalidInput(InvalidInput::Url(why))) => why,
            other => panic!("expected an invalid URL error for {text}, got {other:?}"),
        }
    }

    #[test]
    fn http_schemes_map_to_websocket_schemes() {
        let u =
            AccessUrl::parse("https://x.webpubsub.azure.com/client/hubs/h?access_token=t").unwrap();
        assert_eq!(u.url().scheme(), "wss");
        assert_eq!(u.port(), 443);
        let u = AccessUrl::parse("http://127.0.0.1:8080/client/hubs/h").unwrap();
        assert_eq!(u.url().scheme(), "ws");
        assert_eq!(u.port(), 8080);
        assert!(!u.is_tls());
    }

    #[test]
    fn hub_may_be_in_the_query() {
        assert!(AccessUrl::parse("wss://x/client/?hub=chat&access_token=t").is_ok());
    }

    #[test]
    fn invalid_urls_are_typed_errors() {
        assert!(invalid("ftp://x/client/hubs/h").contains("scheme"));
        assert!(invalid("wss://x/client/").contains("no hub"));
        assert!(invalid("wss://x/client/hubs/").contains("no hub"));
        invalid("not a url");
        invalid("");
    }

    #[test]
    fn tokens_are_redacted_in_display_and_debug() {
        let u = AccessUrl::parse("wss://x/client/hubs/h?access_token=SECRET1&x=1").unwrap();
        let r = u.recovery("conn 1", "SECRET2");
        for shown in [
            u.to_string(),
            format!("{u:?}"),
            r.to_string(),
            format!("{r:?}"),
        ] {
            assert!(!shown.contains("SECRET"), "{shown}");
        }
        assert!(u
            .to_string()
            .contains(&format!("access_token={}", crate::protocol::REDACTED)));
        assert!(r.to_string().contains("awps_connection_id=conn+1"));
    }

    #[test]
    fn user_info_is_dropped_and_the_rest_is_kept() {
        let u = AccessUrl::parse("wss://me:pw@x/client/hubs/h?hub=h&access_token=t").unwrap();
        assert_eq!(
            u.to_string(),
            format!(
                "wss://x/client/hubs/h?hub=h&access_token={}",
                crate::protocol::REDACTED
            )
        );
    }

    #[test]
    fn recovery_url_adds_percent_encoded_parameters_once() {
        let u = AccessUrl::parse("ws://x/client/hubs/h?access_token=a%2Bb").unwrap();
        let r = u.recovery("c/1", "t+k=");
        let again = r.recovery("c/1", "new");
        let pairs: Vec<(String, String)> = again
            .url()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("access_token".into(), "a+b".into()),
                ("awps_connection_id".into(), "c/1".into()),
                ("awps_reconnection_token".into(), "new".into()),
            ]
        );
    }
}
