//! zmqrpc's integration tests: one test crate (one link of libzmq), a module per subject,
//! the shared commands and helpers in `common` (with `common::process` for the binaries
//! and `common::device` for a microcontroller on a pseudo-terminal). Everything goes
//! through the public API, the real binaries, raw sockets or a real pyzmqrpc3 peer.
//!
//! The tests that change what a whole process shares (its memory budget, its allocator's
//! count) run themselves in a child process of their own (`common::process::in_own_process`),
//! so they hold under `cargo test`, where the tests of a binary share one process, as under
//! nextest, which runs every test in a process of its own.
#![allow(clippy::unwrap_used)]

mod common;

mod alloc;
mod async_server;
mod auth;
mod bad_input;
mod binaries;
mod buffered;
mod curve;
mod dialect;
mod firmware;
mod fleet;
mod limits;
mod metrics;
mod node;
mod options;
mod permissions;
mod pipeline;
mod presence;
mod proxy;
mod pubsub;
mod pyzmqrpc3;
mod raw;
mod reliability;
mod rpc;
mod scale;
mod serial_bridge;
mod shared;
mod shared_async;
mod strangers;
mod systemd;
mod threads;
mod workers;
