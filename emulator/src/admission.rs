//! The decisions of a WebSocket upgrade on a client path, apart from the socket: is it a
//! WebSocket handshake, which subprotocol (or none: a simple client), a recovery or a new
//! connection, is its token good, what the connect event handler changed — and the
//! sessions they make (PROTOCOL.md §1, §2, §7; UPSTREAM.md §3).
//!
//! `upgrade` writes the answers these decisions call for.

use crate::access;
use crate::auth::{self, string_list};
use crate::frames::Speaks;
use crate::http::{percent_decode, Request};
use crate::hub::Hub;
use crate::session::{Grants, Opening, SendToGroupMode, Session};
use crate::shared::Shared;
use crate::types::Observation;
use crate::upstream::{ConnectAccepted, ConnectRequest, UpstreamConnection};
use crate::wake::Link;
use serde_json::{Map, Value};
use std::sync::Arc;
use webpubsub_protocol::{check_group_name, redact_query, Subprotocol};

/// The hub named by a client path, if the path is a client endpoint.
pub(crate) fn client_hub(req: &Request) -> Option<String> {
    let path = req.path();
    if let Some(rest) = path.strip_prefix("/client/hubs/") {
        let hub = rest.trim_end_matches('/');
        if hub.is_empty() || hub.contains('/') {
            return None;
        }
        return Some(percent_decode(hub));
    }
    if path == "/client" || path == "/client/" {
        return req.query_param("hub").filter(|h| !h.is_empty());
    }
    None
}

/// An upgrade answered with an HTTP error instead of a WebSocket.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    fn bad_request(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            reason: reason.into(),
        }
    }
}

/// Logs a refusal, and reports it when it is about the token.
pub(crate) fn refused(shared: &Shared, req: &Request, r: &Refusal) {
    log::info!(
        "emulator: refused upgrade {} {}: {} {}",
        req.method,
        redact_query(&req.target),
        r.status,
        r.reason
    );
    if r.status == 401 {
        shared.observe(Observation::AuthRefused {
            status: r.status,
            reason: r.reason.clone(),
        });
    }
}

/// A WebSocket handshake the emulator accepts.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// Every subprotocol offered, in the client's order.
    pub offered: Vec<String>,
    /// The subprotocol chosen, as the client spelled it (the 101 answers with it); none
    /// for a simple client, unless the connect handler picked one the service does not
    /// speak.
    pub subprotocol: Option<String>,
    /// What the connection speaks: the codec of every frame.
    pub speaks: Speaks,
}

/// Every `Sec-WebSocket-Protocol` value offered, in the client's order.
fn offered(req: &Request) -> Vec<String> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(',').map(|p| p.trim().to_owned()))
        .collect()
}

/// The first subprotocol offered that the emulator speaks, as spelled and as known.
fn negotiate(offered: &[String]) -> Option<(&String, Subprotocol)> {
    offered
        .iter()
        .find_map(|name| Subprotocol::from_name(name).map(|p| (name, p)))
}

/// Checks the handshake and picks the first of the four PubSub subprotocols (JSON and
/// protobuf, plain and reliable) that the client offers; a client that offers none of them
/// is a simple WebSocket client.
pub(crate) fn handshake(req: &Request) -> Result<Handshake, Refusal> {
    let upgrade = req.method.eq_ignore_ascii_case("GET") && req.header_has("upgrade", "websocket");
    let (true, Some(key)) = (upgrade, req.header("sec-websocket-key")) else {
        return Err(Refusal::bad_request(
            "Expected a WebSocket upgrade (GET with Upgrade: websocket)",
        ));
    };
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal::bad_request(
            "Unsupported Sec-WebSocket-Version (expected 13)",
        ));
    }
    let offered = offered(req);
    let (subprotocol, speaks) = match negotiate(&offered) {
        Some((name, p)) => (Some(name.clone()), Speaks::PubSub(p)),
        None => (None, Speaks::Simple),
    };
    Ok(Handshake {
        key: key.trim().to_owned(),
        offered,
        subprotocol,
        speaks,
    })
}

