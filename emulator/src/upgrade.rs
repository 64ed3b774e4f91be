//! The WebSocket upgrade of `/client/hubs/{hub}` and `/client/?hub={hub}`: authentication,
//! subprotocol choice, new sessions and recoveries.

use super::auth::{self, audience_matches, string_list, AuthError};
use super::connection::Connection;
use super::http::{self, percent_decode, Request};
use super::net::{Stream, Waiter};
use super::state::{encode, roles_to_perms, Phase, Session};
use super::Observation;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};
use webpubsub_protocol::{
    redact_query, ServiceMessage, JSON_RELIABLE_SUBPROTOCOL, JSON_SUBPROTOCOL, MAX_MESSAGE_BYTES,
};

/// How many earlier reconnection tokens of a session stay valid besides the current one.
const MAX_EARLIER_TOKENS: usize = 16;

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

/// The base URLs a token's audience may name: as the client reached us (Host header) and
/// the emulator's own endpoint.
pub(crate) fn bases(w: &Waiter, req: &Request) -> Vec<String> {
    let scheme = if w.shared.cfg.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut v = Vec::with_capacity(2);
    if let Some(host) = req.header("host") {
        v.push(format!("{scheme}://{}", host.trim()));
    }
    v.push(w.shared.cfg.endpoint.clone());
    v
}

fn ws_config() -> WebSocketConfig {
    // Frames over 1 MB get an ack error; only frames far beyond it end the connection.
    WebSocketConfig::default()
        .max_message_size(Some(4 * MAX_MESSAGE_BYTES))
        .max_frame_size(Some(4 * MAX_MESSAGE_BYTES))
        .write_buffer_size(64 * 1024)
}

