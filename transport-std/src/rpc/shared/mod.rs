//! [`SharedClient`]: one client for a whole application, cloned into every thread.
//!
//! A shared client is `Clone + Send + Sync` and cheap to clone (one `Arc`). Any number of
//! calls, of any command types, are in flight at once over one DEALER socket per server
//! endpoint, each with its own deadline, answers matched by call number.
//!
//! # How it is built
//! One I/O thread owns the sockets and sleeps in level-triggered `zmq_poll` on them, their
//! monitors and a wake-up socket pair. A caller numbers its call and writes it into a slot
//! of the protocol's [`Calls`] machine under one mutex, wakes the I/O thread if it sleeps
//! (one byte on the socket pair, skipped while it is awake), and waits on its slot's
//! condition variable. The I/O thread sends queued calls to endpoints whose connection is up
//! (round-robin), copies each answer into its call's slot and wakes that caller alone, and
//! ends calls whose deadlines pass. Sockets never leave the thread, no runtime is needed,
//! and `ZMQ_FD`'s edge-triggered readiness (libzmq #3641, #1434) never comes into it: the
//! thread re-polls after every pass. A warmed-up client allocates nothing per call: each
//! slot keeps its request and answer buffers for the next call.
//!
//! # What a caller can count on
//! - A call is sent only on a connection whose handshake is done; with no server, it waits
//!   queued and times out unsent ([`CallError::Timeout`]), so it never runs after its
//!   caller gave up.
//! - At most `in_flight` calls are sent and not answered, and `queued` more wait behind
//!   them; past both a call is refused at once with [`CallError::WindowFull`].
//! - A dropped connection ends the calls sent on it with [`CallError::Disconnected`] and the
//!   socket is made anew; the other endpoints' calls and the queued ones go on. A refused
//!   handshake ends that endpoint's calls with [`CallError::AuthFailed`]. A timeout ends one
//!   call, never the connection.
//! - An answer that comes after its call ended is dropped and counted
//!   ([`CallCounts::late`]).
//! - When the last clone is dropped the I/O thread stops and joins, and any call still
//!   waiting ends with [`CallError::Stopped`]; a panic in the I/O thread ends every waiting
//!   call the same way, and later calls are refused with it.
//!
//! A dialect whose answers carry no number (pyzmqrpc3's) cannot be shared: it is refused at
//! connect with [`ConfigError::UnnumberedDialect`].

#[cfg(feature = "tokio")]
mod future;
mod io;
mod runtime;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zmqrpc_core::Command;
use zmqrpc_protocol::calls::{CallCounts, Calls, End, Limits, Refusal, State, Why};

use crate::auth::Credentials;
use crate::dialect::{Dialect, Native};
use crate::error::HandshakeFailure;
use crate::messaging::publisher::PublisherStats;
use crate::messaging::sender::{Sender, SenderBuilder};
use crate::rpc::receipt::{receipt, Receipt};
use crate::socket::context::{self, Seat, SOCKETS_PER_ENDPOINT};
use crate::socket::options::{later, SocketOptions};
use crate::{CallError, ConfigError, SocketKind, TransportError};

/// Builds a [`SharedClient`].
pub struct SharedClientBuilder<D: Dialect = Native> {
    dialect: D,
    ctx: Option<zmq::Context>,
    endpoints: Vec<String>,
    options: SocketOptions,
    credentials: Option<Credentials>,
    timeout: Duration,
    limits: Limits,
    /// The PUB side for notifications, if any.
    notifications: SenderBuilder,
}

impl<D: Dialect> SharedClientBuilder<D> {
    /// Binds a PUB socket to `endpoint` too, for [`SharedClient::notify`]; servers subscribe.
    pub fn publish_on(mut self, endpoint: impl Into<String>) -> Self {
        self.notifications = self.notifications.publish_on(endpoint);
        self
    }

