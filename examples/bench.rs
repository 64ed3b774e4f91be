//! The side-by-side benchmark: this crate, a minimal raw tungstenite client and the official
//! Python and JavaScript SDKs, side by side against one emulator, close to the wire.
//!
//! ```text
//! cargo run --release --example bench
//! ```
//!
//! Prints one table (each figure per client, and its ratio to the raw client of the same run)
//! and writes it as Markdown to `target/bench.md`. Every wait is bounded. The workloads are
//! described in `BENCH.md`; `BENCH_CLIENTS=raw,ours,py,js`,
//! `BENCH_WORKLOADS=a,a2,b,b1,c,d,bbin,a2bin,scale` (and `bstep`, only when named) and
//! `BENCH_SCALE=1000,10000` select a subset
//! (`bbin` and `a2bin`: 1 KiB binary payloads in JSON and protobuf, this crate and raw only).
//!
//! Hidden modes, run by the bench itself in a process of their own so that neither the
//! emulator's nor the bench's memory counts:
//! - `bench --child-idle ours|raw URL` (d): connects, idles 10 s and prints its own peak RSS,
//!   thread count and CPU time as one JSON line;
//! - `bench --child-scale ours|raw CONFIG` (scale): many clients, driven over stdin/stdout as
//!   `bench/scale.rs` describes.

#[path = "bench/binary.rs"]
mod binary;
#[path = "bench/common.rs"]
mod common;
#[path = "bench/emulator_process.rs"]
mod emulator_process;
#[path = "bench/js.rs"]
mod js;
#[path = "bench/ours.rs"]
mod ours;
#[path = "bench/py.rs"]
mod py;
#[path = "bench/raw.rs"]
mod raw;
#[path = "bench/raw_scale.rs"]
mod raw_scale;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scale.rs"]
mod scale;
#[path = "bench/scale_child.rs"]
mod scale_child;
#[path = "bench/script.rs"]
mod script;

use report::{Client, Table};
use std::time::Instant;
use webpubsub_emulator::Emulator;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-idle") {
        let (which, url) = (&args[2], &args[3]);
        let figures = match which.as_str() {
            "ours" => ours::child_idle(url),
            "raw" => raw::child_idle(url),
            other => Err(format!("unknown child {other}")),
        };
        match figures {
            Ok(f) => println!("{}", f.to_json()),
            Err(e) => {
                eprintln!("child-idle {which}: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child-scale") {
        let cfg = match args.get(3).map(|c| scale::ScaleConfig::from_json(c)) {
            Some(Ok(cfg)) => cfg,
            Some(Err(e)) => {
                eprintln!("child-scale: {e}");
                std::process::exit(1);
            }
            None => {
                eprintln!("child-scale: usage: --child-scale ours|raw CONFIG");
                std::process::exit(1);
            }
        };
        match args[2].as_str() {
            // Each client with its own two threads (the default).
            "ours" => ours::child_scale(&cfg, |url| {
                webpubsub_client::WebPubSubClient::new(url).map_err(|e| e.to_string())
            }),
            "raw" => raw_scale::child_scale(&cfg),
            other => {
                eprintln!("child-scale: unknown client {other}");
                std::process::exit(1);
            }
        }
        return;
    }
    let only: Option<Vec<String>> = std::env::var("BENCH_CLIENTS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let wants = |c: &str| only.as_ref().is_none_or(|v| v.iter().any(|x| x == c));

    let began = Instant::now();
    // The unacked buffer is unbounded here: (b) pushes 20,000 messages as fast as the
    // emulator can, and (c) keeps streaming while a client is away. Both measure the client,
    // not the service's flow control (the default limit, 1000 messages, would close a
    // session that is simply a few milliseconds behind a server-side loop).
    let emu = Emulator::builder()
        .max_unacked_messages(usize::MAX)
        .max_unacked_bytes(usize::MAX)
        .start()
        .expect("emulator starts");
    let mut table = Table::new();

    if wants("raw") {
        eprintln!("[bench] raw tungstenite client ...");
        raw::run(&emu, table.column(Client::Raw));
    }
    if wants("ours") {
        eprintln!("[bench] webpubsub-client ...");
        ours::run(&emu, table.column(Client::Ours));
    }
    if wants("py") {
        eprintln!("[bench] Python SDK ...");
        py::run(&emu, table.column(Client::Python));
    }
    if wants("js") {
        eprintln!("[bench] JS SDK ...");
        js::run(&emu, table.column(Client::Js));
    }
    emu.stop();
    if common::enabled("b1") && (wants("raw") || wants("ours")) {
        // (b1): (b) again, each frame written with a system call of its own, so that the
        // clients' reads find one frame each rather than many.
        let emu = Emulator::builder()
            .flush_each_frame(true)
            .max_unacked_messages(usize::MAX)
            .max_unacked_bytes(usize::MAX)
            .start()
            .expect("emulator starts");
        if wants("raw") {
            eprintln!("[bench] raw tungstenite client, one frame per write ...");
            raw::run_each_frame(&emu, table.column(Client::Raw));
        }
        if wants("ours") {
            eprintln!("[bench] webpubsub-client, one frame per write ...");
            ours::run_each_frame(&emu, table.column(Client::Ours));
        }
        emu.stop();
    }
    if common::enabled("scale") {
        // Each run with an emulator process of its own (see bench/scale.rs).
        scale::run(&mut table, wants);
    }

    let elapsed = began.elapsed();
    let md = table.markdown(&machine_note(), elapsed);
    println!("{md}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.md");
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("[bench] cannot write {}: {e}", path.display());
    } else {
        eprintln!("[bench] written to {} ({elapsed:.0?})", path.display());
    }
}

/// CPU model, core count and kernel, for the results file.
fn machine_note() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}, loopback")
}
