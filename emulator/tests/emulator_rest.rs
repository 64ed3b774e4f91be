//! The emulator's REST API, its binary, and TLS.

mod support;

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};
use support::*;
use webpubsub_emulator::{rest_token, Emulator, Permission};
use webpubsub_protocol::{Data, ServiceMessage};
use webpubsub_testkit::process;

const V: &str = "api-version=2024-12-01";

fn server_data(c: &mut Ws) -> Vec<Data> {
    c.drain_until_pong()
        .into_iter()
        .filter_map(|m| match m {
            ServiceMessage::ServerMessage { data, .. } => Some(data),
            _ => None,
        })
        .collect()
}

#[test]
fn rest_requests_without_a_valid_token_get_401() {
    let emu = Emulator::start().unwrap();
    let target = format!("/api/hubs/chat/:send?{V}");
    let r = http(
        &emu,
        "POST",
        &target,
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 401);
    let bad = rest_token(
        "wrong key",
        &format!("{}{target}", emu.endpoint()),
        Duration::from_secs(60),
    );
    let auth = format!("Bearer {bad}");
    let r = http(
        &emu,
        "POST",
        &target,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 401);
    let other_url = rest_token(
        emu.access_key(),
        &format!("{}/api/hubs/other/:send", emu.endpoint()),
        Duration::from_secs(60),
    );
    let auth = format!("Bearer {other_url}");
    let r = http(
        &emu,
        "POST",
        &target,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("audience"), "{}", r.body);
}

#[test]
fn rest_audience_may_omit_the_query_and_differ_in_case() {
    let emu = Emulator::start().unwrap();
    let target = format!("/api/hubs/chat/:send?{V}");
    let aud = format!("{}/API/hubs/CHAT/:send", emu.endpoint().to_uppercase());
    let auth = format!(
        "Bearer {}",
        rest_token(emu.access_key(), &aud, Duration::from_secs(60))
    );
    let r = http(
        &emu,
        "POST",
        &target,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"x",
    );
    assert_eq!(r.status, 202, "{}", r.body);
}

#[test]
fn rest_sends_deliver_text_json_and_binary_as_server_messages() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").user_id("u1").group("g").build());
    let mut b = connect(&emu.client_url("chat").user_id("u2").group("g").build());
    let post = |path: &str, ct: &str, body: &[u8]| {
        rest(
            &emu,
            "POST",
            &format!("/api/hubs/chat{path}"),
            Some(ct),
            body,
        )
    };
    assert_eq!(
        post(&format!("/:send?{V}"), "text/plain", b"all").status,
        202
    );
    assert_eq!(
        post(
            &format!("/:send?excluded={}&{V}", a.connection_id),
            "application/json",
            br#"{"a":1}"#
        )
        .status,
        202
    );
    assert_eq!(
        post(
            &format!("/users/u1/:send?{V}"),
            "application/octet-stream",
            &[0, 1, 2]
        )
        .status,
        202
    );
    assert_eq!(
        post(
            &format!("/connections/{}/:send?{V}", b.connection_id),
            "text/plain; charset=utf-8",
            b"conn"
        )
        .status,
        202
    );
    assert_eq!(
        post(
            &format!("/groups/g/:send?excluded={}&{V}", b.connection_id),
            "text/plain",
            b"group"
        )
        .status,
        202
    );
    // An unknown content type is 415 Unsupported Media Type, as in the service.
    assert_eq!(
        post(&format!("/:send?{V}"), "application/xml", b"<a/>").status,
        415
    );
    assert_eq!(
        post(&format!("/:send?{V}"), "application/json", b"{not json").status,
        400
    );
    assert_eq!(
        server_data(&mut a),
        vec![
            Data::from("all"),
            Data::from(vec![0u8, 1, 2]),
            Data::from("group")
        ]
    );
    assert_eq!(
        server_data(&mut b),
        vec![
            Data::from("all"),
            Data::from(json!({"a": 1})),
            Data::from("conn")
        ]
    );
}

