//! libzmq 4.3.5 with CURVE, for the `zmq` crate.
//!
//! The `zmq` crate 0.10 builds libzmq 4.3.4 without CURVE (`zmq::has("curve")` is false).
//! This crate builds libzmq 4.3.5 from the `zeromq-src` crate's sources with libsodium
//! (from `libsodium-sys-stable`, whose bundled sources build offline) and links it
//! statically; `.cargo/config.toml` overrides the build script of `zmq-sys` (its
//! `links = "zmq"` key, with no library of its own), so the `zmq` crate's functions resolve
//! to this libzmq. It has no Rust API: depending on it is what links it.

#![deny(missing_docs)]

// Linked for its C library: libzmq calls libsodium.
extern crate libsodium_sys;
