//! The JSON subprotocols' codec (`json.webpubsub.azure.v1`, `json.reliable.webpubsub.azure.v1`).
//!
//! `client.rs` and `service.rs` hold the encoders and decoders of each direction, as inherent
//! methods of the message types; `raw.rs` is the first pass of the reference decoder (every
//! field borrowed as unparsed JSON), `fast.rs` the one-pass decoder of the common service
//! frames, `data.rs` payloads and metadata, `write.rs` the hand-written JSON output.
//! Within the module: `write` ← `raw` ← `data` ← `fast` ← `client`, `service`.

mod client;
mod data;
mod fast;
mod raw;
mod service;
mod write;

pub use service::splice_sequence_id;
