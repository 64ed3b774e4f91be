//! B43: the client through a real HTTP proxy — pproxy from PyPI, installed into the tests'
//! venv — against the emulator: ws and wss (TLS to the service through the tunnel),
//! credentials, a refusal at start and during recovery or reconnect, `NO_PROXY`, the
//! environment, and a proxy that dies mid-session.
//!
//! Every test that goes through the proxy checks the proxy's own log for the tunnel to the
//! emulator, so that none of them would pass with the proxy ignored. Each test runs its own
//! proxy process. The environment is given through `proxy_env`, never set on this process.
mod support;

use std::net::TcpListener;
use std::time::Duration;
use support::pproxy::{self, Pproxy};
use support::*;
use webpubsub_client::native_tls::{Certificate, Identity};
use webpubsub_client::{
    ClientState, ConnectError, Error, Event, Protocol, Proxy, ProxyError, ProxyErrorKind,
    RequestOptions, RetryPolicy,
};
use webpubsub_emulator::Emulator;

/// The emulator's address as the proxy's log names a tunnel's target.
fn target(emu: &Emulator) -> String {
    format!("127.0.0.1:{}", emu.addr().port())
}

/// A port on which nothing listens (bound, then released).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn proxy_error(e: &Error) -> &ProxyError {
    match e {
        Error::Connect(ConnectError::Proxy(p)) => p,
        other => panic!("not a proxy error: {other:?}"),
    }
}

fn group_text(e: &Event) -> Option<String> {
    match e {
        Event::GroupMessage(m) => Some(format!("{:?}", m.data)),
        _ => None,
    }
}

/// A CA and a certificate it signed for `localhost` only: a client that checked the
/// certificate against the proxy's address (127.0.0.1) would refuse it.
fn tls_emulator_for_localhost() -> (Emulator, Certificate) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webpubsub-client proxy test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let identity = Identity::from_pkcs8(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("identity");
    let emu = Emulator::builder().tls(identity).start().unwrap();
    (emu, Certificate::from_pem(ca.pem().as_bytes()).unwrap())
}

/// A connected client whose proxy comes back with other credentials: the next attempt
/// (recovery with the reliable protocol, reconnect with the plain one) gets a 407.
fn refusal_after_a_drop_stops_the_client_without_retrying(protocol: Protocol, test: &str) {
    webpubsub_testkit::log_capture::install();
    let Some(python) = pproxy::python(test) else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let first = Pproxy::start(&python, 0, Some("alice:old"));
    let port = first.port;
    let client = builder(url(&emu, "a"))
        .protocol(protocol)
        .recovery_window(Duration::from_secs(30))
        // Room for a Python process to start again; without the rule under test this would
        // retry for far longer than the test waits.
        .reconnect_retry(RetryPolicy::fixed(Duration::from_millis(50), 1000))
        .proxy(Proxy::new(&first.url_with("alice:old")).unwrap())
        .build()
        .unwrap();
    let events = client.events();
    let _g = client.start().unwrap();
    first.kill();
    let mut second = Pproxy::start(&python, port, Some("alice:new"));
    // Attempts while no proxy listened were retried (connection refused is transient); the
    // 407 of the proxy that is back ends the run.
    let mut disconnected = 0;
    recv_until(&events, |e| {
        disconnected += usize::from(matches!(e, Event::Disconnected { .. }));
        matches!(e, Event::Stopped)
    });
    assert_eq!(disconnected, 1, "one `disconnected` for the session");
    assert_eq!(client.state(), ClientState::Stopped);
    second.fence(1, Some("alice:new"));
    assert_eq!(second.refusals(), 1, "{:?}", second.lines());
    assert_eq!(second.tunnels_to(&target(&emu)), 0);
}

