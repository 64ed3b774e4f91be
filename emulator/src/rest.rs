//! The server-side REST API (PROTOCOL.md §10) under `/api/hubs/{hub}`: a request and its
//! body in, a [`Reply`] out — the socket side (`server`) reads and writes them.
//!
//! [`route`] is the route table, one line per operation, each a small function over
//! [`HubHandle`] (the same code as the in-process API).

use crate::access;
use crate::handle::HubHandle;
use crate::http::{percent_decode, Request};
use crate::shared::Shared;
use crate::types::{Observation, Permission};
use std::sync::Arc;
use std::time::Duration;
use webpubsub_protocol::{check_message_size, Data};

/// A REST answer: status, body and its content type.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
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

    fn found(b: bool, status: u16) -> Reply {
        if b {
            Reply::status(status)
        } else {
            Reply::text(404, "connection not found")
        }
    }
}

/// Answers one REST request: authorises it, then routes it.
pub(crate) fn handle(shared: &Arc<Shared>, req: &Request, body: &[u8]) -> Reply {
    let Some(tail) = req.path().strip_prefix("/api/hubs/") else {
        return Reply::text(
            404,
            "Not found: the emulator serves /client/hubs/{hub} and /api/hubs/{hub}/...",
        );
    };
    if let Err(e) = access::check_rest(&shared.cfg, req) {
        let reason = format!("Unauthorized: {e}");
        shared.observe(Observation::AuthRefused {
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
    let call = Call {
        hub: HubHandle::new(shared.clone(), hub_name),
        req,
        body,
        query: req.query_pairs(),
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    route(&call, &req.method.to_ascii_uppercase(), &rest)
}

/// One REST call: its hub, request, body and decoded query.
struct Call<'a> {
    hub: HubHandle,
    req: &'a Request,
    body: &'a [u8],
    query: Vec<(String, String)>,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn excluded(&self) -> Vec<String> {
        self.all("excluded")
    }

    fn reason(&self) -> String {
        self.param("reason").unwrap_or_default()
    }

    /// Runs `f` with the body as a payload (202), or says why the body is not one (400).
    fn with_data(&self, f: impl FnOnce(Data)) -> Reply {
        match payload(self.req, self.body) {
            Ok(d) => {
                f(d);
                Reply::status(202)
            }
            Err(e) => Reply::text(400, e),
        }
    }
}

/// The route table.
fn route(c: &Call<'_>, method: &str, path: &[&str]) -> Reply {
    match (method, path) {
        ("POST", [":send"]) => send_to_all(c),
        ("POST", ["users", user, ":send"]) => send_to_user(c, user),
        ("POST", ["connections", id, ":send"]) => send_to_connection(c, id),
        ("POST", ["groups", group, ":send"]) => send_to_group(c, group),
        ("PUT", ["groups", group, "connections", id]) => add_connection_to_group(c, group, id),
        ("DELETE", ["groups", group, "connections", id]) => {
            remove_connection_from_group(c, group, id)
        }
        ("DELETE", ["connections", id, "groups"]) => remove_connection_from_all_groups(c, id),
        ("PUT", ["users", user, "groups", group]) => add_user_to_group(c, user, group),
        ("DELETE", ["users", user, "groups", group]) => remove_user_from_group(c, user, group),
        ("DELETE", ["users", user, "groups"]) => remove_user_from_all_groups(c, user),
        ("DELETE", ["connections", id]) => close_connection(c, id),
        ("POST", [":closeConnections"]) => close_all_connections(c),
        ("POST", ["groups", group, ":closeConnections"]) => close_group_connections(c, group),
        ("POST", ["users", user, ":closeConnections"]) => close_user_connections(c, user),
        ("HEAD", ["connections", id]) => Reply::exists(c.hub.connection_exists(id)),
        ("HEAD", ["groups", group]) => Reply::exists(c.hub.group_exists(group)),
        ("HEAD", ["users", user]) => Reply::exists(c.hub.user_exists(user)),
        ("GET", ["groups", group, "connections"]) => list_group_connections(c, group),
        ("PUT", ["permissions", perm, "connections", id]) => grant_permission(c, perm, id),
        ("DELETE", ["permissions", perm, "connections", id]) => revoke_permission(c, perm, id),
        ("HEAD", ["permissions", perm, "connections", id]) => check_permission(c, perm, id),
        ("POST", [":generateToken"]) => generate_token(c),
        _ => Reply::text(
            404,
            format!(
                "The emulator does not serve {} {}",
                c.req.method,
                c.req.path()
            ),
        ),
    }
}

// ---- sends ----

fn send_to_all(c: &Call<'_>) -> Reply {
    c.with_data(|d| c.hub.send_to_all_except(d, &c.excluded()))
}

fn send_to_user(c: &Call<'_>, user: &str) -> Reply {
    c.with_data(|d| c.hub.send_to_user(user, d))
}

fn send_to_connection(c: &Call<'_>, id: &str) -> Reply {
    c.with_data(|d| {
        c.hub.send_to_connection(id, d);
    })
}

fn send_to_group(c: &Call<'_>, group: &str) -> Reply {
    c.with_data(|d| c.hub.send_to_group_except(group, d, &c.excluded()))
}

// ---- groups ----

fn add_connection_to_group(c: &Call<'_>, group: &str, id: &str) -> Reply {
    Reply::found(c.hub.add_connection_to_group(group, id), 200)
}

fn remove_connection_from_group(c: &Call<'_>, group: &str, id: &str) -> Reply {
    c.hub.remove_connection_from_group(group, id);
    Reply::status(204)
}

fn remove_connection_from_all_groups(c: &Call<'_>, id: &str) -> Reply {
    c.hub.remove_connection_from_all_groups(id);
    Reply::status(204)
}

fn add_user_to_group(c: &Call<'_>, user: &str, group: &str) -> Reply {
    c.hub.add_user_to_group(user, group);
    Reply::status(200)
}

fn remove_user_from_group(c: &Call<'_>, user: &str, group: &str) -> Reply {
    c.hub.remove_user_from_group(user, group);
    Reply::status(204)
}

fn remove_user_from_all_groups(c: &Call<'_>, user: &str) -> Reply {
    c.hub.remove_user_from_all_groups(user);
    Reply::status(204)
}

fn list_group_connections(c: &Call<'_>, group: &str) -> Reply {
    let conns = c.hub.connections();
    let value: Vec<serde_json::Value> = c
        .hub
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

// ---- connections ----

fn close_connection(c: &Call<'_>, id: &str) -> Reply {
    c.hub.close_connection(id, &c.reason());
    Reply::status(204)
}

fn close_all_connections(c: &Call<'_>) -> Reply {
    c.hub.close_all_connections(&c.excluded(), &c.reason());
    Reply::status(204)
}

fn close_group_connections(c: &Call<'_>, group: &str) -> Reply {
    let (excluded, reason) = (c.excluded(), c.reason());
    for id in c.hub.group_members(group) {
        if !excluded.contains(&id) {
            c.hub.close_connection(&id, &reason);
        }
    }
    Reply::status(204)
}

fn close_user_connections(c: &Call<'_>, user: &str) -> Reply {
    let (excluded, reason) = (c.excluded(), c.reason());
    for conn in c.hub.connections() {
        if conn.user_id.as_deref() == Some(user) && !excluded.contains(&conn.connection_id) {
            c.hub.close_connection(&conn.connection_id, &reason);
        }
    }
    Reply::status(204)
}

// ---- permissions ----

/// `sendToGroup` or `joinLeaveGroup`, else a 400 reply.
fn permission(name: &str) -> Result<Permission, Reply> {
    Permission::from_wire(name)
        .ok_or_else(|| Reply::text(400, format!("unknown permission `{name}`")))
}

fn grant_permission(c: &Call<'_>, perm: &str, id: &str) -> Reply {
    match permission(perm) {
        Ok(p) => Reply::found(
            c.hub
                .grant_permission(id, p, c.param("targetName").as_deref()),
            200,
        ),
        Err(r) => r,
    }
}

fn revoke_permission(c: &Call<'_>, perm: &str, id: &str) -> Reply {
    match permission(perm) {
        Ok(p) => {
            c.hub
                .revoke_permission(id, p, c.param("targetName").as_deref());
            Reply::status(204)
        }
        Err(r) => r,
    }
}

fn check_permission(c: &Call<'_>, perm: &str, id: &str) -> Reply {
    match permission(perm) {
        Ok(p) => Reply::exists(
            c.hub
                .has_permission(id, p, c.param("targetName").as_deref()),
        ),
        Err(r) => r,
    }
}

// ---- tokens ----

fn generate_token(c: &Call<'_>) -> Reply {
    let mut b = c.hub.client_url();
    if let Some(user) = c.param("userId") {
        b = b.user_id(user);
    }
    b = b.roles(c.all("role")).groups(c.all("group"));
    if let Some(m) = c.param("minutesToExpire") {
        match m.parse::<u64>() {
            Ok(m) => b = b.expires_in(Duration::from_secs(m.saturating_mul(60))),
            Err(_) => return Reply::text(400, "minutesToExpire must be a whole number"),
        }
    }
    Reply::json(serde_json::json!({ "token": b.token() }))
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
