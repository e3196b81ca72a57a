//! [`RpcServer`]: services registered by command type, served over REP and/or SUB.
//!
//! The server is a [`Receiver`] whose handler decodes each frame, finds the service by the
//! command's key and answers with the typed response or a
//! [`RemoteError`](zmqrpc_core::RemoteError); with [`ServerBuilder::workers`], a receiving
//! thread hands each message to a pool of such handlers. A service that
//! returns an error or panics produces a `ServiceFailed` answer and the server serves on
//! (a panic is caught only where panics unwind: under `panic = "abort"`, as in the `device`
//! profile, it ends the process, for a supervisor to restart); a
//! frame that does not decode produces `BadFrame` (or `VersionMismatch`); an unknown key
//! produces `UnknownCommand`. Messages from SUB sockets run the same services, and their
//! answers are discarded (counted in [`ServerCounts`] when they fail).

mod pool;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use zmqrpc_core::{Command, ErrorCode, Key};

use crate::auth::Users;
use crate::dialect::{Dialect, Native, Request};
use crate::error::panic_message;
use crate::messaging::receiver::{
    Handler, Incoming, Origin, Receiver, ReceiverBuilder, ReceiverStats, Rejection,
};
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::{Running, Shutdown};
use crate::socket::stats::{bump, counters};
use crate::TransportError;
use pool::Pool;

/// A service failed; its message goes back to the caller in a `ServiceFailed` error.
///
/// Any `std::error::Error` converts into it, so `?` works inside a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    message: String,
}

