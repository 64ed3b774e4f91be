//! Hostile input from the user's side (B2, B5, B15, B35): every bad input gets a typed error
//! (the variant is asserted), never a panic or a hang. Every row is checked, and the test
//! reports all the rows that failed at once. It also writes the bad-input table (input →
//! error variant → message) to `target/bad-inputs.md` for the crate docs.

mod support;

use parking_lot::Mutex;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{url, HUB, WAIT};
use webpubsub_client::{
    ConnectError, Credential, Error, InvalidInput, RequestOptions, RetryPolicy, StateError,
    WebPubSubClient,
};
use webpubsub_emulator::Emulator;

/// The bad-input table, and every check that failed on the way.
#[derive(Default)]
struct Table {
    rows: Mutex<Vec<(String, String, String)>>,
    failures: Mutex<Vec<String>>,
}

impl Table {
    /// Records a row: `result` must be an error that `check` accepts. A failed row is
    /// recorded and the test goes on to the next one.
    fn row<T: std::fmt::Debug>(
        &self,
        input: &str,
        result: Result<T, Error>,
        check: impl Fn(&Error) -> bool,
    ) {
        let err = match result {
            Ok(v) => return self.fail(format!("{input}: accepted ({v:?}) instead of an error")),
            Err(e) => e,
        };
        if !check(&err) {
            self.fail(format!("{input}: unexpected error {err:?}"));
        }
        let variant = variant(&err);
        self.rows
            .lock()
            .push((input.to_owned(), variant, err.to_string()));
    }

    /// Records a failure unless `ok`.
    fn expect(&self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.fail(failure());
        }
    }

    fn fail(&self, failure: String) {
        self.failures.lock().push(failure);
    }

    /// Runs `f`, recording a failure if it did not return within `WAIT`.
    fn bounded<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        let took = t.elapsed();
        self.expect(took < WAIT, || format!("{what} took {took:?}"));
        r
    }

    fn markdown(&self) -> String {
        let mut md = String::from("| input | error | message |\n|---|---|---|\n");
        for (i, v, m) in self.rows.lock().iter() {
            let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            let _ = writeln!(md, "| {} | `{}` | {} |", esc(i), esc(v), esc(m));
        }
        md
    }
}

/// The error's variant path, e.g. `Error::InvalidInput(InvalidInput::Url(..))`.
fn variant(e: &Error) -> String {
    match e {
        Error::InvalidInput(i) => format!(
            "Error::InvalidInput(InvalidInput::{})",
            match i {
                InvalidInput::Url(_) => "Url(..)",
                InvalidInput::GroupName(_) => "GroupName(..)",
                InvalidInput::EventName => "EventName",
                InvalidInput::PayloadTooLarge { .. } => "PayloadTooLarge { .. }",
                InvalidInput::AckIdInUse(_) => "AckIdInUse(..)",
                InvalidInput::Options(_) => "Options(..)",
                InvalidInput::Serialize(_) => "Serialize(..)",
                _ => "?",
            }
        ),
        Error::Connect(c) => format!(
            "Error::Connect(ConnectError::{})",
            match c {
                ConnectError::Http { .. } => "Http { .. }",
                ConnectError::Io { .. } => "Io { .. }",
                ConnectError::Tls(_) => "Tls(..)",
                ConnectError::Handshake(_) => "Handshake(..)",
                ConnectError::Closed { .. } => "Closed { .. }",
                ConnectError::Credential(_) => "Credential(..)",
                _ => "?",
            }
        ),
        Error::State(s) => format!("Error::State(StateError::{s:?})"),
        Error::Stopped => "Error::Stopped".into(),
        Error::Timeout(t) => format!("Error::Timeout({t:?})"),
        Error::Ack(_) => "Error::Ack(..)".into(),
        Error::ConnectionLost { .. } => "Error::ConnectionLost { .. }".into(),
        Error::Protocol(_) => "Error::Protocol(..)".into(),
        _ => "?".into(),
    }
}

fn builder(c: impl Into<Credential>) -> webpubsub_client::WebPubSubClientBuilder {
    WebPubSubClient::builder(c)
        .start_timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .recovery_retry_interval(Duration::from_millis(50))
        .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(50), 5))
        .message_retry(RetryPolicy::none())
}