    /// Notifications held while no server subscribes (default 1000); beyond, the oldest are
    /// dropped and counted.
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.notifications = self.notifications.pending_limit(limit);
        self
    }

    /// Bytes of notifications held at most (default 8 MiB); beyond, the oldest are dropped
    /// and counted.
    pub fn pending_bytes(mut self, bytes: usize) -> Self {
        self.notifications = self.notifications.pending_bytes(bytes);
        self
    }

    /// Back-pressure for [`SharedClient::notify`], as [`ClientBuilder::backpressure`]
    /// says: a full publisher makes `notify` wait up to `wait` (holding the other
    /// notifiers back meanwhile) before it drops the oldest. Off by default.
    ///
    /// [`ClientBuilder::backpressure`]: crate::ClientBuilder::backpressure
    pub fn backpressure(mut self, wait: Duration) -> Self {
        self.notifications = self.notifications.backpressure(wait);
        self
    }

    /// Lets only servers presenting the credentials of one of `users` subscribe to the
    /// publisher ([`publish_on`](Self::publish_on)); without one, `connect` refuses with
    /// [`ConfigError::UsersWithoutBind`].
    pub fn users(mut self, users: crate::Users) -> Self {
        self.notifications = self.notifications.users(users);
        self
    }

    /// Uses `ctx` (needed for `inproc://`); by default the client takes room in a context
    /// the process's clients share (see [`RpcClient`](crate::RpcClient#threads)).
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.ctx = Some(ctx.clone());
        self
    }

    /// Adds a server's REP (or ROUTER) endpoint; calls go to the endpoints whose
    /// connection is up, in turn.
    pub fn req(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Socket options.
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Presents `credentials` to servers that require them.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The default per-call timeout (default 5 s), counted from the call, queue included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most calls sent and not yet answered (default 256).
    pub fn in_flight(mut self, calls: usize) -> Self {
        self.limits.in_flight = calls.max(1);
        self
    }

    /// The most calls waiting behind those in flight (default 1024); past both, a call is
    /// refused with [`CallError::WindowFull`].
    pub fn queued(mut self, calls: usize) -> Self {
        self.limits.queued = calls;
        self
    }

    /// The most bytes of requests in flight (default 16 MiB; one call always goes).
    pub fn window_bytes(mut self, bytes: usize) -> Self {
        self.limits.bytes = bytes;
        self
    }

    /// Creates the sockets and starts the I/O thread.
    ///
    /// Fails with [`ConfigError::NoEndpoint`] without an endpoint, and with
    /// [`ConfigError::UnnumberedDialect`] for a dialect whose answers carry no number.
    pub fn connect(self) -> Result<SharedClient<D>, TransportError> {
        if !D::NUMBERS_ANSWERS {
            return Err(ConfigError::UnnumberedDialect {
                what: "shared client",
                dialect: std::any::type_name::<D>(),
            }
            .into());
        }
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoint {
                what: "shared client",
            }
            .into());
        }
        // A socket and its monitor per endpoint, and the notifier's PUB side.
        let sockets = SOCKETS_PER_ENDPOINT * (self.endpoints.len() + 1);
        let (ctx, seat) = context::given_or_shared(self.ctx, sockets);
        let notifier = self
            .notifications
            .context(&ctx)
            .options(self.options.clone())
            .connect()?;
        let notifier = Mutex::new(Notifier {
            publish_endpoints: notifier.publish_endpoints().to_vec(),
            sender: notifier,
            buf: Vec::with_capacity(256),
        });
        let (wake, woken) = UnixStream::pair()
            .and_then(|(wake, woken)| {
                wake.set_nonblocking(true)?;
                woken.set_nonblocking(true)?;
                Ok((wake, woken))
            })
            .map_err(|e| TransportError::Spawn {
                thread: "zmqrpc-shared-client (its wake-up socket pair)".into(),
                reason: e.to_string(),
            })?;
        let calls: Calls<Waiter> = Calls::new(self.limits);
        let ready = (0..calls.slot_count()).map(|_| Condvar::new()).collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(Inside {
                calls,
                stop: false,
                stopped: false,
                asleep: false,
                refused: vec![None; self.endpoints.len()],
                stray: 0,
                spare: Vec::with_capacity(self.limits.in_flight + self.limits.queued),
                to_wake: Vec::with_capacity(self.limits.in_flight + self.limits.queued),
            }),
            ready,
            wake,
        });
        let endpoints: Arc<[String]> = self.endpoints.into();
        let io = io::Io::new(
            &ctx,
            Arc::clone(&shared),
            self.dialect.clone(),
            Arc::clone(&endpoints),
            self.options.clone(),
            self.credentials,
            woken,
        )?;
        let thread = std::thread::Builder::new()
            .name("zmqrpc-shared-client".into())
            .spawn(move || io.run())
            .map_err(|e| TransportError::Spawn {
                thread: "zmqrpc-shared-client".into(),
                reason: e.to_string(),
            })?;
        Ok(SharedClient {
            inner: Arc::new(Handle {
                shared,
                dialect: self.dialect,
                endpoints,
                max_frame: self.options.max_frame(),
                timeout: self.timeout,
                notifier,
                thread: Some(thread),
                _seat: seat,
            }),
        })
    }
}

