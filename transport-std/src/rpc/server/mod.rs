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
//! answers are discarded (counted in [`DispatchCounts`] when they fail).

mod dispatch;
mod service;
#[cfg(feature = "tokio")]
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use zmqrpc_core::Command;

use crate::auth::{Credentials, Permissions, Users};
use crate::dialect::{DefaultDialect, Dialect};
use crate::messaging::pool::Pick;
use crate::messaging::receiver::{Receiver, ReceiverBuilder, ReceiverCounts, ReceiverStats};
use crate::messaging::serving::Serving;
use crate::node::{Describe, GetStats, NodeReport, Ping};
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::{Running, Shutdown};
use crate::{ConfigError, TransportError};
use dispatch::{Dispatcher, Services};

pub use dispatch::{DispatchCounts, DispatchStats};
#[cfg(feature = "tokio")]
pub use service::AsyncService;
pub use service::{Caller, RegisterError, Service, ServiceError, WithCaller};
#[cfg(feature = "tokio")]
pub use tasks::{DEFAULT_ASYNC_CONCURRENCY, DEFAULT_STOP_GRACE};

/// The live counters of a running [`RpcServer`] (all its workers together): its sockets and
/// its dispatch. A cheap handle, as every object's `stats()` is; read it with
/// [`snapshot`](Self::snapshot).
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// The sockets' live counters.
    #[deprecated(since = "0.1.0", note = "read `snapshot().receiver`")]
    pub receiver: Arc<ReceiverStats>,
    /// The dispatch's live counters.
    #[deprecated(since = "0.1.0", note = "read `snapshot().dispatch`")]
    pub dispatch: Arc<DispatchStats>,
}

#[allow(deprecated)] // the fields stay readable until 0.2; this crate reads them here only
impl ServerStats {
    /// The counters' values now.
    pub fn snapshot(&self) -> ServerCounts {
        ServerCounts {
            receiver: self.receiver.snapshot(),
            dispatch: self.dispatch.snapshot(),
        }
    }
}

/// A [`ServerStats`] reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// What the sockets received, rejected and recreated.
    pub receiver: ReceiverCounts,
    /// What the services made of the calls.
    pub dispatch: DispatchCounts,
}

/// Builds an [`RpcServer`]: endpoints, options and services, for one wire [`Dialect`].
pub struct ServerBuilder<D: Dialect = DefaultDialect> {
    receiver: ReceiverBuilder,
    options: SocketOptions,
    dialect: D,
    services: Services<D>,
    max_body: usize,
    workers: usize,
    permissions: Option<Arc<Permissions>>,
    /// What the node says about itself; its built-in commands answer from it.
    report: NodeReport,
    /// Whether the built-in commands are served.
    builtins: bool,
    /// Where async services run.
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
    /// Async calls served at once, at most.
    #[cfg(feature = "tokio")]
    concurrency: usize,
    /// How long a stop waits for async calls in flight.
    #[cfg(feature = "tokio")]
    stop_grace: Duration,
}

/// The default largest request body a server decodes: 256 KiB.
pub const DEFAULT_MAX_BODY: usize = 256 << 10;

/// Serves registered [`Service`]s; see the [module docs](self).
pub struct RpcServer<D: Dialect = DefaultDialect> {
    inner: Inner<D>,
}

struct Inner<D: Dialect> {
    serving: Loop<D>,
    /// The dispatch counters, all workers together.
    dispatch: Arc<DispatchStats>,
    report: NodeReport,
}

/// How the server serves.
enum Loop<D: Dialect> {
    /// One thread that receives and serves, or a receiving thread and a pool of workers.
    Threads(Serving<Dispatcher<D>>),
    /// A receiving thread, its async services as tasks on a runtime.
    #[cfg(feature = "tokio")]
    Tasks(tasks::Tasks<D>),
}

impl<D: Dialect> Loop<D> {
    fn rep_endpoints(&self) -> &[String] {
        match self {
            Loop::Threads(serving) => serving.rep_endpoints(),
            #[cfg(feature = "tokio")]
            Loop::Tasks(tasks) => tasks.endpoints(),
        }
    }

