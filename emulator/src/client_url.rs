//! Client access URLs and tokens, signed as the server SDKs sign them.

use crate::auth;
use crate::shared::Config;
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Builds a client access URL (`ws://HOST/client/hubs/{hub}?access_token=JWT`) as the
/// server SDKs do (PROTOCOL.md §1).
#[derive(Clone)]
pub struct ClientUrlBuilder {
    endpoint: String,
    key: String,
    hub: String,
    user_id: Option<String>,
    roles: Vec<String>,
    groups: Vec<String>,
    expires_in: Duration,
}

impl fmt::Debug for ClientUrlBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientUrlBuilder")
            .field("endpoint", &self.endpoint)
            .field("hub", &self.hub)
            .field("user_id", &self.user_id)
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl ClientUrlBuilder {
    pub(crate) fn new(cfg: &Config, hub: &str) -> ClientUrlBuilder {
        ClientUrlBuilder {
            endpoint: cfg.endpoint.clone(),
            key: cfg.access_key.clone(),
            hub: hub.to_owned(),
            user_id: None,
            roles: Vec::new(),
            groups: Vec::new(),
            expires_in: Duration::from_secs(3600),
        }
    }

    /// The user (`sub` claim). Defaults to none.
    pub fn user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Adds a role, e.g. `webpubsub.joinLeaveGroup` or `webpubsub.sendToGroup.room`.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Adds roles.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds a group joined on connect (`webpubsub.group` claim).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Adds groups joined on connect.
    pub fn groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// The token's lifetime. Defaults to one hour. `Duration::ZERO` gives a token that is
    /// already expired once the 5 s clock-skew allowance passes.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = d;
        self
    }

    /// The access token alone.
    pub fn token(&self) -> String {
        let now = auth::now_secs();
        let mut claims = Map::new();
        claims.insert(
            "aud".into(),
            Value::String(format!(
                "{}/client/hubs/{}",
                self.endpoint.to_ascii_lowercase().trim_end_matches('/'),
                self.hub
            )),
        );
        claims.insert("iat".into(), now.into());
        claims.insert(
            "exp".into(),
            now.saturating_add(self.expires_in.as_secs()).into(),
        );
        if let Some(u) = &self.user_id {
            claims.insert("sub".into(), Value::String(u.clone()));
        }
        if !self.roles.is_empty() {
            claims.insert("role".into(), self.roles.clone().into());
        }
        if !self.groups.is_empty() {
            claims.insert("webpubsub.group".into(), self.groups.clone().into());
        }
        auth::sign(&claims, &self.key)
    }

    /// The client access URL.
    pub fn build(&self) -> String {
        let ws = if let Some(rest) = self.endpoint.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.endpoint.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.endpoint.clone()
        };
        let hub: String = url::form_urlencoded::byte_serialize(self.hub.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("{ws}/client/hubs/{hub}?access_token={}", self.token())
    }
}

/// Signs a token for a REST request to `url` (`aud` = the URL), valid for `ttl`.
///
/// What the server SDKs do for each REST call; handy for tests that call the REST API
/// with a plain HTTP client.
pub fn rest_token(access_key: &str, url: &str, ttl: Duration) -> String {
    let mut claims = Map::new();
    claims.insert("aud".into(), Value::String(url.to_owned()));
    claims.insert(
        "exp".into(),
        auth::now_secs().saturating_add(ttl.as_secs()).into(),
    );
    auth::sign(&claims, access_key)
}