/// A recovery's two query parameters (the access token is ignored for recovery), and the
/// subprotocol the new socket speaks.
pub(crate) struct RecoveryAttempt {
    pub connection_id: String,
    token: String,
    subprotocol: Option<Subprotocol>,
}

/// The recovery an upgrade asks for, if it is one.
pub(crate) fn recovery_attempt(req: &Request) -> Option<RecoveryAttempt> {
    Some(RecoveryAttempt {
        connection_id: req.query_param("awps_connection_id")?,
        token: req.query_param("awps_reconnection_token")?,
        subprotocol: negotiate(&offered(req)).map(|(_, p)| p),
    })
}

/// The session a recovery may take, if it may: recoveries are not refused on purpose, and
/// the session accepts the token, over the subprotocol it speaks, inside its window.
pub(crate) fn recoverable(
    shared: &Shared,
    hub: &Hub,
    attempt: &RecoveryAttempt,
) -> Option<Arc<Session>> {
    let session = hub.session(&attempt.connection_id)?;
    let valid = !shared.refuses_recoveries()
        && attempt.subprotocol.is_some_and(|p| {
            session.accepts_recovery(&attempt.token, p, shared.cfg.recovery_window)
        });
    valid.then_some(session)
}

/// Reports a refused recovery (the socket is then closed with 1008).
pub(crate) fn recovery_refused(shared: &Shared, hub: &Hub, attempt: RecoveryAttempt) {
    log::info!(
        "emulator: refused recovery of {} in hub {}",
        attempt.connection_id,
        hub.name()
    );
    shared.observe(Observation::RecoveryRefused {
        hub: hub.name().to_owned(),
        connection_id: attempt.connection_id,
    });
}

/// The session moves to the socket of `link`, with a fresh reconnection token.
pub(crate) fn recover(shared: &Shared, hub: &Hub, session: &Session, link: Arc<Link>) {
    session.attach(link, auth::random_token(32));
    log::debug!("emulator: recovered {} in hub {}", session.id(), hub.name());
    shared.observe(Observation::Recovered {
        hub: hub.name().to_owned(),
        connection_id: session.id().to_owned(),
    });
}

/// What a new connection's token gives it (and, once it answered, the connect event
/// handler).
pub(crate) struct Admitted {
    /// Made before the connect event, which names it.
    pub connection_id: String,
    user_id: Option<String>,
    grants: Grants,
    groups: Vec<String>,
    claims: Map<String, Value>,
    send_mode: Option<SendToGroupMode>,
    /// Its side of the hub's event handlers, when the hub has any.
    pub upstream: Option<UpstreamConnection>,
}

/// Checks a new connection's access token (HTTP 401 if refused) and, for a simple client,
/// its `webpubsub_mode` (400 if it is not `sendToGroup` with a valid group).
pub(crate) fn admit(
    shared: &Shared,
    req: &Request,
    hub: &str,
    hs: &Handshake,
) -> Result<Admitted, Refusal> {
    let claims = access::client_claims(&shared.cfg, req, hub).map_err(|e| Refusal {
        status: 401,
        reason: format!("Unauthorized: {e}"),
    })?;
    // As Microsoft's emulator: the mode is read only from a client that offers no PubSub
    // subprotocol.
    let send_mode = match hs.speaks {
        Speaks::Simple => send_mode(req)?,
        Speaks::PubSub(_) => None,
    };
    let connection_id = auth::random_token(15);
    let upstream = shared
        .upstream
        .serves(hub)
        .then(|| shared.upstream.connection(hub, &connection_id));
    Ok(Admitted {
        connection_id,
        user_id: claims
            .get("sub")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        grants: Grants::from_roles(&string_list(&claims, "role")),
        groups: string_list(&claims, "webpubsub.group"),
        claims,
        send_mode,
        upstream,
    })
}

