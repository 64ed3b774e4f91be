//! A flood faster than the user consumes: the client's memory stays bounded
//! (`max_event_backlog`), and once the consumer catches up nothing is lost or repeated.

mod support;

use crossbeam_channel::unbounded;
use std::time::{Duration, Instant};
use support::*;
use webpubsub_client::protocol::ClientMessage;
use webpubsub_client::Event;
use webpubsub_emulator::{Emulator, Observation};

const FLOOD: u64 = 5_000;
const BACKLOG: usize = 100;
/// The I/O thread reads at most this many frames per turn (io::READ_BUDGET) before it looks
/// at the backlog again, so the backlog can overshoot by that much.
const READ_BUDGET: u64 = 512;

/// The largest sequence id the client acknowledged within `window` (0 if none).
fn acked_within(obs: &crossbeam_channel::Receiver<Observation>, window: Duration) -> u64 {
    let deadline = Instant::now() + window;
    let mut acked = 0;
    while let Ok(o) = obs.recv_deadline(deadline) {
        if let Observation::Request {
            message: ClientMessage::SequenceAck { sequence_id },
            ..
        } = o
        {
            acked = acked.max(sequence_id);
        }
    }
    acked
}

per_protocol! {
    reliable;

    fn a_slow_consumer_pauses_reading_and_then_gets_everything_once_in_order(p: Protocol) {
        init_log();
        // The service must be able to hold what the client does not read.
        let emu = Emulator::builder()
            .max_unacked_messages(100_000)
            .start()
            .unwrap();
        let client = builder(url(&emu, "slow"))
            .protocol(p)
            .max_event_backlog(BACKLOG)
            .build()
            .unwrap();
        // The callback blocks until the gate opens (once): the consumer is as slow as can be.
        let (gate_tx, gate_rx) = unbounded::<()>();
        let (got_tx, got_rx) = unbounded::<u64>();
        let opened = std::sync::atomic::AtomicBool::new(false);
        client.on_event(move |e| {
            if let Event::ServerMessage(m) = e {
                if !opened.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    let _ = gate_rx.recv_timeout(WAIT);
                }
                let n = m.data.as_text().unwrap().parse().unwrap();
                got_tx.send(n).unwrap();
            }
        });
        let client = start(client);
        let obs = emu.observe();
        let conn = client.connection_id().unwrap();
        let hub = emu.hub(HUB);
        for n in 1..=FLOOD {
            hub.send_to_connection(&conn, n.to_string());
        }

        // Unbounded reading would take in (and acknowledge) the whole flood within a second or
        // two; with the bound it stops after about BACKLOG + one read turn.
        let acked = acked_within(&obs, Duration::from_millis(2500));
        assert!(acked > 0, "the client read nothing at all");
        assert!(
            acked <= BACKLOG as u64 + READ_BUDGET + 2,
            "the client read {acked} messages although its consumer took none: the backlog is not bounded"
        );

        // The consumer catches up: every message arrives once, in order.
        gate_tx.send(()).unwrap();
        for want in 1..=FLOOD {
            let got = got_rx.recv_timeout(WAIT).expect("a message went missing");
            assert_eq!(got, want);
        }
        assert!(got_rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(client.connection_id().as_deref(), Some(conn.as_str()));
        client.stop();
    }

    fn an_unread_events_receiver_is_bounded_too(p: Protocol) {
        init_log();
        let emu = Emulator::builder()
            .max_unacked_messages(100_000)
            .start()
            .unwrap();
        let client = start(
            builder(url(&emu, "stream"))
                .protocol(p)
                .max_event_backlog(BACKLOG)
                .build()
                .unwrap(),
        );
        let events = client.events();
        let obs = emu.observe();
        let conn = client.connection_id().unwrap();
        let hub = emu.hub(HUB);
        for n in 1..=FLOOD {
            hub.send_to_connection(&conn, n.to_string());
        }
        let acked = acked_within(&obs, Duration::from_millis(2500));
        assert!(acked > 0, "the client read nothing at all");
        assert!(
            acked <= BACKLOG as u64 + READ_BUDGET + 2,
            "the client read {acked} messages into an unread receiver: the backlog is not bounded"
        );
        assert!(events.len() <= BACKLOG + READ_BUDGET as usize + 2);
        let mut want = 1;
        while want <= FLOOD {
            match events.recv_timeout(WAIT).expect("a message went missing") {
                Event::ServerMessage(m) => {
                    assert_eq!(m.data.as_text(), Some(want.to_string().as_str()));
                    want += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        client.stop();
    }
}
