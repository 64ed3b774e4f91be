//! The server-side REST API (PROTOCOL.md §10; data-plane API 2024-12-01): a request and its
//! body in, a [`Reply`] out — the socket side (`server`) reads and writes them.
//!
//! [`route`] is the route table, one line per operation, each a small function over
//! [`HubHandle`] (the same code as the in-process API). Paths under `/emulator/faults` go to
//! the fault routes (`faults`). Errors carry the service's error body
//! (`{"code","message","target"}`), checked in the service's order: API version, token,
//! parameters, content type, body.

use crate::exchange::{authorise, Answer, Query, Reply};
use crate::faults;
use crate::handle::HubHandle;
use crate::http::{percent_decode, Request};
use crate::hub::Audience;
use crate::odata::Filter;
use crate::shared::Shared;
use crate::types::Permission;
use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;
use webpubsub_protocol::{
    check_group_name, check_message_size, check_metadata, check_ttl_seconds, Data, Metadata,
    MAX_TTL_SECONDS,
};

/// The API versions accepted in `api-version` (the published ones).
const API_VERSIONS: [&str; 5] = [
    "2021-10-01",
    "2022-11-01",
    "2023-07-01",
    "2024-01-01",
    "2024-12-01",
];
/// The version named in `nextLink`s when the request named none.
const API_VERSION: &str = "2024-12-01";
/// The largest page of `GET /groups/{group}/connections` (and its default).
const MAX_PAGE: u64 = 200;
/// The request headers that carry message metadata: `X-WebPubSub-Metadata-<key>`.
const METADATA_HEADER: &str = "x-webpubsub-metadata-";

/// Answers one REST request: checks its API version and token, then routes it.
pub(crate) fn handle(shared: &Arc<Shared>, req: &Request, body: &[u8]) -> Reply {
    if faults::owns(req.path()) {
        return faults::handle(shared, req);
    }
    answer(shared, req, body).unwrap_or_else(|r| r)
}

fn answer(shared: &Arc<Shared>, req: &Request, body: &[u8]) -> Answer {
    let path = req.path();
    let method = req.method.to_ascii_uppercase();
    let query = Query::of(req);
    if path == "/api/health" || path.starts_with("/api/hubs/") {
        api_version(&query)?;
    }
    if path == "/api/health" && method == "HEAD" {
        return Ok(Reply::status(200));
    }
    let Some(tail) = path.strip_prefix("/api/hubs/") else {
        return Err(Reply::not_found(
            format!(
                "The emulator serves /client/hubs/{{hub}}, /api/health and /api/hubs/{{hub}}/..., not {} {}",
                req.method, path
            ),
            "path",
        ));
    };
    authorise(shared, req)?;
    let segs: Vec<String> = tail.split('/').map(percent_decode).collect();
    let Some((hub, rest)) = segs.split_first() else {
        return Err(Reply::bad_request("No hub in the path.", "hub"));
    };
    check_hub(hub)?;
    let call = Call {
        hub: HubHandle::new(shared.clone(), hub),
        shared,
        req,
        body,
        query,
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    route(&call, &method, &rest)
}

/// One REST call: its hub, request, body and decoded query.
struct Call<'a> {
    hub: HubHandle,
    shared: &'a Shared,
    req: &'a Request,
    body: &'a [u8],
    query: Query,
}

impl Call<'_> {
    fn excluded(&self) -> Vec<String> {
        self.query.all("excluded")
    }

    fn reason(&self) -> String {
        self.query.first("reason").unwrap_or_default().to_owned()
    }

    /// `targetName`, a group name when given.
    fn target_group(&self) -> Result<Option<String>, Reply> {
        match self.query.first("targetName") {
            Some(g) => group_name(g, "targetName").map(|()| Some(g.to_owned())),
            None => Ok(None),
        }
    }
}