/// One client shared by every thread of an application: see the [module docs](self).
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use zmqrpc_transport_std::SharedClient;
/// # #[derive(Serialize, Deserialize)] struct Add(i32, i32);
/// # impl zmqrpc_core::Command for Add { const NAME: &'static str = "add"; type Response = i32; }
/// let client = SharedClient::builder().req("tcp://127.0.0.1:30000").connect()?;
/// let threads: Vec<_> = (0..8)
///     .map(|i| {
///         let client = client.clone();
///         std::thread::spawn(move || client.call(&Add(i, i)))
///     })
///     .collect();
/// for thread in threads {
///     println!("{:?}", thread.join().unwrap());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedClient<D: Dialect = Native> {
    inner: Arc<Handle<D>>,
}

impl<D: Dialect> Clone for SharedClient<D> {
    fn clone(&self) -> Self {
        SharedClient {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SharedClient<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inside = self.inner.shared.lock();
        f.debug_struct("SharedClient")
            .field("endpoints", &self.inner.endpoints)
            .field("in_flight", &inside.calls.in_flight())
            .field("queued", &inside.calls.queued())
            .finish_non_exhaustive()
    }
}

impl SharedClient {
    /// Starts building a shared client of the native dialect.
    pub fn builder() -> SharedClientBuilder {
        SharedClient::builder_for(Native)
    }

    /// Starts building a shared client that calls in `dialect`.
    pub fn builder_for<D: Dialect>(dialect: D) -> SharedClientBuilder<D> {
        SharedClientBuilder {
            dialect,
            ctx: None,
            endpoints: Vec::new(),
            options: SocketOptions::default(),
            credentials: None,
            timeout: Duration::from_secs(5),
            limits: Limits {
                in_flight: 256,
                queued: 1024,
                bytes: crate::DEFAULT_WINDOW_BYTES,
            },
            notifications: SenderBuilder::default().named("shared client"),
        }
    }
}

impl<D: Dialect> SharedClient<D> {
    /// Calls `command` and waits for its response, up to the client's timeout.
    pub fn call<C: Command>(&self, command: &C) -> Result<C::Response, CallError> {
        self.call_timeout(command, self.inner.timeout)
    }

    /// [`call`](SharedClient::call) with its own timeout.
    pub fn call_timeout<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Response, CallError> {
        self.submit_timeout(command, timeout)
            .and_then(Receipt::into_response)
    }

    /// Calls `command` and says what came back: its response, or that a store-and-forward
    /// hop accepted it (see [`Receipt`]).
    pub fn submit<C: Command>(&self, command: &C) -> Result<Receipt<C::Response>, CallError> {
        self.submit_timeout(command, self.inner.timeout)
    }

