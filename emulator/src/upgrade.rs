//! The socket side of a WebSocket upgrade on `/client/hubs/{hub}` and `/client/?hub={hub}`:
//! the answer `admission` decides (a refusal or the 101), and once the answer is written,
//! the WebSocket it turns the socket into.
//!
//! A new connection to a hub whose event handlers take `connect` waits for that handler
//! (UPSTREAM.md §3): [`Answering::Later`] — the request's socket then waits in its own
//! phase, reading and writing nothing, until the completion (on an upstream worker) wakes
//! it with the [`Answer`]: the 101, shaped by the handler's answer, or its refusal.

use crate::admission::{self, Admitted, Handshake, RecoveryAttempt, Refusal};
use crate::connection::Connection;
use crate::http::{self, Request};
use crate::hub::Hub;
use crate::net::Stream;
use crate::session::Session;
use crate::shared::Shared;
use crate::upstream::{ConnectOutcome, HandlerEvent, SystemEvent};
use crate::wake::{self, Awaited, Link};
use crate::wire::{Refused, Wire};
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;

/// The HTTP answer to an upgrade request, and what follows once it is written.
pub(crate) struct Answer {
    pub response: Vec<u8>,
    pub then: Then,
}

/// What a socket becomes after its upgrade answer.
pub(crate) enum Then {
    /// Nothing: the answer was a refusal and the socket closes.
    Close,
    /// A new session. (Boxed: the admission is large, the other variants small.)
    Open {
        hub: Arc<Hub>,
        admitted: Box<Admitted>,
        hs: Handshake,
    },
    /// A recovery: the session moves to this socket, or (`None`) the socket is closed
    /// with 1008.
    Recover {
        hub: Arc<Hub>,
        session: Option<Arc<Session>>,
        attempt: RecoveryAttempt,
    },
}

/// A socket after a 101, boxed as the loop keeps it (a connection is large beside a step).
pub(crate) enum Upgraded {
    Connection(Box<Connection>),
    Refused(Box<Refused>),
}

/// An upgrade's answer: now, or once what it waits for has arrived.
pub(crate) enum Answering {
    Now(Box<Answer>),
    /// Made with [`completion`](crate::wake::completion) on the socket's link.
    Later(Awaited<Answer>),
}

/// What answers an upgrade request: [`answer`], or a test's.
pub(crate) type Answerer = fn(&Shared, &Request, &str, &Arc<Link>) -> Answering;

/// A new connection that passed its checks, before its 101.
struct Admission {
    hub: Arc<Hub>,
    admitted: Admitted,
    hs: Handshake,
}

/// Answers an upgrade request for `hub_name` on the socket of `link`: at once, or — a new
/// connection whose hub's event handler takes `connect` — once the handler answered.
pub(crate) fn answer(
    shared: &Shared,
    req: &Request,
    hub_name: &str,
    link: &Arc<Link>,
) -> Answering {
    let a = match admit(shared, req, hub_name) {
        Ok(a) => a,
        Err(answer) => return Answering::Now(Box::new(answer)),
    };
    let connect = HandlerEvent::System(SystemEvent::Connect);
    let upstream = match &a.admitted.upstream {
        Some(up) if shared.upstream.routes(hub_name, connect) => up.clone(),
        _ => return Answering::Now(Box::new(opened(a))),
    };
    let request = admission::connect_request(req, &a.admitted, &a.hs);
    let (done, awaited) = wake::completion(link);
    // Runs on an upstream worker: builds the answer (no lock, no wait) and hands it over.
    upstream.connect(request, move |outcome| done.complete(connected(a, outcome)));
    Answering::Later(awaited)
}

/// Decides the answer to an upgrade request for `hub_name` without asking a connect event
/// handler: a new connection's token is checked, and a recovery's session looked up,
/// before the 101 (the tests' answerers wrap it).
#[cfg(test)]
pub(crate) fn decide(shared: &Shared, req: &Request, hub_name: &str) -> Answer {
    match admit(shared, req, hub_name) {
        Ok(a) => opened(a),
        Err(answer) => answer,
    }
}

