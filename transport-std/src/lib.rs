//! zmqrpc over libzmq: the sockets under the protocol of [`zmqrpc_core`].
//!
//! This crate binds the `no_std` core to ZeroMQ through the `zmq` crate (which builds its
//! own libzmq, so a cross build needs only the target's C++ compiler). The frame layout is
//! never touched here except through the core's functions.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use zmq;

/// The version of the linked libzmq, as `(major, minor, patch)`.
pub fn libzmq_version() -> (i32, i32, i32) {
    zmq::version()
}
