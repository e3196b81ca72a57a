//! Errors of the transport layer.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use zmqrpc_core::{DecodeError, EncodeError, RemoteError};

use crate::socket::monitor::HandshakeFailure;

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
    /// A server with several workers has a service registered with
    /// [`register`](crate::ServerBuilder::register), which cannot be copied to each worker:
    /// it must be registered with [`register_clone`](crate::ServerBuilder::register_clone).
    NotCloneable {
        /// The command whose service cannot be copied.
        command: &'static str,
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
            ConfigError::NotCloneable { command, workers } => write!(
                f,
                "the service for {command:?} cannot be copied to {workers} workers: \
                 register it with register_clone"
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
    /// say), seen by [`Running::join`](crate::Running::join), or a worker of a pool.
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
        TransportError::Zmq {
            op,
            endpoint: endpoint.to_owned(),
            source,
        }
    }

    /// libzmq's error, if libzmq is what failed.
    pub fn zmq_error(&self) -> Option<zmq::Error> {
        match self {
            TransportError::Zmq { source, .. } => Some(*source),
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

/// A request/reply exchange failed, without regard to its content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No REQ endpoint is configured.
    NoEndpoint,
    /// No reply within the timeout; the endpoint's socket was closed and will be recreated.
    Timeout {
        /// The endpoint that did not answer.
        endpoint: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// The endpoint's security handshake failed: wrong or missing credentials. The socket
    /// was closed and will be recreated.
    AuthFailed {
        /// The endpoint that refused.
        endpoint: String,
        /// How the handshake failed.
        reason: HandshakeFailure,
    },
    /// The wait for the reply was given up because the loop making the request was asked
    /// to stop (a proxy shutting down). The socket was closed and will be recreated.
    Stopped {
        /// The endpoint that was being waited for.
        endpoint: String,
    },
    /// The endpoint answered with a message of several parts; a reply is one part. The
    /// socket was closed and will be recreated.
    MultipartReply {
        /// The endpoint that answered.
        endpoint: String,
    },
    /// A reply was asked for where no request can be in flight: the endpoint's socket was
    /// closed since (after a failure, or [`Requester::reset`](crate::Requester::reset)), or
    /// there is no such endpoint.
    NothingInFlight {
        /// The endpoint asked, or empty if there is no such endpoint.
        endpoint: String,
    },
    /// The socket failed.
    Transport(TransportError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoEndpoint => f.write_str("no REQ endpoint configured"),
            RequestError::Timeout { endpoint, after } => {
                write!(f, "no reply from {endpoint} within {after:?}")
            }
            RequestError::AuthFailed { endpoint, reason } => write!(f, "{endpoint}: {reason}"),
            RequestError::Stopped { endpoint } => {
                write!(f, "stopped while waiting for {endpoint}")
            }
            RequestError::MultipartReply { endpoint } => {
                write!(f, "{endpoint} answered with a multipart message")
            }
            RequestError::NothingInFlight { endpoint } if endpoint.is_empty() => {
                f.write_str("no request in flight")
            }
            RequestError::NothingInFlight { endpoint } => {
                write!(f, "no request in flight to {endpoint}")
            }
            RequestError::Transport(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// Why an [`RpcClient`](crate::RpcClient) call or notification failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallError {
    /// No reply within the timeout (after any retries).
    Timeout {
        /// The endpoint tried last.
        endpoint: String,
        /// The per-attempt timeout.
        after: Duration,
    },
    /// The server refused the client's credentials, or the two disagree on whether
    /// credentials are needed. Reported as soon as the handshake fails, not at the timeout.
    AuthFailed {
        /// The endpoint that refused.
        endpoint: String,
        /// How the handshake failed.
        reason: HandshakeFailure,
    },
    /// The server answered with an error: unknown command, bad frame, service failure, …
    Remote {
        /// The endpoint that answered.
        endpoint: String,
        /// What it said (boxed: it is large and the error path is rare).
        error: Box<RemoteError>,
    },
    /// The connection carrying the call was dropped before its answer came (the server went
    /// away, or libzmq cut the connection, for example for a reply over the socket
    /// options' `max_message_size`); the answer can no longer arrive. The call may have run.
    Disconnected {
        /// The endpoint whose connection dropped.
        endpoint: String,
    },
    /// The reply did not belong to this call (another sequence number or key); it was dropped.
    StrayReply {
        /// The endpoint that sent it.
        endpoint: String,
    },
    /// The command could not be encoded.
    Encode(EncodeError),
    /// The reply could not be decoded.
    Decode {
        /// The endpoint that sent it.
        endpoint: String,
        /// What was wrong with it.
        error: DecodeError,
    },
    /// The endpoint answered with a message of several parts; a reply is one part.
    MultipartReply {
        /// The endpoint that answered.
        endpoint: String,
    },
    /// A socket failed.
    Transport(TransportError),
    /// The client has no socket of this kind: no REQ endpoint for a call, no PUB endpoint
    /// for a notification or a heartbeat.
    NoSocket(SocketKind),
    /// The wait for the answer was given up because the client's loop was asked to stop.
    Stopped {
        /// The endpoint that was being waited for.
        endpoint: String,
    },
    /// A [`Pipeline`](crate::Pipeline) already has its window full of calls in flight.
    WindowFull {
        /// Calls in flight.
        in_flight: usize,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout { endpoint, after } => {
                write!(f, "call to {endpoint} timed out after {after:?}")
            }
            CallError::AuthFailed { endpoint, reason } => {
                write!(f, "{endpoint} refused the client: {reason}")
            }
            CallError::Remote { endpoint, error } => write!(f, "{endpoint} answered: {error}"),
            CallError::Disconnected { endpoint } => {
                write!(
                    f,
                    "the connection to {endpoint} dropped before the answer came"
                )
            }
            CallError::StrayReply { endpoint } => {
                write!(f, "{endpoint} sent a reply to another call; it was dropped")
            }
            CallError::Encode(e) => write!(f, "cannot encode the command: {e}"),
            CallError::Decode { endpoint, error } => {
                write!(f, "bad reply from {endpoint}: {error}")
            }
            CallError::MultipartReply { endpoint } => {
                write!(f, "{endpoint} answered with a multipart message")
            }
            CallError::Transport(e) => e.fmt(f),
            CallError::NoSocket(kind) => write!(
                f,
                "the client has no {kind} socket: no `{}` endpoint was configured",
                kind.setting()
            ),
            CallError::Stopped { endpoint } => write!(f, "stopped while waiting for {endpoint}"),
            CallError::WindowFull { in_flight } => {
                write!(f, "{in_flight} calls in flight fill the pipeline's window")
            }
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Remote { error, .. } => Some(&**error),
            CallError::Encode(e) => Some(e),
            CallError::Decode { error, .. } => Some(error),
            CallError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

impl CallError {
    /// A call's result from what its answer said ([`Frame::outcome`]), naming `endpoint`
    /// in the errors.
    ///
    /// [`Frame::outcome`]: zmqrpc_core::Frame::outcome
    pub(crate) fn from_outcome<R>(
        endpoint: &str,
        outcome: Result<Result<R, RemoteError>, DecodeError>,
    ) -> Result<R, CallError> {
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(CallError::Remote {
                endpoint: endpoint.to_owned(),
                error: Box::new(error),
            }),
            Err(error) => Err(CallError::Decode {
                endpoint: endpoint.to_owned(),
                error,
            }),
        }
    }
}

impl From<RequestError> for CallError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NoEndpoint => CallError::NoSocket(SocketKind::Req),
            RequestError::Timeout { endpoint, after } => CallError::Timeout { endpoint, after },
            RequestError::AuthFailed { endpoint, reason } => {
                CallError::AuthFailed { endpoint, reason }
            }
            RequestError::Stopped { endpoint } => CallError::Stopped { endpoint },
            RequestError::MultipartReply { endpoint } => CallError::MultipartReply { endpoint },
            // Only `Requester::try_reply` says this, and no call uses it: a bug.
            RequestError::NothingInFlight { .. } => {
                CallError::Transport(TransportError::Internal {
                    what: "a call awaited a reply with no request in flight",
                })
            }
            RequestError::Transport(e) => e.into(),
        }
    }
}

impl From<TransportError> for CallError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::NoSocket(kind) => CallError::NoSocket(kind),
            e => CallError::Transport(e),
        }
    }
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
    fn a_missing_socket_is_one_call_error_whichever_layer_noticed() {
        assert_eq!(
            CallError::from(RequestError::NoEndpoint),
            CallError::NoSocket(SocketKind::Req)
        );
        assert_eq!(
            CallError::from(TransportError::NoSocket(SocketKind::Pub)),
            CallError::NoSocket(SocketKind::Pub)
        );
        assert_eq!(
            CallError::from(RequestError::MultipartReply {
                endpoint: "tcp://a:1".into()
            }),
            CallError::MultipartReply {
                endpoint: "tcp://a:1".into()
            }
        );
        assert_eq!(
            CallError::NoSocket(SocketKind::Req).to_string(),
            "the client has no REQ socket: no `req` endpoint was configured"
        );
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