/// The route table.
fn route(c: &Call<'_>, method: &str, path: &[&str]) -> Answer {
    match (method, path) {
        ("POST", [":send"]) => send(c, Audience::All),
        ("POST", ["users", user, ":send"]) => send(c, Audience::User(user)),
        ("POST", ["connections", id, ":send"]) => send(c, Audience::Connection(id)),
        ("POST", ["groups", group, ":send"]) => {
            group_name(group, "group")?;
            send(c, Audience::Group(group))
        }
        ("POST", [":addToGroups"]) => regroup(c, true),
        ("POST", [":removeFromGroups"]) => regroup(c, false),
        ("PUT", ["groups", group, "connections", id]) => add_connection_to_group(c, group, id),
        ("DELETE", ["groups", group, "connections", id]) => {
            remove_connection_from_group(c, group, id)
        }
        ("DELETE", ["connections", id, "groups"]) => remove_connection_from_all_groups(c, id),
        ("PUT", ["users", user, "groups", group]) => add_user_to_group(c, user, group),
        ("DELETE", ["users", user, "groups", group]) => remove_user_from_group(c, user, group),
        ("DELETE", ["users", user, "groups"]) => remove_user_from_all_groups(c, user),
        ("GET", ["groups", group, "connections"]) => list_group_connections(c, group),
        ("DELETE", ["connections", id]) => close_connection(c, id),
        ("POST", [":closeConnections"]) => close_all_connections(c),
        ("POST", ["groups", group, ":closeConnections"]) => close_group_connections(c, group),
        ("POST", ["users", user, ":closeConnections"]) => close_user_connections(c, user),
        ("HEAD", ["connections", id]) => Ok(Reply::exists(c.hub.connection_exists(id))),
        ("HEAD", ["groups", group]) => Ok(Reply::exists(c.hub.group_exists(group))),
        ("HEAD", ["users", user]) => Ok(Reply::exists(c.hub.user_exists(user))),
        ("PUT", ["permissions", perm, "connections", id]) => grant_permission(c, perm, id),
        ("DELETE", ["permissions", perm, "connections", id]) => revoke_permission(c, perm, id),
        ("HEAD", ["permissions", perm, "connections", id]) => check_permission(c, perm, id),
        ("POST", [":generateToken"]) => generate_token(c),
        _ => Err(Reply::not_found(
            format!(
                "The emulator does not serve {} {}",
                c.req.method,
                c.req.path()
            ),
            "path",
        )),
    }
}

// ---- checks ----

fn api_version(q: &Query) -> Result<(), Reply> {
    let versions = q.all("api-version");
    match versions.as_slice() {
        [] => Ok(()),
        [v] if API_VERSIONS.contains(&v.as_str()) => Ok(()),
        _ => Err(Reply::bad_request(
            format!(
                "The specified API version is not supported (supported: {}).",
                API_VERSIONS.join(", ")
            ),
            "api-version",
        )),
    }
}

/// The service's hub names: a letter, then up to 127 letters, digits or `_`, `` ` ``, `,`,
/// `.`, `[`, `]`.
fn check_hub(hub: &str) -> Result<(), Reply> {
    let mut chars = hub.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && hub.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_`,.[]".contains(c));
    if valid {
        return Ok(());
    }
    Err(Reply::bad_request(
        format!("Invalid hub name `{hub}`: a letter, then at most 127 letters, digits or _`,.[]"),
        "hub",
    ))
}

/// A group name the service accepts: 1 to 1024 characters, not only white space.
fn group_name(group: &str, target: &str) -> Result<(), Reply> {
    check_group_name(group)
        .map_err(|e| Reply::bad_request(format!("Invalid group name: {e}."), target))?;
    if group.trim().is_empty() {
        return Err(Reply::bad_request(
            "Invalid group name: it is only white space.",
            target,
        ));
    }
    Ok(())
}

fn filter_of(text: Option<&str>) -> Result<Option<Filter>, Reply> {
    match text {
        None | Some("") => Ok(None),
        Some(f) => Filter::parse(f)
            .map(Some)
            .map_err(|e| Reply::bad_request(e.to_string(), "filter")),
    }
}

// ---- sends ----

fn send(c: &Call<'_>, to: Audience<'_>) -> Answer {
    let ttl = match c
        .query
        .number("messageTtlSeconds", 0, u64::from(MAX_TTL_SECONDS))?
    {
        Some(ttl) => {
            let ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
            check_ttl_seconds(ttl)
                .map_err(|e| Reply::bad_request(e.to_string(), "messageTtlSeconds"))?;
            Some(Duration::from_secs(u64::from(ttl)))
        }
        None => None,
    };
    let filter = match to {
        // Sends to one connection take no filter.
        Audience::Connection(_) => None,
        _ => match c.query.all("filter").as_slice() {
            [] => None,
            [f] => filter_of(Some(f))?,
            _ => {
                return Err(Reply::bad_request(
                    "Invalid filter: it is given more than once.",
                    "filter",
                ))
            }
        },
    };
    let metadata = metadata(c.req)?;
    let data = payload(c.req, c.body)?;
    let excluded = match to {
        Audience::All | Audience::Group(_) => c.excluded(),
        _ => Vec::new(),
    };
    c.hub
        .send_where(to, data, metadata, ttl, &excluded, filter.as_ref());
    Ok(Reply::status(202))
}

