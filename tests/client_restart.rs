//! `start()` from the `stopped` callback when the restart cannot complete: it fails, or a
//! `stop()` from another thread arrives while it waits (B2, B4, B5).
//!
//! The tests of this file run one at a time (`SERIAL`): the thread counts are the process's.

mod support;

use crossbeam_channel::unbounded;
use parking_lot::Mutex;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{assert_client_threads, builder, recv, url};
use webpubsub_client::{ClientState, ConnectError, Credential, Error, StartGuard};
use webpubsub_emulator::Emulator;

static SERIAL: Mutex<()> = Mutex::new(());

/// The emulator's URL for the first connection, `then` for every later one.
fn first_then(emu: &Emulator, then: String) -> Credential {
    let first = url(emu, "alice");
    let calls = AtomicUsize::new(0);
    Credential::from_fn(move || {
        Ok(if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            first.clone()
        } else {
            then.clone()
        })
    })
}

per_protocol! {
    fn a_restart_that_fails_reports_why_and_leaves_the_client_stopped(p: Protocol) {
        // B4: the failed restart fires no `stopped` of its own.
        let _s = SERIAL.lock();
        let emu = Emulator::start().unwrap();
        let closed_port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let refused = format!("ws://127.0.0.1:{closed_port}/client/hubs/h?access_token=t");
        let client = builder(first_then(&emu, refused))
            .protocol(p)
            .auto_reconnect(false)
            .build()
            .unwrap();
        let (tx, restarts) = unbounded();
        let restart = client.clone();
        client.on_stopped(move || {
            let _ = tx.send(restart.start().map(StartGuard::detach).err());
        });
        let _guard = client.start().unwrap();
        let conn = client.connection_id().unwrap();
        assert!(emu.hub(support::HUB).close_connection(&conn, "bye"));
        let err = recv(&restarts).expect("the restart failed");
        assert!(
            matches!(
                err,
                Error::Connect(ConnectError::Io {
                    kind: std::io::ErrorKind::ConnectionRefused,
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(client.state(), ClientState::Stopped);
        assert!(
            restarts.recv_timeout(Duration::from_millis(200)).is_err(),
            "no `stopped` for a start that failed"
        );
        client.stop();
        assert_client_threads(0);
    }

    fn a_stop_while_the_stopped_callback_restarts_ends_the_restart_and_every_thread(p: Protocol) {
        // B5: the restart waits for a service that never answers; `stop()` from another thread
        // interrupts it (the callback's `start()` fails with `Stopped`) and returns once every
        // thread, the waiting callback's included, ended.
        let _s = SERIAL.lock();
        let emu = Emulator::start().unwrap();
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let client = builder(first_then(
            &emu,
            format!("ws://127.0.0.1:{port}/client/hubs/h?access_token=t"),
        ))
        .protocol(p)
        .auto_reconnect(false)
        .build()
        .unwrap();
        let (tx, log) = unbounded();
        let restart = client.clone();
        client.on_stopped(move || {
            let _ = tx.send(None);
            let _ = tx.send(Some(restart.start().map(StartGuard::detach).err()));
        });
        let guard = client.start().unwrap();
        let conn = client.connection_id().unwrap();
        assert!(emu.hub(support::HUB).close_connection(&conn, "bye"));
        assert_eq!(recv(&log), None, "the stopped callback runs");
        // The restart's connection reaches the silent listener: it waits for the upgrade.
        let (accepted_tx, accepted) = unbounded();
        std::thread::spawn(move || {
            let _ = accepted_tx.send(silent.accept().map(|(s, _)| s));
        });
        let _socket = recv(&accepted).unwrap();
        assert_eq!(client.state(), ClientState::Connecting);
        drop(guard);
        assert_eq!(recv(&log), Some(Some(Error::Stopped)));
        assert_eq!(client.state(), ClientState::Stopped);
        assert_client_threads(0);
    }
}
