//! A socket before it is a WebSocket, as a state machine on an I/O loop: the TLS
//! handshake, then HTTP/1.1 requests read as their bytes arrive — each answered by the REST
//! API, or by the WebSocket upgrade — each step with a deadline, so that a slow or silent
//! peer holds nothing but its own socket.

use crate::admission;
use crate::http::{self, BodyDecoder, Request};
use crate::net::{self, Stream, Tls};
use crate::rest;
use crate::upgrade::{self, Answer, Answerer, Answering, Then, Upgraded};
use crate::wake::{Awaited, Completion, Link};
use crate::wire::{Io, Ready, Step, READ_CHUNK};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webpubsub_protocol::redact_query;

/// How long a client may take to finish TLS, and to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle kept-alive REST connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a REST body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads per turn before the loop's other connections get theirs (a large body).
const READS_PER_TURN: usize = 4;
/// The read buffer is let go after a large body.
const KEEP_CAPACITY: usize = 4096;

/// The socket, once TLS (if any) is done.
enum Sock {
    Handshaking(Box<native_tls::MidHandshakeTlsStream<mio::net::TcpStream>>),
    Ready(Stream),
    /// In the middle of a transition.
    Gone,
}

/// What the socket is doing.
enum Phase {
    /// TLS, or waiting for a request head.
    Head,
    Body {
        req: Request,
        decoder: BodyDecoder,
    },
    /// An upgrade's answer waits for another thread; the socket reads and writes nothing.
    Admitting(Awaited<Answer>),
    /// Writing `out[sent..]`; then `after`.
    Respond {
        out: Vec<u8>,
        sent: usize,
        after: After,
    },
}

enum After {
    KeepAlive,
    Close,
    Upgrade(Box<Then>),
}

/// What a turn gave.
pub(crate) enum Driven {
    Step(Step),
    /// The upgrade is done: the socket is a WebSocket now.
    Upgraded(Upgraded),
}

/// A socket speaking HTTP.
pub(crate) struct HttpConn {
    sock: Sock,
    phase: Phase,
    /// Bytes read and not used yet; empty (no allocation) between requests.
    buf: Vec<u8>,
    /// None while an answer is awaited: what it waits for has its own bound.
    deadline: Option<Instant>,
    readable: bool,
    writable: bool,
    link: Arc<Link>,
}

impl HttpConn {
    /// A socket just accepted; TLS starts if the emulator serves it.
    pub fn new(
        tcp: mio::net::TcpStream,
        tls: Option<&native_tls::TlsAcceptor>,
        link: Arc<Link>,
    ) -> Option<HttpConn> {
        let sock = match tls {
            None => Sock::Ready(Stream::Plain(tcp)),
            Some(acceptor) => match net::accept_tls(acceptor, tcp) {
                Ok(Tls::Done(s)) => Sock::Ready(s),
                Ok(Tls::Pending(mid)) => Sock::Handshaking(mid),
                Err(e) => {
                    log::info!("emulator: TLS handshake failed: {e}");
                    return None;
                }
            },
        };
        Some(HttpConn {
            sock,
            phase: Phase::Head,
            buf: Vec::new(),
            deadline: Some(Instant::now() + HEAD_TIMEOUT),
            readable: true,
            writable: true,
            link,
        })
    }

