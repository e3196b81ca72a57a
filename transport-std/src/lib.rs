//! zmqrpc over libzmq: the sockets under the protocol of [`zmqrpc_core`].
//!
//! A [`Receiver`] owns a REP socket and any number of SUB sockets on one thread and hands
//! each message to a [`MessageHandler`]; a [`Sender`] owns a [`Publisher`] (XPUB, holding messages
//! while nobody listens) and a [`Requester`] (one REQ socket per endpoint, used in turn,
//! recreated after a timeout). Those move bytes. [`RpcServer`] and [`RpcClient`] put typed
//! [`Command`]s on top, and every byte they read or write goes through a [`Dialect`]: the
//! server reads each request through it, finds the [`Service`] registered for its key and
//! has the dialect write the answer; the client has it encode each call and interpret what
//! comes back, with per-call timeouts. The proxies forward bytes, reading only as much as the
//! dialect needs to answer or refuse. Every loop stops the same way, through a [`Shutdown`]
//! handle or a [`Running`] handle's `stop` (`wait` waits, `stop_and_wait` does both).
//! Sockets use one [`zmq::Context`] per object unless you pass one in, which `inproc://`
//! needs.
//!
//! Builders speak alike: endpoints by the socket that uses them (`rep`, `subscribe`, `req`,
//! `publish_on`; a proxy's `input` and `output`), protection by one rule, **a socket that
//! binds verifies, a socket that connects presents** (`users` for the bound sockets: a
//! server's REP, a client's PUB; `credentials` for the connecting ones: a client's REQ, a
//! server's SUB; `input_users`, `input_credentials`, `output_users` and `output_credentials`
//! on a proxy, each kind taking those its sides can carry; see [`auth`]), and the last call
//! says what it does: what serves ends in `bind()` (receiver, server, proxies), what calls
//! ends in `connect()` (sender, client, pipeline). Mistakes a builder can see are errors
//! there ([`ConfigError`], [`RegisterError`]), not at the first message.
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
//! running.stop_and_wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! One folder a layer, arrows pointing down only: a layer uses the ones listed after it.
//! - [`presence`]: nodes that announce they are alive ([`Announcer`](presence::Announcer))
//!   and the roster that says who is up ([`Roster`](presence::Roster), two services a server
//!   hosts), on the client and server below.
//! - [`bridge`] (feature `serial`): [`SerialBridge`](bridge::SerialBridge), calls from a REP
//!   endpoint to a microcontroller on a serial port (the core's
//!   [`DeviceServer`](zmqrpc_core::device::DeviceServer) on its UART) and back, its
//!   notifications published; it reuses the proxies' sides and the receiver loop.
//! - [`proxy`]: [`Proxy`] (Sub2Req, Sub2Pub, Rep2Pub, Rep2Req, sharing one definition of
//!   their two sides; Rep2Req forwarding many calls at once through a pool of forwarders),
//!   [`BufferedProxy`] (store-and-forward) and its [`Spool`].
//! - [`rpc`]: [`RpcServer`] (its [`Service`] API, the type-erased dispatch, served on one
//!   thread, by a worker pool, or, with the `tokio` feature, with `async fn` services as
//!   tasks on a runtime), [`RpcClient`], [`Pipeline`], [`SharedClient`] (one client for every
//!   thread and task, blocking or `async`, over one I/O thread).
//! - [`node`]: what every node answers about itself — the built-in commands (`Ping`,
//!   `GetStats`, `Describe`, with [`Schema`](node::Schema)s traced from serde), the
//!   [`NodeReport`](node::NodeReport) they answer from, and the gate a proxy screens its
//!   input with (permissions, then built-ins answered in place).
//! - [`messaging`]: the sockets that move bytes: [`Receiver`] and its [`MessageHandler`] contract
//!   (REP + SUB in, one thread), the worker pool (a ROUTER in front of handler threads)
//!   and the ROUTER helpers it shares with the async server, [`Publisher`] (XPUB out, nothing dropped uncounted, no
//!   subscriber holding the others back past its grace) and the subscriptions it tracks,
//!   [`Requester`] (REQ out, round-robin, Lazy Pirate), [`Sender`] (both).
//! - [`dialect`] (from `zmqrpc-protocol`, which has no I/O): the wire-dialect seam:
//!   [`Dialect`], through which everything that reads or writes a message goes; [`Native`]
//!   (the core's frame); with the `pyzmqrpc3` feature, pyzmqrpc3's format and `Mixed` (both
//!   on one socket, what servers and proxies speak by default then).
//! - [`auth`]: [`Users`] (what a bound socket verifies: passwords, or CURVE client keys) and
//!   [`Credentials`] (what a connecting socket presents: a password, or a CURVE key pair and
//!   the server's public key), judged by a ZAP handler per context; CURVE keys and their
//!   files; [`Permissions`](auth::Permissions), who may call or notify what.
//! - [`socket`]: what every socket and loop shares: [`SocketOptions`], [`Shutdown`] and
//!   [`Running`] (how every loop stops), [`Liveness`] (whether it still turns), monitors (refused handshakes, dropped
//!   connections), counters, the small helpers (inproc names, PAIR sockets, draining
//!   parts, poll timeouts) and the crate's only `unsafe` code (`ZMQ_XPUB_NODROP`, stopping a monitor).
//! - [`error`]: [`TransportError`] (libzmq failures apart from misuse and configuration
//!   mistakes), [`RequestError`], [`CallError`].
//! - [`budget`]: the one memory budget all of a process's queues draw on.
//!
//! This list is the one statement of the order: the package's `tests/layers.rs` reads it
//! and fails on any import from a layer to one above it.
//!
//! Every place memory, disk or time is held on behalf of others is bounded, in bytes where
//! bytes matter: a command's decoded size (`max_body`, which also stops a pyzmqrpc3 zlib
//! bomb inflating), its nesting, a publisher's pending queue (messages and bytes; full, a
//! notification drops the oldest, counted, a call into a proxy gets `Busy`, and with
//! back-pressure a publication waits for room), a buffered proxy, a spool (one owner,
//! recovered in one pass), a pipeline's window, the serial device's frame limit and read
//! passes. `docs/limits.md` in the repository lists each bound, its default and what
//! happens past it, and what libzmq cannot bound (a multipart message is taken whole).
//!
//! # Features
#![doc = document_features::document_features!()]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(unsafe_code)]

