//! The I/O loop's promises: a slow or silent peer holds up no one else on its thread, a
//! large body is read as its pieces arrive, and a stop is bounded and complete whatever
//! state the sockets are in. Every emulator here has one I/O thread, so that every socket
//! shares it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::*;
use tungstenite::protocol::frame::coding::CloseCode;
use webpubsub_emulator::Emulator;
use webpubsub_protocol::{ClientMessage, Data, ServiceMessage};

fn one_thread() -> Emulator {
    Emulator::builder().io_threads(1).start().unwrap()
}

/// Sockets that each stopped somewhere: silent, half a head, half a body, and a WebSocket
/// whose client reads nothing while the emulator has much to write to it.
struct Stuck {
    _sockets: Vec<TcpStream>,
    _deaf: Ws,
}

fn stuck_peers(emu: &Emulator) -> Stuck {
    let silent = TcpStream::connect(emu.addr()).unwrap();
    let mut half_head = TcpStream::connect(emu.addr()).unwrap();
    half_head
        .write_all(b"GET /client/hubs/chat HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut half_body = TcpStream::connect(emu.addr()).unwrap();
    write!(
        half_body,
        "POST /api/hubs/chat/:send HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly ten b"
    )
    .unwrap();
    let deaf = connect_plain(&emu.client_url("chat").build());
    // More than its socket buffers hold: the emulator's writes to it block.
    let big = "x".repeat(64 * 1024);
    for _ in 0..200 {
        assert!(emu
            .hub("chat")
            .send_to_connection(&deaf.connection_id, big.as_str()));
    }
    Stuck {
        _sockets: vec![silent, half_head, half_body],
        _deaf: deaf,
    }
}

#[test]
fn silent_and_slow_peers_hold_up_no_one_on_their_thread() {
    let emu = one_thread();
    let _stuck = stuck_peers(&emu);
    // Everything else still works at once (each wait bounded by the client's timeouts).
    let mut a = connect(
        &emu.client_url("chat")
            .role("webpubsub.joinLeaveGroup")
            .build(),
    );
    a.send(ClientMessage::JoinGroup {
        group: "g".into(),
        ack_id: Some(1),
    });
    assert_eq!(a.ack(1), (true, None));
    let r = rest(
        &emu,
        "POST",
        "/api/hubs/chat/groups/g/:send?api-version=2024-01-01",
        Some("text/plain"),
        b"hi",
    );
    assert_eq!(r.status, 202);
    let got = a.recv_until(|m| match m {
        ServiceMessage::ServerMessage { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(got, Data::from("hi"));
}

#[test]
fn a_large_body_is_read_as_its_pieces_arrive() {
    let emu = one_thread();
    let mut a = connect(&emu.client_url("chat").user_id("u").build());
    let body = "y".repeat(900 * 1024);
    let path = "/api/hubs/chat/users/u/:send?api-version=2024-01-01";
    let url = format!("{}{path}", emu.endpoint());
    let token = webpubsub_emulator::rest_token(emu.access_key(), &url, WAIT);
    let mut s = TcpStream::connect(emu.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        emu.addr(),
        body.len()
    )
    .unwrap();
    for piece in body.as_bytes().chunks(100 * 1024) {
        s.write_all(piece).unwrap();
        s.flush().unwrap();
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(parse_response(&out).status, 202);
    let got = a.recv_until(|m| match m {
        ServiceMessage::ServerMessage { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(got, Data::from(body));
}

#[test]
fn stop_is_bounded_and_says_goodbye_whatever_the_sockets_are_doing() {
    let emu = one_thread();
    let obs = emu.observe();
    let _stuck = stuck_peers(&emu);
    let mut a = connect(&emu.client_url("chat").build());
    let id = a.connection_id.clone();
    let (done, stopped) = crossbeam_channel::bounded(1);
    let stopper = std::thread::spawn(move || {
        emu.stop();
        let _ = done.send(());
    });
    // The deaf client never answers the close: its close times out, and stop still returns.
    stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("stop returns within its bound");
    stopper.join().unwrap();
    let (code, seen) = a.closed();
    assert_eq!(code, Some(CloseCode::Away));
    assert!(matches!(
        seen.last(),
        Some(ServiceMessage::Disconnected { .. })
    ));
    assert_eq!(wait_ended(&obs, &id), "The service is stopping");
}

#[test]
fn frames_written_one_per_system_call_arrive_whole_and_in_order() {
    let emu = Emulator::builder()
        .io_threads(1)
        .flush_each_frame(true)
        .max_unacked_messages(usize::MAX)
        .max_unacked_bytes(usize::MAX)
        .start()
        .unwrap();
    // One receiver per subprotocol; none reads until everything is queued, and the large
    // messages among the small ones are more than the sockets hold, so that writes block
    // and the rest waits behind them.
    let mut receivers = one_per_subprotocol(&emu);
    let hub = emu.hub("chat");
    let text = |i: usize| {
        let size = if i % 100 == 0 { 64 * 1024 } else { i % 300 };
        format!("{i:05}{}", "x".repeat(size))
    };
    const N: usize = 2_000;
    for i in 0..N {
        hub.send_to_group("g", text(i).as_str());
    }
    for rx in &mut receivers {
        for i in 0..N {
            let got = rx.recv_until(|m| match m {
                ServiceMessage::ServerMessage { data, .. } => Some(data.clone()),
                _ => None,
            });
            assert_eq!(
                got,
                Data::from(text(i)),
                "message {i} to a {}",
                rx.subprotocol
            );
        }
    }
}
