//! Helpers shared by the tests of the workspace's crates (never published). One of each:
//!
//! - [`rng`]: the seeded pseudo-random generator (the codec fuzzer, the chaos proxy).
//! - [`chaos_proxy`]: the TCP relay between a client and a server, transparent or injecting
//!   faults (cuts at byte offsets, stalls, refusals, pauses), and recording what it forwards.
//! - [`log_capture`]: a logger that keeps every record, to assert what was logged or never was.
//! - [`process`]: the threads, file descriptors and memory of this process (or of a child);
//!   child processes with bounded waits.
//! - [`python`]: the official Python SDKs in a virtual environment under `target/`.
//! - [`node`]: the official Node.js packages (the express event handler, the JS client) under
//!   `target/`, and Node scripts run as bounded children.
//! - [`modules`]: the import graph of a crate's modules, to keep dependencies one way.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chaos_proxy;
pub mod log_capture;
pub mod modules;
pub mod node;
pub mod process;
pub mod python;
pub mod rng;