#[test]
fn every_bad_input_gets_a_typed_error() {
    let table = Table::default();
    let is_url = |e: &Error| matches!(e, Error::InvalidInput(InvalidInput::Url(_)));

    // ---- URLs (B35), refused by `new`/`build` before anything is sent ----
    for (label, u) in [
        (
            "URL with scheme `ftp://`",
            "ftp://example.com/client/hubs/chat?access_token=t",
        ),
        ("URL with scheme `file://`", "file:///client/hubs/chat"),
        (
            "URL without a hub (`/client/`)",
            "wss://example.com/client/?access_token=t",
        ),
        (
            "URL without a hub (`/client/hubs/`)",
            "wss://example.com/client/hubs/?access_token=t",
        ),
        (
            "URL with another path",
            "wss://example.com/api/hubs/chat?access_token=t",
        ),
        ("garbage (`not a url`)", "not a url"),
        ("empty URL", ""),
        ("URL without a host (`wss://`)", "wss://"),
        (
            "URL with port 99999",
            "wss://example.com:99999/client/hubs/chat",
        ),
    ] {
        let r = WebPubSubClient::new(u);
        if let Err(e) = &r {
            table.expect(!e.to_string().contains("access_token=t"), || {
                format!("{label}: token in {e}")
            });
        }
        table.row(label, r, is_url);
    }

    let emu = Emulator::start().unwrap();
    let good = url(&emu, "u");

    // A URL without a token is well-formed (the token could be anything); the service
    // refuses it at start with 401, which `start` reports (B3).
    let no_token = format!("{}/client/hubs/{HUB}", emu.endpoint().replace("http", "ws"));
    let c = builder(no_token.as_str()).build().unwrap();
    let r = table.bounded("start", || c.start());
    table.row("URL without `access_token` (at `start`)", r, |e| {
        e.http_status() == Some(401)
    });

    // ---- the credential provider ----
    let c = builder(Credential::from_fn(|| Err("token server down".into())))
        .build()
        .unwrap();
    let r = table.bounded("start", || c.start());
    table.row("provider returns an error (at `start`)", r, |e| {
        matches!(e, Error::Connect(ConnectError::Credential(m)) if m.to_string().contains("token server down"))
    });
    let c = builder(Credential::from_fn(|| panic!("provider bug")))
        .build()
        .unwrap();
    let r = table.bounded("start", || c.start());
    table.row("provider panics (at `start`)", r, |e| {
        matches!(e, Error::Connect(ConnectError::Credential(_)))
    });
    let c = builder(Credential::from_fn(|| Ok("garbage".into())))
        .build()
        .unwrap();
    let r = table.bounded("start", || c.start());
    table.row("provider returns a garbage URL (at `start`)", r, is_url);

    // ---- calls on a client never started, then a started one ----
    let c = builder(good.as_str()).build().unwrap();
    let r = c.send_to_group("g", "x");
    table.row("`send_to_group` before `start`", r, |e| {
        matches!(e, Error::Stopped)
    });

    let guard = c.start().unwrap();
    let r = c.start().map(|g| g.detach());
    table.row("`start` while started", r, |e| {
        matches!(e, Error::State(StateError::AlreadyStarted))
    });

    let is_group = |e: &Error| matches!(e, Error::InvalidInput(InvalidInput::GroupName(_)));
    let long = "g".repeat(1025);
    table.row("`join_group(\"\")`", c.join_group(""), is_group);
    table.row("`leave_group(\"\")`", c.leave_group(""), is_group);
    table.row(
        "`send_to_group(\"\", ..)`",
        c.send_to_group("", "x"),
        is_group,
    );
    table.row(
        "group name of 1025 characters",
        c.join_group(&long),
        is_group,
    );
    // Characters, not bytes: 1024 two-byte characters are allowed.
    let wide = "é".repeat(1024);
    let r = c.join_group(&wide);
    table.expect(r.is_ok(), || {
        format!("1024 two-byte characters refused: {r:?}")
    });
    let r = c.join_group(&"g".repeat(1024));
    table.expect(r.is_ok(), || format!("1024 characters refused: {r:?}"));

    let is_big = |e: &Error| matches!(e, Error::InvalidInput(InvalidInput::PayloadTooLarge { size, max }) if size > max && *max == 1 << 20);
    let big = "x".repeat(1 << 20);
    table.row(
        "`send_to_group` with a 1 MiB text payload",
        c.send_to_group("g", big.as_str()),
        is_big,
    );
    table.row(
        "`send_event` with 800 KiB of bytes (over 1 MB once base64-encoded)",
        c.send_event("e", vec![0u8; 800 << 10]),
        is_big,
    );
    table.row("`send_event(\"\", ..)`", c.send_event("", "x"), |e| {
        matches!(e, Error::InvalidInput(InvalidInput::EventName))
    });
    table.row(
        "fire-and-forget with an ack id",
        c.send_to_group_with(
            "g",
            "x",
            &RequestOptions::new().fire_and_forget(true).ack_id(9),
        ),
        |e| matches!(e, Error::InvalidInput(InvalidInput::Options(_))),
    );
    let id = c.connection_id().unwrap();
    emu.hub(HUB).delay_acks(&id, Duration::from_secs(3));
    let pending = c
        .send_to_group_nowait("g", "x", &RequestOptions::new().ack_id(4242))
        .unwrap();
    let r = c.send_to_group_with("g", "y", &RequestOptions::new().ack_id(4242));
    table.row("an ack id still in flight, given again", r, |e| {
        matches!(e, Error::InvalidInput(InvalidInput::AckIdInUse(4242))) && e.ack_id() == Some(4242)
    });
    emu.hub(HUB).delay_acks(&id, Duration::ZERO);
    drop(pending);

    // ---- calls from inside callbacks (B15): send and join work, start is refused, stop
    // stops asynchronously without deadlock ----
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Result<(), Error>)>();
    let cb = c.clone();
    let _sub = c.on_server_message(move |m| {
        let webpubsub_client::Data::Text(t) = &m.data else {
            return;
        };
        let r = match t.as_str() {
            "send" => cb.send_to_group("g", "from a callback").map(|_| ()),
            "join" => cb.join_group("cb-group").map(|_| ()),
            "start" => cb.start().map(|g| {
                g.detach();
            }),
            "stop" => {
                cb.stop();
                Ok(())
            }
            _ => return,
        };
        let _ = tx.send((t.clone(), r));
    });
    for what in ["send", "join", "start"] {
        emu.hub(HUB).send_to_connection(&id, what);
        let (got, r) = rx.recv_timeout(WAIT).expect("callback ran");
        assert_eq!(got, what);
        match what {
            "start" => table.row("`start` from a callback while started", r, |e| {
                matches!(e, Error::State(StateError::AlreadyStarted))
            }),
            _ => table.expect(r.is_ok(), || format!("{what} from a callback: {r:?}")),
        }
    }
    let events = c.events();
    emu.hub(HUB).send_to_connection(&id, "stop");
    assert!(rx.recv_timeout(WAIT).unwrap().1.is_ok());
    let deadline = Instant::now() + WAIT;
    loop {
        match events.recv_deadline(deadline) {
            Ok(webpubsub_client::Event::Stopped) => break,
            Ok(_) => {}
            Err(e) => panic!("stop() from a callback did not stop the client: {e}"),
        }
    }
    guard.detach();

    // ---- calls after stop ----
    table.bounded("stop", || c.stop());
    let stopped = |e: &Error| matches!(e, Error::Stopped);
    table.row(
        "`send_to_group` after `stop`",
        c.send_to_group("g", "x"),
        stopped,
    );
    table.row("`join_group` after `stop`", c.join_group("g"), stopped);
    table.row("`send_event` after `stop`", c.send_event("e", "x"), stopped);
    // A stopped client can start again (B7).
    let again = table.bounded("restart", || c.start());
    table.expect(again.is_ok(), || format!("restart after stop: {again:?}"));
    let r = c.send_to_group("g", "back");
    table.expect(r.is_ok(), || format!("send after a restart: {r:?}"));
    drop(again);

    let md = table.markdown();
    println!("{md}");
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("bad-inputs.md");
    std::fs::write(&target, &md).unwrap();
    println!("written to {}", target.display());
    let failures = table.failures.lock();
    assert!(
        failures.is_empty(),
        "{} of the bad inputs were not handled as they must be:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_provider_that_panics_on_reconnect_is_retried_and_the_client_stays_usable() {
    // The provider is called again for a new connection (B8); a panic there is a failed
    // attempt (retried per reconnect_retry), not a crashed I/O thread.
    let emu = Emulator::start().unwrap();
    let good = url(&emu, "u");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let n = calls.clone();
    let c = builder(Credential::from_fn(move || {
        match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            1 => panic!("provider bug on the second call"),
            _ => Ok(good.clone()),
        }
    }))
    .build()
    .unwrap();
    let events = c.events();
    let _g = c.start().unwrap();
    let id = c.connection_id().unwrap();
    // `start()` may return before its `Connected` is dispatched: take that one first.
    assert!(matches!(
        events.recv_timeout(WAIT),
        Ok(webpubsub_client::Event::Connected { .. })
    ));
    emu.hub(HUB).close_connection(&id, "bye"); // 1008: a new connection is needed
    let deadline = Instant::now() + WAIT;
    loop {
        match events.recv_deadline(deadline) {
            Ok(webpubsub_client::Event::Connected { connection_id, .. }) => {
                assert_ne!(connection_id, id);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no new connection after the provider panicked: {e}"),
        }
    }
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(c.join_group("g").is_ok());
}
