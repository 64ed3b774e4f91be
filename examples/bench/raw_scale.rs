//! (scale) for the raw tungstenite client: the floor of what `n` connections cost in one
//! process. Each socket is dialled and handshaken like the raw client's (blocking, up to
//! the `connected` message), then made non-blocking (a mio `TcpStream` under a new
//! tungstenite `WebSocket`, nothing being buffered after that message) and registered with one mio `Poll` that
//! a single thread runs for all of them: it reads every frame, counts the messages by size
//! and sends a `sequenceAck` after each read burst (the reliable subprotocol, as the other
//! clients use it). No recovery: the scale workload drops no connection.

use crate::common::*;
use crate::raw::{dial_within, field_u64};
use crate::scale::ScaleConfig;
use crate::scale_child::{self, Deliveries};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

const WAKER: Token = Token(usize::MAX);

struct Conn {
    ws: WebSocket<TcpStream>,
    largest: u64,
    acked: u64,
    open: bool,
}

/// The polling thread; stopped and joined when dropped.
struct Loop {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (scale) in the child process.
pub fn child_scale(cfg: &ScaleConfig) {
    scale_child::child(cfg, |deliveries| {
        let (mut connected, sockets) = scale_child::connect_all(cfg, || {
            dial_within(&cfg.url, cfg.client_timeout).map(|(ws, _, _)| ws)
        });
        match start_loop(sockets, deliveries.clone()) {
            Ok(l) => (connected, Box::new(l)),
            Err(e) => {
                connected.error.get_or_insert(e);
                connected.count = 0;
                (connected, Box::new(()))
            }
        }
    });
}

fn start_loop(sockets: Vec<WebSocket<std::net::TcpStream>>, d: Arc<Deliveries>) -> R<Loop> {
    let poll = Poll::new().map_err(|e| e.to_string())?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);
    let mut conns = Vec::with_capacity(sockets.len());
    for (i, ws) in sockets.into_iter().enumerate() {
        let tcp = ws.into_inner();
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut tcp = TcpStream::from_std(tcp);
        poll.registry()
            .register(&mut tcp, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let ws = WebSocket::from_raw_socket(tcp, Role::Client, None);
        conns.push(Conn {
            ws,
            largest: 0,
            acked: 0,
            open: true,
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bench-raw-poll".into())
        .spawn(move || run(poll, conns, &d, &s))
        .map_err(|e| e.to_string())?;
    Ok(Loop {
        stop,
        waker,
        thread: Some(thread),
    })
}

fn run(mut poll: Poll, mut conns: Vec<Conn>, d: &Deliveries, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("[bench] raw scale: poll: {e}");
            return;
        }
        for ev in &events {
            if ev.token() == WAKER {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                continue;
            }
            let Some(c) = conns.get_mut(ev.token().0) else {
                continue;
            };
            // Edge-triggered: read until the socket has nothing more.
            while c.open {
                match c.ws.read() {
                    Ok(Message::Text(t)) => {
                        if let Some(seq) = field_u64(&t, "sequenceId") {
                            if seq > c.largest {
                                c.largest = seq;
                                d.on_message(t.len());
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => c.open = false,
                }
            }
            if c.open && c.largest > c.acked {
                let ack = format!("{{\"type\":\"sequenceAck\",\"sequenceId\":{}}}", c.largest);
                // A full socket keeps the frame in tungstenite's buffer for the next flush.
                match c.ws.send(Message::text(ack)) {
                    Ok(()) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => c.open = false,
                }
                c.acked = c.largest;
            }
        }
    }
}