per_protocol! {
    reliable;

    fn ws_connection_and_its_recovery_go_through_an_explicit_proxy(p: Protocol) {
        // B43
        webpubsub_testkit::log_capture::install();
        let Some(python) =
            pproxy::python("ws_connection_and_its_recovery_go_through_an_explicit_proxy")
        else {
            return;
        };
        let emu = Emulator::start().unwrap();
        let mut proxy = Pproxy::start(&python, 0, None);
        let client = builder(url(&emu, "a"))
            .protocol(p)
            .proxy(Proxy::new(&proxy.url()).unwrap())
            .build()
            .unwrap();
        let events = client.events();
        let _g = client.start().unwrap();
        assert_eq!(proxy.wait_tunnels_to(&target(&emu), 1), 1);
        client.join_group("g").unwrap();
        client.send_to_group("g", "hello").unwrap();
        recv_until(&events, |e| {
            group_text(e).is_some_and(|t| t.contains("hello"))
        });

        // The recovery takes the same proxy.
        assert!(emu
            .hub(HUB)
            .drop_connection(client.connection_id().unwrap()));
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        assert_eq!(proxy.wait_tunnels_to(&target(&emu), 2), 2);
        client.send_to_group("g", "after recovery").unwrap();
        recv_until(&events, |e| {
            group_text(e).is_some_and(|t| t.contains("after recovery"))
        });
    }
}

#[test]
fn wss_goes_through_the_https_proxy_variable_with_tls_checked_against_the_service() {
    // B43, B36
    webpubsub_testkit::log_capture::install();
    let Some(python) = pproxy::python(
        "wss_goes_through_the_https_proxy_variable_with_tls_checked_against_the_service",
    ) else {
        return;
    };
    let (emu, root) = tls_emulator_for_localhost();
    let mut proxy = Pproxy::start(&python, 0, None);
    let u = url(&emu, "a").replacen("://127.0.0.1:", "://localhost:", 1);
    assert!(u.starts_with("wss://localhost:"), "{u}");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let client = builder(u.as_str())
        .add_root_certificate(root)
        // wss takes HTTPS_PROXY, not HTTP_PROXY.
        .proxy_env([("HTTPS_PROXY", proxy.url()), ("HTTP_PROXY", dead)])
        .build()
        .unwrap();
    let events = client.events();
    let _g = client.start().unwrap();
    // The proxy was asked for the service's name, which it resolved itself.
    let tunnel = format!("localhost:{}", emu.addr().port());
    assert_eq!(proxy.wait_tunnels_to(&tunnel, 1), 1);
    client.join_group("g").unwrap();
    client.send_to_group("g", "over tls").unwrap();
    recv_until(&events, |e| {
        group_text(e).is_some_and(|t| t.contains("over tls"))
    });
    assert!(emu
        .hub(HUB)
        .drop_connection(client.connection_id().unwrap()));
    recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
    assert_eq!(proxy.wait_tunnels_to(&tunnel, 2), 2);
}

#[test]
fn percent_encoded_proxy_credentials_are_sent_on_every_connection() {
    // B43
    webpubsub_testkit::log_capture::install();
    let Some(python) =
        pproxy::python("percent_encoded_proxy_credentials_are_sent_on_every_connection")
    else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let mut proxy = Pproxy::start(&python, 0, Some("alice:p@ss:w0rd%"));
    let client = builder(url(&emu, "a"))
        .proxy(Proxy::new(&proxy.url_with("alice:p%40ss%3Aw0rd%25")).unwrap())
        .build()
        .unwrap();
    let events = client.events();
    let _g = client.start().unwrap();
    assert!(emu
        .hub(HUB)
        .drop_connection(client.connection_id().unwrap()));
    recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
    client.send_event("e", "x").unwrap();
    // Every connection authenticated (pproxy was told to trust no earlier success).
    assert_eq!(proxy.wait_tunnels_to(&target(&emu), 2), 2);
    assert_eq!(proxy.refusals(), 0, "{:?}", proxy.lines());
}