/// The message metadata of `X-WebPubSub-Metadata-<key>` headers: keys in lower case,
/// values trimmed, the last header of a key winning; checked with the protocol's rules.
fn metadata(req: &Request) -> Result<Metadata, Reply> {
    let mut m = Metadata::new();
    for (name, value) in &req.headers {
        let Some(key) = name
            .get(..METADATA_HEADER.len())
            .filter(|p| p.eq_ignore_ascii_case(METADATA_HEADER))
            .map(|_| &name[METADATA_HEADER.len()..])
        else {
            continue;
        };
        m.insert(key.to_ascii_lowercase(), value.trim());
    }
    check_metadata(&m)
        .map_err(|e| Reply::bad_request(format!("Invalid metadata: {e}."), "metadata"))?;
    Ok(m)
}

/// The body as a payload, by content type (none: binary). An unknown content type or
/// charset is a 415; a body that is not what its type says, or over 1 MB, a 400.
fn payload(req: &Request, body: &[u8]) -> Result<Data, Reply> {
    let header = req.header("content-type").unwrap_or("").trim();
    let mut parts = header.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    let unsupported =
        |what: String| Reply::error(415, "Error.UnsupportedMediaType", what, "Content-Type");
    let text_charset = || match charset.as_deref() {
        None | Some("utf-8") | Some("utf8") | Some("us-ascii") => Ok(()),
        Some(other) => Err(unsupported(format!(
            "Unsupported charset `{other}`: the emulator reads UTF-8"
        ))),
    };
    check_message_size(body.len()).map_err(|e| Reply::bad_request(format!("{e}."), "message"))?;
    match media.as_str() {
        "" | "application/octet-stream" => Ok(Data::Binary(body.to_vec())),
        "text/plain" => {
            text_charset()?;
            String::from_utf8(body.to_vec())
                .map(Data::Text)
                .map_err(|_| Reply::bad_request("The text/plain body is not UTF-8.", "message"))
        }
        "application/json" => {
            text_charset()?;
            serde_json::from_slice(body)
                .map(Data::Json)
                .map_err(|e| Reply::bad_request(format!("The request body is not valid JSON: {e}."), "message"))
        }
        other => Err(unsupported(format!(
            "Unsupported Content-Type `{other}`: use text/plain, application/json or application/octet-stream"
        ))),
    }
}

// ---- groups ----

/// `:addToGroups` / `:removeFromGroups`: `{"groups": [...], "filter": "..."}`; without a
/// filter, every connection of the hub.
fn regroup(c: &Call<'_>, add: bool) -> Answer {
    let media = c.req.header("content-type").unwrap_or("");
    let json = media
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Reply::error(
            415,
            "Error.UnsupportedMediaType",
            "The body must be application/json: {\"groups\": [...], \"filter\": \"...\"}",
            "Content-Type",
        ));
    }
    let invalid = || {
        Reply::bad_request("The request body is not a valid groups request: {\"groups\": [\"g1\", ...], \"filter\": \"<OData filter>\"}.", "body")
    };
    let v: serde_json::Value = serde_json::from_slice(c.body).map_err(|_| invalid())?;
    let obj = v.as_object().ok_or_else(invalid)?;
    let groups: Vec<String> = match obj.get("groups") {
        Some(serde_json::Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|g| g.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(Reply::bad_request(
                "A nonempty list of valid group names is required in `groups`.",
                "groups",
            ))
        }
    };
    for g in &groups {
        group_name(g, "groups")?;
    }
    let filter = match obj.get("filter") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(f)) => filter_of(Some(f))?,
        Some(_) => return Err(invalid()),
    };
    c.hub.regroup_where(&groups, filter.as_ref(), add);
    Ok(Reply::status(200))
}

fn add_connection_to_group(c: &Call<'_>, group: &str, id: &str) -> Answer {
    group_name(group, "group")?;
    if c.hub.add_connection_to_group(group, id) {
        return Ok(Reply::status(200));
    }
    Err(Reply::not_found(
        format!("Connection `{id}` does not exist"),
        "connectionId",
    ))
}

fn remove_connection_from_group(c: &Call<'_>, group: &str, id: &str) -> Answer {
    group_name(group, "group")?;
    c.hub.remove_connection_from_group(group, id);
    Ok(Reply::status(204))
}

fn remove_connection_from_all_groups(c: &Call<'_>, id: &str) -> Answer {
    c.hub.remove_connection_from_all_groups(id);
    Ok(Reply::status(204))
}

