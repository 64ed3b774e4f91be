//! The tokens of requests: which audiences this emulator answers to, and the checks of a
//! client upgrade's and a REST call's token (PROTOCOL.md §1, §10).

use crate::auth::{self, audience_matches, AuthError};
use crate::http::Request;
use crate::shared::Config;
use serde_json::{Map, Value};

/// The base URLs a token's audience may name: as the client reached us (Host header) and
/// the emulator's own endpoint.
fn bases(cfg: &Config, req: &Request) -> Vec<String> {
    let mut v = Vec::with_capacity(2);
    if let Some(host) = req.header("host") {
        v.push(format!("{}://{}", cfg.scheme(), host.trim()));
    }
    v.push(cfg.endpoint.clone());
    v
}

/// The claims of a client upgrade's access token (query `access_token` or a bearer
/// header), whose audience must be the hub's client endpoint.
pub(crate) fn client_claims(
    cfg: &Config,
    req: &Request,
    hub: &str,
) -> Result<Map<String, Value>, AuthError> {
    let token = req
        .query_param("access_token")
        .or_else(|| req.bearer().map(str::to_owned))
        .ok_or(AuthError::Missing)?;
    let claims = auth::verify(&token, &cfg.access_key)?;
    let mut accepted = Vec::new();
    for base in bases(cfg, req) {
        accepted.push(format!("{base}/client/hubs/{hub}"));
        accepted.push(format!("{base}/client/?hub={hub}"));
    }
    audience_matches(&claims, &accepted)?;
    Ok(claims)
}

/// Checks a REST call's bearer token: HS256 with the access key, `aud` = the request URL
/// (with or without its query).
pub(crate) fn check_rest(cfg: &Config, req: &Request) -> Result<(), AuthError> {
    let token = req.bearer().ok_or(AuthError::Missing)?;
    let claims = auth::verify(token, &cfg.access_key)?;
    let mut accepted = Vec::new();
    for base in bases(cfg, req) {
        accepted.push(format!("{base}{}", req.target));
        accepted.push(format!("{base}{}", req.path()));
    }
    audience_matches(&claims, &accepted)
}
