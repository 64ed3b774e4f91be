//! The protobuf subprotocols' codec (`protobuf.webpubsub.azure.v1`,
//! `protobuf.reliable.webpubsub.azure.v1`; PROTOBUF.md).
//!
//! `wire.rs` declares the messages with prost's derive; `client.rs` and `service.rs` convert
//! between them and [`ClientMessage`](crate::ClientMessage) /
//! [`ServiceMessage`](crate::ServiceMessage), as inherent methods of the message types;
//! `data.rs` converts payloads and metadata; `splice.rs` adds sequence ids to encoded
//! messages. Within the module: `wire` ← `data` ← `client`, `service`; `splice` stands alone.

mod client;
mod data;
mod service;
mod splice;
mod wire;

#[cfg(test)]
mod tests;

pub use splice::splice_protobuf_sequence_id;
