//! The errors of an exchange: a request/reply over a REQ socket ([`RequestError`]) and a
//! typed call ([`CallError`]), which adds what the answer said.

use std::fmt;
use std::time::Duration;

use zmqrpc_core::{DecodeError, EncodeError, RemoteError};

use super::{HandshakeFailure, SocketKind, TransportError};

/// A request/reply exchange failed, without regard to its content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No REQ endpoint is configured.
    NoEndpoint,
    /// No connection to the endpoint came up (and finished its security handshake) within
    /// `waited`, so the request was never sent: it has not run and will not run later. The
    /// socket was closed and will be recreated, so the next request connects at once.
    NotConnected {
        /// The endpoint with no connection.
        endpoint: String,
        /// How long the request waited for one (zero for a send that does not wait).
        waited: Duration,
    },
    /// The request was sent but no reply came within the timeout; the endpoint's socket was
    /// closed and will be recreated. The request may have run.
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
            RequestError::NotConnected { endpoint, waited } if waited.is_zero() => {
                write!(
                    f,
                    "no connection to {endpoint} yet: the request was not sent"
                )
            }
            RequestError::NotConnected { endpoint, waited } => write!(
                f,
                "no connection to {endpoint} within {waited:?}: the request was not sent"
            ),
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
    /// A store-and-forward hop (a buffered proxy, a proxy that publishes) took the call on
    /// and will deliver it later, at least once; the command's response will not come
    /// back. Returned by `call` for a command whose response carries something; `submit`
    /// returns the acceptance as a [`Receipt`](crate::Receipt).
    Accepted {
        /// The endpoint that accepted the call.
        endpoint: String,
    },
    /// The wait for the answer was given up because the loop making the call (a proxy's,
    /// a bridge's) was asked to stop.
    Stopped {
        /// The endpoint that was being waited for.
        endpoint: String,
    },
    /// A [`Pipeline`](crate::Pipeline) already has its window full of calls in flight.
    WindowFull {
        /// Calls in flight.
        in_flight: usize,
    },
    /// A blocking call was made on the thread of a current-thread tokio runtime, where it
    /// would stall every task of the runtime, the I/O it waits for included. Use the
    /// `_async` form of the call there (with the `tokio` feature), or call from a thread of
    /// your own. (On a multi-thread runtime a blocking call is moved off the runtime with
    /// `tokio::task::block_in_place` instead.)
    BlockingInRuntime,
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
            CallError::Accepted { endpoint } => write!(
                f,
                "{endpoint} accepted the call for later delivery (a store-and-forward proxy): \
                 the command has not run yet and its response will not come back"
            ),
            CallError::Stopped { endpoint } => {
                write!(f, "the loop was asked to stop while waiting for {endpoint}")
            }
            CallError::WindowFull { in_flight } => {
                write!(f, "{in_flight} calls in flight fill the pipeline's window")
            }
            CallError::BlockingInRuntime => f.write_str(
                "a blocking call on a current-thread tokio runtime would stall it: use the \
                 call's `_async` form, or call from a thread of your own",
            ),
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

impl From<RequestError> for CallError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NoEndpoint => CallError::NoSocket(SocketKind::Req),
            RequestError::Timeout { endpoint, after } => CallError::Timeout { endpoint, after },
            // To a caller both are "no answer in time"; `Timeout`'s docs say it may not have run.
            RequestError::NotConnected { endpoint, waited } => CallError::Timeout {
                endpoint,
                after: waited,
            },
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
mod tests {
    use super::*;

    #[test]
    fn a_stopped_call_names_the_loop_not_a_client() {
        let stopped = CallError::Stopped {
            endpoint: "tcp://a:1".into(),
        };
        let text = stopped.to_string();
        assert_eq!(
            text,
            "the loop was asked to stop while waiting for tcp://a:1"
        );
        assert!(!text.contains("client"), "{text}");
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
}
