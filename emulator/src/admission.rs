//! The decisions of a WebSocket upgrade on a client path, apart from the socket: is it a
//! WebSocket handshake, which subprotocol, a recovery or a new connection, is its token
//! good — and the sessions they make (PROTOCOL.md §1, §2, §7).
//!
//! `upgrade` writes the answers these decisions call for.

use crate::access;
use crate::auth::{self, string_list};
use crate::http::{percent_decode, Request};
use crate::hub::Hub;
use crate::session::{Grants, Session};
use crate::shared::Shared;
use crate::types::Observation;
use crate::wake::Link;
use std::sync::Arc;
use webpubsub_protocol::{redact_query, Subprotocol};

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
    /// The subprotocol chosen, as the client spelled it (the 101 answers with it).
    pub subprotocol: String,
    /// The subprotocol chosen: the codec of every frame of the connection.
    pub kind: Subprotocol,
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
/// protobuf, plain and reliable) that the client offers.
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
    let Some((name, kind)) = negotiate(&offered) else {
        let known: Vec<&str> = Subprotocol::ALL.iter().map(|p| p.name()).collect();
        return Err(Refusal::bad_request(format!(
            "The emulator speaks only the subprotocols {}; offered: [{}]",
            known.join(", "),
            offered.join(", ")
        )));
    };
    Ok(Handshake {
        key: key.trim().to_owned(),
        subprotocol: name.clone(),
        kind,
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

/// What a new connection's token gives it.
pub(crate) struct Admitted {
    user_id: Option<String>,
    grants: Grants,
    groups: Vec<String>,
}

/// Checks a new connection's access token (HTTP 401 if refused).
pub(crate) fn admit(shared: &Shared, req: &Request, hub: &str) -> Result<Admitted, Refusal> {
    let claims = access::client_claims(&shared.cfg, req, hub).map_err(|e| Refusal {
        status: 401,
        reason: format!("Unauthorized: {e}"),
    })?;
    Ok(Admitted {
        user_id: claims
            .get("sub")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        grants: Grants::from_roles(&string_list(&claims, "role")),
        groups: string_list(&claims, "webpubsub.group"),
    })
}

/// A new session on the socket of `link`, in its hub and its groups.
pub(crate) fn open(
    shared: &Shared,
    hub: &Hub,
    admitted: Admitted,
    hs: &Handshake,
    link: Arc<Link>,
) -> Arc<Session> {
    let conn_id = auth::random_token(15);
    let session = Arc::new(Session::open(
        conn_id.clone(),
        admitted.user_id.clone(),
        hs.kind,
        admitted.grants,
        auth::random_token(32),
        link,
    ));
    hub.register(session.clone(), admitted.groups);
    log::debug!(
        "emulator: connected {conn_id} to hub {} (user {:?}, {})",
        hub.name(),
        admitted.user_id,
        hs.subprotocol
    );
    shared.observe(Observation::Connected {
        hub: hub.name().to_owned(),
        connection_id: conn_id,
        user_id: admitted.user_id,
        reliable: hs.kind.is_reliable(),
    });
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
        assert_eq!(hs.subprotocol, "protobuf.webpubsub.azure.v1");
        assert_eq!(hs.kind, Subprotocol::Protobuf);
        let hs = handshake(&offering(
            "JSON.reliable.webpubsub.azure.v1, protobuf.reliable.webpubsub.azure.v1",
        ))
        .unwrap();
        assert_eq!(hs.subprotocol, "JSON.reliable.webpubsub.azure.v1");
        assert_eq!(hs.kind, Subprotocol::JsonReliable);
        let hs = handshake(&offering("protobuf.reliable.webpubsub.azure.v1")).unwrap();
        assert_eq!(hs.kind, Subprotocol::ProtobufReliable);
        // No PubSub subprotocol: a simple WebSocket client, not served yet.
        let refused = handshake(&offering("mqtt")).unwrap_err();
        assert_eq!(refused.status, 400);
        assert!(
            refused.reason.contains("protobuf.webpubsub.azure.v1"),
            "{refused:?}"
        );
        let r = req("GET /client/hubs/h HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n");
        assert_eq!(handshake(&r).unwrap_err().status, 400, "no key");
    }
}
