//! What the workflow tests share (`tests/workflow_*.rs`): one emulator in front of one app
//! server per test file — `testkit/node/app_server.js` on the official handler package
//! (`@azure/web-pubsub-express` 1.1.0) — and a reading of the frames the service sent a
//! client, as a recording relay saw them on the wire.
//!
//! The app server is shared by the tests of a file (starting Node once keeps a file in
//! seconds): each test picks the records of its own connections, by connection id.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use webpubsub_emulator::upstream::{EventHandlerConfig, UpstreamConfig};
use webpubsub_emulator::Emulator;
use webpubsub_testkit::chaos_proxy::{ChaosProxy, Direction};
pub use webpubsub_testkit::node::{is, AppServer};
use webpubsub_testkit::process::{NoLine, Spawned};

/// The hub whose events go to the app server.
pub const HUB: &str = "chat";

/// The emulator and the app server behind it.
pub struct Workflow {
    pub server: AppServer,
    pub emu: Emulator,
}

static WORKFLOW: OnceLock<Option<Workflow>> = OnceLock::new();

/// The file's emulator and app server, started by the first test that asks. `None` (with a
/// SKIPPED line naming `test`) when Node is missing.
pub fn workflow(test: &str) -> Option<&'static Workflow> {
    let _ = env_logger::builder()
        .is_test(true)
        .format_timestamp_micros()
        .try_init();
    let shared = WORKFLOW.get_or_init(|| {
        let server = AppServer::start(test, "http://127.0.0.1:8080")?;
        let handler = EventHandlerConfig::new(server.url_template()).expect("the URL template");
        let cfg = UpstreamConfig::new()
            .retry_backoff(Duration::from_millis(10))
            .handler(HUB, handler);
        let emu = Emulator::builder()
            .upstream(cfg)
            .start()
            .expect("the emulator");
        Some(Workflow { server, emu })
    });
    if shared.is_none() {
        println!("SKIPPED {test}: node or npm not found");
    }
    shared.as_ref()
}

impl Workflow {
    /// A client access URL of the hub for `user` (no roles: the app server gives them).
    pub fn url(&self, user: &str) -> String {
        self.emu.client_url(HUB).user_id(user).build()
    }

    /// The same URL through `relay` instead of straight to the emulator.
    pub fn url_via(&self, relay: &ChaosProxy, user: &str) -> String {
        self.url(user)
            .replace(&self.emu.addr().to_string(), &relay.addr().to_string())
    }

    /// A relay in front of the emulator that records what it forwards to the client.
    pub fn recording_relay(&self) -> ChaosProxy {
        let relay = ChaosProxy::start(
            self.emu.addr(),
            webpubsub_testkit::chaos_proxy::Schedule::none(),
        );
        relay.record(Direction::ToClient, true);
        relay
    }

    /// Checks the app server's side of a connection that `user`'s token opened: the token's
    /// claims reached `connect` (the token itself did not), the answer's user `app-<user>`
    /// and state reached `connected`, and the connection is in the answer's group. Returns
    /// the `connect` record for further checks.
    pub fn assert_shaped_by_connect(&self, connection_id: &str, user: &str) -> Value {
        let connect = self.server.first(|v| is(v, "connect", connection_id));
        assert_eq!(connect["claims"]["sub"], serde_json::json!([user]));
        assert!(connect["query"].get("access_token").is_none(), "{connect}");
        let connected = self.server.first(|v| is(v, "connected", connection_id));
        assert_eq!(connected["userId"], format!("app-{user}"));
        assert_eq!(connected["states"], serde_json::json!({"calls": 0}));
        assert!(self
            .emu
            .hub(HUB)
            .group_members("app-group")
            .iter()
            .any(|c| c == connection_id));
        connect
    }

    /// Checks that the app server recorded `disconnected` for the connection with the last
    /// state `states`, and not before its user event `last`.
    pub fn assert_disconnected_after(&self, connection_id: &str, last: &str, states: Value) {
        let seen = self.server.first(|v| is(v, "disconnected", connection_id));
        assert_eq!(seen["states"], states);
        let before_it = self.server.until(|v| is(v, last, connection_id));
        assert!(!before_it
            .iter()
            .any(|v| is(v, "disconnected", connection_id)));
    }