    /// Its bound: TLS, the head, the body or the response must be done by then.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// One turn; `answerer` answers upgrade requests.
    pub fn drive(&mut self, io: &mut Io, answerer: Answerer, ready: Ready) -> Driven {
        self.link.woken();
        self.readable |= ready.readable;
        self.writable |= ready.writable;
        let late = self.deadline.is_some_and(|at| Instant::now() >= at);
        if io.shared.stopping() || late {
            return Driven::Step(Step::Closed);
        }
        if let Sock::Handshaking(_) = self.sock {
            let Sock::Handshaking(mid) = std::mem::replace(&mut self.sock, Sock::Gone) else {
                unreachable!("matched above")
            };
            match net::continue_tls(*mid) {
                Ok(Tls::Done(s)) => {
                    self.sock = Sock::Ready(s);
                    self.deadline = Some(Instant::now() + HEAD_TIMEOUT);
                    // Application data may have come with the last handshake record.
                    self.readable = true;
                }
                Ok(Tls::Pending(mid)) => {
                    self.sock = Sock::Handshaking(mid);
                    return Driven::Step(Step::Idle);
                }
                Err(e) => {
                    log::info!("emulator: TLS handshake failed: {e}");
                    return Driven::Step(Step::Closed);
                }
            }
        }
        let mut reads = 0;
        loop {
            let next = match &mut self.phase {
                Phase::Head => {
                    match http::parse_head(&self.buf) {
                        Ok(Some((req, n))) => {
                            self.buf.drain(..n);
                            match self.on_head(io, answerer, req) {
                                Some(response) => response,
                                None => continue,
                            }
                        }
                        Ok(None) => match self.fill(io, &mut reads) {
                            Fill::Got => continue,
                            Fill::Wait => return Driven::Step(self.wait(reads)),
                            // A kept-alive connection's normal end.
                            Fill::Eof if self.buf.is_empty() => return Driven::Step(Step::Closed),
                            Fill::Eof => bad_request("connection closed inside the request head"),
                            Fill::Failed => return Driven::Step(Step::Closed),
                        },
                        Err(why) => bad_request(&why),
                    }
                }
                Phase::Body { decoder, .. } => match decoder.decode(&mut self.buf) {
                    Ok(Some(body)) => {
                        let Phase::Body { req, .. } =
                            std::mem::replace(&mut self.phase, Phase::Head)
                        else {
                            unreachable!("matched above")
                        };
                        serve_rest(io, &req, &body)
                    }
                    Ok(None) => match self.fill(io, &mut reads) {
                        Fill::Got => continue,
                        Fill::Wait => return Driven::Step(self.wait(reads)),
                        Fill::Eof => bad_request("connection closed inside the body"),
                        Fill::Failed => return Driven::Step(Step::Closed),
                    },
                    Err(why) => bad_request(&why),
                },
                Phase::Admitting(awaited) => match awaited.poll() {
                    Completion::Waiting => return Driven::Step(Step::Idle),
                    Completion::Done(answer) => answered(answer),
                    Completion::Abandoned => answered(upgrade::abandoned()),
                },
                Phase::Respond { out, sent, .. } => {
                    if !self.writable {
                        return Driven::Step(Step::Idle);
                    }
                    let Sock::Ready(s) = &mut self.sock else {
                        return Driven::Step(Step::Closed);
                    };
                    match net::write_now(s, &out[*sent..]) {
                        Ok(n) => *sent += n,
                        Err(e) => {
                            log::debug!("emulator: writing a response failed: {e}");
                            return Driven::Step(Step::Closed);
                        }
                    }
                    if *sent < out.len() {
                        self.writable = false;
                        return Driven::Step(Step::Idle);
                    }
                    match self.after_response(io) {
                        Some(driven) => return driven,
                        None => continue,
                    }
                }
            };
            // A response to write.
            self.phase = next;
            self.deadline = Some(Instant::now() + WRITE_TIMEOUT);
        }
    }

    /// A request head arrived: an upgrade's answer to write, or (`None`) the next phase: an
    /// upgrade's answer to wait for, or a REST request's body to read.
    fn on_head(&mut self, io: &mut Io, answerer: Answerer, req: Request) -> Option<Phase> {
        log::debug!("emulator: {} {}", req.method, redact_query(&req.target));
        if let Some(hub) = admission::client_hub(&req) {
            return match answerer(&io.shared, &req, &hub, &self.link) {
                Answering::Now(answer) => Some(answered(*answer)),
                Answering::Later(awaited) => {
                    self.deadline = None;
                    self.phase = Phase::Admitting(awaited);
                    None
                }
            };
        }
        match BodyDecoder::new(&req) {
            Ok(decoder) => {
                self.deadline = Some(Instant::now() + BODY_TIMEOUT);
                self.phase = Phase::Body { req, decoder };
                None
            }
            Err(why) => Some(bad_request(&why)),
        }
    }

