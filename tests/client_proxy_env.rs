//! B43: by default the client takes its proxy from the process environment, and
//! `no_proxy()` turns that off. Alone in its binary, with one test: it sets the process's
//! environment, which tests running in parallel would share.
mod support;

use std::net::TcpListener;
use support::pproxy::{self, Pproxy};
use support::*;
use webpubsub_emulator::Emulator;

#[test]
fn the_process_environment_is_the_default_and_no_proxy_turns_it_off() {
    // B43
    let Some(python) =
        pproxy::python("the_process_environment_is_the_default_and_no_proxy_turns_it_off")
    else {
        return;
    };
    let emu = Emulator::start().unwrap();
    let target = format!("127.0.0.1:{}", emu.addr().port());
    let mut proxy = Pproxy::start(&python, 0, None);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The only test of this binary: nothing else reads the environment meanwhile.
    std::env::set_var("http_proxy", proxy.url());
    std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{dead}"));
    for name in [
        "no_proxy",
        "NO_PROXY",
        "ALL_PROXY",
        "all_proxy",
        "REQUEST_METHOD",
    ] {
        std::env::remove_var(name);
    }

    // The crate's own default, not the tests' `builder()` (which connects directly).
    let client = webpubsub_client::WebPubSubClient::builder(url(&emu, "a"))
        .build()
        .unwrap();
    let _g = client.start().unwrap();
    client.send_event("e", "through the proxy").unwrap();
    assert_eq!(proxy.wait_tunnels_to(&target, 1), 1);

    let direct = builder(url(&emu, "b")).no_proxy().build().unwrap();
    let _d = direct.start().unwrap();
    direct.send_event("e", "direct").unwrap();
    // Our own tunnel after the direct client connected: had it gone through the proxy, its
    // line would be in the log by now.
    proxy.fence(1, None);
    assert_eq!(proxy.tunnels_to(&target), 1, "{:?}", proxy.lines());
}
