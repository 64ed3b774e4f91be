//! Fault injection over HTTP (`/emulator/faults/...`): off unless turned on, authorised like
//! REST calls, and doing what the `HubHandle` faults do — checked over raw HTTP and a raw
//! WebSocket client, as a test in another language would.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_emulator::{rest_token, Emulator, Observation};
use webpubsub_protocol::{ClientMessage, ServiceMessage};
use webpubsub_testkit::process;

fn faults_on() -> Emulator {
    Emulator::builder().rest_faults(true).start().unwrap()
}

/// `POST /emulator/faults/hubs/chat/connections/{id}/{action}`, signed.
fn fault(emu: &Emulator, id: &str, action: &str) -> HttpResponse {
    rest(
        emu,
        "POST",
        &format!("/emulator/faults/hubs/chat/connections/{id}/{action}"),
        None,
        b"",
    )
}

fn joiner(emu: &Emulator) -> (String, Ws) {
    let url = emu
        .client_url("chat")
        .role("webpubsub.joinLeaveGroup")
        .build();
    let c = connect(&url);
    (url, c)
}

fn recover(url: &str, c: &Ws) -> Ws {
    let r = connect(&recovery_url(url, c));
    assert_eq!(r.connection_id, c.connection_id, "same session");
    r
}

#[test]
fn fault_routes_are_404_unless_turned_on() {
    let emu = Emulator::start().unwrap();
    let c = connect(&emu.client_url("chat").build());
    let r = fault(&emu, &c.connection_id, ":drop");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("--enable-faults"), "{}", r.body);
    assert_eq!(rest(&emu, "GET", "/emulator/faults", None, b"").status, 404);
    assert_eq!(
        rest(
            &emu,
            "POST",
            "/emulator/faults/:refuseRecoveries",
            None,
            b""
        )
        .status,
        404
    );
    assert!(
        emu.hub("chat").connections()[0].connected,
        "nothing dropped"
    );
}

#[test]
fn fault_routes_need_a_token_signed_with_the_access_key() {
    let emu = faults_on();
    let c = connect(&emu.client_url("chat").build());
    let target = format!(
        "/emulator/faults/hubs/chat/connections/{}/:drop",
        c.connection_id
    );
    assert_eq!(http(&emu, "POST", &target, &[], b"").status, 401);
    let forged = rest_token(
        "not the key",
        &format!("{}{target}", emu.endpoint()),
        Duration::from_secs(60),
    );
    let auth = format!("Bearer {forged}");
    let r = http(&emu, "POST", &target, &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 401);
    assert!(
        emu.hub("chat").connections()[0].connected,
        "nothing dropped"
    );
    let list = rest(&emu, "GET", "/emulator/faults", None, b"");
    assert_eq!(list.status, 200);
    let routes = list.json()["routes"].as_array().unwrap().len();
    assert_eq!(routes, 9, "{}", list.body);
}

#[test]
fn a_drop_over_http_cuts_the_socket_and_the_session_recovers() {
    let emu = faults_on();
    let obs = emu.observe();
    let (url, mut a) = joiner(&emu);
    assert_eq!(fault(&emu, &a.connection_id, ":drop").status, 204);
    assert_eq!(a.closed().0, None, "abrupt: no close frame");
    wait_dropped(&obs, &a.connection_id);
    let again = fault(&emu, &a.connection_id, ":drop");
    assert_eq!(
        again.status, 404,
        "no socket to drop while it waits for recovery"
    );
    assert!(again.body.contains("no socket"), "{}", again.body);
    let _r = recover(&url, &a);
    let unknown = fault(&emu, "nobody", ":loseNextAck");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["target"], "connectionId");
}

#[test]
fn a_drop_mid_frame_over_http_leaves_a_truncated_frame() {
    let emu = faults_on();
    let obs = emu.observe();
    let (url, mut a) = joiner(&emu);
    assert_eq!(fault(&emu, &a.connection_id, ":dropMidFrame").status, 204);
    match a.ws.read() {
        Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => {}
        other => panic!("expected a broken stream, got {other:?}"),
    }
    wait_dropped(&obs, &a.connection_id);
    let _r = recover(&url, &a);
}