impl ServiceError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> ServiceError {
        ServiceError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for ServiceError {
    fn from(error: E) -> Self {
        ServiceError::new(error.to_string())
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Who sent the command being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The socket the command came in on.
    pub origin: Origin,
    /// The user the sender authenticated as, on a server protected with
    /// [`ServerBuilder::authenticate`].
    pub user_id: Option<&'a str>,
    /// The caller's sequence number for this call (0 for a notification). Each client
    /// numbers its calls in turn from a random start, and a retried or re-delivered call
    /// (a client's `retries`, a buffered proxy's at-least-once delivery) keeps its number:
    /// with the user and the command, it recognises a repeat.
    pub seq: u32,
}

/// Answers one command type.
///
/// Closures `FnMut(C) -> Result<C::Response, ServiceError>` are services; a closure that also
/// wants to know its [`Caller`] goes in a [`WithCaller`].
pub trait Service<C: Command>: Send + 'static {
    /// Runs the command for `caller`.
    fn call(&mut self, command: C, caller: &Caller<'_>) -> Result<C::Response, ServiceError>;
}

impl<C, F> Service<C> for F
where
    C: Command,
    F: FnMut(C) -> Result<C::Response, ServiceError> + Send + 'static,
{
    fn call(&mut self, command: C, _caller: &Caller<'_>) -> Result<C::Response, ServiceError> {
        self(command)
    }
}

/// A closure `FnMut(C, &Caller) -> Result<C::Response, ServiceError>` as a [`Service`]: for
/// services that decide per user.
///
/// ```
/// # use zmqrpc_transport_std::{Caller, RpcServer, ServiceError, WithCaller};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Reboot;
/// # impl zmqrpc_core::Command for Reboot { const NAME: &'static str = "reboot"; type Response = (); }
/// let builder = RpcServer::builder().register(WithCaller(|_: Reboot, caller: &Caller| {
///     match caller.user_id {
///         Some("ops") => Ok(()),
///         _ => Err(ServiceError::new("only ops may reboot")),
///     }
/// }))?;
/// # Ok::<(), zmqrpc_transport_std::RegisterError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WithCaller<F>(pub F);

impl<C, F> Service<C> for WithCaller<F>
where
    C: Command,
    F: FnMut(C, &Caller<'_>) -> Result<C::Response, ServiceError> + Send + 'static,
{
    fn call(&mut self, command: C, caller: &Caller<'_>) -> Result<C::Response, ServiceError> {
        (self.0)(command, caller)
    }
}

/// A service could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// A service for a command with this key is already registered: the same command twice,
    /// or two names whose keys collide.
    DuplicateKey {
        /// The command being registered.
        name: &'static str,
        /// The command already registered with the same key.
        existing: &'static str,
        /// The key they share.
        key: Key,
    },
    /// The server has several [`workers`](ServerBuilder::workers), and a service registered
    /// with [`register`](ServerBuilder::register) cannot be copied to each of them: use
    /// [`register_clone`](ServerBuilder::register_clone).
    NotCloneable {
        /// The command being registered.
        name: &'static str,
        /// The number of workers.
        workers: usize,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::DuplicateKey {
                name,
                existing,
                key,
            } if name == existing => {
                write!(f, "command {name:?} (key {key}) is already registered")
            }
            RegisterError::DuplicateKey {
                name,
                existing,
                key,
            } => write!(f, "command {name:?} has the same key {key} as {existing:?}"),
            RegisterError::NotCloneable { name, workers } => write!(
                f,
                "the service for {name:?} cannot be copied to {workers} workers: \
                 register it with register_clone"
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

counters! {
    /// Live counters of an [`RpcServer`]'s dispatch.
    DispatchStats;
    /// A [`DispatchStats`] reading.
    ServerCounts {
        /// Calls whose service answered.
        served,
        /// Calls whose service returned an error or panicked.
        failed,
        /// Calls for a key no service is registered for.
        unknown,
        /// Messages that were not valid request frames.
        bad_frames,
        /// Requests whose body was larger than the server's `max_body`.
        too_large,
    }
}

/// The counters of a running [`RpcServer`]: its sockets and its dispatch.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Socket-level counters.
    pub receiver: Arc<ReceiverStats>,
    /// Dispatch counters.
    pub dispatch: Arc<DispatchStats>,
}

/// Builds an [`RpcServer`]: endpoints, options and services, for one wire [`Dialect`].
pub struct ServerBuilder<D: Dialect = Native> {
    receiver: ReceiverBuilder,
    options: SocketOptions,
    dialect: D,
    services: HashMap<Key, Registered<D>>,
    max_body: usize,
    workers: usize,
}

/// The default largest request body a server decodes: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = 256 << 10;

/// Serves registered [`Service`]s; see the [module docs](self).
pub struct RpcServer<D: Dialect = Native> {
    inner: Inner<D>,
}

enum Inner<D: Dialect> {
    /// One thread receives and serves.
    Single {
        receiver: Receiver,
        dispatcher: Dispatcher<D>,
    },
    /// A receiving thread hands each message to a free worker.
    Pool {
        pool: Pool<Dispatcher<D>>,
        dispatch: Arc<DispatchStats>,
    },
}

impl RpcServer {
    /// Starts building a server of the native dialect.
    pub fn builder() -> ServerBuilder {
        RpcServer::builder_for(Native)
    }
}

impl<D: Dialect> RpcServer<D> {
    /// Starts building a server that reads and answers `dialect`.
    pub fn builder_for(dialect: D) -> ServerBuilder<D> {
        ServerBuilder {
            receiver: Receiver::builder().heartbeats(D::heartbeat_answer),
            options: SocketOptions::default(),
            dialect,
            services: HashMap::new(),
            max_body: DEFAULT_MAX_BODY,
            workers: 1,
        }
    }

    /// The REP (or, with workers, ROUTER) endpoints as bound, wildcard ports resolved.
    pub fn rep_endpoints(&self) -> &[String] {
        match &self.inner {
            Inner::Single { receiver, .. } => receiver.rep_endpoints(),
            Inner::Pool { pool, .. } => pool.endpoints(),
        }
    }

    /// A handle that stops the server, for another thread or for a service (a "shutdown"
    /// command exists only if you register one that calls it).
    pub fn shutdown(&self) -> Shutdown {
        match &self.inner {
            Inner::Single { receiver, .. } => receiver.shutdown(),
            Inner::Pool { pool, .. } => pool.shutdown(),
        }
    }

    /// The server's live counters (all workers together).
    pub fn stats(&self) -> ServerStats {
        match &self.inner {
            Inner::Single {
                receiver,
                dispatcher,
            } => ServerStats {
                receiver: receiver.stats(),
                dispatch: dispatcher.stats.clone(),
            },
            Inner::Pool { pool, dispatch } => ServerStats {
                receiver: pool.stats(),
                dispatch: dispatch.clone(),
            },
        }
    }

    /// Serves on the calling thread until the [`shutdown`](RpcServer::shutdown) handle is used.
    pub fn run(self) -> Result<(), TransportError> {
        match self.inner {
            Inner::Single {
                receiver,
                dispatcher,
            } => receiver.run(dispatcher),
            Inner::Pool { pool, .. } => pool.run(),
        }
    }

    /// Serves on a new thread; the handle stops it (also on drop) and joins it.
    pub fn spawn(self) -> std::io::Result<Running<ServerStats>> {
        let stats = Arc::new(self.stats());
        let shutdown = self.shutdown();
        Running::spawn("zmqrpc-server", shutdown, stats, move || self.run())
    }
}

impl<D: Dialect> ServerBuilder<D> {
    /// The handle that will stop the server, available before it exists: register a
    /// "shutdown" command with it if you want one (none exists otherwise).
    pub fn shutdown(&self) -> Shutdown {
        self.receiver.shutdown()
    }

    /// Uses `ctx` (needed for `inproc://`); by default the server makes its own context.
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.receiver = self.receiver.context(ctx);
        self
    }

    /// Binds the REP socket to `endpoint` too.
    pub fn rep(mut self, endpoint: impl Into<String>) -> Self {
        self.receiver = self.receiver.rep(endpoint);
        self
    }

    /// Subscribes to a publisher at `endpoint` (commands sent with `notify`).
    pub fn subscribe(mut self, endpoint: impl Into<String>) -> Self {
        self.receiver = self.receiver.subscribe(endpoint);
        self
    }

    /// Subscribes to `endpoint`, recreating the SUB socket after `silence` without messages
    /// or heartbeats.
    pub fn subscribe_with_silence_timeout(
        mut self,
        endpoint: impl Into<String>,
        silence: Duration,
    ) -> Self {
        self.receiver = self
            .receiver
            .subscribe_with_silence_timeout(endpoint, silence);
        self
    }

    /// Socket options for every socket.
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.receiver = self.receiver.options(options.clone());
        self.options = options;
        self
    }

    /// Accepts only peers presenting credentials of one of `users`, on every socket.
    pub fn authenticate(mut self, users: Users) -> Self {
        self.receiver = self.receiver.authenticate(users);
        self
    }

    /// The largest request body the server decodes (default [`DEFAULT_MAX_BODY`]); larger
    /// requests get a `TooLarge` error and are counted. Messages larger than the socket
    /// options' `max_message_size` never get this far: libzmq drops their connection.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Registers the service for command `C`. Fails if a command with the same key (the same
    /// name, or a colliding one) is already registered, or if the server already has several
    /// [`workers`](ServerBuilder::workers) (they need
    /// [`register_clone`](ServerBuilder::register_clone)).
    pub fn register<C: Command + 'static, S: Service<C>>(
        self,
        service: S,
    ) -> Result<Self, RegisterError> {
        self.insert::<C, S>(service, None)
    }

    /// Registers a service for command `C` that can be copied to every worker of a pool
    /// (see [`workers`](ServerBuilder::workers)). Copies share only what the service shares
    /// itself (an `Arc`, say).
    pub fn register_clone<C: Command + 'static, S: Service<C> + Clone>(
        self,
        service: S,
    ) -> Result<Self, RegisterError> {
        self.insert::<C, S>(service, Some(S::clone))
    }

