//! The receiver's REP socket: bound to its endpoints, bound again when it is lost, waited on
//! in slices so a stop is noticed in time.

use std::time::Duration;

use crate::auth::Verifier;
use crate::socket::options::SocketOptions;
use crate::socket::RecvTimeout;
use crate::TransportError;

/// A bound REP socket and the endpoints it is bound to.
pub(super) struct RepSide {
    pub(super) socket: zmq::Socket,
    pub(super) endpoints: Vec<String>,
    timeout: RecvTimeout,
}

/// The longest a REP-only receiver blocks before it looks at the stop flag, ms.
const STOP_SLICE: i32 = 50;

impl RepSide {
    pub(super) fn bind(
        ctx: &zmq::Context,
        options: &SocketOptions,
        verifier: Option<&Verifier>,
        endpoints: &[String],
    ) -> Result<RepSide, TransportError> {
        let (socket, endpoints) = options.bound_socket(ctx, zmq::REP, verifier, endpoints)?;
        Ok(RepSide {
            socket,
            endpoints,
            timeout: RecvTimeout::default(),
        })
    }

    /// Binds again to endpoints just released; the old listener may take a moment to close.
    pub(super) fn rebind(
        ctx: &zmq::Context,
        options: &SocketOptions,
        verifier: Option<&Verifier>,
        endpoints: &[String],
    ) -> Result<RepSide, TransportError> {
        let mut attempt = 0;
        loop {
            match RepSide::bind(ctx, options, verifier, endpoints) {
                Err(e) if e.is_address_in_use() && attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// The first endpoint, to name the socket in errors.
    pub(super) fn name(&self) -> &str {
        self.endpoints.first().map_or("REP", String::as_str)
    }

    /// Blocks in the socket for a request, at most `timeout_ms` (-1: no limit) and at most
    /// [`STOP_SLICE`], so a stop is noticed in time; whether one arrived in `message`. One
    /// system call, where polling the socket with the stop signal costs several.
    pub(super) fn wait(
        &mut self,
        timeout_ms: i64,
        message: &mut zmq::Message,
    ) -> Result<bool, TransportError> {
        let slice = match timeout_ms {
            ms if ms < 0 => STOP_SLICE,
            ms => i32::try_from(ms).unwrap_or(i32::MAX).min(STOP_SLICE),
        };
        self.timeout
            .set(&self.socket, slice)
            .map_err(|e| TransportError::new("set_rcvtimeo", "REP", e))?;
        match self.socket.recv(message, 0) {
            Ok(()) => Ok(true),
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(false),
            Err(e) => Err(TransportError::new("recv", self.name(), e)),
        }
    }
}
