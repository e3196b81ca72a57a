//! Dispatch: the receiver's handler that reads each request through the dialect, finds the
//! service registered for its key and answers; the services behind one table with their
//! command types erased.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use zmqrpc_core::{Command, ErrorCode, Key};

#[cfg(feature = "tokio")]
use super::service::AsyncService;
use super::service::{Caller, Service, ServiceError};
use crate::auth::Permissions;
use crate::dialect::{Dialect, Request};
use crate::error::panic_message;
use crate::messaging::receiver::{Incoming, MessageHandler, Origin, Rejection};
use crate::socket::stats::{bump, counters};

counters! {
    /// Live counters of an [`RpcServer`](crate::RpcServer)'s dispatch.
    DispatchStats;
    /// A [`DispatchStats`] reading.
    DispatchCounts {
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
        /// Calls and notifications no permission allowed their caller.
        forbidden,
    }
}

/// A server's services, by command key.
pub(super) struct Services<D: Dialect> {
    table: HashMap<Key, Registered<D>>,
}

impl<D: Dialect> Services<D> {
    pub(super) fn new() -> Services<D> {
        Services {
            table: HashMap::new(),
        }
    }

    /// The name of the command registered for `key`, if one is.
    pub(super) fn name_of(&self, key: Key) -> Option<&'static str> {
        self.table.get(&key).map(|registered| registered.name)
    }

    /// Adds the service for command `C` (the caller has checked its key is free), with how
    /// to copy it for another worker if it can be.
    pub(super) fn insert<C: Command + 'static, S: Service<C>>(
        &mut self,
        service: S,
        clone: Option<fn(&S) -> S>,
    ) {
        let service = Box::new(Typed {
            service,
            clone,
            command: PhantomData,
        });
        let name = C::NAME;
        let service = Entry::Blocking(service);
        self.table.insert(C::KEY, Registered { name, service });
    }

    /// Adds the async service for command `C` (the caller has checked its key is free).
    #[cfg(feature = "tokio")]
    pub(super) fn insert_async<C: Command + 'static, S: AsyncService<C>>(&mut self, service: S) {
        let service: Arc<dyn ErasedAsync<D>> = Arc::new(TypedAsync {
            service,
            command: PhantomData::<fn(C)>,
        });
        let name = C::NAME;
        let service = Entry::Async(service);
        self.table.insert(C::KEY, Registered { name, service });
    }

    /// The command of an async service, if one is registered.
    #[cfg(feature = "tokio")]
    pub(super) fn an_async_command(&self) -> Option<&'static str> {
        self.table
            .values()
            .find(|registered| matches!(registered.service, Entry::Async(_)))
            .map(|registered| registered.name)
    }

    /// A copy of every service for another worker; the name of a command whose service
    /// cannot be copied, if one cannot.
    pub(super) fn copy(&self) -> Result<Services<D>, &'static str> {
        let mut table = HashMap::with_capacity(self.table.len());
        for (key, registered) in &self.table {
            let name = registered.name;
            let service = match &registered.service {
                Entry::Blocking(service) => Entry::Blocking(service.clone_box().ok_or(name)?),
                #[cfg(feature = "tokio")]
                Entry::Async(service) => Entry::Async(Arc::clone(service)),
            };
            table.insert(*key, Registered { name, service });
        }
        Ok(Services { table })
    }
}

struct Registered<D: Dialect> {
    name: &'static str,
    service: Entry<D>,
}

/// How a registered service runs.
enum Entry<D: Dialect> {
    /// Called on the thread that dispatches.
    Blocking(Box<dyn ErasedService<D>>),
    /// Started on the thread that dispatches, run as a task on the server's runtime.
    #[cfg(feature = "tokio")]
    Async(Arc<dyn ErasedAsync<D>>),
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

/// How serving one request ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Served,
    Failed,
    BadFrame,
}

impl Outcome {
    /// Counts it in `stats`.
    pub(super) fn count(self, stats: &DispatchStats) {
        bump(match self {
            Outcome::Served => &stats.served,
            Outcome::Failed => &stats.failed,
            Outcome::BadFrame => &stats.bad_frames,
        });
    }
}

