//! zmqrpc: typed remote procedure calls over ZeroMQ, for fleets of small Linux devices and
//! the hosts that talk to them.
//!
//! This crate is the one dependency an application needs: it re-exports the protocol core
//! ([`zmqrpc_core`]: commands, frames, bounded queues, stream framing; `no_std`) and the
//! libzmq transport ([`zmqrpc_transport_std`]), and it ships the device binaries.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zmqrpc::{frame, Command, Frame, Header};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping;
//! impl Command for Ping {
//!     const NAME: &'static str = "ping";
//!     type Response = u64;
//! }
//!
//! let mut buf = [0u8; 32];
//! let bytes = frame::encode(&Header::request(1, Ping::KEY), &Ping, &mut buf)?;
//! assert_eq!(Frame::decode(bytes)?.header.key, Ping::KEY);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - everything of [`zmqrpc_core`] at the top level (`zmqrpc::Command`, `zmqrpc::frame`, …);
//! - [`transport`]: the libzmq transport.
//! - [`agent`]: the node agent's commands (`zmqrpc-server`).
//! - `cli` (feature `cli`, on by default): what the binaries share.
//!
//! # Binaries
//! - `zmqrpc-proxy`: any proxy kind, from flags or a TOML file.
//! - `zmqrpc-server`: the node agent, and `zmqrpc-server call …` to query one.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
#[cfg(feature = "cli")]
pub mod cli;

pub use zmqrpc_core::*;
pub use zmqrpc_transport_std as transport;

/// The README's Rust examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
