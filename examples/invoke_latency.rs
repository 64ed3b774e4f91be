//! How long an `invoke_event` round trip takes on one machine: client → emulator → event
//! handler → emulator → client, through the emulator's in-process handler (a Rust closure)
//! and through an express app server on the official handler package
//! (`testkit/node/app_server.js`, `@azure/web-pubsub-express` 1.1.0, over HTTP). A
//! measurement to run by hand, not a test:
//!
//! ```sh
//! cargo run --release --example invoke_latency           # 2000 round trips each
//! cargo run --release --example invoke_latency -- 500
//! ```
//!
//! The express row needs node and npm (the packages are installed under `target/` from the
//! committed lock file, as for the tests); without them it is skipped.

use std::time::{Duration, Instant};
use webpubsub_client::{Data, WebPubSubClient};
use webpubsub_emulator::upstream::{EventHandlerConfig, UpstreamConfig};
use webpubsub_emulator::{Emulator, EventResponse};
use webpubsub_testkit::node::AppServer;

const WARM_UP: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 2000,
    };
    println!("invoke_event round trips, {n} each after {WARM_UP} to warm up, one at a time");

    let embedded = Emulator::builder()
        .event_handler(|req| EventResponse::Reply(req.data.clone()))
        .start()?;
    report("in-process handler", &measure(&embedded, n)?);

    match AppServer::start("invoke_latency", "http://127.0.0.1:8080") {
        Some(server) => {
            let handler = EventHandlerConfig::new(server.url_template())?;
            let emu = Emulator::builder()
                .upstream(UpstreamConfig::new().handler("chat", handler))
                .start()?;
            report("express app server", &measure(&emu, n)?);
        }
        None => println!("express app server: skipped (node or npm not found)"),
    }
    Ok(())
}

/// `n` sequential `echo` invocations of a short text; their durations, sorted.
fn measure(emu: &Emulator, n: usize) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let client = WebPubSubClient::builder(emu.client_url("chat").user_id("bench").build())
        .no_proxy()
        .build()?;
    let _running = client.start()?;
    let payload = Data::from("ping");
    for _ in 0..WARM_UP {
        client.invoke_event("echo", payload.clone())?;
    }
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.invoke_event("echo", payload.clone())?;
        took.push(t.elapsed());
        if r.data.as_ref() != Some(&payload) {
            return Err(format!("unexpected answer {:?}", r.data).into());
        }
    }
    took.sort();
    Ok(took)
}

fn report(path: &str, sorted: &[Duration]) {
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
    println!(
        "{path:>20}: p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}  mean {:>8.1?}",
        at(0.50),
        at(0.99),
        sorted[sorted.len() - 1],
        mean
    );
}