/// A simple client's `webpubsub_mode=sendToGroup&group=G[&noEcho=true]`, if it asks for it.
fn send_mode(req: &Request) -> Result<Option<SendToGroupMode>, Refusal> {
    let Some(mode) = req.query_param("webpubsub_mode") else {
        return Ok(None);
    };
    if !mode.eq_ignore_ascii_case("sendToGroup") {
        return Err(Refusal::bad_request(format!(
            "Unsupported webpubsub_mode `{mode}`: only sendToGroup is"
        )));
    }
    let group = req.query_param("group").unwrap_or_default();
    if let Err(e) = check_group_name(&group) {
        return Err(Refusal::bad_request(format!(
            "Invalid group for webpubsub_mode=sendToGroup: {e}"
        )));
    }
    let no_echo = req
        .query_param("noEcho")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Some(SendToGroupMode { group, no_echo }))
}

/// The connect event of an admitted connection: the token's user and claims, the upgrade's
/// query and headers (the engine leaves the token out), the subprotocols offered.
pub(crate) fn connect_request(
    req: &Request,
    admitted: &Admitted,
    hs: &Handshake,
) -> ConnectRequest {
    let mut c = ConnectRequest::new().claims(admitted.claims.clone());
    if let Some(u) = &admitted.user_id {
        c = c.user_id(u.clone());
    }
    for (k, v) in req.query_pairs() {
        c = c.query(k, v);
    }
    for (k, v) in &req.headers {
        c = c.header(k.clone(), v.clone());
    }
    for p in &hs.offered {
        c = c.subprotocol(p.clone());
    }
    c
}

/// The connect event handler accepted: its answer shapes the connection. A user id, roles
/// or groups replace the token's; a subprotocol (one the client offered: the engine checked)
/// becomes the connection's — one the service does not speak makes a simple client.
pub(crate) fn shape(admitted: &mut Admitted, hs: &mut Handshake, accepted: ConnectAccepted) {
    if let Some(user) = accepted.user_id {
        admitted.user_id = Some(user);
    }
    if let Some(roles) = accepted.roles {
        admitted.grants = Grants::from_roles(&roles);
    }
    if let Some(groups) = accepted.groups {
        admitted.groups = groups;
    }
    if let Some(p) = accepted.subprotocol {
        hs.speaks = Subprotocol::from_name(&p).map_or(Speaks::Simple, Speaks::PubSub);
        hs.subprotocol = Some(p);
    }
}

