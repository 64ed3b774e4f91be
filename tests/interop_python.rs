//! Interoperability of OUR client with the OFFICIAL Python client SDK
//! (`azure-messaging-webpubsubclient` 1.1.0), both connected to the in-process emulator.
//!
//! The Rust client (user `rs`) and a Python peer (user `py`, `tests/python/interop_peer.py`,
//! driven through a line protocol on its stdin/stdout) join one group, and:
//!
//! 1. Rust sends text, json and binary; Python reports exactly those (type and bytes).
//! 2. Python sends text, json and binary; Rust gets `Data::Text`/`Json`/`Binary`, from `py`.
//! 3. The emulator sends server messages (to the group and to all); both get them.
//! 4. Rust publishes 200 numbered messages of all three types; after Python has reported 50
//!    of them, the emulator drops Python's socket. The publisher keeps going (from message 100
//!    only once the emulator saw the drop, from message 150 only once it saw the recovery).
//! 5. Python, recovered, sends text, json and binary again.
//!
//! Each phase is fenced: both sides must have received it before the next one starts. In the
//! end both sides must hold exactly the same list of messages, in sequence-id order, with
//! sequence ids 1..=n: nothing lost, nothing duplicated, nothing reordered.
//!
//! Needs python3 (skipped with a message if missing) and, the first time, network access
//! to PyPI for `testkit/python/setup_venv.sh`.

mod support;

use webpubsub_testkit::process::{NoLine, Spawned};
use webpubsub_testkit::python;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crossbeam_channel::Receiver;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use webpubsub_client::{Data, Event, WebPubSubClient};
use webpubsub_emulator::{Emulator, Observation};

const HUB: &str = "interop_hub";
const GROUP: &str = "interop";
/// Bound of the venv setup (a cold install downloads from PyPI).
/// Bound of the whole session with the Python peer, from its spawn to its exit.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Numbered messages Rust publishes around the cut.
const BURST: usize = 200;
/// Python's socket is dropped once it has reported this many burst messages.
const CUT_AFTER: usize = 50;
/// The publisher sends message #GATE_DROPPED only after the emulator reported the drop...
const GATE_DROPPED: usize = 100;
/// ...and message #GATE_RECOVERED only after it reported the recovery.
const GATE_RECOVERED: usize = 150;

// ---------------------------------------------------------------------------------------------
// Messages, as both sides see them

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Group,
    Server,
}

/// One received message, in a form both sides can be compared in.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    kind: Kind,
    from: Option<String>,
    data: Data,
}

fn group_msg(from: &str, data: impl Into<Data>) -> Msg {
    Msg {
        kind: Kind::Group,
        from: Some(from.to_owned()),
        data: data.into(),
    }
}

fn server_msg(data: impl Into<Data>) -> Msg {
    Msg {
        kind: Kind::Server,
        from: None,
        data: data.into(),
    }
}

/// The stdin line that makes the peer send `data` to the group.
fn send_command(data: &Data) -> String {
    let (ty, payload) = match data {
        Data::Text(s) => ("text", Value::String(s.clone())),
        Data::Json(v) => ("json", v.clone()),
        Data::Binary(b) => ("binary", Value::String(BASE64.encode(b))),
        other => panic!("not used here: {other:?}"),
    };
    format!("SEND {ty} {payload}")
}

fn burst_payload(i: usize) -> Data {
    match i % 3 {
        0 => Data::Text(format!("burst {i} ✓")),
        1 => Data::Json(json!({"burst": i, "x": 3.25, "tags": ["a", null, true]})),
        _ => Data::Binary(vec![0xB0, (i >> 8) as u8, i as u8, 0x00, 0xFF]),
    }
}

fn rust_payloads() -> Vec<Data> {
    vec![
        Data::Text("héllo from Rust 🦀 \"quoted\"\nsecond line\ttab".into()),
        Data::Json(json!({
            "from": "rs",
            "n": [1, -2, 2.5, 1e-7, 9007199254740993u64, null, true, false],
            "nested": {"ü": "ß", "empty": {}, "list": []},
            "s": "a\"b\\c"
        })),
        Data::Binary((0..=255u8).rev().chain(0..=255u8).collect()),
    ]
}