    /// Serves with `n` worker threads behind the bound endpoints (default 1). With one,
    /// requests are served in order on the receiving thread; with more, the receiving thread
    /// (a ROUTER socket and the SUB sockets) hands each message to the worker that has been
    /// free longest, so a call waits only while every worker is busy and a multi-core device
    /// uses its cores. Answers to one client may then come back out of order (use a
    /// [`Pipeline`](crate::Pipeline) or one call at a time), and notifications may be served
    /// out of order. Authentication and [`Caller`] are the same as with one thread. Every
    /// service must be registered with [`register_clone`](ServerBuilder::register_clone):
    /// [`register`](ServerBuilder::register) after `workers(n)` fails at once, and
    /// [`bind`](ServerBuilder::bind) fails with [`ConfigError::NotCloneable`] for a service
    /// registered before.
    ///
    /// [`ConfigError::NotCloneable`]: crate::ConfigError::NotCloneable
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    fn insert<C: Command + 'static, S: Service<C>>(
        mut self,
        service: S,
        clone: Option<fn(&S) -> S>,
    ) -> Result<Self, RegisterError> {
        if let Some(existing) = self.services.get(&C::KEY) {
            return Err(RegisterError::DuplicateKey {
                name: C::NAME,
                existing: existing.name,
                key: C::KEY,
            });
        }
        if clone.is_none() && self.workers > 1 {
            return Err(RegisterError::NotCloneable {
                name: C::NAME,
                workers: self.workers,
            });
        }
        self.services.insert(
            C::KEY,
            Registered {
                name: C::NAME,
                service: Box::new(Typed {
                    service,
                    clone,
                    command: PhantomData,
                }),
            },
        );
        Ok(self)
    }

    /// Creates, binds and connects the sockets.
    pub fn bind(self) -> Result<RpcServer<D>, TransportError> {
        let max_frame = self.options.max_frame();
        if self.workers == 1 {
            return Ok(RpcServer {
                inner: Inner::Single {
                    receiver: self.receiver.bind()?,
                    dispatcher: Dispatcher {
                        dialect: self.dialect,
                        services: self.services,
                        stats: Arc::default(),
                        max_frame,
                        max_body: self.max_body,
                        scratch: Vec::new(),
                    },
                },
            });
        }
        // Every worker gets its own copy of every service.
        let dispatch = Arc::new(DispatchStats::default());
        let mut dispatchers = Vec::with_capacity(self.workers);
        for _ in 0..self.workers {
            let mut services = HashMap::with_capacity(self.services.len());
            for (key, registered) in &self.services {
                let service = registered.service.clone_box();
                let service = service.ok_or(crate::ConfigError::NotCloneable {
                    command: registered.name,
                    workers: self.workers,
                })?;
                let name = registered.name;
                services.insert(*key, Registered { name, service });
            }
            dispatchers.push(Dispatcher {
                dialect: self.dialect.clone(),
                services,
                stats: dispatch.clone(),
                max_frame,
                max_body: self.max_body,
                scratch: Vec::new(),
            });
        }
        Ok(RpcServer {
            inner: Inner::Pool {
                pool: Pool::bind(self.receiver, dispatchers)?,
                dispatch,
            },
        })
    }
}

