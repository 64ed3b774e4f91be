//! Helpers shared by the tests of the workspace's crates (never published).
//!
//! - [`python`]: the official Python SDKs in a virtual environment under `target/`, and
//!   child processes run with a time bound.
//! - [`modules`]: the import graph of a crate's modules, to keep dependencies one way.
#![forbid(unsafe_code)]

pub mod modules;
pub mod python;
