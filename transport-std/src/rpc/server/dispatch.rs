//! Dispatch: the receiver's handler that reads each request through the dialect, finds the
//! service registered for its key and answers; the services behind one table with their
//! command types erased.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use zmqrpc_core::{Command, ErrorCode, Key};

use super::service::{Caller, Service};
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
        self.table.insert(C::KEY, Registered { name, service });
    }

    /// A copy of every service for another worker; the name of a command whose service
    /// cannot be copied, if one cannot.
    pub(super) fn copy(&self) -> Result<Services<D>, &'static str> {
        let mut table = HashMap::with_capacity(self.table.len());
        for (key, registered) in &self.table {
            let name = registered.name;
            let service = registered.service.clone_box().ok_or(name)?;
            table.insert(*key, Registered { name, service });
        }
        Ok(Services { table })
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

impl<D: Dialect> MessageHandler for Dispatcher<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
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
                return;
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
                return;
            }
        }
        let Some(entry) = self.services.table.get_mut(&request.key) else {
            bump(&self.stats.unknown);
            if let Some(reply) = reply {
                let message = format!("no service for key {}", request.key);
                dialect.encode_error(&request.head, ErrorCode::UnknownCommand, &message, reply);
            }
            return;
        };
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