    /// How many times the app server got the user event `event` from `connection_id`,
    /// counted once it has seen the later record `after` (of the same connection: the
    /// emulator sends a connection's events one at a time, in order).
    pub fn calls(
        &self,
        event: &str,
        connection_id: &str,
        after: impl FnMut(&Value) -> bool,
    ) -> usize {
        self.server
            .until(after)
            .iter()
            .filter(|v| is(v, event, connection_id))
            .count()
    }
}

/// Every JSON text frame the service sent through `relay`, connection after connection, each
/// in the order it crossed the wire. Frames from the service are not masked; the HTTP
/// upgrade answer before them is skipped.
pub fn frames_to_client(relay: &ChaosProxy) -> Vec<Value> {
    relay
        .recorded(Direction::ToClient)
        .iter()
        .flat_map(|(_, bytes)| text_frames(bytes))
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect()
}

fn text_frames(bytes: &[u8]) -> Vec<String> {
    let Some(head) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut rest = &bytes[head + 4..];
    let mut out = Vec::new();
    // A frame: FIN/opcode, then the length in 7 bits, or 16 or 64 more; no mask.
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0F;
        let (len, at) = match rest[1] & 0x7F {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        if rest.len() < at + len {
            break; // cut in the middle of a frame
        }
        if opcode == 1 {
            out.push(String::from_utf8_lossy(&rest[at..at + len]).into_owned());
        }
        rest = &rest[at + len..];
    }
    out
}

/// Where in `frames` the server message carrying `data` (as the JSON protocol writes it)
/// and the ack of `ack_id` are; panics naming the frames if either is missing.
pub fn reply_and_ack(frames: &[Value], data: &Value, ack_id: u64) -> (usize, usize) {
    let reply = frames
        .iter()
        .position(|f| f["type"] == "message" && f["from"] == "server" && &f["data"] == data);
    let ack = frames
        .iter()
        .position(|f| f["type"] == "ack" && f["ackId"] == ack_id);
    match (reply, ack) {
        (Some(r), Some(a)) => (r, a),
        _ => panic!("no reply {data} or no ack {ack_id} in {frames:#?}"),
    }
}

/// An official client SDK in a child process (`peer.js`, `peer.py` beside this file), driven
/// one JSON command per line: each command gets an `id` and its answer carries it back;
/// other lines are the client's events. Killed when dropped.
pub struct Peer {
    child: Spawned,
    next_id: u64,
    /// Lines read but not yet asked for: answers of other commands, events.
    stash: Vec<Value>,
    transcript: Vec<String>,
}

impl Peer {
    /// Bound of every wait for a line.
    pub const WAIT: Duration = Duration::from_secs(20);

    pub fn spawn(cmd: Command) -> Peer {
        Peer {
            child: Spawned::spawn(cmd).expect("spawn the peer"),
            next_id: 1,
            stash: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn fail(&self, why: &str) -> ! {
        let tail: Vec<&str> = self
            .transcript
            .iter()
            .rev()
            .take(30)
            .rev()
            .map(String::as_str)
            .collect();
        panic!(
            "peer: {why}\n--- last lines ---\n{}\n--- stderr ---\n{}",
            tail.join("\n"),
            self.child.stderr()
        );
    }

    /// Sends `cmd` (an object) with a fresh id; returns the id.
    pub fn begin(&mut self, mut cmd: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = id.into();
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        let line = cmd.to_string();
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            self.fail(&format!("cannot write {line}: {e}"));
        }
        id
    }

    /// The answer to command `id`.
    pub fn answer(&mut self, id: u64) -> Value {
        self.next(|v| v["id"] == id)
    }

    /// Sends `cmd` and waits for its answer.
    pub fn call(&mut self, cmd: Value) -> Value {
        let id = self.begin(cmd);
        self.answer(id)
    }

    /// [`call`](Self::call), and the answer must be a success.
    pub fn ok(&mut self, cmd: Value) -> Value {
        let answer = self.call(cmd.clone());
        if answer["ok"] != true {
            self.fail(&format!("{cmd} failed: {answer}"));
        }
        answer
    }

    /// The first line (stashed or new) for which `pick` holds.
    pub fn next(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        if let Some(at) = self.stash.iter().position(&mut pick) {
            return self.stash.remove(at);
        }
        let deadline = Instant::now() + Self::WAIT;
        loop {
            let line = match self.child.next_line(deadline) {
                Ok(line) => line,
                Err(NoLine::Timeout) => self.fail("timed out"),
                Err(NoLine::Eof) => self.fail("exited"),
            };
            self.transcript.push(line.clone());
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if pick(&v) {
                return v;
            }
            self.stash.push(v);
        }
    }
}
