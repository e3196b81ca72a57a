//! The service API: what a server runs for each command ([`Service`], [`WithCaller`]), who
//! asked ([`Caller`]), and how registration and services fail.

use std::fmt;

use zmqrpc_core::{Command, Key};

use crate::messaging::receiver::Origin;

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
    /// [`ServerBuilder::users`](crate::ServerBuilder::users).
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
    /// The server has several [`workers`](crate::ServerBuilder::workers), and a service registered
    /// with [`register`](crate::ServerBuilder::register) cannot be copied to each of them: use
    /// [`register_clone`](crate::ServerBuilder::register_clone).
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

/// Answers one command type with an async fn, on the server's tokio runtime (see
/// [`ServerBuilder::register_async`](crate::ServerBuilder::register_async)).
///
/// Closures `Fn(C) -> impl Future<Output = Result<C::Response, ServiceError>>` are async
/// services; one that also wants its [`Caller`] goes in a [`WithCaller`], where it reads what
/// it needs from the caller before its future starts. Many calls of one service run at once:
/// it is shared (`Fn`, `Sync`), not copied.
#[cfg(feature = "tokio")]
pub trait AsyncService<C: Command>: Send + Sync + 'static {
    /// What serving one command is.
    type Future: std::future::Future<Output = Result<C::Response, ServiceError>> + Send + 'static;

    /// Starts serving `command` for `caller`.
    fn call(&self, command: C, caller: &Caller<'_>) -> Self::Future;
}

#[cfg(feature = "tokio")]
impl<C, F, Fut> AsyncService<C> for F
where
    C: Command,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<C::Response, ServiceError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, command: C, _caller: &Caller<'_>) -> Fut {
        self(command)
    }
}

#[cfg(feature = "tokio")]
impl<C, F, Fut> AsyncService<C> for WithCaller<F>
where
    C: Command,
    F: Fn(C, &Caller<'_>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<C::Response, ServiceError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, command: C, caller: &Caller<'_>) -> Fut {
        (self.0)(command, caller)
    }
}