struct Registered<D: Dialect> {
    name: &'static str,
    service: Box<dyn ErasedService<D>>,
}

/// A service with its command type erased, so services of all types share one table. It
/// gets its command from the dialect and gives the dialect its answer.
trait ErasedService<D: Dialect>: Send {
    /// A copy for another worker, if the service was registered as cloneable.
    fn clone_box(&self) -> Option<Box<dyn ErasedService<D>>>;

    /// Serves `request`; writes the answer into `reply` when given.
    fn call(
        &mut self,
        dialect: &D,
        request: &Request<'_, D::Head>,
        caller: &Caller<'_>,
        reply: Option<&mut Vec<u8>>,
        max_frame: usize,
    ) -> Outcome;
}

enum Outcome {
    Served,
    Failed,
    BadFrame,
}

struct Typed<C, S> {
    service: S,
    /// How to copy the service for another worker, if it can be.
    clone: Option<fn(&S) -> S>,
    command: PhantomData<fn(C)>,
}

impl<D: Dialect, C: Command + 'static, S: Service<C>> ErasedService<D> for Typed<C, S> {
    fn clone_box(&self) -> Option<Box<dyn ErasedService<D>>> {
        let clone = self.clone?;
        Some(Box::new(Typed {
            service: clone(&self.service),
            clone: self.clone,
            command: PhantomData::<fn(C)>,
        }))
    }

    fn call(
        &mut self,
        dialect: &D,
        request: &Request<'_, D::Head>,
        caller: &Caller<'_>,
        reply: Option<&mut Vec<u8>>,
        max_frame: usize,
    ) -> Outcome {
        let head = &request.head;
        let command: C = match dialect.decode_command(request) {
            Ok(command) => command,
            Err(e) => {
                if let Some(reply) = reply {
                    let message = format!("{}: {e}", C::NAME);
                    dialect.encode_error(head, ErrorCode::BadFrame, &message, reply);
                }
                return Outcome::BadFrame;
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.service.call(command, caller)));
        let response = match result {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                if let Some(reply) = reply {
                    dialect.encode_error(head, ErrorCode::ServiceFailed, e.message(), reply);
                }
                return Outcome::Failed;
            }
            Err(panic) => {
                if let Some(reply) = reply {
                    let message = format!("{} panicked: {}", C::NAME, panic_message(&*panic));
                    dialect.encode_error(head, ErrorCode::ServiceFailed, &message, reply);
                }
                return Outcome::Failed;
            }
        };
        let Some(reply) = reply else {
            return Outcome::Served;
        };
        match dialect.encode_response(head, &response, reply, max_frame) {
            Ok(()) => Outcome::Served,
            Err(e) => {
                let message = format!("{}: cannot encode the response: {e}", C::NAME);
                dialect.encode_error(head, ErrorCode::ServiceFailed, &message, reply);
                Outcome::Failed
            }
        }
    }
}

