//! zmqrpc: typed remote procedure calls over ZeroMQ, for fleets of small Linux devices and
//! the hosts that talk to them.
//!
//! A command is a plain serde type with a name and a response type, shared by both ends. A
//! server registers one service per command and answers calls on REP (or takes
//! notifications from its subscriptions); a client calls with a deadline and gets the typed
//! response or a typed error:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zmqrpc::transport::{RpcClient, RpcServer, ServiceError};
//! use zmqrpc::Command;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add(i32, i32);
//! impl Command for Add {
//!     const NAME: &'static str = "math.add";
//!     type Response = i32;
//! }
//!
//! let server = RpcServer::builder()
//!     .rep("tcp://127.0.0.1:*")
//!     .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))?
//!     .bind()?;
//! let endpoint = server.rep_endpoints()[0].clone();
//! let running = server.spawn()?;
//!
//! let mut client = RpcClient::builder().req(endpoint).connect()?;
//! assert_eq!(client.call(&Add(2, 40))?, 42);
//! running.stop_and_wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate is the one dependency an application needs: it re-exports the protocol core
//! ([`zmqrpc_core`]: commands, frames, bounded queues, stream framing, the microcontroller
//! server; `no_std`) and the libzmq transport ([`zmqrpc_transport_std`], as [`transport`]:
//! servers (blocking, pooled, or with `async fn` services), clients (one per thread, or one
//! `SharedClient` for every thread and tokio task), pipelines, proxies, the serial bridge),
//! and it ships the binaries.
//!
//! # Layout
//! - everything of [`zmqrpc_core`] at the top level (`zmqrpc::Command`, `zmqrpc::frame`, …);
//! - [`transport`]: the libzmq transport.
//! - [`agent`]: the node agent's commands (`zmqrpc-server`).
//! - `metrics` (feature `metrics`): a node's counters over HTTP for Prometheus, in its text
//!   format or OpenMetrics.
//! - `systemd` (feature `systemd`): `Type=notify` units — readiness, a watchdog fed only
//!   while the node's loop turns, status lines.
//!
//! # Binaries
//! - `zmqrpc-proxy`: any proxy kind, from flags or a TOML file.
//! - `zmqrpc-server`: the node agent, and `zmqrpc-server call …` to query one.
//!
//! # Guides
//! The repository's `docs/` pages (architecture, proxies, threads and async, migrating from
//! pyzmqrpc3, microcontrollers, security, failures, limits, deployment, operating a fleet,
//! performance, testing); each
//! Rust example in them is compiled and run as a doctest of this crate.
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod agent;
// What the two binaries share. Public only because they are separate crates; hidden from
// the docs and outside semver: it may change in any release.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;

// The fleet command line (`zmqrpc-server call`): hidden as `cli` is.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod fleet;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;

#[cfg(feature = "systemd")]
#[cfg_attr(docsrs, doc(cfg(feature = "systemd")))]
pub mod systemd;

pub use zmqrpc_core::*;

/// The libzmq transport: servers, clients, pipelines, proxies, the serial bridge (the
/// `zmqrpc-transport-std` crate, whose items are all here: `zmqrpc::transport::RpcClient`,
/// `zmqrpc::transport::dialect::Pyzmqrpc3`, …). Its [crate docs](zmqrpc_transport_std) tell
/// the model and the layers.
pub mod transport {
    #[doc(inline)]
    pub use zmqrpc_transport_std::*;
}

/// The README's and the guides' Rust examples, compiled and run as doctests so they cannot
/// rot.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/security.md")]
    struct Security;
    #[doc = include_str!("../docs/microcontrollers.md")]
    struct Microcontrollers;
    #[doc = include_str!("../docs/limits.md")]
    struct Limits;
    #[doc = include_str!("../docs/threads.md")]
    struct Threads;
    #[doc = include_str!("../docs/proxies.md")]
    struct Proxies;
    #[doc = include_str!("../docs/migrating.md")]
    struct Migrating;
    #[doc = include_str!("../docs/failures.md")]
    struct Failures;
    #[doc = include_str!("../docs/deployment.md")]
    struct Deployment;
    #[doc = include_str!("../docs/fleet.md")]
    struct Fleet;
    #[doc = include_str!("../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/testing.md")]
    struct Testing;
}
