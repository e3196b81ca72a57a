//! zmqrpc over libzmq: the sockets under the protocol of [`zmqrpc_core`].
//!
//! A [`Receiver`] owns a REP socket and any number of SUB sockets on one thread and hands
//! each message to a [`Handler`]; a [`Sender`] owns a [`Publisher`] (XPUB, holding messages
//! while nobody listens) and a [`Requester`] (one REQ socket per endpoint, used in turn,
//! recreated after a timeout). [`RpcServer`] and [`RpcClient`] put typed [`Command`]s on top:
//! the server dispatches frames to the [`Service`] registered for their key, the client
//! encodes calls and decodes answers, with per-call timeouts. Every loop stops the same way,
//! through a [`Shutdown`] handle or a [`Running`] handle's `stop`/`join`. Sockets use one
//! [`zmq::Context`] per object unless you pass one in, which `inproc://` needs.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zmqrpc_core::Command;
//! use zmqrpc_transport_std::{RpcClient, RpcServer, ServiceError};
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
//! running.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`dialect`]: the wire-dialect seam: [`Dialect`], through which everything that reads or
//!   writes a message goes; [`Native`] (the core's frame) is the default.
//! - [`options`]: [`SocketOptions`], set explicitly on every socket.
//! - [`receiver`]: [`Receiver`], [`Handler`]: REP + SUB in, one thread.
//! - [`publisher`]: [`Publisher`]: XPUB out, with a pending queue while nobody listens.
//! - [`requester`]: [`Requester`]: REQ out, round-robin, Lazy Pirate.
//! - [`sender`]: [`Sender`]: a publisher and/or a requester.
//! - [`server`]: [`RpcServer`], [`Service`]: typed dispatch, on one thread or a worker pool
//!   (`pool`: a receiving thread handing each message to the worker free longest).
//! - `subscriber`: one SUB socket kept alive (made anew when libzmq drops its connection),
//!   shared by the receiver and the pool.
//! - [`client`]: [`RpcClient`]: typed calls and notifications.
//! - [`pipeline`]: [`Pipeline`]: many calls in flight over one DEALER socket.
//! - [`shutdown`]: [`Shutdown`] and [`Running`]: how every loop stops.
//! - [`proxy`]: [`Proxy`]: the standard proxies (Sub2Req, Sub2Pub, Rep2Pub, Rep2Req).
//! - [`buffered`]: [`BufferedProxy`]: store-and-forward REP→REQ, with an optional [`spool`].
//! - [`auth`]: [`Users`] and [`Credentials`]: username/password (ZMQ PLAIN + a ZAP handler).
//! - [`error`]: [`TransportError`], [`RequestError`], [`CallError`], and what they name:
//!   [`ConfigError`], [`SocketKind`].
//! - `monitor`: libzmq socket monitors: refused handshakes, dropped connections.
//! - `nodrop`: the crate's only `unsafe` code, one libzmq option the `zmq` crate has no
//!   setter for (`ZMQ_XPUB_NODROP`), so a publisher never loses a message uncounted.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod auth;
pub mod buffered;
pub mod client;
pub mod dialect;
pub mod error;
mod monitor;
#[allow(unsafe_code)]
mod nodrop;
pub mod options;
pub mod pipeline;
mod pool;
pub mod proxy;
pub mod publisher;
pub mod receiver;
pub mod requester;
pub mod sender;
pub mod server;
pub mod shutdown;
pub mod spool;
mod stats;
mod subscriber;

pub use auth::{AuthCounts, AuthStats, Credentials, Users, UsersError};
pub use buffered::{BufferedProxy, BufferedProxyBuilder, BufferedProxyError, MAX_BUFFERED};
pub use client::{ClientBuilder, RpcClient};
pub use dialect::{Dialect, Native};
pub use error::{CallError, ConfigError, RequestError, SocketKind, TransportError};
pub use monitor::HandshakeFailure;
pub use options::SocketOptions;
pub use pipeline::{Answer, Pipeline, PipelineBuilder};
pub use proxy::{Proxy, ProxyBuilder, ProxyCounts, ProxyKind, ProxyStats};
pub use publisher::{Publisher, PublisherCounts, PublisherStats, MAX_PENDING};
pub use receiver::{
    Handler, Incoming, Origin, Receiver, ReceiverBuilder, ReceiverCounts, ReceiverStats, Rejection,
};
pub use requester::{Reply, Requester};
pub use sender::{Sender, SenderBuilder};
pub use server::{
    Caller, DispatchStats, RegisterError, RpcServer, ServerBuilder, ServerCounts, ServerStats,
    Service, ServiceError, WithCaller,
};
pub use shutdown::{Running, Shutdown};
pub use spool::{Spool, SpoolError};
pub use zmq;
pub use zmqrpc_core::Command;
