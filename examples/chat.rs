//! Two users chat in a room; the server broadcasts; one connection is cut and recovers with
//! nothing lost; everything stops cleanly.
//!
//! ```sh
//! cargo run --example chat
//! ```
//!
//! By default it starts the embedded Web PubSub emulator. To run against a real Azure Web
//! PubSub resource, set `WEBPUBSUB_CLIENT_URL` to a client access URL whose token has the
//! roles `webpubsub.joinLeaveGroup` and `webpubsub.sendToGroup` (both users then share it);
//! the server broadcast and the cut, which need the emulator, are skipped.

use crossbeam_channel::{unbounded, Receiver};
use std::time::{Duration, Instant};
use webpubsub_client::{Event, RequestOptions, WebPubSubClient};
use webpubsub_emulator::Emulator;

const ROOM: &str = "room";
const WAIT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let real_url = std::env::var("WEBPUBSUB_CLIENT_URL").ok();
    let emulator = match real_url {
        Some(_) => None,
        None => {
            let emu = Emulator::start()?;
            println!("emulator  listening on {}", emu.endpoint());
            Some(emu)
        }
    };
    let url_for = |user: &str| -> String {
        match (&real_url, &emulator) {
            (Some(url), _) => url.clone(),
            (None, Some(emu)) => emu
                .client_url("chat")
                .user_id(user)
                .role("webpubsub.joinLeaveGroup")
                .role("webpubsub.sendToGroup")
                .build(),
            (None, None) => unreachable!("either a URL or the emulator"),
        }
    };

    // Each user prints what it receives; the lines also go to a channel so the script can wait.
    let (alice, alice_inbox) = connect("alice", &url_for("alice"))?;
    let (bob, bob_inbox) = connect("bob", &url_for("bob"))?;
    let _alice_running = alice.start()?;
    let _bob_running = bob.start()?;
    alice.join_group(ROOM)?;
    bob.join_group(ROOM)?;
    println!("alice and bob joined {ROOM:?}");

    say(&alice, "hi bob")?;
    expect(&bob_inbox, "hi bob")?;
    say(&bob, "hello alice")?;
    expect(&alice_inbox, "hello alice")?;

    let Some(emu) = &emulator else {
        println!("(real service: skipping the server broadcast and the cut)");
        return Ok(());
    };
    let hub = emu.hub("chat");

    hub.send_to_group(ROOM, "welcome, both of you");
    expect(&alice_inbox, "welcome, both of you")?;
    expect(&bob_inbox, "welcome, both of you")?;

    // Cut bob's connection without a close frame, as a network failure would. Alice keeps
    // talking while bob's client recovers the same session: he misses nothing and sees
    // nothing twice.
    let recovered = recovery_signal(&bob);
    let bob_id = bob.connection_id().ok_or("bob has no connection id")?;
    println!("-- cutting bob's connection {bob_id}");
    let cut = Instant::now();
    hub.drop_connection(&bob_id);
    let lines: Vec<String> = (1..=5)
        .map(|i| format!("message {i} while bob was away"))
        .collect();
    for line in &lines {
        say(&alice, line.as_str())?;
    }
    recovered.recv_timeout(WAIT)?;
    println!(
        "-- bob is back on connection {} after {:?}",
        bob.connection_id().unwrap_or_default(),
        cut.elapsed()
    );
    for line in &lines {
        expect(&bob_inbox, line)?;
    }
    if let Ok(extra) = bob_inbox.recv_timeout(Duration::from_millis(200)) {
        return Err(format!("bob received an unexpected duplicate: {extra}").into());
    }
    println!("bob received all {} messages once, in order", lines.len());

    say(&bob, "back, did I miss anything?")?;
    expect(&alice_inbox, "back, did I miss anything?")?;

    alice.stop();
    bob.stop();
    println!("both clients stopped");
    Ok(())
}

/// Builds a client that prints and forwards every group or server message it receives.
fn connect(
    name: &'static str,
    url: &str,
) -> Result<(WebPubSubClient, Receiver<String>), webpubsub_client::Error> {
    let client = WebPubSubClient::new(url)?;
    let (tx, rx) = unbounded();
    client.on_event(move |event| {
        let (from, data) = match event {
            Event::GroupMessage(m) => (m.from_user_id.as_deref().unwrap_or("?"), &m.data),
            Event::ServerMessage(m) => ("server", &m.data),
            Event::Connected { connection_id, .. } => {
                println!("{name:>5} | connected as {connection_id}");
                return;
            }
            Event::Recovering { .. } => {
                println!("{name:>5} | connection lost, recovering the session");
                return;
            }
            Event::Recovered { .. } => {
                println!("{name:>5} | session recovered");
                return;
            }
            Event::Stopped => {
                println!("{name:>5} | stopped");
                return;
            }
            _ => return,
        };
        let text = data
            .as_text()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{data:?}"));
        println!("{name:>5} | {from:>6}: {text}");
        let _ = tx.send(text);
    });
    Ok((client, rx))
}

/// Publishes a line to the room without echoing it back to the sender.
fn say(client: &WebPubSubClient, line: &str) -> Result<(), webpubsub_client::Error> {
    client.send_to_group_with(ROOM, line, &RequestOptions::new().no_echo(true))?;
    Ok(())
}

/// A channel that receives `()` when the client reports a recovered session.
fn recovery_signal(client: &WebPubSubClient) -> Receiver<()> {
    let (tx, rx) = unbounded();
    client.on_event(move |event| {
        if matches!(event, Event::Recovered { .. }) {
            let _ = tx.send(());
        }
    });
    rx
}

/// Waits for the next received line and checks it.
fn expect(inbox: &Receiver<String>, want: &str) -> Result<(), Box<dyn std::error::Error>> {
    let got = inbox
        .recv_timeout(WAIT)
        .map_err(|_| format!("nothing arrived within {WAIT:?}; expected {want:?}"))?;
    if got != want {
        return Err(format!("expected {want:?}, received {got:?}").into());
    }
    Ok(())
}