#[test]
fn refused_proxy_credentials_fail_start_with_a_typed_error_that_hides_the_password() {
    // B43, B4, like B37 for tokens
    let log = webpubsub_testkit::log_capture::install();
    let Some(python) = pproxy::python(
        "refused_proxy_credentials_fail_start_with_a_typed_error_that_hides_the_password",
    ) else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let mut proxy = Pproxy::start(&python, 0, Some("alice:right"));
    const WRONG: &str = "Wr0ng-S3cret";
    // "alice:Wr0ng-S3cret" in base64, as the Proxy-Authorization header carries it.
    const WRONG_B64: &str = "YWxpY2U6V3IwbmctUzNjcmV0";
    let builder = builder(url(&emu, "a"))
        .proxy(Proxy::new(&proxy.url_with(&format!("alice:{WRONG}"))).unwrap());
    assert!(!format!("{builder:?}").contains(WRONG));
    let client = builder.build().unwrap();
    let events = client.events();
    let err = client.start().unwrap_err();

    let p = proxy_error(&err);
    assert_eq!(p.proxy, format!("127.0.0.1:{}", proxy.port));
    assert_eq!(p.status(), Some(407));
    assert!(matches!(p.kind, ProxyErrorKind::Status { status: 407, .. }));
    assert!(!err.is_retryable());
    // The service never answered: no service status.
    assert_eq!(err.http_status(), None);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("407") && shown.contains(&p.proxy), "{shown}");
    assert!(
        !shown.contains(WRONG) && !shown.contains(WRONG_B64),
        "{shown}"
    );
    for line in log.lines() {
        assert!(
            !line.message.contains(WRONG) && !line.message.contains(WRONG_B64),
            "{line:?}"
        );
    }
    // The proxy refused it (not a failure before it), and once: start does not retry.
    proxy.fence(1, Some("alice:right"));
    assert_eq!(proxy.refusals(), 1, "{:?}", proxy.lines());
    assert_eq!(proxy.tunnels_to(&target(&emu)), 0);
    // B4: stopped, and no `stopped` event for a start that failed.
    assert_eq!(client.state(), ClientState::Stopped);
    assert_none_within(&events, Duration::from_millis(100), |e| {
        matches!(e, Event::Stopped)
    });
}

#[test]
fn a_proxy_that_cannot_reach_the_service_fails_start_naming_the_proxy() {
    // B43: pproxy closes the connection when it cannot connect to the target.
    webpubsub_testkit::log_capture::install();
    let Some(python) =
        pproxy::python("a_proxy_that_cannot_reach_the_service_fails_start_naming_the_proxy")
    else {
        return;
    };
    let mut proxy = Pproxy::start(&python, 0, None);
    let port = dead_port();
    let client = builder(format!(
        "ws://127.0.0.1:{port}/client/hubs/{HUB}?access_token=t"
    ))
    .proxy(Proxy::new(&proxy.url()).unwrap())
    .build()
    .unwrap();
    let err = client.start().unwrap_err();
    let p = proxy_error(&err);
    assert_eq!(p.kind, ProxyErrorKind::Closed, "{err}");
    assert_eq!(p.proxy, format!("127.0.0.1:{}", proxy.port));
    // Transient: the proxy may reach the service later.
    assert!(err.is_retryable());
    assert_eq!(proxy.wait_tunnels_to(&format!("127.0.0.1:{port}"), 1), 1);
}

