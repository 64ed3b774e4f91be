//! Request/response with the application server (B38, B39): the client invokes the event
//! handler through an emulator embedded in this process and prints the answers — one that
//! succeeds, one the handler refuses, and one cancelled from another thread.
//!
//! ```sh
//! cargo run --example invoke
//! cargo run --example invoke -- protobuf   # the same over protobuf.reliable.webpubsub.azure.v1
//! ```

use std::time::Duration;
use webpubsub_client::{Data, Error, InvokeOptions, Metadata, Protocol, WebPubSubClient};
use webpubsub_emulator::{Emulator, EventResponse};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protocol = match std::env::args().nth(1).as_deref() {
        Some("protobuf") => Protocol::ProtobufReliable,
        _ => Protocol::JsonReliable,
    };
    // The emulator plays the application server: `time` answers, `slow` takes its time,
    // anything else is refused.
    let emu = Emulator::builder()
        .event_handler(|req| match req.event.as_str() {
            "time" => EventResponse::Reply(Data::from(serde_json::json!({
                "asked": req.data.as_text(),
                "unix": std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            }))),
            "slow" => {
                std::thread::sleep(Duration::from_millis(500));
                EventResponse::Reply(Data::from("finally"))
            }
            other => EventResponse::Fail(format!("no handler for `{other}`")),
        })
        .start()?;
    let client = WebPubSubClient::builder(emu.client_url("chat").user_id("alice").build())
        .protocol(protocol)
        .build()?;
    let _running = client.start()?;
    println!("connected over {}", protocol.name());

    let options = InvokeOptions::new().metadata(Metadata::new().with("trace-id", "example-1"));
    let answer = client.invoke_event_with("time", "what time is it?", &options)?;
    println!(
        "invocation {}: {:?} ({:?})",
        answer.invocation_id,
        answer.data,
        answer.data_type()
    );

    match client.invoke_event("weather", "Oslo") {
        Err(Error::Invoke(f)) => println!(
            "invocation {} failed: {}: {}",
            f.invocation_id, f.name, f.message
        ),
        other => println!("unexpected: {other:?}"),
    }

    // A cancel from another thread returns the waiter at once.
    let handle = client.invoke_event_nowait("slow", "x", &InvokeOptions::new())?;
    let cancel_button = handle.clone();
    let worker = std::thread::spawn(move || handle.wait());
    cancel_button.cancel();
    match worker.join().expect("the worker thread") {
        Err(e @ Error::Cancelled(_)) => println!("{e}"),
        other => println!("not cancelled in time: {other:?}"),
    }
    Ok(())
}
