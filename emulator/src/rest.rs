//! The server-side REST API (PROTOCOL.md §10) on the same port, under `/api/hubs/{hub}`.
//!
//! Every operation goes through [`HubHandle`], the same code as the in-process API.

use super::auth::{self, audience_matches};
use super::http::{self, percent_decode, ReadError, Request};
use super::net::{Stream, Waiter};
use super::server::respond;
use super::upgrade::bases;
use super::{HubHandle, Observation, Permission};
use std::time::{Duration, Instant};
use webpubsub_protocol::{check_message_size, redact_query, Data};

/// A REST answer: status and optional JSON body.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: "text/plain; charset=utf-8",
        }
    }
    fn text(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: msg.into().into_bytes(),
            content_type: "text/plain; charset=utf-8",
        }
    }
    fn json(value: serde_json::Value) -> Reply {
        Reply {
            status: 200,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
        }
    }
    fn exists(b: bool) -> Reply {
        Reply::status(if b { 200 } else { 404 })
    }
}

/// Serves one REST request. Returns the bytes read past it to keep the connection, or
/// `None` to close it.
pub(crate) fn serve(
    w: &mut Waiter,
    s: &mut Stream,
    req: &Request,
    rest: Vec<u8>,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (body, left) = match http::read_body(w, s, req, rest, deadline) {
        Ok(b) => b,
        Err(ReadError::Bad(why)) => {
            let resp = http::response(400, "text/plain", why.as_bytes(), false, false);
            respond(w, s, &resp);
            return None;
        }
        Err(_) => return None,
    };
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let reply = route(w, req, &body);
    if reply.status >= 400 {
        log::info!(
            "emulator: REST {} {} -> {}",
            req.method,
            redact_query(&req.target),
            reply.status
        );
    }
    let keep_alive = !req.header_has("connection", "close");
    let resp = http::response(
        reply.status,
        reply.content_type,
        &reply.body,
        keep_alive,
        head_only,
    );
    if !respond(w, s, &resp) || !keep_alive {
        return None;
    }
    Some(left)
}