fn add_user_to_group(c: &Call<'_>, user: &str, group: &str) -> Answer {
    group_name(group, "group")?;
    c.hub.add_user_to_group(user, group);
    Ok(Reply::status(200))
}

fn remove_user_from_group(c: &Call<'_>, user: &str, group: &str) -> Answer {
    group_name(group, "group")?;
    c.hub.remove_user_from_group(user, group);
    Ok(Reply::status(204))
}

fn remove_user_from_all_groups(c: &Call<'_>, user: &str) -> Answer {
    c.hub.remove_user_from_all_groups(user);
    Ok(Reply::status(204))
}

/// `GET /groups/{group}/connections`: pages in connection id order, `maxpagesize` (1 to
/// 200, default 200) at a time, `top` in all; the continuation token names the last
/// connection of the page, so members that come or go between pages shift nothing.
fn list_group_connections(c: &Call<'_>, group: &str) -> Answer {
    group_name(group, "group")?;
    let max = c
        .query
        .number("maxpagesize", 1, MAX_PAGE)?
        .unwrap_or(MAX_PAGE);
    let top = c.query.number("top", 1, i32::MAX as u64)?;
    let after = match c.query.single("continuationToken")? {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let size = top.map_or(max, |t| t.min(max));
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let (page, more) = c.hub.members_page(group, after.as_deref(), limit);
    let value: Vec<serde_json::Value> = page
        .iter()
        .map(|(id, user)| serde_json::json!({"connectionId": id, "userId": user}))
        .collect();
    let mut out = serde_json::json!({ "value": value });
    let shown = page.len() as u64;
    if more && top.is_none_or(|t| t > shown) {
        if let Some((last, _)) = page.last() {
            out["nextLink"] = next_link(c, max, top.map(|t| t - shown), last).into();
        }
    }
    Ok(Reply::json(200, out))
}

fn decode_token(token: &str) -> Result<String, Reply> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Reply::bad_request("Invalid continuationToken.", "continuationToken"))
}

/// The absolute URL of the next page, on the host the client reached.
fn next_link(c: &Call<'_>, max: u64, top: Option<u64>, last: &str) -> String {
    let base = match c.req.header("host") {
        Some(host) => format!("{}://{}", c.shared.cfg.scheme(), host.trim()),
        None => c.shared.cfg.endpoint.clone(),
    };
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last);
    let version = c.query.first("api-version").unwrap_or(API_VERSION);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("api-version", version)
        .append_pair("maxpagesize", &max.to_string())
        .append_pair("continuationToken", &token);
    if let Some(t) = top {
        q.append_pair("top", &t.to_string());
    }
    format!("{base}{}?{}", c.req.path(), q.finish())
}

// ---- connections ----

fn close_connection(c: &Call<'_>, id: &str) -> Answer {
    c.hub.close_connection(id, &c.reason());
    Ok(Reply::status(204))
}

fn close_all_connections(c: &Call<'_>) -> Answer {
    c.hub.close_all_connections(&c.excluded(), &c.reason());
    Ok(Reply::status(204))
}

fn close_group_connections(c: &Call<'_>, group: &str) -> Answer {
    group_name(group, "group")?;
    c.hub
        .close_group_connections(group, &c.excluded(), &c.reason());
    Ok(Reply::status(204))
}

fn close_user_connections(c: &Call<'_>, user: &str) -> Answer {
    c.hub
        .close_user_connections(user, &c.excluded(), &c.reason());
    Ok(Reply::status(204))
}

// ---- permissions ----

/// `sendToGroup` or `joinLeaveGroup`, else a 400 reply.
fn permission(name: &str) -> Result<Permission, Reply> {
    Permission::from_wire(name).ok_or_else(|| {
        Reply::bad_request(
            format!("Unknown permission `{name}`: sendToGroup or joinLeaveGroup"),
            "permission",
        )
    })
}

fn grant_permission(c: &Call<'_>, perm: &str, id: &str) -> Answer {
    let (p, group) = (permission(perm)?, c.target_group()?);
    if c.hub.grant_permission(id, p, group.as_deref()) {
        return Ok(Reply::status(200));
    }
    Err(Reply::not_found(
        format!("Connection `{id}` does not exist"),
        "connectionId",
    ))
}

fn revoke_permission(c: &Call<'_>, perm: &str, id: &str) -> Answer {
    let (p, group) = (permission(perm)?, c.target_group()?);
    c.hub.revoke_permission(id, p, group.as_deref());
    Ok(Reply::status(204))
}