    /// [`submit`](SharedClient::submit) with its own timeout.
    pub fn submit_timeout<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<Receipt<C::Response>, CallError> {
        runtime::blocking(|| self.wait_for(command, timeout))?
    }

    /// A blocking call's submission and wait, on a thread where it may block.
    fn wait_for<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<Receipt<C::Response>, CallError> {
        let handle = &self.inner;
        let deadline = later(Instant::now(), timeout);
        let mut inside = handle.shared.lock();
        let (seq, asleep) = handle.start(&mut inside, command, deadline)?;
        if asleep {
            // Under the lock: letting go of it and taking it again costs more.
            handle.shared.wake();
        }
        let ready = &handle.shared.ready[inside.calls.slot_of(seq)];
        // The I/O thread ends every call by its deadline; the margin only guards against
        // an I/O thread that can no longer run at all.
        let give_up = later(deadline, STALLED_IO_MARGIN);
        let end = loop {
            match inside.calls.state(seq) {
                State::Ended(end) => break end,
                State::Free => return Err(handle.stopped()),
                State::Queued | State::InFlight => {}
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                inside.cancel(seq);
                return Err(handle.stopped());
            }
            if let Some(waiter) = inside.calls.data_mut(seq) {
                waiter.blocked = true;
            }
            inside = ready
                .wait_timeout(inside, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        let result = handle.finish::<C>(&mut inside, seq, end, timeout);
        inside.collect(seq);
        result
    }

    /// Calls `command` and awaits its response, up to the client's timeout counted from
    /// the first poll. Dropping the future before it ends cancels the call at once (a queued
    /// call is never sent; a late answer is dropped and counted).
    #[cfg(feature = "tokio")]
    pub async fn call_async<C: Command>(&self, command: &C) -> Result<C::Response, CallError> {
        self.call_timeout_async(command, self.inner.timeout).await
    }

    /// [`call_async`](SharedClient::call_async) with its own timeout.
    #[cfg(feature = "tokio")]
    pub async fn call_timeout_async<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Response, CallError> {
        self.submit_timeout_async(command, timeout)
            .await
            .and_then(Receipt::into_response)
    }

    /// [`submit`](SharedClient::submit), awaited: see [`call_async`](SharedClient::call_async).
    #[cfg(feature = "tokio")]
    pub async fn submit_async<C: Command>(
        &self,
        command: &C,
    ) -> Result<Receipt<C::Response>, CallError> {
        self.submit_timeout_async(command, self.inner.timeout).await
    }

    /// [`submit_async`](SharedClient::submit_async) with its own timeout.
    #[cfg(feature = "tokio")]
    pub async fn submit_timeout_async<C: Command>(
        &self,
        command: &C,
        timeout: Duration,
    ) -> Result<Receipt<C::Response>, CallError> {
        future::PendingCall::new(&self.inner, command, timeout).await
    }

    /// Publishes `command` to subscribed servers, one way, from any thread or task. Held in
    /// the publisher's pending queue while no server subscribes (the oldest dropped and
    /// counted past its bounds; with [`backpressure`](SharedClientBuilder::backpressure),
    /// waited for first). Fails with [`CallError::NoSocket`] without
    /// [`publish_on`](SharedClientBuilder::publish_on).
    pub fn notify<C: Command>(&self, command: &C) -> Result<(), CallError> {
        let mut notifier = self.notifier();
        let Notifier { sender, buf, .. } = &mut *notifier;
        let publisher = sender
            .publisher()
            .ok_or(CallError::NoSocket(SocketKind::Pub))?;
        self.inner
            .dialect
            .encode_notify(command, buf, self.inner.max_frame)
            .map_err(CallError::Encode)?;
        Ok(publisher.publish(buf)?)
    }

    /// Sends what the publisher holds as far as subscribers take it; how many notifications
    /// are still held.
    pub fn flush(&self) -> Result<usize, CallError> {
        let mut notifier = self.notifier();
        let publisher = notifier
            .sender
            .publisher()
            .ok_or(CallError::NoSocket(SocketKind::Pub))?;
        Ok(publisher.flush()?)
    }

    /// The endpoints the PUB side is bound to, wildcard ports resolved (none without
    /// `publish_on`).
    pub fn publish_endpoints(&self) -> Vec<String> {
        self.notifier().publish_endpoints.clone()
    }

    /// The PUB side's live counters, if it is configured.
    pub fn publisher_stats(&self) -> Option<Arc<PublisherStats>> {
        self.notifier().sender.publisher_stats()
    }

    fn notifier(&self) -> MutexGuard<'_, Notifier> {
        self.inner
            .notifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls sent and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.inner.shared.lock().calls.in_flight()
    }

    /// Calls waiting to be sent.
    pub fn queued(&self) -> usize {
        self.inner.shared.lock().calls.queued()
    }

    /// What the client has counted: calls submitted, sent, answered, timed out, refused,
    /// and late answers dropped.
    pub fn counts(&self) -> CallCounts {
        self.inner.shared.lock().calls.counts()
    }

    /// Answers dropped: late ones (their call had ended), and messages that were no
    /// numbered answer at all.
    pub fn stray_answers(&self) -> u64 {
        let inside = self.inner.shared.lock();
        inside.calls.counts().late + inside.stray
    }

    /// The server endpoints, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }
}

/// A [`Waiter::endpoint`] that names no endpoint: the call was not sent.
const NOT_SENT: usize = usize::MAX;

/// How long past a call's deadline a caller waits for an I/O thread that did not end it.
const STALLED_IO_MARGIN: Duration = Duration::from_secs(1);

/// What the clones share; the last one dropped stops the I/O thread.
struct Handle<D: Dialect> {
    shared: Arc<Shared>,
    dialect: D,
    endpoints: Arc<[String]>,
    max_frame: usize,
    timeout: Duration,
    /// The PUB side, shared by every notifier.
    notifier: Mutex<Notifier>,
    thread: Option<JoinHandle<()>>,
    /// Its room in a shared context, if it was given none; given up after the I/O thread
    /// stopped.
    _seat: Option<Seat>,
}

/// The shared client's PUB side and the buffer notifications are written into.
struct Notifier {
    /// Without `publish_on`, no publisher: `notify` fails with `NoSocket`.
    sender: Sender,
    publish_endpoints: Vec<String>,
    buf: Vec<u8>,
}

impl<D: Dialect> Handle<D> {
    /// Numbers, writes and queues a call; says whether the I/O thread sleeps and must be
    /// woken ([`Shared::wake`], best once the lock is let go).
    fn start<C: Command>(
        &self,
        inside: &mut Inside,
        command: &C,
        deadline: Instant,
    ) -> Result<(u32, bool), CallError> {
        if inside.stop || inside.stopped {
            return Err(self.stopped());
        }
        if let Some((index, reason)) = inside.refused_everywhere() {
            return Err(CallError::AuthFailed {
                endpoint: self.endpoints[index].clone(),
                reason,
            });
        }
        let seq = inside.calls.submit(C::KEY, 0, deadline).map_err(
            |Refusal::Full { in_flight, queued }| CallError::WindowFull {
                in_flight: in_flight + queued,
            },
        )?;
        inside.lend_buffers(seq);
        let Some(waiter) = inside.calls.data_mut(seq) else {
            return Err(CallError::Transport(TransportError::Internal {
                what: "a call just submitted has no slot",
            }));
        };
        if let Err(e) = self
            .dialect
            .encode_call(seq, command, &mut waiter.request, self.max_frame)
        {
            inside.cancel(seq);
            return Err(CallError::Encode(e));
        }
        waiter.endpoint = NOT_SENT;
        let bytes = waiter.request.len();
        inside.calls.set_bytes(seq, bytes);
        Ok((seq, std::mem::take(&mut inside.asleep)))
    }