fn python_payloads(round: &str) -> Vec<Data> {
    vec![
        Data::Text(format!("héllo from Python 🐍 ({round})\r\n\u{0}end")),
        Data::Json(json!({"from": "py", "round": round, "v": [0.1, 123456789012u64, "ü"]})),
        Data::Binary([0u8, 1, 2, 0x7F, 0x80, 0xFE, 0xFF].repeat(37)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// The Python peer: a child process spoken to through lines. Killed when dropped, so a failing
/// test never leaves it behind.
struct Peer {
    child: Spawned,
    deadline: Instant,
    /// Every line read, for failure messages.
    transcript: Vec<String>,
    /// Received messages by sequence id.
    by_seq: BTreeMap<u64, Msg>,
    duplicate_seqs: Vec<u64>,
    sends: usize,
    /// The longest a `SEND` took (the SDK's ack race stalls a call for its `ack_timeout`).
    slowest_send: (Duration, usize),
}

impl Peer {
    fn spawn(python: &str, script: &Path, url: &str, deadline: Instant) -> Peer {
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg(url)
            .arg(GROUP)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8");
        Peer {
            child: Spawned::spawn(cmd).expect("spawn the Python peer"),
            deadline,
            transcript: Vec::new(),
            by_seq: BTreeMap::new(),
            duplicate_seqs: Vec::new(),
            sends: 0,
            slowest_send: (Duration::ZERO, 0),
        }
    }

    fn fail(&self, why: &str) -> ! {
        let tail: Vec<&String> = self.transcript.iter().rev().take(30).rev().collect();
        panic!(
            "Python peer: {why}\n--- last stdout lines ---\n{}\n--- stderr ---\n{}",
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            self.child.stderr()
        );
    }

    /// The next stdout line; `None` at EOF. A message report is recorded and comes back as
    /// an empty string (the peer never prints empty lines); `ERROR` lines fail the test.
    fn next_line(&mut self, waiting_for: &str) -> Option<String> {
        let line = match self.child.next_line(self.deadline) {
            Ok(line) => line,
            Err(NoLine::Timeout) => self.fail(&format!("timed out waiting for {waiting_for}")),
            Err(NoLine::Eof) => return None,
        };
        self.transcript.push(line.clone());
        if line.starts_with('{') {
            self.record(&line);
            return Some(String::new());
        }
        if line.starts_with("ERROR") {
            self.fail(&line);
        }
        Some(line)
    }

    fn record(&mut self, line: &str) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| self.fail(&format!("bad line {line:?}: {e}")));
        let kind = match v["kind"].as_str() {
            Some("group") => {
                if v["group"] != GROUP {
                    self.fail(&format!("message for another group: {line}"));
                }
                Kind::Group
            }
            Some("server") => Kind::Server,
            _ => self.fail(&format!("bad kind: {line}")),
        };
        let data = match (v["data_type"].as_str(), &v["data"]) {
            (Some("text"), Value::String(s)) => Data::Text(s.clone()),
            (Some("json"), value) => Data::Json(value.clone()),
            (Some("binary"), Value::String(b)) => Data::Binary(
                BASE64
                    .decode(b)
                    .unwrap_or_else(|e| self.fail(&format!("bad base64 in {line}: {e}"))),
            ),
            _ => self.fail(&format!("unexpected data type or data: {line}")),
        };
        let Some(seq) = v["seq"].as_u64() else {
            self.fail(&format!("no sequence id: {line}"))
        };
        let msg = Msg {
            kind,
            from: v["from"].as_str().map(str::to_owned),
            data,
        };
        if self.by_seq.insert(seq, msg).is_some() {
            self.duplicate_seqs.push(seq);
        }
    }

    fn write(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            self.fail(&format!("cannot write {line:?}: {e}"));
        }
    }

    fn wait_ready(&mut self) -> String {
        loop {
            match self.next_line("READY") {
                Some(l) if l.starts_with("READY ") => return l["READY ".len()..].to_owned(),
                Some(l) if l.is_empty() => {}
                Some(l) => self.fail(&format!("unexpected line before READY: {l}")),
                None => self.fail("exited before READY"),
            }
        }
    }

    /// Makes the peer send `data` to the group; returns once its `send_to_group` returned.
    fn send(&mut self, data: &Data) {
        let t0 = Instant::now();
        self.write(&send_command(data));
        self.sends += 1;
        let want = format!("SENT {}", self.sends);
        loop {
            match self.next_line(&want) {
                Some(l) if l == want => {
                    self.slowest_send = self.slowest_send.max((t0.elapsed(), self.sends));
                    return;
                }
                Some(l) if l.is_empty() => {}
                Some(l) => self.fail(&format!("unexpected line {l:?} waiting for {want}")),
                None => self.fail(&format!("exited waiting for {want}")),
            }
        }
    }

    /// Reads until at least `n` messages were reported.
    fn wait_messages(&mut self, n: usize) {
        while self.by_seq.len() < n {
            match self.next_line(&format!("{n} messages (have {})", self.by_seq.len())) {
                Some(l) if l.is_empty() => {}
                Some(l) => self.fail(&format!("unexpected line {l:?}")),
                None => self.fail("exited early"),
            }
        }
    }

    /// EXIT, then `BYE <received>`, then EOF; returns the peer's count of message callbacks.
    fn exit(mut self) -> (usize, Option<i32>) {
        self.write("EXIT");
        drop(self.child.stdin.take());
        let received = loop {
            match self.next_line("BYE") {
                Some(l) if l.starts_with("BYE ") => break l["BYE ".len()..].parse().unwrap(),
                Some(l) if l.is_empty() => {}
                Some(l) if l.starts_with("DISCONNECTED") => {}
                Some(l) => self.fail(&format!("unexpected line {l:?} waiting for BYE")),
                None => self.fail("exited without BYE"),
            }
        };
        // EOF on stdout: the process is gone (or about to be), so `wait` returns promptly.
        while let Some(l) = self.next_line("exit") {
            if !(l.is_empty() || l.starts_with("DISCONNECTED")) {
                self.fail(&format!("unexpected line {l:?} after BYE"));
            }
        }
        let code = self.child.wait().expect("wait").code();
        (received, code)
    }

    fn in_order(&self) -> Vec<Msg> {
        self.by_seq.values().cloned().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The Rust side

/// What the Rust client received, in delivery order, with sequence ids.
struct RustSide {
    events: Receiver<Event>,
    got: Vec<(u64, Msg)>,
    deadline: Instant,
    connected: bool,
}

impl RustSide {
    fn take(&mut self, event: Event) {
        match event {
            Event::GroupMessage(m) => {
                assert_eq!(m.group, GROUP, "{m:?}");
                let seq = m.sequence_id.expect("reliable protocol: a sequence id");
                self.got.push((
                    seq,
                    Msg {
                        kind: Kind::Group,
                        from: m.from_user_id,
                        data: m.data,
                    },
                ));
            }
            Event::ServerMessage(m) => {
                let seq = m.sequence_id.expect("reliable protocol: a sequence id");
                self.got.push((seq, server_msg(m.data)));
            }
            Event::Connected { .. } if !self.connected => self.connected = true,
            other => panic!("the Rust client was not cut, yet: {other:?}"),
        }
    }

    fn wait_messages(&mut self, n: usize) {
        while self.got.len() < n {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.take(event),
                Err(e) => panic!(
                    "Rust client: {e:?} waiting for {n} messages; have {}: {:?}",
                    self.got.len(),
                    self.got.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }
}

/// Waits for the first observation `pick` accepts, logging every observation seen.
fn wait_observation(
    obs: &Receiver<Observation>,
    seen: &mut Vec<Observation>,
    deadline: Instant,
    what: &str,
    pick: impl Fn(&Observation) -> bool,
) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match obs.recv_timeout(left) {
            Ok(o) => {
                let hit = pick(&o);
                seen.push(o);
                if hit {
                    return;
                }
            }
            Err(e) => panic!("{e:?} waiting for {what}; observations: {seen:#?}"),
        }
    }
}

fn is_request(o: &Observation) -> bool {
    matches!(o, Observation::Request { .. })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn rust_and_official_python_clients_get_the_same_messages_in_order_across_a_cut() {
    support::init_log();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let Some(python) = python::venv_python(
        "rust_and_official_python_clients_get_the_same_messages_in_order_across_a_cut",
    ) else {
        return;
    };
    let setup_took = started.elapsed();

    let emu = Emulator::start().unwrap();
    let obs = emu.observe();
    let mut seen = Vec::new();
    let hub = emu.hub(HUB);
    let roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
    let py_url = emu.client_url(HUB).user_id("py").roles(roles).build();
    let rs_url = emu.client_url(HUB).user_id("rs").roles(roles).build();
    let deadline = Instant::now() + SESSION_TIMEOUT;

    // --- both in the group
    let client = WebPubSubClient::new(&rs_url).unwrap();
    let mut rs = RustSide {
        events: client.events(),
        got: Vec::new(),
        deadline,
        connected: false,
    };
    let _running = client.start().unwrap();
    client.join_group(GROUP).unwrap();
    let rs_conn = client.connection_id().expect("connected");

    let spawned = Instant::now();
    let mut peer = Peer::spawn(
        &python,
        &root.join("tests/python/interop_peer.py"),
        &py_url,
        deadline,
    );
    let py_conn = peer.wait_ready();
    let ready_took = spawned.elapsed();
    wait_observation(
        &obs,
        &mut seen,
        deadline,
        "Python's Connected",
        |o| matches!(o, Observation::Connected { connection_id, .. } if *connection_id == py_conn),
    );
    match seen.last().unwrap() {
        Observation::Connected {
            user_id, reliable, ..
        } => {
            assert_eq!(user_id.as_deref(), Some("py"));
            assert!(reliable, "the Python SDK speaks the reliable protocol");
        }
        _ => unreachable!(),
    }
    assert_eq!(hub.group_members(GROUP).len(), 2, "both joined {GROUP}");

    let mut expected: Vec<Msg> = Vec::new();

    // --- 1. Rust -> Python
    for data in rust_payloads() {
        client.send_to_group(GROUP, data.clone()).unwrap();
        expected.push(group_msg("rs", data));
    }
    peer.wait_messages(expected.len());
    rs.wait_messages(expected.len());

    // --- 2. Python -> Rust
    for data in python_payloads("before the cut") {
        peer.send(&data);
        expected.push(group_msg("py", data));
    }
    rs.wait_messages(expected.len());
    peer.wait_messages(expected.len());

    // --- 3. server messages reach both
    hub.send_to_group(GROUP, "server text to the group");
    expected.push(server_msg("server text to the group"));
    hub.send_to_all(json!({"server": true, "to": "all", "n": 1.5}));
    expected.push(server_msg(json!({"server": true, "to": "all", "n": 1.5})));
    hub.send_to_group(GROUP, vec![0xDE, 0xAD, 0xBE, 0xEF, 0x00]);
    expected.push(server_msg(vec![0xDE, 0xAD, 0xBE, 0xEF, 0x00]));
    rs.wait_messages(expected.len());
    peer.wait_messages(expected.len());
    let before_burst = expected.len();

    // --- 4. Rust publishes continuously; Python's socket is dropped and recovers meanwhile
    let published = AtomicUsize::new(0);
    let (sent_at_drop, sent_at_recovery, recovery_took) = std::thread::scope(|s| {
        // Created inside the scope: if the main side panics, the senders drop and the publisher
        // stops waiting at once.
        let (dropped_tx, dropped_rx) = crossbeam_channel::bounded::<()>(1);
        let (recovered_tx, recovered_rx) = crossbeam_channel::bounded::<()>(1);
        let (client, published) = (&client, &published);
        let publisher = s.spawn(move || -> Result<(), String> {
            for i in 0..BURST {
                let gate = match i {
                    GATE_DROPPED => Some(("drop", &dropped_rx)),
                    GATE_RECOVERED => Some(("recovery", &recovered_rx)),
                    _ => None,
                };
                if let Some((what, rx)) = gate {
                    let left = deadline.saturating_duration_since(Instant::now());
                    rx.recv_timeout(left)
                        .map_err(|e| format!("publisher: no {what} before message {i}: {e}"))?;
                }
                client
                    .send_to_group(GROUP, burst_payload(i))
                    .map_err(|e| format!("publisher: message {i}: {e}"))?;
                published.store(i + 1, Ordering::SeqCst);
            }
            Ok(())
        });

        peer.wait_messages(before_burst + CUT_AFTER);
        let cut_at = Instant::now();
        assert!(hub.drop_connection(&py_conn), "Python's socket attached");
        wait_observation(
            &obs,
            &mut seen,
            deadline,
            "Python's Dropped",
            |o| matches!(o, Observation::Dropped { connection_id, .. } if *connection_id == py_conn),
        );
        let at_drop = published.load(Ordering::SeqCst);
        dropped_tx.send(()).unwrap();
        wait_observation(
            &obs,
            &mut seen,
            deadline,
            "Python's Recovered",
            |o| matches!(o, Observation::Recovered { connection_id, .. } if *connection_id == py_conn),
        );
        let at_recovery = published.load(Ordering::SeqCst);
        let gap = cut_at.elapsed();
        recovered_tx.send(()).unwrap();
        publisher.join().unwrap().unwrap();
        (at_drop, at_recovery, gap)
    });
    expected.extend((0..BURST).map(|i| group_msg("rs", burst_payload(i))));
    peer.wait_messages(expected.len());
    rs.wait_messages(expected.len());

    // --- 5. the recovered Python client publishes again
    for data in python_payloads("after the recovery") {
        peer.send(&data);
        expected.push(group_msg("py", data));
    }
    rs.wait_messages(expected.len());
    peer.wait_messages(expected.len());

    // --- verdict: both sides hold exactly `expected`, in sequence-id order, seqs 1..=n
    assert!(
        peer.duplicate_seqs.is_empty(),
        "Python reported sequence ids twice: {:?}",
        peer.duplicate_seqs
    );
    let py_seqs: Vec<u64> = peer.by_seq.keys().copied().collect();
    assert_eq!(
        py_seqs,
        (1..=expected.len() as u64).collect::<Vec<_>>(),
        "Python's sequence ids"
    );
    let py_got = peer.in_order();
    for (i, (got, want)) in py_got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "Python's message #{} (seq {})", i, i + 1);
    }
    assert_eq!(py_got.len(), expected.len());

    let rs_seqs: Vec<u64> = rs.got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        rs_seqs,
        (1..=expected.len() as u64).collect::<Vec<_>>(),
        "Rust's sequence ids, in delivery order"
    );
    for (i, ((_, got), want)) in rs.got.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "Rust's message #{} (seq {})", i, i + 1);
    }
    assert_eq!(rs.got.len(), expected.len());

    // The emulator saw one cut and one recovery of Python's session, no new session for `py`,
    // and nothing happened to the Rust client's socket.
    seen.extend(obs.try_iter());
    seen.retain(|o| !is_request(o));
    let py_connects = seen
        .iter()
        .filter(|o| matches!(o, Observation::Connected { user_id: Some(u), .. } if u == "py"))
        .count();
    let recoveries = seen
        .iter()
        .filter(|o| matches!(o, Observation::Recovered { .. }))
        .count();
    let drops: Vec<&Observation> = seen
        .iter()
        .filter(|o| matches!(o, Observation::Dropped { .. }))
        .collect();
    assert_eq!(py_connects, 1, "{seen:#?}");
    assert_eq!(recoveries, 1, "{seen:#?}");
    assert_eq!(drops.len(), 1, "{seen:#?}");
    assert!(
        !seen.iter().any(|o| matches!(o,
            Observation::Dropped { connection_id, .. } | Observation::SessionEnded { connection_id, .. }
                if *connection_id == rs_conn)),
        "{seen:#?}"
    );

    // --- the peer exits cleanly; its callbacks ran exactly once per message
    let slowest_py_send = peer.slowest_send;
    let (py_callbacks, code) = peer.exit();
    assert_eq!(code, Some(0), "the Python peer's exit code");
    assert_eq!(
        py_callbacks,
        expected.len(),
        "Python's message callbacks (duplicates would be extra)"
    );
    // Nothing more reached the Rust client either.
    let extra: Vec<Event> = rs
        .events
        .try_iter()
        .filter(|e| matches!(e, Event::GroupMessage(_) | Event::ServerMessage(_)))
        .collect();
    assert!(extra.is_empty(), "extra messages at Rust: {extra:?}");

    let py_sends = 2 * python_payloads("").len();
    let (slowest, slowest_index) = slowest_py_send;
    let session = started.elapsed() - setup_took;
    let gap = sent_at_recovery - sent_at_drop;
    let n = expected.len();
    println!(
        "interop_python: both sides received the same {n} messages exactly once, in order \
         ({BURST} burst messages from Rust, {py_sends} from Python, 3 server messages).\n  \
         cut: dropped after Python reported {CUT_AFTER} burst messages; publisher had sent \
         {sent_at_drop} when the drop was observed and {sent_at_recovery} when the recovery \
         was observed ({gap} published between the two observations); drop to \
         recovery {recovery_took:.1?}.\n  \
         time: venv setup {setup_took:.1?}, session {session:.1?} (Python start to READY \
         {ready_took:.1?}; slowest Python send {slowest:.1?}, SEND #{slowest_index} of {py_sends})"
    );
}
