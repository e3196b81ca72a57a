//! What every node answers about itself: the built-in commands [`Ping`] (version, role,
//! uptime), [`GetStats`] (every counter of every socket, queue, spool and device link, with
//! the bounds the node keeps) and [`Describe`] (the commands it answers, each with a
//! [`Schema`] of its request and response).
//!
//! Every node kind answers them, on by default: an [`RpcServer`](crate::RpcServer) (as
//! services of its own, beside yours, whatever serves them: one thread, a worker pool, an
//! async server), every [`Proxy`](crate::Proxy) kind, the
//! [`BufferedProxy`](crate::BufferedProxy) and the serial bridge — a proxy answers them
//! itself, from its own counters, and forwards everything else. A proxy whose input is a
//! subscription answers them on a REP endpoint of its own
//! ([`ProxyBuilder::control`](crate::ProxyBuilder::control)). Each node's
//! [`NodeReport`] (`report()`) is where they answer from, and what the binaries' status line
//! and metrics read.
//!
//! They are commands like any other: a node with [`Permissions`](crate::auth::Permissions)
//! answers only callers a rule allows (`zmqrpc.node.*`, or `*`, or each name), and any
//! client calls them with the types here:
//!
//! ```
//! use zmqrpc_transport_std::node::{GetStats, Ping};
//! use zmqrpc_transport_std::{RpcClient, RpcServer};
//!
//! let server = RpcServer::builder().rep("tcp://127.0.0.1:*").bind()?;
//! let endpoint = server.rep_endpoints()[0].clone();
//! let running = server.spawn()?;
//!
//! let mut client = RpcClient::builder().req(endpoint).connect()?;
//! assert_eq!(client.call(&Ping)?.role, "server");
//! let stats = client.call(&GetStats)?;
//! assert_eq!(stats.counter("dispatch", "served"), Some(1)); // the Ping
//! running.stop_and_wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commands;
mod gate;
#[cfg(feature = "json")]
mod json;
mod metrics;
mod report;
mod schema;

#[cfg(feature = "pyzmqrpc3")]
pub use commands::{pyzmqrpc3_classes, PYZMQRPC3_CLASSES};
pub use commands::{
    CommandInfo, Counter, Describe, Description, GetStats, NodeStats, Ping, Pong, Section,
    BUILTIN_NAMES,
};
pub(crate) use gate::{Gate, Screened};
#[cfg(feature = "json")]
pub use json::{JsonError, MAX_DEPTH};
pub use metrics::{is_gauge, MetricsFormat};
pub use report::{NodeReport, BUILTIN_SCHEMA};
pub use schema::{Field, Holds, Schema, Shape, Variant};