    /// What the ended call `seq` returns.
    fn finish<C: Command>(
        &self,
        inside: &mut Inside,
        seq: u32,
        end: End,
        timeout: Duration,
    ) -> Result<Receipt<C::Response>, CallError> {
        let refused = &inside.refused;
        let Some(waiter) = inside.calls.data_mut(seq) else {
            return Err(self.stopped());
        };
        // The endpoint's name is copied only into an error; a call not sent names them all.
        let all = || self.endpoints.join(",");
        let endpoint = || {
            self.endpoints
                .get(waiter.endpoint)
                .map_or_else(all, Clone::clone)
        };
        match end {
            End::Answered => match self.dialect.read_answer(&waiter.reply) {
                Ok(answer) => {
                    let named = self
                        .endpoints
                        .get(waiter.endpoint)
                        .map_or("", String::as_str);
                    receipt(named, answer.meaning::<D, C::Response>(&self.dialect))
                }
                Err(error) => Err(CallError::Decode {
                    endpoint: endpoint(),
                    error,
                }),
            },
            End::TimedOut { sent } => Err(CallError::Timeout {
                endpoint: if sent { endpoint() } else { all() },
                after: timeout,
            }),
            End::Ended(Why::Disconnected) => Err(CallError::Disconnected {
                endpoint: endpoint(),
            }),
            End::Ended(Why::Refused) => Err(CallError::AuthFailed {
                reason: refused
                    .get(waiter.endpoint)
                    .copied()
                    .flatten()
                    .or_else(|| refused.iter().flatten().next().copied())
                    .unwrap_or(HandshakeFailure::NoDetail),
                endpoint: endpoint(),
            }),
            End::Ended(Why::Stopped) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> CallError {
        CallError::Stopped {
            endpoint: self.endpoints.join(","),
        }
    }
}

impl<D: Dialect> Drop for Handle<D> {
    fn drop(&mut self) {
        {
            let mut inside = self.shared.lock();
            inside.stop = true;
        }
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            // A panic in it has already ended every call (see `io::Io::run`).
            let _ = thread.join();
        }
    }
}

/// The state callers and the I/O thread share, and how they wake each other.
struct Shared {
    state: Mutex<Inside>,
    /// One per call slot: its caller waits on it, the I/O thread wakes it alone.
    ready: Box<[Condvar]>,
    /// Written to wake the I/O thread; it polls the other end.
    wake: UnixStream,
}

impl Shared {
    /// The state; a panic elsewhere while holding it leaves it usable (every update in it
    /// is complete before anything can panic).
    fn lock(&self) -> MutexGuard<'_, Inside> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the I/O thread's poll (a full pipe already will).
    fn wake(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    /// Notes that the caller of call `seq` is to be woken (a thread waiting on its slot, or
    /// the task awaiting it), once the lock is let go: [`unlock`](Shared::unlock).
    fn notify(&self, inside: &mut Inside, seq: u32) {
        let slot = inside.calls.slot_of(seq);
        let Some(waiter) = inside.calls.data_mut(seq) else {
            return;
        };
        if let Some(waker) = waiter.waker.take() {
            inside.to_wake.push(ToWake::Task(waker));
        } else if waiter.blocked {
            // Only a thread that waits is signalled: a condition variable's signal is a
            // system call even when nobody waits on it.
            inside.to_wake.push(ToWake::Thread(slot));
        }
    }

    /// Lets go of the lock, then wakes the callers [`notify`](Shared::notify) noted: woken
    /// under the lock, each would first wait for it. `spare` is the waking thread's own
    /// list, swapped with the one under the lock, so neither allocates once grown.
    fn unlock(&self, mut inside: MutexGuard<'_, Inside>, spare: &mut Vec<ToWake>) {
        std::mem::swap(&mut inside.to_wake, spare);
        drop(inside);
        for to_wake in spare.drain(..) {
            match to_wake {
                ToWake::Thread(slot) => self.ready[slot].notify_one(),
                ToWake::Task(waker) => waker.wake(),
            }
        }
    }
}

/// Under the mutex.
struct Inside {
    calls: Calls<Waiter>,
    /// The last clone asked the I/O thread to stop.
    stop: bool,
    /// The I/O thread has ended (stopped or panicked): nothing more will be answered.
    stopped: bool,
    /// The I/O thread is in (or about to enter) its poll: a caller must wake it.
    asleep: bool,
    /// How each endpoint's latest handshake was refused, if it was.
    refused: Vec<Option<HandshakeFailure>>,
    /// Messages that were no readable, numbered answer, dropped.
    stray: u64,
    /// Callers to wake once the lock is let go ([`Shared::notify`]).
    to_wake: Vec<ToWake>,
    /// Request and reply buffers of ended calls, lent to the next ones: as many as calls
    /// were ever under way at once, not one pair per slot (there are twice as many slots as
    /// calls may be under way, and successive calls take successive slots).
    spare: Vec<Buffers>,
}

/// A call's request and reply buffers.
type Buffers = (Vec<u8>, Vec<u8>);

/// A caller to wake, once the lock is let go.
enum ToWake {
    /// A thread waiting on the condition variable of this call slot.
    Thread(usize),
    /// A task awaiting its call.
    Task(Waker),
}

/// The most capacity a spare buffer keeps; a larger one is freed when its call ends, so a
/// few large calls leave no large buffers behind.
const SPARE_CAPACITY: usize = 16 << 10;

impl Inside {
    /// Gives call `seq` (just submitted) a spare pair of buffers, if there is one.
    fn lend_buffers(&mut self, seq: u32) {
        let Some(waiter) = self.calls.data_mut(seq) else {
            return;
        };
        if let Some((request, reply)) = self.spare.pop() {
            waiter.request = request;
            waiter.reply = reply;
        }
    }