// libzmq itself (4.3.5 with CURVE), which the zmq crate calls; nothing of it is named.
extern crate zmqrpc_libzmq;

pub mod auth;

#[cfg(feature = "serial")]
pub mod bridge;
pub mod budget;
#[doc(inline)]
pub use zmqrpc_protocol::dialect;
pub mod error;
pub mod messaging;
pub mod node;
pub mod presence;
pub mod proxy;
pub mod rpc;
pub mod socket;

pub use auth::{
    AuthCounts, AuthStats, Credentials, KeyError, KeyPair, PublicKey, Users, UsersError,
};
pub use dialect::{Dialect, Native};
pub use error::{
    raise_open_file_limit, CallError, ConfigError, HandshakeFailure, LimitReached, RequestError,
    SocketKind, TransportError,
};
pub use messaging::publisher::{
    PendingLimits, Publisher, PublisherCounts, PublisherStats, DEFAULT_PENDING_BYTES, MAX_PENDING,
    SLOW_SUBSCRIBER_GRACE,
};
/// The name of [`MessageHandler`] before 0.1's renames, kept so that code written against
/// it builds; use `MessageHandler`.
#[doc(hidden)]
pub use messaging::receiver::MessageHandler as Handler;
pub use messaging::receiver::{
    Answering, HeldCall, Incoming, MessageHandler, Origin, Receiver, ReceiverBuilder,
    ReceiverCounts, ReceiverStats, Rejection, MAX_CALLS_AT_ONCE,
};
#[allow(deprecated)]
pub use messaging::requester::Reply;
pub use messaging::requester::{Answer, Requester};
pub use messaging::sender::{Sender, SenderBuilder};
pub use messaging::subscriptions::MAX_TOPICS;
pub use proxy::buffered::{BufferedProxy, BufferedProxyBuilder, BufferedProxyError, MAX_BUFFERED};
pub use proxy::spool::{Recovery, Spool, SpoolError};
pub use proxy::{
    Proxy, ProxyBuilder, ProxyCounts, ProxyKind, ProxyStats, DEFAULT_PROXY_CONCURRENCY,
};
pub use rpc::client::{ClientBuilder, RpcClient};
pub use rpc::pipeline::{Outcome, Pipeline, PipelineBuilder, DEFAULT_WINDOW_BYTES};
pub use rpc::receipt::Receipt;
#[cfg(feature = "tokio")]
pub use rpc::server::{AsyncService, DEFAULT_ASYNC_CONCURRENCY, DEFAULT_STOP_GRACE};
pub use rpc::server::{
    Caller, DispatchCounts, DispatchStats, RegisterError, RpcServer, ServerBuilder, ServerCounts,
    ServerStats, Service, ServiceError, WithCaller,
};
pub use rpc::shared::{SharedClient, SharedClientBuilder};
pub use socket::options::SocketOptions;
pub use socket::shutdown::{Liveness, Running, Shutdown, IDLE_TURN};
pub use zmq;
pub use zmqrpc_core::Command;