/// Answers a served request: `result` is what the service returned, or its panic. The
/// answer goes into `reply` (a call's; none for a notification). One definition for blocking
/// and async services.
fn answer<D: Dialect, R: serde::Serialize>(
    dialect: &D,
    head: &D::Head,
    name: &'static str,
    result: std::thread::Result<Result<R, ServiceError>>,
    reply: Option<&mut Vec<u8>>,
    max_frame: usize,
) -> Outcome {
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
                let message = format!("{name} panicked: {}", panic_message(&*panic));
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
            let message = format!("{name}: cannot encode the response: {e}");
            dialect.encode_error(head, ErrorCode::ServiceFailed, &message, reply);
            Outcome::Failed
        }
    }
}

/// Decodes `request`'s command; a bad body is answered (`BadFrame`) into `reply`.
fn decode<D: Dialect, C: Command>(
    dialect: &D,
    request: &Request<'_, D::Head>,
    reply: Option<&mut Vec<u8>>,
) -> Result<C, Outcome> {
    dialect.decode_command(request).map_err(|e| {
        if let Some(reply) = reply {
            let message = format!("{}: {e}", C::NAME);
            dialect.encode_error(&request.head, ErrorCode::BadFrame, &message, reply);
        }
        Outcome::BadFrame
    })
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
        mut reply: Option<&mut Vec<u8>>,
        max_frame: usize,
    ) -> Outcome {
        let command: C = match decode(dialect, request, reply.as_deref_mut()) {
            Ok(command) => command,
            Err(outcome) => return outcome,
        };
        let result = catch_unwind(AssertUnwindSafe(|| self.service.call(command, caller)));
        answer(dialect, &request.head, C::NAME, result, reply, max_frame)
    }
}

/// An answer an async service will give: how serving ended and the reply (empty for a
/// notification).
#[cfg(feature = "tokio")]
pub(super) type Later =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Outcome, Vec<u8>)> + Send>>;

/// An async service with its command type erased.
#[cfg(feature = "tokio")]
trait ErasedAsync<D: Dialect>: Send + Sync {
    /// Decodes `request` and starts serving it; a bad body is answered into `reply` at once.
    fn start(
        &self,
        dialect: &D,
        request: &Request<'_, D::Head>,
        caller: &Caller<'_>,
        reply: Option<&mut Vec<u8>>,
        max_frame: usize,
    ) -> Result<Later, Outcome>;
}

#[cfg(feature = "tokio")]
struct TypedAsync<C, S> {
    service: S,
    command: PhantomData<fn(C)>,
}

#[cfg(feature = "tokio")]
impl<D: Dialect, C: Command + 'static, S: AsyncService<C>> ErasedAsync<D> for TypedAsync<C, S> {
    fn start(
        &self,
        dialect: &D,
        request: &Request<'_, D::Head>,
        caller: &Caller<'_>,
        mut reply: Option<&mut Vec<u8>>,
        max_frame: usize,
    ) -> Result<Later, Outcome> {
        let command: C = decode(dialect, request, reply.as_deref_mut())?;
        let wants_answer = reply.is_some();
        let started = catch_unwind(AssertUnwindSafe(|| self.service.call(command, caller)));
        let (dialect, head) = (dialect.clone(), request.head);
        Ok(Box::pin(async move {
            let result = match started {
                Ok(future) => {
                    // A panic while polling the service's future is its answer too.
                    let mut future = std::pin::pin!(future);
                    std::future::poll_fn(|cx| {
                        match catch_unwind(AssertUnwindSafe(|| {
                            std::future::Future::poll(future.as_mut(), cx)
                        })) {
                            Ok(std::task::Poll::Ready(result)) => {
                                std::task::Poll::Ready(Ok(result))
                            }
                            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                            Err(panic) => std::task::Poll::Ready(Err(panic)),
                        }
                    })
                    .await
                }
                Err(panic) => Err(panic),
            };
            let mut reply = Vec::new();
            let target = wants_answer.then_some(&mut reply);
            let outcome = answer(&dialect, &head, C::NAME, result, target, max_frame);
            (outcome, reply)
        }))
    }
}

/// The receiver's handler: read, look up, call, answer, all through the dialect.
pub(super) struct Dispatcher<D: Dialect> {
    dialect: D,
    services: Services<D>,
    stats: Arc<DispatchStats>,
    max_frame: usize,
    max_body: usize,
    /// Lent to the dialect for a body it must decode before serving it.
    scratch: Vec<u8>,
    /// Who may call what; none: everyone who got through the socket, everything.
    permissions: Option<Arc<Permissions>>,
}

