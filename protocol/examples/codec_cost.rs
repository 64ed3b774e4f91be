//! The cost of the codecs on typical messages, in allocations and (under callgrind) in
//! instructions: decoding a group message, encoding a 1 KiB binary `sendToGroup`, in JSON
//! and in protobuf. No timing: run it as
//!
//! ```sh
//! cargo run --release -p webpubsub-protocol --example codec_cost            # allocations
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/codec_cost decode_group_json 10000            # instructions
//! ```
//!
//! With a case and a count it runs that case that many times (for callgrind: subtract the
//! run with count 0 and divide); without arguments it prints every case's allocations per
//! operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use webpubsub_protocol::{ClientMessage, Data, Metadata, ServiceMessage};

/// Counts allocations; `unsafe` only to forward to the system allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A typical group message: 100 bytes of text to a group, with a sequence id.
fn group_message(metadata: Metadata, data: Data) -> ServiceMessage {
    ServiceMessage::GroupMessage {
        group: "chat".into(),
        data,
        from_user_id: None,
        sequence_id: Some(12_345),
        metadata,
    }
}

fn send_binary() -> ClientMessage {
    ClientMessage::SendToGroup {
        group: "chat".into(),
        ack_id: Some(42),
        no_echo: false,
        data: Data::Binary((0..1024).map(|i| i as u8).collect()),
        ttl_seconds: None,
        metadata: Metadata::new(),
    }
}

const CASES: [&str; 8] = [
    "decode_group_json",
    "decode_group_protobuf",
    "decode_group_metadata_json",
    "decode_group_metadata_protobuf",
    "decode_binary_1k_json",
    "decode_binary_1k_protobuf",
    "encode_send_binary_1k_json",
    "encode_send_binary_1k_protobuf",
];

/// Runs `case` `n` times.
fn run(case: &str, n: u64) {
    let text = Data::from("x".repeat(100));
    let with_metadata = Metadata::from([("trace-id", "4bf92f3577b34da6"), ("origin", "cli")]);
    let binary = Data::Binary((0..1024).map(|i| i as u8).collect());
    let (json, protobuf) = match case {
        "decode_group_json" | "decode_group_protobuf" => {
            let m = group_message(Metadata::new(), text);
            (m.encode(), m.encode_protobuf())
        }
        "decode_group_metadata_json" | "decode_group_metadata_protobuf" => {
            let m = group_message(with_metadata, text);
            (m.encode(), m.encode_protobuf())
        }
        "decode_binary_1k_json" | "decode_binary_1k_protobuf" => {
            let m = group_message(Metadata::new(), binary);
            (m.encode(), m.encode_protobuf())
        }
        _ => (String::new(), Vec::new()),
    };
    let send = send_binary();
    for _ in 0..n {
        if case.starts_with("decode") {
            let msg = if case.ends_with("json") {
                ServiceMessage::decode(black_box(&json))
            } else {
                ServiceMessage::decode_protobuf(black_box(&protobuf))
            };
            black_box(msg.expect("a valid frame"));
        } else if case.ends_with("json") {
            black_box(black_box(&send).encode());
        } else {
            black_box(black_box(&send).encode_protobuf());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [case, n] = args.as_slice() {
        assert!(CASES.contains(&case.as_str()), "cases: {CASES:?}");
        run(case, n.parse().expect("a count"));
        return;
    }
    const N: u64 = 10_000;
    println!("{:<34} allocations per operation", "case");
    for case in CASES {
        run(case, 1); // warm-up: one-time allocations stay out of the count
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        run(case, N);
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        // `run` builds its inputs once per call; subtract a run of none.
        let base_before = ALLOCATIONS.load(Ordering::Relaxed);
        run(case, 0);
        let base = ALLOCATIONS.load(Ordering::Relaxed) - base_before;
        let per_op = (after - before - base) as f64 / N as f64;
        println!("{case:<34} {per_op:.2}");
    }
}