    fn shutdown(&self) -> Shutdown {
        match self {
            Loop::Threads(serving) => serving.shutdown(),
            #[cfg(feature = "tokio")]
            Loop::Tasks(tasks) => tasks.shutdown(),
        }
    }

    fn stats(&self) -> Arc<ReceiverStats> {
        match self {
            Loop::Threads(serving) => serving.stats(),
            #[cfg(feature = "tokio")]
            Loop::Tasks(tasks) => tasks.stats(),
        }
    }

    fn run(self) -> Result<(), TransportError> {
        match self {
            Loop::Threads(serving) => serving.run(),
            #[cfg(feature = "tokio")]
            Loop::Tasks(tasks) => tasks.run(),
        }
    }
}

impl RpcServer {
    /// Starts building a server of the [`DefaultDialect`].
    pub fn builder() -> ServerBuilder {
        RpcServer::builder_for(DefaultDialect::default())
    }
}

impl<D: Dialect> RpcServer<D> {
    /// Starts building a server that reads and answers `dialect`.
    pub fn builder_for(dialect: D) -> ServerBuilder<D> {
        ServerBuilder {
            receiver: Receiver::builder()
                .heartbeats(D::heartbeat_answer)
                .named("server"),
            options: SocketOptions::default(),
            dialect,
            services: Services::new(),
            max_body: DEFAULT_MAX_BODY,
            workers: 1,
            permissions: None,
            report: NodeReport::new("server"),
            builtins: true,
            #[cfg(feature = "tokio")]
            runtime: None,
            #[cfg(feature = "tokio")]
            concurrency: tasks::DEFAULT_ASYNC_CONCURRENCY,
            #[cfg(feature = "tokio")]
            stop_grace: tasks::DEFAULT_STOP_GRACE,
        }
    }

    /// The REP (or, with workers, ROUTER) endpoints as bound, wildcard ports resolved.
    pub fn rep_endpoints(&self) -> &[String] {
        self.inner.serving.rep_endpoints()
    }

    /// A handle that stops the server, for another thread or for a service (a "shutdown"
    /// command exists only if you register one that calls it).
    pub fn shutdown(&self) -> Shutdown {
        self.inner.serving.shutdown()
    }

