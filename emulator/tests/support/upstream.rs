//! Helpers for the upstream tests: waiting on completions, the Node app server, and a raw
//! HTTP listener that records requests and answers from a script.
#![allow(dead_code)]

use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use webpubsub_emulator::upstream::{
    ConnectOutcome, ConnectRequest, EventOutcome, UpstreamConnection,
};
use webpubsub_protocol::{Data, Metadata};

/// Bound of every wait.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Sends `connect` and waits for its outcome.
pub fn connect(conn: &UpstreamConnection, req: ConnectRequest) -> ConnectOutcome {
    let (tx, rx) = crossbeam_channel::bounded(1);
    conn.connect(req, move |o| {
        let _ = tx.send(o);
    });
    rx.recv_timeout(WAIT).expect("connect outcome in time")
}

/// Sends a user event; its outcome arrives on the returned receiver.
pub fn send(conn: &UpstreamConnection, event: &str, data: Option<Data>) -> Receiver<EventOutcome> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    conn.user_event(event, data, Metadata::new(), move |o| {
        let _ = tx.send(o);
    });
    rx
}

/// Sends a user event and waits for its outcome.
pub fn event(conn: &UpstreamConnection, event: &str, data: Option<Data>) -> EventOutcome {
    send(conn, event, data)
        .recv_timeout(WAIT)
        .expect("event outcome in time")
}

#[allow(unused_imports)]
pub use webpubsub_testkit::node::{is, AppServer};

/// Starts the app server for the engine's tests (hub `allowed` allows the origin
/// `http://127.0.0.1:8080`, the engine's tests' service).
pub fn app_server(test: &str) -> Option<AppServer> {
    AppServer::start(test, "http://127.0.0.1:8080")
}

/// A request as the raw listener read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer: status, extra headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Answer {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: &[u8]) -> Answer {
        self.headers
            .push(("Content-Type".into(), content_type.into()));
        self.body = body.to_vec();
        self
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1: answers each request with the next scripted
/// answer (OPTIONS with `WebHook-Allowed-Origin: *` and POST with 200 once the script
/// runs out) and reports each request on a channel.
pub struct RawListener {
    pub port: u16,
    pub requests: Receiver<Recorded>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RawListener {
    pub fn start(script: Vec<Answer>) -> RawListener {
        RawListener::start_with(script, None)
    }

    /// The same over TLS with `identity` (an `https://` handler).
    pub fn start_tls(script: Vec<Answer>, identity: native_tls::Identity) -> RawListener {
        RawListener::start_with(
            script,
            Some(native_tls::TlsAcceptor::new(identity).unwrap()),
        )
    }

    fn start_with(script: Vec<Answer>, tls: Option<native_tls::TlsAcceptor>) -> RawListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let script = Arc::new(parking_lot::Mutex::new(VecDeque::from(script)));
            for stream in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { break };
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let (script, tx, s, tls) = (script.clone(), tx.clone(), s.clone(), tls.clone());
                // One thread per connection: the engine may open several at once. Each ends
                // when the engine closes its keep-alive connection (or at its read timeout).
                std::thread::spawn(move || match tls {
                    None => serve(stream, &script, &tx, &s),
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream) {
                            serve(tls, &script, &tx, &s);
                        }
                    }
                });
            }
        });
        RawListener {
            port,
            requests: rx,
            thread: Some(thread),
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn next(&self) -> Recorded {
        self.requests.recv_timeout(WAIT).expect("a request in time")
    }
}

impl Drop for RawListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve<S: Read + Write>(
    stream: S,
    script: &parking_lot::Mutex<VecDeque<Answer>>,
    tx: &crossbeam_channel::Sender<Recorded>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut reader = BufReader::new(stream);
    // Keep-alive: several requests per connection, until the listener stops.
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0usize);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let next = script.lock().pop_front();
        let answer = next.unwrap_or_else(|| {
            if method == "OPTIONS" {
                Answer::status(200).header("WebHook-Allowed-Origin", "*")
            } else {
                Answer::status(200)
            }
        });
        let _ = tx.send(Recorded {
            method,
            path,
            headers,
            body,
        });
        let mut resp = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        for (k, v) in &answer.headers {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        let out = reader.get_mut();
        if out.write_all(resp.as_bytes()).is_err()
            || out.write_all(&answer.body).is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}

/// A port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