    /// Collects the ended call `seq` (freeing its slot), its buffers back among the spares.
    fn collect(&mut self, seq: u32) {
        self.reclaim_buffers(seq);
        self.calls.collect(seq);
    }

    /// Cancels call `seq` (freeing its slot), its buffers back among the spares.
    fn cancel(&mut self, seq: u32) {
        self.reclaim_buffers(seq);
        self.calls.cancel(seq);
    }

    fn reclaim_buffers(&mut self, seq: u32) {
        let Some(waiter) = self.calls.data_mut(seq) else {
            return;
        };
        waiter.waker = None;
        waiter.blocked = false;
        let mut request = std::mem::take(&mut waiter.request);
        let mut reply = std::mem::take(&mut waiter.reply);
        if self.spare.len() < self.spare.capacity() {
            request.clear();
            reply.clear();
            request.shrink_to(SPARE_CAPACITY);
            reply.shrink_to(SPARE_CAPACITY);
            self.spare.push((request, reply));
        }
    }

    /// The first endpoint's refusal, if every endpoint refuses this client.
    fn refused_everywhere(&self) -> Option<(usize, HandshakeFailure)> {
        if self.refused.iter().all(Option::is_some) {
            self.refused[0].map(|reason| (0, reason))
        } else {
            None
        }
    }
}

/// A call slot's own: kept for the next call in the slot, so buffers are reused.
#[derive(Default)]
struct Waiter {
    /// The request, as written under its number.
    request: Vec<u8>,
    /// The answer, as it came.
    reply: Vec<u8>,
    /// The endpoint it was sent to.
    endpoint: usize,
    /// The task awaiting the call, if an async caller made it.
    waker: Option<Waker>,
    /// A blocking caller waits on the slot's condition variable.
    blocked: bool,
}