    /// The server's live counters (all workers together).
    #[allow(deprecated)] // builds the handle, fields and all
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            receiver: self.inner.serving.stats(),
            dispatch: self.inner.dispatch.clone(),
        }
    }

    /// What the server says about itself: what its built-in commands answer
    /// ([`node`](crate::node)).
    pub fn report(&self) -> NodeReport {
        self.inner.report.clone()
    }

    /// Serves on the calling thread until the [`shutdown`](RpcServer::shutdown) handle is used.
    pub fn run(self) -> Result<(), TransportError> {
        self.inner.serving.run()
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

    /// Accepts on the bound REP endpoints only callers presenting the credentials of one of
    /// `users` (the [`auth`](crate::auth) rule: a bound socket verifies). Without a `rep`
    /// endpoint, `bind` refuses with
    /// [`ConfigError::UsersWithoutBind`].
    pub fn users(mut self, users: Users) -> Self {
        self.receiver = self.receiver.users(users);
        self
    }

    /// Presents `credentials` to the publishers it subscribes to (a connecting socket
    /// presents). Without a `subscribe` endpoint, `bind` refuses with
    /// [`ConfigError::CredentialsWithoutConnect`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.receiver = self.receiver.credentials(credentials);
        self
    }

    /// Serves only what `permissions` allow each caller: a call no rule allows gets a
    /// [`Forbidden`](zmqrpc_core::ErrorCode::Forbidden) error (pyzmqrpc3 callers a 403
    /// status), a notification is dropped; both are counted in
    /// [`DispatchCounts::forbidden`](crate::DispatchCounts::forbidden). Checked before the
    /// command is decoded. A caller's user id is its PLAIN username or the user id its CURVE
    /// key is allowed under; a notification from a subscription has none. Without
    /// permissions, everyone who gets through the socket may call everything.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = Some(Arc::new(permissions));
        self
    }

    /// The largest command the server decodes (default [`DEFAULT_MAX_BODY`]): a native
    /// frame's body, or a pyzmqrpc3 message's whole JSON once inflated (inflation stops
    /// here, so a compressed bomb costs at most this much). Larger requests get a `TooLarge`
    /// error and are counted as `too_large`. Messages larger than the socket options'
    /// `max_message_size` never get this far: libzmq drops their connection.
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

    /// Registers an async service for command `C`: its future runs as a task on the
    /// server's tokio [`runtime`](ServerBuilder::runtime), up to
    /// [`concurrency`](ServerBuilder::concurrency) calls at once, so a slow call holds no
    /// other back. Dispatch, refusals, permissions, counters and the stop handle are the
    /// blocking server's; a service that fails or panics (while starting or while polled)
    /// answers `ServiceFailed`. Blocking services registered beside it run on the receiving
    /// thread, in turn. Fails as [`register`](ServerBuilder::register) does for a key
    /// already taken.
    ///
    /// ```no_run
    /// # use zmqrpc_transport_std::{RpcServer, ServiceError};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Nap(u64);
    /// # impl zmqrpc_core::Command for Nap { const NAME: &'static str = "nap"; type Response = u64; }
    /// # async fn sleep(_: u64) {}
    /// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = RpcServer::builder()
    ///     .rep("tcp://127.0.0.1:30000")
    ///     .register_async(|Nap(ms): Nap| async move {
    ///         sleep(ms).await;
    ///         Ok::<_, ServiceError>(ms)
    ///     })?
    ///     .bind()?; // inside a runtime: its services run there
    /// let running = server.spawn()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn register_async<C: Command + 'static, S: AsyncService<C>>(
        mut self,
        service: S,
    ) -> Result<Self, RegisterError> {
        if let Some(existing) = self.services.name_of(C::KEY) {
            return Err(RegisterError::DuplicateKey {
                name: C::NAME,
                existing,
                key: C::KEY,
            });
        }
        self.services.insert_async::<C, S>(service);
        self.report.command::<C>();
        Ok(self)
    }

    /// The tokio runtime async services run on; by default the one current at
    /// [`bind`](ServerBuilder::bind).
    #[cfg(feature = "tokio")]
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// How many async calls (and notifications) are served at once, at most (default
    /// [`DEFAULT_ASYNC_CONCURRENCY`], at least 1). With that many under way the server
    /// reads no more until one ends: the rest wait in libzmq's queues.
    #[cfg(feature = "tokio")]
    pub fn concurrency(mut self, calls: usize) -> Self {
        self.concurrency = calls.max(1);
        self
    }

    /// How long a stop waits for the async calls in flight to answer (default
    /// [`DEFAULT_STOP_GRACE`]); past it, the tasks still running are cancelled (each at its
    /// next await: a future that never awaits cannot be), unanswered and counted as failed.
    #[cfg(feature = "tokio")]
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    fn insert<C: Command + 'static, S: Service<C>>(
        mut self,
        service: S,
        clone: Option<fn(&S) -> S>,
    ) -> Result<Self, RegisterError> {
        if let Some(existing) = self.services.name_of(C::KEY) {
            return Err(RegisterError::DuplicateKey {
                name: C::NAME,
                existing,
                key: C::KEY,
            });
        }
        if clone.is_none() && self.workers > 1 {
            return Err(RegisterError::NotCloneable {
                name: C::NAME,
                workers: self.workers,
            });
        }
        self.services.insert::<C, S>(service, clone);
        self.report.command::<C>();
        Ok(self)
    }

    /// Whether the server answers the built-in commands [`Ping`], [`GetStats`] and
    /// [`Describe`] (default: it does), guarded by its
    /// [`permissions`](ServerBuilder::permissions) as every command is. A command of yours
    /// registered under one of their names is served instead of the built-in.
    pub fn builtins(mut self, on: bool) -> Self {
        self.builtins = on;
        self
    }

    /// Registers the built-in commands whose keys are free.
    fn with_builtins(mut self) -> Result<Self, RegisterError> {
        if !self.builtins {
            return Ok(self);
        }
        let report = self.report.clone();
        if self.services.name_of(Ping::KEY).is_none() {
            let report = report.clone();
            self = self.register_clone(move |_: Ping| Ok::<_, ServiceError>(report.pong()))?;
        }
        if self.services.name_of(GetStats::KEY).is_none() {
            let report = report.clone();
            self = self.register_clone(move |_: GetStats| Ok::<_, ServiceError>(report.stats()))?;
        }
        if self.services.name_of(Describe::KEY).is_none() {
            self = self
                .register_clone(move |_: Describe| Ok::<_, ServiceError>(report.description()))?;
        }
        Ok(self)
    }

    /// Tells the report what the bound server counts.
    fn report_on(report: &NodeReport, serving: &Loop<D>, dispatch: &Arc<DispatchStats>) {
        let input = serving.stats();
        report.section("input", serving.rep_endpoints().to_vec(), move || {
            input.snapshot().named()
        });
        let dispatch = Arc::clone(dispatch);
        report.section("dispatch", Vec::new(), move || dispatch.snapshot().named());
        let liveness = serving.shutdown().liveness();
        report.section("loop", Vec::new(), move || [("turns", liveness.turns())]);
    }

    /// Creates, binds and connects the sockets.
    pub fn bind(self) -> Result<RpcServer<D>, TransportError> {
        let this = self.with_builtins().map_err(|e| TransportError::Internal {
            what: match e {
                RegisterError::NotCloneable { .. } => "a built-in service not cloneable",
                _ => "a built-in service refused",
            },
        })?;
        this.bind_services()
    }

    fn bind_services(self) -> Result<RpcServer<D>, TransportError> {
        let report = self.report;
        report.limit("max_body_bytes", self.max_body as u64);
        report.limit("workers", self.workers as u64);
        let max_frame = self.options.max_frame();
        let (dialect, max_body) = (self.dialect, self.max_body);
        let permissions = self.permissions;
        let dispatch = Arc::new(DispatchStats::default());
        let dispatcher = |services| {
            Dispatcher::new(
                dialect.clone(),
                services,
                dispatch.clone(),
                max_frame,
                max_body,
            )
            .with_permissions(permissions.clone())
        };
        // Every worker but one gets a copy of every service; the last takes them as they
        // are, so a single-threaded server needs no copies.
        let mut dispatchers = Vec::with_capacity(self.workers);
        for _ in 1..self.workers {
            let services = self
                .services
                .copy()
                .map_err(|command| ConfigError::NotCloneable {
                    command,
                    workers: self.workers,
                })?;
            dispatchers.push(dispatcher(services));
        }
        #[cfg(feature = "tokio")]
        if let Some(command) = self.services.an_async_command() {
            if self.workers > 1 {
                let workers = self.workers;
                return Err(ConfigError::AsyncWithWorkers { workers }.into());
            }
            let runtime = match self.runtime {
                Some(runtime) => runtime,
                None => tokio::runtime::Handle::try_current()
                    .map_err(|_| ConfigError::NoRuntime { command })?,
            };
            let dispatcher = dispatcher(self.services);
            let tasks = tasks::Tasks::bind(
                self.receiver,
                dispatcher,
                runtime,
                self.concurrency,
                self.stop_grace,
            )?;
            let serving = Loop::Tasks(tasks);
            Self::report_on(&report, &serving, &dispatch);
            return Ok(RpcServer {
                inner: Inner {
                    serving,
                    dispatch,
                    report,
                },
            });
        }
        dispatchers.push(dispatcher(self.services));
        let serving = Loop::Threads(Serving::bind(self.receiver, dispatchers, Pick::Rested)?);
        Self::report_on(&report, &serving, &dispatch);
        Ok(RpcServer {
            inner: Inner {
                serving,
                dispatch,
                report,
            },
        })
    }
}