#[test]
fn rest_existence_checks_are_200_or_404_and_membership_changes_200_and_204() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let a = connect(&emu.client_url("chat").user_id("u 1").build());
    let id = &a.connection_id;
    let call =
        |m: &str, path: &str| rest(&emu, m, &format!("/api/hubs/chat{path}?{V}"), None, b"").status;
    assert_eq!(call("HEAD", &format!("/connections/{id}")), 200);
    assert_eq!(call("HEAD", "/connections/nope"), 404);
    assert_eq!(call("HEAD", "/users/u%201"), 200);
    assert_eq!(call("HEAD", "/users/nobody"), 404);
    assert_eq!(call("HEAD", "/groups/grp%201%2F%C3%A9"), 404);
    assert_eq!(
        call("PUT", &format!("/groups/grp%201%2F%C3%A9/connections/{id}")),
        200
    );
    assert_eq!(hub.group_members("grp 1/é"), vec![id.clone()]);
    assert_eq!(call("HEAD", "/groups/grp%201%2F%C3%A9"), 200);
    assert_eq!(
        call(
            "DELETE",
            &format!("/groups/grp%201%2F%C3%A9/connections/{id}")
        ),
        204
    );
    assert!(!hub.group_exists("grp 1/é"));
    assert_eq!(call("PUT", "/users/u%201/groups/ug"), 200);
    assert_eq!(hub.group_members("ug"), vec![id.clone()]);
    assert_eq!(call("DELETE", "/users/u%201/groups/ug"), 204);
    assert!(!hub.group_exists("ug"));
    assert_eq!(call("PUT", "/users/u%201/groups/a"), 200);
    assert_eq!(call("DELETE", "/users/u%201/groups"), 204);
    assert!(!hub.group_exists("a"));
    assert_eq!(call("GET", "/nothing"), 404);
}

#[test]
fn rest_granted_permissions_are_checked_per_group_and_revoked_and_unknown_ones_are_400() {
    let emu = Emulator::start().unwrap();
    let hub = emu.hub("chat");
    let a = connect(&emu.client_url("chat").build());
    let id = &a.connection_id;
    let call = |m: &str, q: &str| {
        rest(
            &emu,
            m,
            &format!("/api/hubs/chat/permissions/sendToGroup/connections/{id}?{q}{V}"),
            None,
            b"",
        )
        .status
    };
    assert_eq!(call("HEAD", "targetName=g&"), 404);
    assert_eq!(call("PUT", "targetName=g&"), 200);
    assert!(hub.has_permission(id, Permission::SendToGroup, Some("g")));
    assert_eq!(call("HEAD", "targetName=g&"), 200);
    assert_eq!(call("HEAD", "targetName=h&"), 404);
    assert_eq!(call("DELETE", "targetName=g&"), 204);
    assert_eq!(call("HEAD", "targetName=g&"), 404);
    let bogus = rest(
        &emu,
        "PUT",
        &format!("/api/hubs/chat/permissions/fly/connections/{id}?{V}"),
        None,
        b"",
    );
    assert_eq!(bogus.status, 400);
}

