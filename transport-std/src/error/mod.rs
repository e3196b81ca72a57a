//! Errors of the transport layer, one variant a meaning: [`TransportError`] (a libzmq
//! failure, and apart from it a misuse or a configuration mistake), [`ConfigError`],
//! [`SocketKind`] (which socket something needed); an exchange's [`RequestError`] and a
//! call's [`CallError`] in `call.rs`.

mod call;
mod handshake;
mod limit;

use std::any::Any;
use std::fmt;

pub use call::{CallError, RequestError};
pub use handshake::HandshakeFailure;
pub use limit::{raise_open_file_limit, LimitReached};

/// Which socket an operation needed and its object does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketKind {
    /// A REQ socket: requests and calls go through it (a `req` endpoint).
    Req,
    /// A PUB socket: publications, notifications and heartbeats go through it (a
    /// `publish_on` endpoint).
    Pub,
}

impl SocketKind {
    /// The builder setting that gives an object this socket.
    fn setting(self) -> &'static str {
        match self {
            SocketKind::Req => "req",
            SocketKind::Pub => "publish_on",
        }
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Req => "REQ",
            SocketKind::Pub => "PUB",
        })
    }
}

/// A mistake in how an object was configured, found before any socket was used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The object was asked to connect with no endpoint to connect to.
    NoEndpoint {
        /// What lacks the endpoint: "pipeline", …
        what: &'static str,
    },
    /// Credentials were given where no socket connects: a socket that binds verifies the
    /// peers that connect to it (with users) and never presents credentials, which would
    /// hand them to whoever connects.
    CredentialsWithoutConnect {
        /// What was given them: "receiver", "sender", "proxy output", …
        what: &'static str,
    },
    /// Users were given where no socket binds: a socket that connects presents
    /// credentials and verifies nobody.
    UsersWithoutBind {
        /// What was given them: "receiver", "sender", "proxy input", …
        what: &'static str,
    },
    /// The users given cannot be verified by one socket: passwords beside a CURVE server
    /// key, or client keys without one.
    MixedAuth {
        /// What is wrong.
        reason: &'static str,
    },
    /// A builder setting that the kind being built has no use for: a SUB input for a
    /// proxy kind whose input is REP.
    NotForKind {
        /// The setting, as its builder method names it.
        setting: &'static str,
        /// The kind, e.g. `Rep2Req`.
        kind: &'static str,
    },
    /// A setting is outside the range it can take.
    OutOfRange {
        /// The setting, as its builder method names it.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The smallest it may be.
        min: u64,
        /// The largest it may be.
        max: u64,
    },
    /// A server with several workers has a service registered with
    /// [`register`](crate::ServerBuilder::register), which cannot be copied to each worker:
    /// it must be registered with [`register_clone`](crate::ServerBuilder::register_clone).
    NotCloneable {
        /// The command whose service cannot be copied.
        command: &'static str,
        /// The number of workers asked for.
        workers: usize,
    },
    /// Many calls in flight on one connection are matched to their answers by number, and
    /// the dialect's answers carry none (pyzmqrpc3's: a REQ socket pairs each answer with
    /// its call). Call such peers with an `RpcClient`.
    UnnumberedDialect {
        /// What needs the numbers: "pipeline", …
        what: &'static str,
        /// The dialect's type.
        dialect: &'static str,
    },
    /// An async service was registered and no tokio runtime was given
    /// ([`ServerBuilder::runtime`](crate::ServerBuilder::runtime)) or is current at `bind`.
    NoRuntime {
        /// The async service's command.
        command: &'static str,
    },
    /// Async services run as tasks, up to the server's `concurrency`: a server with them
    /// takes no `workers`.
    AsyncWithWorkers {
        /// The number of workers asked for.
        workers: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoEndpoint { what } => {
                write!(f, "the {what} has no endpoint to connect to")
            }
            ConfigError::CredentialsWithoutConnect { what } => write!(
                f,
                "credentials given to the {what}, which connects no socket: a bound socket \
                 verifies who connects (give it users) and never presents credentials"
            ),
            ConfigError::UsersWithoutBind { what } => write!(
                f,
                "users given to the {what}, which binds no socket: a connecting socket \
                 presents credentials (give it credentials) and verifies nobody"
            ),
            ConfigError::MixedAuth { reason } => write!(f, "users not usable: {reason}"),
            ConfigError::NotForKind { setting, kind } => {
                write!(f, "{setting} does not apply to a {kind} proxy")
            }
            ConfigError::OutOfRange {
                setting,
                value,
                min,
                max,
            } => write!(f, "{setting} {value} is out of range ({min} to {max})"),
            ConfigError::NotCloneable { command, workers } => write!(
                f,
                "the service for {command:?} cannot be copied to {workers} workers: \
                 register it with register_clone"
            ),
            ConfigError::UnnumberedDialect { what, dialect } => write!(
                f,
                "a {what} matches answers to calls by number, and the answers of {dialect} \
                 carry none: call its peers with an RpcClient"
            ),
            ConfigError::NoRuntime { command } => write!(
                f,
                "the async service for {command:?} needs a tokio runtime: give the server \
                 one with `runtime(handle)`, or bind it inside one"
            ),
            ConfigError::AsyncWithWorkers { workers } => write!(
                f,
                "a server with async services runs them as tasks (bounded by `concurrency`), \
                 not on {workers} workers"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a socket or a loop of the transport failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// A libzmq operation failed; says which operation on which endpoint.
    Zmq {
        /// What was being done: "bind", "connect", "send", …
        op: &'static str,
        /// The endpoint concerned, or empty.
        endpoint: String,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// A libzmq operation failed with `EMFILE`: the process is at its open-file limit, or
    /// the context at its socket limit. Says which, and the setting that raises it.
    Limit {
        /// What was being done: "socket", "bind", "connect", …
        op: &'static str,
        /// The endpoint (or the socket's purpose) concerned, or empty.
        endpoint: String,
        /// The limit reached.
        limit: LimitReached,
    },
    /// Another socket listens on this `ipc://` path, so it was not bound (libzmq would
    /// silently take the path over and orphan the other socket).
    EndpointInUse {
        /// The endpoint that was to be bound.
        endpoint: String,
    },
    /// The object has no socket of this kind: for example a
    /// [`Sender`](crate::Sender) without a `publish_on` endpoint asked to publish.
    NoSocket(SocketKind),
    /// A thread could not be started.
    Spawn {
        /// The thread's name.
        thread: String,
        /// What the operating system said.
        reason: String,
    },
    /// A thread panicked: a loop's own thread (a [`Receiver`](crate::Receiver)'s handler,
    /// say), seen by [`Running::wait`](crate::Running::wait), or a worker of a pool.
    Panicked {
        /// The thread's name.
        thread: String,
        /// The panic's message, or "(no message)".
        message: String,
    },
    /// The object was configured wrongly.
    Config(ConfigError),
    /// zmqrpc broke one of its own invariants: a bug in zmqrpc, not in its use. Says which.
    Internal {
        /// The invariant broken.
        what: &'static str,
    },
}

impl TransportError {
    /// A failure of libzmq operation `op` on `endpoint`.
    pub(crate) fn new(op: &'static str, endpoint: &str, source: zmq::Error) -> Self {
        let limit = match source {
            zmq::Error::EMFILE => Some(LimitReached::of(op)),
            // A context's first socket starts its threads; when that fails for want of a
            // file, libzmq 4.3.5 leaves errno as it found it (EFAULT, say).
            _ if op == "socket" => LimitReached::if_no_file_left(),
            _ => None,
        };
        if let Some(limit) = limit {
            return TransportError::Limit {
                op,
                endpoint: endpoint.to_owned(),
                limit,
            };
        }
        TransportError::Zmq {
            op,
            endpoint: endpoint.to_owned(),
            source,
        }
    }

    /// libzmq's error, if libzmq is what failed (`EMFILE` for a [`Limit`](Self::Limit)).
    pub fn zmq_error(&self) -> Option<zmq::Error> {
        match self {
            TransportError::Zmq { source, .. } => Some(*source),
            TransportError::Limit { .. } => Some(zmq::Error::EMFILE),
            _ => None,
        }
    }

    /// Whether binding failed because another socket holds the address (libzmq's
    /// `EADDRINUSE`, or a live `ipc://` path).
    pub(crate) fn is_address_in_use(&self) -> bool {
        matches!(self, TransportError::EndpointInUse { .. })
            || self.zmq_error() == Some(zmq::Error::EADDRINUSE)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Zmq {
                op,
                endpoint,
                source,
            } if endpoint.is_empty() => write!(f, "{op} failed: {source}"),
            TransportError::Zmq {
                op,
                endpoint,
                source,
            } => write!(f, "{op} {endpoint} failed: {source}"),
            TransportError::Limit {
                op,
                endpoint,
                limit,
            } => write!(f, "{op} {endpoint} failed: {limit}"),
            TransportError::EndpointInUse { endpoint } => write!(
                f,
                "cannot bind {endpoint}: address in use (another socket listens on this path)"
            ),
            TransportError::NoSocket(kind) => write!(
                f,
                "no {kind} socket: no `{}` endpoint was configured",
                kind.setting()
            ),
            TransportError::Spawn { thread, reason } => {
                write!(f, "cannot start thread {thread}: {reason}")
            }
            TransportError::Panicked { thread, message } => {
                write!(f, "thread {thread} panicked: {message}")
            }
            TransportError::Config(e) => e.fmt(f),
            TransportError::Internal { what } => {
                write!(f, "internal error, a bug in zmqrpc: {what}")
            }
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Zmq { source, .. } => Some(source),
            TransportError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for TransportError {
    fn from(e: ConfigError) -> Self {
        TransportError::Config(e)
    }
}

/// The message a panic was raised with, if it has one (`panic!` with a literal or with
/// format arguments).
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn only_a_libzmq_failure_carries_a_libzmq_error() {
        // A real libzmq failure: binding a port twice.
        let ctx = zmq::Context::new();
        let first = ctx.socket(zmq::REP).unwrap();
        first.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = first.get_last_endpoint().unwrap().unwrap();
        let failure = ctx.socket(zmq::REP).unwrap().bind(&endpoint).unwrap_err();
        assert_eq!(failure, zmq::Error::EADDRINUSE);
        let zmq = TransportError::new("bind", &endpoint, failure);
        assert_eq!(zmq.zmq_error(), Some(failure));
        assert!(zmq.is_address_in_use());
        let source = zmq.source().unwrap();
        assert_eq!(source.downcast_ref::<zmq::Error>(), Some(&failure));
        let said = zmq.to_string();
        assert!(
            said.starts_with(&format!("bind {endpoint} failed: ")),
            "{said}"
        );

        let in_use = TransportError::EndpointInUse {
            endpoint: "ipc:///tmp/x".into(),
        };
        assert!(in_use.is_address_in_use());
        let others = [
            in_use,
            TransportError::NoSocket(SocketKind::Pub),
            TransportError::Spawn {
                thread: "zmqrpc-worker-3".into(),
                reason: "Resource temporarily unavailable".into(),
            },
            TransportError::Panicked {
                thread: "zmqrpc-receiver".into(),
                message: "boom".into(),
            },
            TransportError::Config(ConfigError::NoEndpoint { what: "pipeline" }),
            TransportError::Internal {
                what: "an invariant",
            },
        ];
        for error in others {
            assert_eq!(error.zmq_error(), None, "{error:?}");
        }
    }

    #[test]
    fn each_error_says_what_happened() {
        let cases = [
            (
                TransportError::EndpointInUse {
                    endpoint: "ipc:///tmp/x".into(),
                },
                "cannot bind ipc:///tmp/x: address in use (another socket listens on this path)",
            ),
            (
                TransportError::NoSocket(SocketKind::Pub),
                "no PUB socket: no `publish_on` endpoint was configured",
            ),
            (
                TransportError::Spawn {
                    thread: "zmqrpc-zap".into(),
                    reason: "out of threads".into(),
                },
                "cannot start thread zmqrpc-zap: out of threads",
            ),
            (
                TransportError::Panicked {
                    thread: "zmqrpc-worker-0".into(),
                    message: "boom".into(),
                },
                "thread zmqrpc-worker-0 panicked: boom",
            ),
            (
                TransportError::Config(ConfigError::NotCloneable {
                    command: "math.add",
                    workers: 4,
                }),
                "the service for \"math.add\" cannot be copied to 4 workers: \
                 register it with register_clone",
            ),
            (
                TransportError::Config(ConfigError::NoEndpoint { what: "pipeline" }),
                "the pipeline has no endpoint to connect to",
            ),
            (
                TransportError::Internal {
                    what: "an invariant",
                },
                "internal error, a bug in zmqrpc: an invariant",
            ),
        ];
        for (error, said) in cases {
            assert_eq!(error.to_string(), said);
        }
        let config = TransportError::Config(ConfigError::NoEndpoint { what: "pipeline" });
        assert!(config.source().unwrap().is::<ConfigError>());
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let literal = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert_eq!(panic_message(&*literal), "boom");
        let formatted = std::panic::catch_unwind(|| panic!("boom {}", 2)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "boom 2");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7)).unwrap_err();
        assert_eq!(panic_message(&*other), "(no message)");
    }
}