/// A new connection that passed its checks, or the answer to any other request: a
/// recovery's, or a refusal.
fn admit(shared: &Shared, req: &Request, hub_name: &str) -> Result<Admission, Answer> {
    let hs = match admission::handshake(req) {
        Ok(hs) => hs,
        Err(r) => return Err(refuse(shared, req, r)),
    };
    let hub = shared.hub(hub_name);
    if let Some(attempt) = admission::recovery_attempt(req) {
        let session = admission::recoverable(shared, &hub, &attempt);
        let response = switching_protocols(&hs.key, hs.subprotocol.as_deref());
        let then = Then::Recover {
            hub,
            session,
            attempt,
        };
        return Err(Answer { response, then });
    }
    match admission::admit(shared, req, hub_name, &hs) {
        Ok(admitted) => Ok(Admission { hub, admitted, hs }),
        Err(r) => Err(refuse(shared, req, r)),
    }
}

/// The 101 of a new connection.
fn opened(a: Admission) -> Answer {
    let response = switching_protocols(&a.hs.key, a.hs.subprotocol.as_deref());
    let Admission { hub, admitted, hs } = a;
    Answer {
        response,
        then: Then::Open {
            hub,
            admitted: Box::new(admitted),
            hs,
        },
    }
}

/// The answer once the connect event handler answered: the 101 of the connection it
/// shaped, or its refusal with its status (its body is not forwarded).
fn connected(mut a: Admission, outcome: ConnectOutcome) -> Answer {
    match outcome {
        ConnectOutcome::Accepted(accepted) => {
            admission::shape(&mut a.admitted, &mut a.hs, accepted);
            opened(a)
        }
        ConnectOutcome::Refused { status, failure } => {
            log::info!(
                "emulator: refused the upgrade of {} to hub {} with {status}: {failure}",
                a.admitted.connection_id,
                a.hub.name()
            );
            let reason = format!("The connect event handler refused the connection ({status})");
            Answer {
                response: http::response(
                    status,
                    "text/plain; charset=utf-8",
                    reason.as_bytes(),
                    false,
                    false,
                ),
                then: Then::Close,
            }
        }
    }
}

/// The answer when what an upgrade waited for was abandoned.
pub(crate) fn abandoned() -> Answer {
    let reason = "The connect event handler gave no answer";
    log::warn!("emulator: refused an upgrade: {reason}");
    Answer {
        response: http::response(
            500,
            "text/plain; charset=utf-8",
            reason.as_bytes(),
            false,
            false,
        ),
        then: Then::Close,
    }
}

/// An HTTP error; the socket closes after it.
fn refuse(shared: &Shared, req: &Request, r: Refusal) -> Answer {
    admission::refused(shared, req, &r);
    let response = http::response(
        r.status,
        "text/plain; charset=utf-8",
        r.reason.as_bytes(),
        false,
        false,
    );
    Answer {
        response,
        then: Then::Close,
    }
}

/// The 101, naming `subprotocol` if there is one.
fn switching_protocols(key: &str, subprotocol: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = subprotocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The 101 is written: the session opens on this socket or moves to it, or the refused
/// recovery is closed. `leftover` holds bytes the client sent behind its request.
pub(crate) fn switched(
    shared: &Shared,
    then: Then,
    stream: Stream,
    leftover: Vec<u8>,
    link: &Arc<Link>,
) -> Option<Upgraded> {
    let wire = Wire::new(stream, leftover);
    match then {
        Then::Close => None,
        Then::Open { hub, admitted, hs } => {
            let session = admission::open(shared, &hub, *admitted, &hs, link.clone());
            Some(Upgraded::Connection(Box::new(Connection::new(
                wire,
                link.clone(),
                hub,
                session,
            ))))
        }
        Then::Recover {
            hub,
            session: Some(session),
            ..
        } => {
            admission::recover(shared, &hub, &session, link.clone());
            Some(Upgraded::Connection(Box::new(Connection::new(
                wire,
                link.clone(),
                hub,
                session,
            ))))
        }
        Then::Recover {
            hub,
            session: None,
            attempt,
        } => {
            admission::recovery_refused(shared, &hub, attempt);
            Some(Upgraded::Refused(Box::new(Refused::new(
                wire,
                CloseCode::Policy,
                "Invalid or expired reconnection token, or the session is closed",
            ))))
        }
    }
}