#[test]
fn rest_close_connection_sends_the_reason_and_answers_204() {
    let emu = Emulator::start().unwrap();
    let mut a = connect(&emu.client_url("chat").build());
    let r = rest(
        &emu,
        "DELETE",
        &format!(
            "/api/hubs/chat/connections/{}?reason=bye%20now&{V}",
            a.connection_id
        ),
        None,
        b"",
    );
    assert_eq!(r.status, 204);
    let (code, seen) = a.closed();
    assert_eq!(code.map(u16::from), Some(1008));
    assert_eq!(
        seen.last(),
        Some(&ServiceMessage::Disconnected {
            message: Some("bye now".into())
        })
    );
    let mut b = connect(&emu.client_url("chat").build());
    let r = rest(
        &emu,
        "POST",
        &format!("/api/hubs/chat/:closeConnections?reason=all&{V}"),
        None,
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(b.closed().0.map(u16::from), Some(1008));
}

#[test]
fn rest_generate_token_gives_a_working_client_token() {
    let emu = Emulator::start().unwrap();
    let r = rest(
        &emu,
        "POST",
        &format!("/api/hubs/chat/:generateToken?userId=zoe&role=webpubsub.joinLeaveGroup&group=g1&group=g2&minutesToExpire=5&{V}"),
        None,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let token = v["token"].as_str().unwrap();
    let c = connect(&format!(
        "ws://{}/client/hubs/chat?access_token={token}",
        emu.addr()
    ));
    assert_eq!(c.user_id.as_deref(), Some("zoe"));
    let info = emu.hub("chat").connections();
    assert_eq!(info[0].groups, vec!["g1".to_string(), "g2".to_string()]);
    assert!(emu
        .hub("chat")
        .has_permission(&c.connection_id, Permission::JoinLeaveGroup, None));
}

#[test]
fn rest_keeps_the_connection_alive_between_requests() {
    let emu = Emulator::start().unwrap();
    let mut s = std::net::TcpStream::connect(emu.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        let target = format!("/api/hubs/chat/groups/g?{V}");
        let token = rest_token(
            emu.access_key(),
            &format!("{}{target}", emu.endpoint()),
            Duration::from_secs(60),
        );
        write!(
            s,
            "HEAD {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            emu.addr()
        )
        .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
    }
}

#[test]
fn the_binary_prints_the_connection_string_first() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_webpubsub-emulator"));
    cmd.args([
        "--port",
        "0",
        "--access-key",
        "a-test-key-that-is-long-enough-for-pyjwt",
    ]);
    // Killed when dropped, whatever happens, so the test never hangs on it.
    let child = process::Spawned::spawn(cmd).unwrap();
    let line = child
        .next_line(Instant::now() + WAIT)
        .unwrap_or_else(|e| panic!("no first line ({e:?}); stderr:\n{}", child.stderr()));
    let line = line.trim_end();
    assert!(line.starts_with("Endpoint=http://127.0.0.1:"), "{line}");
    assert!(
        line.ends_with(";AccessKey=a-test-key-that-is-long-enough-for-pyjwt;Version=1.0;"),
        "{line}"
    );
    // It serves: an unauthenticated REST call gets 401.
    let endpoint = &line["Endpoint=http://".len()..line.find(';').unwrap()];
    let mut s = std::net::TcpStream::connect(endpoint).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "POST /api/hubs/h/:send HTTP/1.1\r\nHost: {endpoint}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(parse_response(&out).status, 401);
    drop(child);
}

#[test]
fn the_binary_explains_bad_arguments() {
    let run = |arg: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_webpubsub-emulator"));
        cmd.arg(arg);
        process::run_bounded(cmd, WAIT)
    };
    let (code, _, stderr) = run("--bogus");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown argument"), "{stderr}");
    let (code, stdout, _) = run("--help");
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--access-key"), "{stdout}");
}

#[test]
fn tls_serves_wss_and_https() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let identity = native_tls::Identity::from_pkcs8(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let emu = Emulator::builder().tls(identity).start().unwrap();
    assert!(emu.endpoint().starts_with("https://"));
    let url = emu.client_url("chat").group("g").build();
    assert!(url.starts_with("wss://"), "{url}");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(
            native_tls::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let tcp = std::net::TcpStream::connect(emu.addr()).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let tls = connector.connect("localhost", tcp).unwrap();
    let mut c = handshake(request(&url, Some(RELIABLE), None), tls).expect("wss upgrade");
    emu.hub("chat").send_to_group("g", "over tls");
    match c.recv() {
        ServiceMessage::ServerMessage {
            data, sequence_id, ..
        } => {
            assert_eq!((data, sequence_id), (Data::from("over tls"), Some(1)));
        }
        other => panic!("{other:?}"),
    }
    // REST over https.
    let target = format!("/api/hubs/chat/groups/g?{V}");
    let token = rest_token(
        emu.access_key(),
        &format!("{}{target}", emu.endpoint()),
        Duration::from_secs(60),
    );
    let tcp = std::net::TcpStream::connect(emu.addr()).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = connector.connect("localhost", tcp).unwrap();
    write!(tls, "HEAD {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n", emu.addr()).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    assert_eq!(parse_response(&out).status, 200);
}