#[test]
fn no_proxy_bypasses_a_proxy_that_is_down() {
    // B43. Without python: the proxy is a port where nothing listens.
    webpubsub_testkit::log_capture::install();
    let emu = Emulator::start().unwrap();
    let port = dead_port();
    let down = format!("http://127.0.0.1:{port}");

    // Not bypassed: the variable is used, and the failure names the proxy.
    let client = builder(url(&emu, "a"))
        .proxy_env([("HTTP_PROXY", down.as_str())])
        .build()
        .unwrap();
    let err = client.start().unwrap_err();
    let p = proxy_error(&err);
    assert_eq!(p.proxy, format!("127.0.0.1:{port}"));
    assert!(
        matches!(
            p.kind,
            ProxyErrorKind::Io {
                kind: std::io::ErrorKind::ConnectionRefused,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());

    // Bypassed, by address and by CIDR range (ports in the list are ignored).
    for no_proxy in ["127.0.0.1", "localhost, 127.0.0.0/8", "127.0.0.1:1"] {
        let client = builder(url(&emu, "a"))
            .proxy_env([("HTTP_PROXY", down.as_str()), ("no_proxy", no_proxy)])
            .build()
            .unwrap();
        let _g = client
            .start()
            .unwrap_or_else(|e| panic!("NO_PROXY={no_proxy}: {e}"));
        client.send_event("e", "direct").unwrap();
    }
}

#[test]
fn a_socks_proxy_in_the_environment_fails_start_with_a_typed_error() {
    // B43: only http:// proxies; going around the proxy the environment names would be wrong.
    webpubsub_testkit::log_capture::install();
    let emu = Emulator::start().unwrap();
    let client = builder(url(&emu, "a"))
        .proxy_env([("ALL_PROXY", "socks5://u:S3cret@127.0.0.1:1080")])
        .build()
        .unwrap();
    let err = client.start().unwrap_err();
    let p = proxy_error(&err);
    assert_eq!(p.proxy, "ALL_PROXY");
    assert_eq!(p.kind, ProxyErrorKind::UnsupportedScheme("socks5".into()));
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("S3cret"), "{err}");
    assert!(err.to_string().contains("only http://"), "{err}");
}

#[test]
fn lower_case_proxy_variable_wins_with_a_real_proxy() {
    // B43: `http_proxy` (a live proxy) over `HTTP_PROXY` (nothing listens there).
    webpubsub_testkit::log_capture::install();
    let Some(python) = pproxy::python("lower_case_proxy_variable_wins_with_a_real_proxy") else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let mut proxy = Pproxy::start(&python, 0, None);
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let client = builder(url(&emu, "a"))
        .proxy_env([
            ("HTTP_PROXY", dead.as_str()),
            ("http_proxy", proxy.url().as_str()),
            ("ALL_PROXY", dead.as_str()),
        ])
        .build()
        .unwrap();
    let _g = client.start().unwrap();
    client.send_event("e", "x").unwrap();
    assert_eq!(proxy.wait_tunnels_to(&target(&emu), 1), 1);
}

#[test]
fn a_proxy_that_dies_mid_session_is_recovered_through_when_it_is_back_with_nothing_lost() {
    // B43, B18, B21: the session survives the proxy's restart on the same port.
    webpubsub_testkit::log_capture::install();
    let Some(python) = pproxy::python(
        "a_proxy_that_dies_mid_session_is_recovered_through_when_it_is_back_with_nothing_lost",
    ) else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let first = Pproxy::start(&python, 0, None);
    let port = first.port;
    let client = builder(url(&emu, "a"))
        .proxy(Proxy::new(&first.url()).unwrap())
        // Long enough for a Python process to start again.
        .recovery_window(Duration::from_secs(30))
        .build()
        .unwrap();
    let events = client.events();
    let _g = client.start().unwrap();
    client.join_group("g").unwrap();
    let sender = start(builder(url(&emu, "s")).no_proxy().build().unwrap());

    first.kill();
    recv_until(&events, |e| matches!(e, Event::Recovering { .. }));
    assert_eq!(client.state(), ClientState::Recovering);
    // While the proxy is down: messages for the client, and a request of the client's.
    for i in 0..5 {
        sender
            .send_to_group("g", format!("while down {i}"))
            .unwrap();
    }
    let pending = client
        .send_to_group_nowait("g", "sent while down", &RequestOptions::new())
        .unwrap();

    let mut second = Pproxy::start(&python, port, None);
    recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
    assert_eq!(second.wait_tunnels_to(&target(&emu), 1), 1);
    pending.wait().unwrap();
    let mut got = Vec::new();
    while got.len() < 6 {
        if let Some(t) = group_text(&recv(&events)) {
            got.push(t);
        }
    }
    // The sender's messages in order, and the client's own request's echo.
    let from_sender: Vec<&String> = got.iter().filter(|t| t.contains("while down ")).collect();
    assert_eq!(from_sender.len(), 5, "{got:?}");
    for (i, t) in from_sender.iter().enumerate() {
        assert!(t.contains(&format!("while down {i}")), "{got:?}");
    }
    assert!(got.iter().any(|t| t.contains("sent while down")), "{got:?}");
    // No duplicates after them.
    assert_none_within(&events, Duration::from_millis(200), |e| {
        group_text(e).is_some()
    });
}

#[test]
fn a_proxy_refusal_during_recovery_stops_the_client_without_retrying() {
    // B43
    refusal_after_a_drop_stops_the_client_without_retrying(
        Protocol::JsonReliable,
        "a_proxy_refusal_during_recovery_stops_the_client_without_retrying",
    );
}

#[test]
fn a_proxy_refusal_during_reconnect_stops_the_client_without_retrying() {
    // B43, B22
    refusal_after_a_drop_stops_the_client_without_retrying(
        Protocol::Json,
        "a_proxy_refusal_during_reconnect_stops_the_client_without_retrying",
    );
}

#[test]
fn no_proxy_option_ignores_the_proxy_variables() {
    // B43
    webpubsub_testkit::log_capture::install();
    let emu = Emulator::start().unwrap();
    let down = format!("http://127.0.0.1:{}", dead_port());
    let client = builder(url(&emu, "a"))
        .proxy_env([("HTTP_PROXY", down.as_str()), ("ALL_PROXY", down.as_str())])
        .no_proxy()
        .build()
        .unwrap();
    let _g = client.start().unwrap();
    client.send_event("e", "direct").unwrap();
}
