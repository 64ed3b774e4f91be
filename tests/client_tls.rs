//! TLS end to end against the emulator serving wss:// with a test certificate (B36).
mod support;
use support::*;
use webpubsub_client::native_tls::{Certificate, Identity};
use webpubsub_client::{ClientState, ConnectError, Error};
use webpubsub_emulator::Emulator;

/// A CA and a certificate it signed for 127.0.0.1 and localhost; the emulator serves the latter.
fn tls_emulator() -> (Emulator, Certificate) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webpubsub-client test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let identity = Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("identity");
    let emu = Emulator::builder().tls(identity).start().unwrap();
    (emu, Certificate::from_pem(ca.pem().as_bytes()).unwrap())
}

per_protocol! {
    reliable;

    fn certificate_is_accepted_when_its_root_is_added(p: Protocol) {
        // B36
        let (emu, root) = tls_emulator();
        let client = builder(url(&emu, "a").as_str())
            .protocol(p)
            .add_root_certificate(root)
            .build()
            .unwrap();
        let _g = client.start().unwrap();
        client.join_group("g").unwrap();
        client.send_to_group("g", "over tls").unwrap();
        // Recovery over TLS too.
        let events = client.events();
        emu.hub(HUB)
            .drop_connection(client.connection_id().unwrap());
        recv_until(&events, |e| {
            matches!(e, webpubsub_client::Event::Recovered { .. })
        });
        client.send_to_group("g", "after recovery").unwrap();
    }
}

#[test]
fn untrusted_certificate_is_refused_by_default() {
    // B36
    let (emu, _) = tls_emulator();
    let u = url(&emu, "a");
    assert!(u.starts_with("wss://"), "{u}");
    let client = builder(u.as_str()).build().unwrap();
    let err = client.start().unwrap_err();
    assert!(
        matches!(err, Error::Connect(ConnectError::Tls(_))),
        "{err:?}"
    );
    assert_eq!(client.state(), ClientState::Stopped);
}

#[test]
fn any_certificate_is_accepted_with_the_danger_option() {
    // B36
    let (emu, _) = tls_emulator();
    let client = builder(url(&emu, "a").as_str())
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let _g = client.start().unwrap();
    client.send_event("e", "x").unwrap();
}

/// The resident KiB of the mapping that holds the calling thread's stack (its touched
/// pages: a thread's stack pages stay resident once used, so this is its high-water mark),
/// and the mapping's size.
#[cfg(target_os = "linux")]
fn own_stack_kib() -> (u64, u64) {
    let probe = 0u8;
    let at = std::hint::black_box(&probe) as *const u8 as u64;
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let mut size = 0;
    for line in smaps.lines() {
        let field = |l: &str| -> u64 { l.split_whitespace().nth(1).unwrap().parse().unwrap() };
        if let Some((range, _)) = line.split_once(' ').filter(|(r, _)| r.contains('-')) {
            let Some((lo, hi)) = range.split_once('-') else {
                continue;
            };
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                inside = lo <= at && at < hi;
                continue;
            }
        }
        if inside && line.starts_with("Size:") {
            size = field(line);
        }
        if inside && line.starts_with("Rss:") {
            return (field(line), size);
        }
    }
    panic!("no mapping holds the stack");
}

#[cfg(target_os = "linux")]
#[test]
fn the_clients_threads_touch_a_fraction_of_their_small_stacks() {
    // B45: the I/O thread runs with a 256 KiB stack and the dispatcher with 1 MiB. This
    // measures what they touch — the I/O thread through TLS handshakes, reconnects and
    // messages of 512 KiB each way (the credential provider runs on it and reads its stack's
    // resident pages at each dial), the dispatcher through the callbacks of those messages
    // (read in a callback) — and fails if either comes near its size.
    use std::sync::{Arc, Mutex};
    use webpubsub_client::{Credential, Data, Event};
    let (emu, root) = tls_emulator();
    let u = url(&emu, "a");
    let io = Arc::new(Mutex::new(Vec::new()));
    let io2 = io.clone();
    let client = builder(Credential::from_fn(move || {
        io2.lock().unwrap().push(own_stack_kib());
        Ok(u.clone())
    }))
    .add_root_certificate(root)
    .build()
    .unwrap();
    let dispatch = Arc::new(Mutex::new((0, 0)));
    let d = dispatch.clone();
    client.on_server_message(move |_| *d.lock().unwrap() = own_stack_kib());
    let events = client.events();
    let _g = client.start().unwrap();
    let big = "x".repeat(512 * 1024);
    for _ in 0..3 {
        client.join_group("g").unwrap();
        client.send_to_group("g", Data::Text(big.clone())).unwrap();
        emu.hub(HUB)
            .send_to_connection(client.connection_id().unwrap(), big.as_str());
        recv_until(&events, |e| matches!(e, Event::ServerMessage(_)));
        // A new connection: the provider runs again, after a handshake and the messages.
        emu.hub(HUB)
            .close_connection(client.connection_id().unwrap(), "again");
        recv_until(&events, is_connected);
    }
    let io = io.lock().unwrap().clone();
    let (io_rss, io_size) = io.iter().copied().max().unwrap();
    let (d_rss, d_size) = *dispatch.lock().unwrap();
    println!(
        "stack touched: I/O thread {io_rss} of {io_size} KiB (at each dial: {io:?}), \
         dispatcher {d_rss} of {d_size} KiB"
    );
    assert!(io.len() >= 4, "the provider ran at each dial");
    assert!(
        io_size <= 260,
        "the I/O thread's stack is small: {io_size} KiB"
    );
    assert!(
        io_rss * 2 <= io_size,
        "the I/O thread touched {io_rss} of {io_size} KiB"
    );
    assert!(
        d_rss * 4 <= d_size,
        "the dispatcher touched {d_rss} of {d_size} KiB"
    );
}
