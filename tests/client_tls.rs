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