fn route(w: &mut Waiter, req: &Request, body: &[u8]) -> Reply {
    let Some(tail) = req.path().strip_prefix("/api/hubs/") else {
        return Reply::text(
            404,
            "Not found: the emulator serves /client/hubs/{hub} and /api/hubs/{hub}/...",
        );
    };
    // Authorise: HS256 with the access key, `aud` = the request URL (with or without query).
    let auth = match req.bearer() {
        None => Err(auth::AuthError::Missing),
        Some(t) => auth::verify(t, &w.shared.cfg.access_key).and_then(|claims| {
            let mut accepted = Vec::new();
            for base in bases(w, req) {
                accepted.push(format!("{base}{}", req.target));
                accepted.push(format!("{base}{}", req.path()));
            }
            audience_matches(&claims, &accepted)
        }),
    };
    if let Err(e) = auth {
        let reason = format!("Unauthorized: {e}");
        w.shared.observe(Observation::AuthRefused {
            status: 401,
            reason: reason.clone(),
        });
        return Reply::text(401, reason);
    }
    let segs: Vec<String> = tail.split('/').map(percent_decode).collect();
    let Some((hub_name, rest)) = segs.split_first() else {
        return Reply::text(404, "no hub");
    };
    if hub_name.is_empty() {
        return Reply::text(404, "no hub");
    }
    let hub = HubHandle::new(w.shared.clone(), hub_name);
    let q = req.query_pairs();
    let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let all = |name: &str| -> Vec<String> {
        q.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let excluded = all("excluded");
    let reason = param("reason").unwrap_or_default();
    let method = req.method.to_ascii_uppercase();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let data = || payload(req, body);

    match (method.as_str(), rest.as_slice()) {
        ("POST", [":send"]) => with_data(data(), |d| hub.send_to_all_except(d, &excluded)),
        ("POST", ["users", user, ":send"]) => with_data(data(), |d| hub.send_to_user(user, d)),
        ("POST", ["connections", id, ":send"]) => with_data(data(), |d| {
            hub.send_to_connection(id, d);
        }),
        ("POST", ["groups", group, ":send"]) => {
            with_data(data(), |d| hub.send_to_group_except(group, d, &excluded))
        }
        ("PUT", ["groups", group, "connections", id]) => {
            if hub.add_connection_to_group(group, id) {
                Reply::status(200)
            } else {
                Reply::text(404, "connection not found")
            }
        }
        ("DELETE", ["groups", group, "connections", id]) => {
            hub.remove_connection_from_group(group, id);
            Reply::status(204)
        }
        ("DELETE", ["connections", id, "groups"]) => {
            hub.remove_connection_from_all_groups(id);
            Reply::status(204)
        }
        ("PUT", ["users", user, "groups", group]) => {
            hub.add_user_to_group(user, group);
            Reply::status(200)
        }
        ("DELETE", ["users", user, "groups", group]) => {
            hub.remove_user_from_group(user, group);
            Reply::status(204)
        }
        ("DELETE", ["users", user, "groups"]) => {
            hub.remove_user_from_all_groups(user);
            Reply::status(204)
        }
        ("DELETE", ["connections", id]) => {
            hub.close_connection(id, &reason);
            Reply::status(204)
        }
        ("POST", [":closeConnections"]) => {
            hub.close_all_connections(&excluded, &reason);
            Reply::status(204)
        }
        ("POST", ["groups", group, ":closeConnections"]) => {
            for id in hub.group_members(group) {
                if !excluded.contains(&id) {
                    hub.close_connection(&id, &reason);
                }
            }
            Reply::status(204)
        }
        ("POST", ["users", user, ":closeConnections"]) => {
            for c in hub.connections() {
                if c.user_id.as_deref() == Some(*user) && !excluded.contains(&c.connection_id) {
                    hub.close_connection(&c.connection_id, &reason);
                }
            }
            Reply::status(204)
        }
        ("HEAD", ["connections", id]) => Reply::exists(hub.connection_exists(id)),
        ("HEAD", ["groups", group]) => Reply::exists(hub.group_exists(group)),
        ("HEAD", ["users", user]) => Reply::exists(hub.user_exists(user)),
        ("GET", ["groups", group, "connections"]) => {
            let conns = hub.connections();
            let value: Vec<serde_json::Value> = hub
                .group_members(group)
                .into_iter()
                .map(|id| {
                    let user = conns
                        .iter()
                        .find(|c| c.connection_id == id)
                        .and_then(|c| c.user_id.clone());
                    serde_json::json!({"connectionId": id, "userId": user})
                })
                .collect();
            Reply::json(serde_json::json!({ "value": value }))
        }
        (m @ ("PUT" | "DELETE" | "HEAD"), ["permissions", perm, "connections", id]) => {
            let Some(perm) = Permission::from_wire(perm) else {
                return Reply::text(400, format!("unknown permission `{perm}`"));
            };
            let target = param("targetName");
            match m {
                "PUT" => {
                    if hub.grant_permission(id, perm, target.as_deref()) {
                        Reply::status(200)
                    } else {
                        Reply::text(404, "connection not found")
                    }
                }
                "DELETE" => {
                    hub.revoke_permission(id, perm, target.as_deref());
                    Reply::status(204)
                }
                _ => Reply::exists(hub.has_permission(id, perm, target.as_deref())),
            }
        }
        ("POST", [":generateToken"]) => {
            let mut b = hub.client_url();
            if let Some(user) = param("userId") {
                b = b.user_id(user);
            }
            b = b.roles(all("role")).groups(all("group"));
            if let Some(m) = param("minutesToExpire") {
                match m.parse::<u64>() {
                    Ok(m) => b = b.expires_in(Duration::from_secs(m * 60)),
                    Err(_) => return Reply::text(400, "minutesToExpire must be a whole number"),
                }
            }
            Reply::json(serde_json::json!({ "token": b.token() }))
        }
        _ => Reply::text(
            404,
            format!("The emulator does not serve {} {}", req.method, req.path()),
        ),
    }
}

fn with_data(data: Result<Data, String>, f: impl FnOnce(Data)) -> Reply {
    match data {
        Ok(d) => {
            f(d);
            Reply::status(202)
        }
        Err(e) => Reply::text(400, e),
    }
}

/// The body as a payload, by content type. The 1 MB limit measures the body.
fn payload(req: &Request, body: &[u8]) -> Result<Data, String> {
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    check_message_size(body.len()).map_err(|e| e.to_string())?;
    match ct.as_str() {
        "text/plain" => String::from_utf8(body.to_vec())
            .map(Data::Text)
            .map_err(|_| "text/plain body is not UTF-8".to_owned()),
        "application/json" => serde_json::from_slice(body)
            .map(Data::Json)
            .map_err(|e| format!("application/json body is not JSON: {e}")),
        "application/octet-stream" => Ok(Data::Binary(body.to_vec())),
        other => Err(format!(
            "unsupported Content-Type `{other}`: use text/plain, application/json or application/octet-stream"
        )),
    }
}
