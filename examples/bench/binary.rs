//! What the 1 KiB binary workloads share, for this crate and the raw client alike: (bbin)
//! receive and (a2bin) pipelined acked sends, each once per subprotocol, so that protobuf
//! (raw bytes on the wire) and JSON (base64) are measured side by side in one run.
//!
//! Each protocol is measured `ROUNDS` (5) times, the protocols taking turns (JSON, protobuf,
//! JSON, protobuf, ...) with a fresh connection each time, and the median of each is its
//! figure: on a shared machine a load spike then moves one round of one protocol, not the
//! ratio.

use crate::common::*;
use std::thread::JoinHandle;
use webpubsub_client::{Data, Protocol};
use webpubsub_emulator::HubHandle;

/// The payload's size in bytes.
pub const BIN_SIZE: usize = 1024;
/// (bbin): server messages pushed per round.
pub const BIN_RECEIVE: usize = 100_000;
/// (a2bin): acked sends per round, with at most `WINDOW` in flight (as (a2)).
pub const BIN_PIPELINED: usize = 100_000;
/// Rounds per protocol, unless `BENCH_ROUNDS` says (1 for profiling); the median is the
/// figure.
pub const ROUNDS: usize = 5;

/// Whether `p` is measured: all, unless `BENCH_PROTOCOLS` (`jsonr,pbr,pb`, by [`short`])
/// names some — to profile one protocol at a time.
fn protocol_wanted(p: Protocol) -> bool {
    std::env::var("BENCH_PROTOCOLS").map_or(true, |v| v.split(',').any(|x| x.trim() == short(p)))
}

fn rounds_wanted() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS)
}

/// One row of a binary workload: the protocol and its figure id.
pub struct Row {
    pub protocol: Protocol,
    pub id: &'static str,
}

/// (bbin): the reliable twins, and plain protobuf (no sequence ids, no `sequenceAck`s).
pub const RECEIVE_ROWS: [Row; 3] = [
    Row {
        protocol: Protocol::JsonReliable,
        id: "bbin.json",
    },
    Row {
        protocol: Protocol::ProtobufReliable,
        id: "bbin.pbr",
    },
    Row {
        protocol: Protocol::Protobuf,
        id: "bbin.pb",
    },
];

/// (a2bin): the reliable twins (a sender's frames are the same in the plain protocols; only
/// what it receives differs, and here that is acks alone).
pub const SEND_ROWS: [Row; 2] = [
    Row {
        protocol: Protocol::JsonReliable,
        id: "a2bin.json",
    },
    Row {
        protocol: Protocol::ProtobufReliable,
        id: "a2bin.pbr",
    },
];

/// 1 KiB of every byte value in turn: not UTF-8, so no codec can carry it as text.
pub fn bin_payload() -> Vec<u8> {
    (0..BIN_SIZE).map(|i| i as u8).collect()
}

/// (bbin)'s service side: `n` binary server messages to `group`, from a thread of its own,
/// as fast as the emulator takes them.
pub fn blast_binary(hub: HubHandle, group: String, n: usize) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("bench-blast".into())
        .spawn(move || {
            let data = bin_payload();
            for _ in 0..n {
                hub.send_to_group(&group, Data::Binary(data.clone()));
            }
        })
        .expect("spawn")
}

/// A short name for group and user ids.
pub fn short(p: Protocol) -> &'static str {
    match p {
        Protocol::JsonReliable => "jsonr",
        Protocol::Json => "json",
        Protocol::ProtobufReliable => "pbr",
        Protocol::Protobuf => "pb",
        _ => "other",
    }
}

/// Runs `measure(protocol, round)` (a rate) `ROUNDS` times per row, the rows taking turns,
/// and records the median of each row under its id, and under `ratio_id` the protobuf
/// reliable median over the JSON reliable one. A failed round fails its row; the rates of
/// every round go to stderr.
pub fn rounds(
    client: &str,
    out: &mut Figures,
    rows: &[Row],
    ratio_id: &'static str,
    mut measure: impl FnMut(Protocol, usize) -> R<f64>,
) {
    let mut rates: Vec<R<Vec<f64>>> = rows.iter().map(|_| Ok(Vec::new())).collect();
    for round in 0..rounds_wanted() {
        for (row, rate) in rows.iter().zip(&mut rates) {
            let Ok(seen) = rate else { continue };
            if !protocol_wanted(row.protocol) {
                continue;
            }
            match measure(row.protocol, round) {
                Ok(r) => seen.push(r),
                Err(e) => *rate = Err(format!("round {}: {e}", round + 1)),
            }
        }
    }
    let mut median_of = |row: &Row, rate: R<Vec<f64>>| -> Option<f64> {
        match rate {
            Ok(v) if v.is_empty() => None,
            Ok(mut v) => {
                let each: Vec<String> = v.iter().map(|r| format!("{r:.0}")).collect();
                eprintln!("[bench] {client} {}: rounds {}/s", row.id, each.join(", "));
                v.sort_by(f64::total_cmp);
                let m = v[v.len() / 2];
                out.insert(row.id, Val::Num(m));
                Some(m)
            }
            Err(e) => {
                record(client, out, row.id, Err(e));
                None
            }
        }
    };
    let medians: Vec<(Protocol, Option<f64>)> = rows
        .iter()
        .zip(rates)
        .map(|(row, rate)| (row.protocol, median_of(row, rate)))
        .collect();
    let of = |p: Protocol| medians.iter().find(|m| m.0 == p).and_then(|m| m.1);
    let (pb, json) = (Protocol::ProtobufReliable, Protocol::JsonReliable);
    match (of(pb), of(json)) {
        (Some(pb), Some(json)) => {
            out.insert(ratio_id, Val::Num(pb / json));
        }
        _ if protocol_wanted(pb) && protocol_wanted(json) => {
            out.insert(ratio_id, Val::Na("a protocol failed".into()));
        }
        _ => {}
    }
}