fn check_permission(c: &Call<'_>, perm: &str, id: &str) -> Answer {
    let (p, group) = (permission(perm)?, c.target_group()?);
    Ok(Reply::exists(c.hub.has_permission(id, p, group.as_deref())))
}

// ---- tokens ----

/// `:generateToken`: `userId`, `role` and `group` (repeatable), `minutesToExpire` (whole
/// minutes, at least 1; default 60), `clientType` (`Default`; `MQTT` is not served).
fn generate_token(c: &Call<'_>) -> Answer {
    match c.query.single("clientType")? {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("Default") => {}
        Some(t) if t.eq_ignore_ascii_case("MQTT") => {
            return Err(Reply::error(
                501,
                "NotImplemented",
                "MQTT client tokens are not served by the emulator.",
                "clientType",
            ))
        }
        Some(t) => {
            return Err(Reply::bad_request(
                format!("Invalid clientType `{t}`: Default or MQTT"),
                "clientType",
            ))
        }
    }
    let groups = c.query.all("group");
    for g in &groups {
        group_name(g, "group")?;
    }
    let minutes = c
        .query
        .number("minutesToExpire", 1, i32::MAX as u64)?
        .unwrap_or(60);
    let mut b = c.hub.client_url();
    if let Some(user) = c.query.first("userId") {
        b = b.user_id(user);
    }
    let token = b
        .roles(c.query.all("role"))
        .groups(groups)
        .expires_in(Duration::from_secs(minutes.saturating_mul(60)))
        .token();
    Ok(Reply::json(200, serde_json::json!({ "token": token })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn req(head: &str) -> Request {
        parse_head(head.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn hub_names_follow_the_service_pattern() {
        for good in ["chat", "a", "Hub_1", "h`,.[]"] {
            assert!(check_hub(good).is_ok(), "{good}");
        }
        let long = format!("a{}", "b".repeat(128));
        for bad in ["", "1hub", "my hub", "h-1", "é", long.as_str()] {
            assert_eq!(check_hub(bad).err().map(|r| r.status), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn metadata_headers_become_lower_case_keys_and_bad_ones_are_400() {
        let r = req("POST / HTTP/1.1\r\nX-WebPubSub-Metadata-Trace-Id:  abc \r\nx-webpubsub-metadata-k: 1\r\nX-WEBPUBSUB-METADATA-K: 2\r\nX-Other: x\r\n\r\n");
        let m = metadata(&r).ok().unwrap();
        assert_eq!(m.get("trace-id"), Some("abc"));
        assert_eq!(m.get("k"), Some("2"), "the last header of a key wins");
        assert_eq!(m.len(), 2);
        let bad = req("POST / HTTP/1.1\r\nX-WebPubSub-Metadata-k: café\r\n\r\n");
        assert_eq!(metadata(&bad).err().map(|r| r.status), Some(400));
        let empty_key = req("POST / HTTP/1.1\r\nX-WebPubSub-Metadata-: v\r\n\r\n");
        assert_eq!(metadata(&empty_key).err().map(|r| r.status), Some(400));
    }

    #[test]
    fn payloads_follow_their_content_type() {
        let with = |ct: &str| req(&format!("POST / HTTP/1.1\r\nContent-Type: {ct}\r\n\r\n"));
        let none = req("POST / HTTP/1.1\r\n\r\n");
        assert_eq!(payload(&none, b"\x00").ok(), Some(Data::Binary(vec![0])));
        assert_eq!(
            payload(&with("text/plain; charset=UTF-8"), b"hi").ok(),
            Some(Data::Text("hi".into()))
        );
        assert_eq!(
            payload(&with("application/json"), b"[1]").ok(),
            Some(Data::Json(serde_json::json!([1])))
        );
        let status = |ct: &str, body: &[u8]| payload(&with(ct), body).err().map(|r| r.status);
        assert_eq!(status("application/xml", b"<a/>"), Some(415));
        assert_eq!(status("text/plain; charset=latin1", b"x"), Some(415));
        assert_eq!(status("text/plain", b"\xff"), Some(400));
        assert_eq!(status("application/json", b"{"), Some(400));
    }

    #[test]
    fn continuation_tokens_round_trip_and_garbage_is_400() {
        let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("conn-1");
        assert_eq!(decode_token(&t).ok().as_deref(), Some("conn-1"));
        assert_eq!(
            decode_token("*not base64*").err().map(|r| r.status),
            Some(400)
        );
    }
}
