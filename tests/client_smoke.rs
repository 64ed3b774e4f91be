mod common;
use common::*;
use webpubsub_client::emulator::Emulator;
use webpubsub_client::{ClientState, Event};

#[test]
fn smoke_join_send_receive() {
    let emu = Emulator::start().unwrap();
    let c = started(&emu, "alice");
    assert_eq!(c.state(), ClientState::Connected);
    let ev = c.events();
    let o = c.join_group("g").unwrap();
    assert_eq!(o.ack_id, 1);
    c.send_to_group("g", "hi").unwrap();
    let e = recv_until(&ev, |e| matches!(e, Event::GroupMessage(_)));
    println!("{e:?}");
    c.stop();
    assert_eq!(c.state(), ClientState::Stopped);
}