#[test]
fn acks_can_be_lost_and_failed_over_http() {
    let emu = faults_on();
    let hub = emu.hub("chat");
    let (url, mut a) = joiner(&emu);
    let r = fault(&emu, &a.connection_id, ":failNextAcks?count=2");
    assert_eq!(r.status, 204, "{}", r.body);
    for _ in 0..2 {
        a.send(join("g", 1));
        assert_eq!(a.ack(1), (false, Some("InternalServerError".into())));
    }
    assert!(!hub.group_exists("g"));
    a.send(join("g", 1));
    assert_eq!(a.ack(1), (true, None));

    assert_eq!(fault(&emu, &a.connection_id, ":loseNextAck").status, 204);
    a.send(join("h", 2));
    let (code, seen) = a.closed();
    assert_eq!(code, None);
    assert!(seen.is_empty(), "no ack: {seen:?}");
    assert!(hub.group_exists("h"), "executed");
    let mut r = recover(&url, &a);
    r.send(join("h", 2));
    assert_eq!(r.ack(2), (false, Some("Duplicate".into())));

    for bad in [":failNextAcks?count=-1", ":failNextAcks?count=many"] {
        let resp = fault(&emu, &a.connection_id, bad);
        assert_eq!(resp.status, 400, "{bad}");
        assert_eq!(resp.json()["target"], "count");
    }
    assert_eq!(fault(&emu, &a.connection_id, ":explode").status, 404);
}

#[test]
fn acks_can_be_delayed_and_outbound_frames_held_over_http() {
    let emu = faults_on();
    let hub = emu.hub("chat");
    let (_url, mut a) = joiner(&emu);
    let id = a.connection_id.clone();
    assert_eq!(fault(&emu, &id, ":delayAcks?milliseconds=200").status, 204);
    let t0 = Instant::now();
    a.send(join("g", 1));
    a.send(ClientMessage::Ping);
    assert_eq!(
        a.recv(),
        ServiceMessage::Pong,
        "the ack comes after the pong"
    );
    assert_eq!(a.ack(1), (true, None));
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(fault(&emu, &id, ":delayAcks?milliseconds=0").status, 204);
    assert_eq!(
        fault(&emu, &id, ":delayAcks").status,
        400,
        "the delay is required"
    );

    assert_eq!(fault(&emu, &id, ":holdOutbound").status, 204);
    hub.send_to_connection(&id, "held");
    a.send(ClientMessage::Ping);
    // A bounded check that nothing is written while held.
    a.ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match a.ws.read() {
        Err(tungstenite::Error::Io(e)) => assert!(matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        other => panic!("expected nothing while held, got {other:?}"),
    }
    a.ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(fault(&emu, &id, ":releaseOutbound").status, 204);
    assert!(matches!(a.recv(), ServiceMessage::ServerMessage { .. }));
    assert_eq!(a.recv(), ServiceMessage::Pong);
}

#[test]
fn recoveries_can_be_refused_and_accepted_again_over_http() {
    let emu = faults_on();
    let obs = emu.observe();
    let (url, a) = joiner(&emu);
    assert_eq!(fault(&emu, &a.connection_id, ":drop").status, 204);
    wait_dropped(&obs, &a.connection_id);
    let post = |path: &str| rest(&emu, "POST", path, None, b"").status;
    assert_eq!(post("/emulator/faults/:refuseRecoveries"), 204);
    let mut refused = open_raw(&recovery_url(&url, &a), RELIABLE);
    match refused.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("expected close 1008, got {other:?}"),
    }
    wait_for(&obs, |o| {
        matches!(o, Observation::RecoveryRefused { .. }).then_some(())
    });
    assert_eq!(post("/emulator/faults/:acceptRecoveries"), 204);
    let _r = recover(&url, &a);
}

#[test]
fn the_binary_serves_fault_routes_only_with_enable_faults() {
    for (flag, expected) in [(true, 204), (false, 404)] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_webpubsub-emulator"));
        cmd.args([
            "--port",
            "0",
            "--access-key",
            "a-key-for-the-fault-routes-test",
        ]);
        if flag {
            cmd.arg("--enable-faults");
        }
        let child = process::Spawned::spawn(cmd).unwrap();
        let line = child
            .next_line(Instant::now() + WAIT)
            .unwrap_or_else(|e| panic!("no first line ({e:?}); stderr:\n{}", child.stderr()));
        let endpoint = line
            .trim_end()
            .strip_prefix("Endpoint=")
            .and_then(|l| l.split(';').next())
            .unwrap()
            .to_owned();
        let hostport = endpoint.trim_start_matches("http://");
        let target = "/emulator/faults/:acceptRecoveries";
        let token = rest_token(
            "a-key-for-the-fault-routes-test",
            &format!("{endpoint}{target}"),
            Duration::from_secs(60),
        );
        let mut s = std::net::TcpStream::connect(hostport).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "POST {target} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(
            parse_response(&out).status,
            expected,
            "--enable-faults {flag}"
        );
    }
    let mut help = std::process::Command::new(env!("CARGO_BIN_EXE_webpubsub-emulator"));
    help.arg("--help");
    let (code, stdout, _) = process::run_bounded(help, WAIT);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--enable-faults"), "{stdout}");
}