/// The receiver's handler: read, look up, call, answer, all through the dialect.
struct Dispatcher<D: Dialect> {
    dialect: D,
    services: HashMap<Key, Registered<D>>,
    stats: Arc<DispatchStats>,
    max_frame: usize,
    max_body: usize,
    /// Lent to the dialect for a body it must decode before serving it.
    scratch: Vec<u8>,
}

impl<D: Dialect> Handler for Dispatcher<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        let reply = (message.origin == Origin::Rep).then_some(reply);
        let dialect = &self.dialect;
        let request = match dialect.read_request(message.bytes, &mut self.scratch) {
            Ok(request) => request,
            Err(refusal) => {
                bump(&self.stats.bad_frames);
                if let Some(reply) = reply {
                    refusal.answer(dialect, reply);
                }
                return;
            }
        };
        let Some(entry) = self.services.get_mut(&request.key) else {
            bump(&self.stats.unknown);
            if let Some(reply) = reply {
                let message = format!("no service for key {}", request.key);
                dialect.encode_error(&request.head, ErrorCode::UnknownCommand, &message, reply);
            }
            return;
        };
        if request.body.len() > self.max_body {
            bump(&self.stats.too_large);
            if let Some(reply) = reply {
                let message = format!(
                    "body of {} bytes exceeds the server's {}",
                    request.body.len(),
                    self.max_body
                );
                dialect.encode_error(&request.head, ErrorCode::TooLarge, &message, reply);
            }
            return;
        }
        let caller = Caller {
            origin: message.origin,
            user_id: message.user_id,
            seq: request.seq,
        };
        match entry
            .service
            .call(dialect, &request, &caller, reply, self.max_frame)
        {
            Outcome::Served => bump(&self.stats.served),
            Outcome::Failed => bump(&self.stats.failed),
            Outcome::BadFrame => bump(&self.stats.bad_frames),
        }
    }

    fn reject(&mut self, reason: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.bad_frames);
        if origin == Origin::Rep {
            let message = match reason {
                Rejection::Multipart => "multipart message",
            };
            let head = self.dialect.unreadable();
            self.dialect
                .encode_error(&head, ErrorCode::BadFrame, message, reply);
        }
    }
}