    /// The response is written: next request, close, or the WebSocket.
    fn after_response(&mut self, io: &mut Io) -> Option<Driven> {
        let Phase::Respond { after, .. } = std::mem::replace(&mut self.phase, Phase::Head) else {
            unreachable!("called in the Respond phase")
        };
        match after {
            After::Close => Some(Driven::Step(Step::Closed)),
            After::KeepAlive => {
                self.deadline = Some(Instant::now() + IDLE_TIMEOUT);
                if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                    self.buf = Vec::new();
                }
                None
            }
            After::Upgrade(then) => {
                let Sock::Ready(stream) = std::mem::replace(&mut self.sock, Sock::Gone) else {
                    return Some(Driven::Step(Step::Closed));
                };
                let leftover = std::mem::take(&mut self.buf);
                Some(
                    match upgrade::switched(&io.shared, *then, stream, leftover, &self.link) {
                        Some(upgraded) => Driven::Upgraded(upgraded),
                        None => Driven::Step(Step::Closed),
                    },
                )
            }
        }
    }

    /// Appends what the socket has to `buf`.
    fn fill(&mut self, io: &mut Io, reads: &mut usize) -> Fill {
        if !self.readable || *reads >= READS_PER_TURN {
            return Fill::Wait;
        }
        let Sock::Ready(s) = &mut self.sock else {
            return Fill::Failed;
        };
        *reads += 1;
        match net::read_now(s, &mut io.rbuf[..READ_CHUNK]) {
            Ok(None) => {
                self.readable = false;
                Fill::Wait
            }
            Ok(Some(0)) => Fill::Eof,
            Ok(Some(n)) => {
                self.buf.extend_from_slice(&io.rbuf[..n]);
                Fill::Got
            }
            Err(e) => {
                log::debug!("emulator: reading a request failed: {e}");
                Fill::Failed
            }
        }
    }

    /// Waiting for the socket: again at once if only the turn's budget stopped it.
    fn wait(&self, reads: usize) -> Step {
        if self.readable && reads >= READS_PER_TURN {
            Step::Again
        } else {
            Step::Idle
        }
    }
}

enum Fill {
    Got,
    Wait,
    Eof,
    Failed,
}

/// An upgrade's answer to write.
fn answered(answer: Answer) -> Phase {
    let after = match answer.then {
        Then::Close => After::Close,
        then => After::Upgrade(Box::new(then)),
    };
    respond(answer.response, after)
}

fn respond(out: Vec<u8>, after: After) -> Phase {
    Phase::Respond {
        out,
        sent: 0,
        after,
    }
}

fn bad_request(why: &str) -> Phase {
    let out = http::response(400, "text/plain", why.as_bytes(), false, false);
    respond(out, After::Close)
}

/// Answers a REST request (in memory: it does not wait for anything).
fn serve_rest(io: &Io, req: &Request, body: &[u8]) -> Phase {
    let head_only = req.method.eq_ignore_ascii_case("HEAD");
    let reply = rest::handle(&io.shared, req, body);
    if reply.status >= 400 {
        log::info!(
            "emulator: REST {} {} -> {}",
            req.method,
            redact_query(&req.target),
            reply.status
        );
    }
    let keep_alive = !req.header_has("connection", "close");
    let out = http::response(
        reply.status,
        reply.content_type,
        &reply.body,
        keep_alive,
        head_only,
    );
    let after = if keep_alive {
        After::KeepAlive
    } else {
        After::Close
    };
    respond(out, after)
}
