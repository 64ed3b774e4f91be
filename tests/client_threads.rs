//! Thread accounting, alone in its binary so that no other test's threads interfere.
mod support;
use support::*;
use webpubsub_emulator::Emulator;

#[test]
fn exactly_two_threads_while_started_and_none_after_stop() {
    // B5, STYLE: threads named webpubsub-io and webpubsub-dispatch; none outlives stop().
    let emu = Emulator::start().unwrap();
    assert_eq!(client_threads(), 0);
    let client = builder(url(&emu, "a")).build().unwrap();
    for _ in 0..3 {
        let g = client.start().unwrap();
        // A thread names itself when it first runs: under load the dispatcher may not have
        // run yet when `start()` returns, and then still carries its creator's name.
        assert_client_threads(2);
        g.join_group("g").unwrap();
        drop(g);
        assert_client_threads(0); // no thread outlives stop()
    }
    // A stop from a callback is asynchronous; the next start joins the old threads.
    let g = client.start().unwrap();
    let c2 = client.clone();
    let events = client.events();
    let sub = client.on_server_message(move |_| c2.stop());
    emu.hub(HUB).send_to_group("g", "stop please");
    recv_until(&events, |e| matches!(e, webpubsub_client::Event::Stopped));
    sub.remove();
    drop(g);
    assert_client_threads(0);
}
