//! A blocking, thread-based client for Azure Web PubSub.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod protocol;

#[cfg(feature = "emulator")]
pub mod emulator;
