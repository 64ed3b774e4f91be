//! The socket side of a WebSocket upgrade on `/client/hubs/{hub}` and `/client/?hub={hub}`:
//! the answer `admission` decides (a refusal or the 101), and once the answer is written,
//! the WebSocket it turns the socket into.
//!
//! An answer may wait for another thread (a connect event handler, upstream):
//! [`Answering::Later`] — the request's socket then waits in its own phase, reading and
//! writing nothing, until the completion wakes it with the [`Answer`].

use crate::admission::{self, Admitted, Handshake, RecoveryAttempt, Refusal};
use crate::connection::Connection;
use crate::http::{self, Request};
use crate::hub::Hub;
use crate::net::Stream;
use crate::session::Session;
use crate::shared::Shared;
use crate::wake::{Awaited, Link};
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
    /// A new session.
    Open {
        hub: Arc<Hub>,
        admitted: Admitted,
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

/// A socket after a 101.
pub(crate) enum Upgraded {
    Connection(Connection),
    Refused(Refused),
}

/// An upgrade's answer: now, or once what it waits for has arrived.
pub(crate) enum Answering {
    Now(Box<Answer>),
    /// Made with [`completion`](crate::wake::completion) on the socket's link.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "returned once connects call the HTTP event handlers"
        )
    )]
    Later(Awaited<Answer>),
}

/// What answers an upgrade request: [`answer`], or a test's.
pub(crate) type Answerer = fn(&Shared, &Request, &str, &Arc<Link>) -> Answering;

/// Answers an upgrade request for `hub_name` on the socket of `_link` (whose wake-up a
/// completion would use).
pub(crate) fn answer(
    shared: &Shared,
    req: &Request,
    hub_name: &str,
    _link: &Arc<Link>,
) -> Answering {
    Answering::Now(Box::new(decide(shared, req, hub_name)))
}

/// Decides the answer to an upgrade request for `hub_name`: a new connection's token is
/// checked, and a recovery's session looked up, before the 101.
pub(crate) fn decide(shared: &Shared, req: &Request, hub_name: &str) -> Answer {
    let hs = match admission::handshake(req) {
        Ok(hs) => hs,
        Err(r) => return refuse(shared, req, r),
    };
    let hub = shared.hub(hub_name);
    match admission::recovery_attempt(req) {
        Some(attempt) => {
            let session = admission::recoverable(shared, &hub, &attempt);
            let response = switching_protocols(&hs);
            let then = Then::Recover {
                hub,
                session,
                attempt,
            };
            Answer { response, then }
        }
        None => match admission::admit(shared, req, hub_name) {
            Ok(admitted) => {
                let response = switching_protocols(&hs);
                let then = Then::Open { hub, admitted, hs };
                Answer { response, then }
            }
            Err(r) => refuse(shared, req, r),
        },
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

fn switching_protocols(hs: &Handshake) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(hs.key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        hs.subprotocol
    )
    .into_bytes()
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
            let session = admission::open(shared, &hub, admitted, &hs, link.clone());
            Some(Upgraded::Connection(Connection::new(
                wire,
                link.clone(),
                hub,
                session,
            )))
        }
        Then::Recover {
            hub,
            session: Some(session),
            ..
        } => {
            admission::recover(shared, &hub, &session, link.clone());
            Some(Upgraded::Connection(Connection::new(
                wire,
                link.clone(),
                hub,
                session,
            )))
        }
        Then::Recover {
            hub,
            session: None,
            attempt,
        } => {
            admission::recovery_refused(shared, &hub, attempt);
            Some(Upgraded::Refused(Refused::new(
                wire,
                CloseCode::Policy,
                "Invalid or expired reconnection token, or the session is closed",
            )))
        }
    }
}