impl<D: Dialect> Dispatcher<D> {
    /// Serves `services` in `dialect`, counting in `stats`; answers are at most `max_frame`
    /// bytes, requests with a body over `max_body` refused.
    pub(super) fn new(
        dialect: D,
        services: Services<D>,
        stats: Arc<DispatchStats>,
        max_frame: usize,
        max_body: usize,
    ) -> Dispatcher<D> {
        Dispatcher {
            dialect,
            services,
            stats,
            max_frame,
            max_body,
            scratch: Vec::new(),
            permissions: None,
        }
    }

    /// Serves only what `permissions` allow (none: everything).
    pub(super) fn with_permissions(mut self, permissions: Option<Arc<Permissions>>) -> Self {
        self.permissions = permissions;
        self
    }
}

/// What dispatching a message gave.
pub(super) enum Dispatched {
    /// Answered (or, for a notification, done) on the spot.
    Now,
    /// An async service serves it; its answer comes with the future.
    #[cfg(feature = "tokio")]
    Later(Later),
}

impl<D: Dialect> Dispatcher<D> {
    /// Reads `message`, checks it is allowed, finds its service and serves it: a blocking
    /// service at once (its answer in `reply`), an async one by the future returned. Every
    /// refusal is answered into `reply` and counted here; an async service's outcome is
    /// counted when its future ends ([`Outcome::count`]).
    pub(super) fn dispatch(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) -> Dispatched {
        let reply = (message.origin == Origin::Rep).then_some(reply);
        let dialect = &self.dialect;
        let request = match dialect.read_request(message.bytes, &mut self.scratch, self.max_body) {
            Ok(request) => request,
            Err(refusal) => {
                bump(match refusal.is_too_large() {
                    true => &self.stats.too_large,
                    false => &self.stats.bad_frames,
                });
                if let Some(reply) = reply {
                    refusal.answer(dialect, reply);
                }
                return Dispatched::Now;
            }
        };
        if let Some(permissions) = &self.permissions {
            let name = self.services.name_of(request.key);
            let action = message.origin.action();
            if let Err(why) = permissions.check(message.user_id, action, request.key, name) {
                bump(&self.stats.forbidden);
                if let Some(reply) = reply {
                    dialect.encode_error(&request.head, ErrorCode::Forbidden, &why, reply);
                }
                return Dispatched::Now;
            }
        }
        let Some(entry) = self.services.table.get_mut(&request.key) else {
            bump(&self.stats.unknown);
            if let Some(reply) = reply {
                let message = format!("no service for key {}", request.key);
                dialect.encode_error(&request.head, ErrorCode::UnknownCommand, &message, reply);
            }
            return Dispatched::Now;
        };
        let caller = Caller {
            origin: message.origin,
            user_id: message.user_id,
            seq: request.seq,
        };
        let max_frame = self.max_frame;
        match &mut entry.service {
            Entry::Blocking(service) => {
                let outcome = service.call(dialect, &request, &caller, reply, max_frame);
                outcome.count(&self.stats);
                Dispatched::Now
            }
            #[cfg(feature = "tokio")]
            Entry::Async(service) => {
                match service.start(dialect, &request, &caller, reply, max_frame) {
                    Ok(later) => Dispatched::Later(later),
                    Err(outcome) => {
                        outcome.count(&self.stats);
                        Dispatched::Now
                    }
                }
            }
        }
    }

    /// The dispatch counters.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // read by the async loop
    pub(super) fn stats(&self) -> &Arc<DispatchStats> {
        &self.stats
    }
}

impl<D: Dialect> MessageHandler for Dispatcher<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        match self.dispatch(message, reply) {
            Dispatched::Now => {}
            // `bind` runs a server with async services on its runtime, never here.
            #[cfg(feature = "tokio")]
            Dispatched::Later(_) => {
                log::error!("an async service was dispatched without a runtime; dropped");
            }
        }
    }

    fn reject(&mut self, reason: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.bad_frames);
        if origin == Origin::Rep {
            let head = self.dialect.unreadable();
            let why = reason.to_string();
            self.dialect.encode_error(&head, reason.code(), &why, reply);
        }
    }
}