/// Handles an upgrade request on a client path. Returns when the socket is done.
pub(crate) fn handle(
    mut w: Waiter,
    mut s: Stream,
    req: Request,
    hub_name: String,
    leftover: Vec<u8>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let shared = w.shared.clone();
    let refuse = |w: &mut Waiter, s: &mut Stream, status: u16, reason: String| {
        log::info!(
            "emulator: refused upgrade {} {}: {status} {reason}",
            req.method,
            redact_query(&req.target)
        );
        if status == 401 {
            w.shared.observe(Observation::AuthRefused {
                status,
                reason: reason.clone(),
            });
        }
        let resp = http::response(
            status,
            "text/plain; charset=utf-8",
            reason.as_bytes(),
            false,
            false,
        );
        let _ = w.write_all(s, &resp, deadline);
    };

    if !req.method.eq_ignore_ascii_case("GET")
        || !req.header_has("upgrade", "websocket")
        || req.header("sec-websocket-key").is_none()
    {
        return refuse(
            &mut w,
            &mut s,
            400,
            "Expected a WebSocket upgrade (GET with Upgrade: websocket)".into(),
        );
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return refuse(
            &mut w,
            &mut s,
            400,
            "Unsupported Sec-WebSocket-Version (expected 13)".into(),
        );
    }
    // Pick the first JSON subprotocol the client offers.
    let offered: Vec<String> = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let Some(subprotocol) = offered.iter().find(|p| {
        p.eq_ignore_ascii_case(JSON_RELIABLE_SUBPROTOCOL)
            || p.eq_ignore_ascii_case(JSON_SUBPROTOCOL)
    }) else {
        return refuse(
            &mut w,
            &mut s,
            400,
            format!(
                "The emulator speaks only the subprotocols {JSON_RELIABLE_SUBPROTOCOL} and {JSON_SUBPROTOCOL}; offered: [{}]",
                offered.join(", ")
            ),
        );
    };
    let reliable = subprotocol.eq_ignore_ascii_case(JSON_RELIABLE_SUBPROTOCOL);
    let key = req
        .header("sec-websocket-key")
        .unwrap_or("")
        .trim()
        .to_owned();
    let hub = shared.hub(&hub_name);

    // Recovery: the access token is ignored.
    let recover_id = req.query_param("awps_connection_id");
    let recover_token = req.query_param("awps_reconnection_token");
    if let (Some(conn_id), Some(token)) = (recover_id, recover_token) {
        let session = {
            let st = hub.state.lock();
            st.session(&conn_id)
        };
        let refused = shared.refuse_recoveries.load(Ordering::Acquire);
        let valid = !refused
            && session.as_ref().is_some_and(|sess| {
                let st = sess.st.lock();
                sess.reliable
                    && st.phase != Phase::Ended
                    && !matches!(st.phase, Phase::Dropped(at) if at.elapsed() >= shared.cfg.recovery_window)
                    && std::iter::once(&st.reconnection_token)
                        .chain(st.earlier_tokens.iter())
                        .any(|issued| auth::ct_eq(issued, &token))
            });
        if !switch(&mut w, &mut s, &key, subprotocol, deadline) {
            return;
        }
        let mut ws = WebSocket::from_partially_read(s, leftover, Role::Server, Some(ws_config()));
        let session = match (valid, session) {
            (true, Some(sess)) => sess,
            _ => {
                log::info!("emulator: refused recovery of {conn_id} in hub {hub_name}");
                shared.observe(Observation::RecoveryRefused {
                    hub: hub_name.clone(),
                    connection_id: conn_id.clone(),
                });
                close_policy(
                    &mut w,
                    &mut ws,
                    "Invalid or expired reconnection token, or the session is closed",
                );
                return;
            }
        };
        // Attach the new socket; resend everything not sequence-acked.
        let fresh = auth::random_token(32);
        {
            // Waits for a frame the old socket's thread is handling (see `Session::exec`).
            let _exec = session.exec.lock();
            let mut st = session.st.lock();
            let old = st.link.replace(w.link.clone());
            st.phase = Phase::Live;
            let earlier = std::mem::replace(&mut st.reconnection_token, fresh.clone());
            if st.earlier_tokens.len() == MAX_EARLIER_TOKENS {
                st.earlier_tokens.pop_front();
            }
            st.earlier_tokens.push_back(earlier);
            st.pending.clear();
            st.delayed.clear();
            st.command = None;
            st.pending.push_back(encode(&ServiceMessage::Connected {
                connection_id: session.id.clone(),
                user_id: session.user_id.clone(),
                reconnection_token: Some(fresh),
            }));
            let resend: Vec<Utf8Bytes> = st.unacked.iter().map(|(_, f)| f.clone()).collect();
            st.pending.extend(resend);
            if let Some(old) = old {
                // A socket the service still thought alive: it notices it lost the session.
                old.wake();
            }
        }
        log::debug!("emulator: recovered {conn_id} in hub {hub_name}");
        shared.observe(Observation::Recovered {
            hub: hub_name,
            connection_id: conn_id,
        });
        return Connection::new(w, ws, hub, session).run();
    }

    // A new connection: check the access token.
    let token = req
        .query_param("access_token")
        .or_else(|| req.bearer().map(str::to_owned));
    let claims = match token {
        None => Err(AuthError::Missing),
        Some(t) => auth::verify(&t, &shared.cfg.access_key).and_then(|c| {
            let mut accepted = Vec::new();
            for base in bases(&w, &req) {
                accepted.push(format!("{base}/client/hubs/{hub_name}"));
                accepted.push(format!("{base}/client/?hub={hub_name}"));
            }
            audience_matches(&c, &accepted).map(|()| c)
        }),
    };
    let claims = match claims {
        Ok(c) => c,
        Err(e) => return refuse(&mut w, &mut s, 401, format!("Unauthorized: {e}")),
    };
    let user_id = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let perms = roles_to_perms(&string_list(&claims, "role"));
    let token_groups = string_list(&claims, "webpubsub.group");

    if !switch(&mut w, &mut s, &key, subprotocol, deadline) {
        return;
    }
    let ws = WebSocket::from_partially_read(s, leftover, Role::Server, Some(ws_config()));
    let conn_id = auth::random_token(15);
    let reconnection_token = auth::random_token(32);
    let session = Arc::new(Session::new(
        conn_id.clone(),
        user_id.clone(),
        reliable,
        perms,
        reconnection_token.clone(),
        w.link.clone(),
    ));
    session
        .st
        .lock()
        .pending
        .push_back(encode(&ServiceMessage::Connected {
            connection_id: conn_id.clone(),
            user_id: user_id.clone(),
            reconnection_token: reliable.then_some(reconnection_token),
        }));
    {
        let mut st = hub.state.lock();
        st.sessions.insert(
            conn_id.clone(),
            super::state::Entry {
                session: session.clone(),
                groups: Default::default(),
            },
        );
        let mut groups = token_groups;
        if let Some(user) = &user_id {
            st.users
                .entry(user.clone())
                .or_default()
                .insert(conn_id.clone());
            groups.extend(st.user_groups.get(user).into_iter().flatten().cloned());
        }
        for g in groups {
            st.join(&conn_id, &g);
        }
    }
    log::debug!(
        "emulator: connected {conn_id} to hub {hub_name} (user {user_id:?}, {subprotocol})"
    );
    shared.observe(Observation::Connected {
        hub: hub_name,
        connection_id: conn_id,
        user_id,
        reliable,
    });
    Connection::new(w, ws, hub, session).run()
}

/// Writes the 101 response. Returns false if the socket failed.
fn switch(w: &mut Waiter, s: &mut Stream, key: &str, subprotocol: &str, deadline: Instant) -> bool {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    );
    match w.write_all(s, resp.as_bytes(), deadline) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("emulator: writing the 101 response failed: {e}");
            false
        }
    }
}

/// Closes a just-accepted WebSocket with 1008 (bounded).
fn close_policy(w: &mut Waiter, ws: &mut WebSocket<Stream>, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Policy,
        reason: Utf8Bytes::from(reason),
    }));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = ws.flush().and_then(|_| ws.read().map(|_: Message| ()));
        match r {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if w.wait_until(deadline).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}