/// A new session on the socket of `link`, in its hub and its groups; the event handler is
/// told it is `connected` once its `connected` message is queued.
pub(crate) fn open(
    shared: &Shared,
    hub: &Hub,
    admitted: Admitted,
    hs: &Handshake,
    link: Arc<Link>,
) -> Arc<Session> {
    let Admitted {
        connection_id: conn_id,
        user_id,
        grants,
        groups,
        send_mode,
        upstream,
        ..
    } = admitted;
    let opening = Opening {
        id: conn_id.clone(),
        user_id: user_id.clone(),
        speaks: hs.speaks,
        grants,
        upstream: upstream.clone(),
        send_mode,
    };
    let session = Arc::new(Session::open(opening, auth::random_token(32), link));
    hub.register(session.clone(), groups);
    log::debug!(
        "emulator: connected {conn_id} to hub {} (user {user_id:?}, {})",
        hub.name(),
        hs.speaks
    );
    shared.observe(Observation::Connected {
        hub: hub.name().to_owned(),
        connection_id: conn_id,
        user_id: user_id.clone(),
        reliable: hs.speaks.is_reliable(),
    });
    if let Some(up) = upstream {
        up.connected(user_id.as_deref(), hs.subprotocol.as_deref());
    }
    session
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn req(head: &str) -> Request {
        parse_head(head.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn both_client_paths_name_the_hub() {
        let r = req("GET /client/hubs/my%20hub HTTP/1.1\r\n\r\n");
        assert_eq!(client_hub(&r).as_deref(), Some("my hub"));
        let r = req("GET /client/?hub=chat HTTP/1.1\r\n\r\n");
        assert_eq!(client_hub(&r).as_deref(), Some("chat"));
        assert_eq!(
            client_hub(&req("GET /client/hubs/a/b HTTP/1.1\r\n\r\n")),
            None
        );
        assert_eq!(client_hub(&req("GET /api/hubs/a HTTP/1.1\r\n\r\n")), None);
    }

    fn offering(protocols: &str) -> Request {
        req(&format!("GET /client/hubs/h HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"))
    }

    #[test]
    fn the_first_pubsub_subprotocol_offered_is_chosen_as_spelled() {
        let hs = handshake(&offering(
            "mqtt, protobuf.webpubsub.azure.v1, json.webpubsub.azure.v1",
        ))
        .unwrap();
        assert_eq!(
            hs.subprotocol.as_deref(),
            Some("protobuf.webpubsub.azure.v1")
        );
        assert_eq!(hs.speaks, Speaks::PubSub(Subprotocol::Protobuf));
        let hs = handshake(&offering(
            "JSON.reliable.webpubsub.azure.v1, protobuf.reliable.webpubsub.azure.v1",
        ))
        .unwrap();
        assert_eq!(
            hs.subprotocol.as_deref(),
            Some("JSON.reliable.webpubsub.azure.v1")
        );
        assert_eq!(hs.speaks, Speaks::PubSub(Subprotocol::JsonReliable));
        let hs = handshake(&offering("protobuf.reliable.webpubsub.azure.v1")).unwrap();
        assert_eq!(hs.speaks, Speaks::PubSub(Subprotocol::ProtobufReliable));
        // No PubSub subprotocol: a simple WebSocket client, answered without one.
        let hs = handshake(&offering("mqtt")).unwrap();
        assert_eq!((hs.speaks, hs.subprotocol), (Speaks::Simple, None));
        assert_eq!(hs.offered, ["mqtt"]);
        let r = req("GET /client/hubs/h HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n");
        assert_eq!(handshake(&r).unwrap_err().status, 400, "no key");
    }

    #[test]
    fn a_simple_clients_send_to_group_mode_needs_the_mode_and_a_valid_group() {
        let mode = |q: &str| send_mode(&req(&format!("GET /client/hubs/h?{q} HTTP/1.1\r\n\r\n")));
        assert_eq!(mode("access_token=t").unwrap(), None);
        assert_eq!(
            mode("webpubsub_mode=SendToGroup&group=g").unwrap(),
            Some(SendToGroupMode {
                group: "g".into(),
                no_echo: false
            })
        );
        assert_eq!(
            mode("webpubsub_mode=sendToGroup&group=g&noEcho=true").unwrap(),
            Some(SendToGroupMode {
                group: "g".into(),
                no_echo: true
            })
        );
        for bad in [
            "webpubsub_mode=event",
            "webpubsub_mode=sendToGroup",
            "webpubsub_mode=sendToGroup&group=",
        ] {
            assert_eq!(mode(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn a_connect_answer_replaces_user_roles_groups_and_may_make_a_simple_client() {
        let mut admitted = Admitted {
            connection_id: "c".into(),
            user_id: Some("token-user".into()),
            grants: Grants::default(),
            groups: vec!["token-group".into()],
            claims: Map::new(),
            send_mode: None,
            upstream: None,
        };
        let mut hs = handshake(&offering("json.webpubsub.azure.v1, custom")).unwrap();
        let accepted = ConnectAccepted {
            user_id: Some("app-user".into()),
            roles: Some(vec!["webpubsub.sendToGroups.room.*".into()]),
            groups: Some(vec!["app-group".into()]),
            subprotocol: Some("custom".into()),
            ..ConnectAccepted::default()
        };
        shape(&mut admitted, &mut hs, accepted);
        assert_eq!(admitted.user_id.as_deref(), Some("app-user"));
        assert_eq!(admitted.groups, ["app-group"]);
        assert!(admitted
            .grants
            .allows(crate::types::Permission::SendToGroup, Some("room.eu")));
        assert_eq!(
            (hs.speaks, hs.subprotocol.as_deref()),
            (Speaks::Simple, Some("custom"))
        );
        // Nothing said: the token's stay.
        shape(&mut admitted, &mut hs, ConnectAccepted::default());
        assert_eq!(admitted.user_id.as_deref(), Some("app-user"));
    }
}
