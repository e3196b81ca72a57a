//! [`Requester`]: REQ sockets to several endpoints, one call to one endpoint, round-robin.
//!
//! Each endpoint has its own REQ socket, so a dead endpoint costs only the calls sent to it.
//! A socket whose reply did not come in time is closed at once and recreated before its next
//! use — the ZeroMQ guide's "Lazy Pirate" pattern. Linger 0 discards a request still queued
//! in libzmq (the usual case when the server is unreachable); one already handed to the
//! network may still reach the server and run there, so a call that timed out may have run. Each socket is monitored, so a refused security
//! handshake ends a call at once as [`RequestError::AuthFailed`] instead of at its timeout.

use std::time::{Duration, Instant};

use crate::auth::Credentials;
use crate::error::HandshakeFailure;
use crate::socket::monitor::{Handshakes, Monitor, Watch};
use crate::socket::options::{later, SocketOptions};
use crate::socket::shutdown::Shutdown;
use crate::socket::{drain_parts, wait_ms, RecvTimeout};
use crate::{RequestError, TransportError};

/// An answer from one endpoint, borrowed until the next request.
#[derive(Debug)]
pub struct Answer<'a> {
    /// Index of the endpoint that answered, in the order endpoints were given.
    pub index: usize,
    /// Its address.
    pub endpoint: &'a str,
    /// The reply's bytes.
    pub bytes: &'a [u8],
}

/// The name of [`Answer`] before 0.1's renames.
#[deprecated(since = "0.1.0", note = "renamed `Answer`")]
pub type Reply<'a> = Answer<'a>;

/// REQ sockets to a list of endpoints, used in turn.
pub struct Requester {
    ctx: zmq::Context,
    options: SocketOptions,
    credentials: Option<Credentials>,
    endpoints: Vec<Endpoint>,
    next: usize,
    reply: zmq::Message,
}

struct Endpoint {
    address: String,
    connection: Option<Connection>,
}

/// A connected REQ socket and what its monitor has said.
struct Connection {
    socket: zmq::Socket,
    monitor: Monitor,
    handshakes: Handshakes,
    timeout: RecvTimeout,
}

/// How often a waiting call reads its socket's monitor (so a refused handshake ends it
/// within this long).
const MONITOR_EVERY: Duration = Duration::from_millis(50);

/// How one exchange ended, short of a reply.
enum Failure {
    Timeout,
    Stopped,
    Refused(HandshakeFailure),
    /// The reply had more than one part.
    Multipart,
    Zmq(&'static str, zmq::Error),
}

impl Requester {
    /// Connects a REQ socket to each endpoint, presenting `credentials` if given.
    pub fn connect(
        ctx: &zmq::Context,
        endpoints: &[String],
        options: &SocketOptions,
        credentials: Option<Credentials>,
    ) -> Result<Requester, TransportError> {
        let mut requester = Requester {
            ctx: ctx.clone(),
            options: options.clone(),
            credentials,
            endpoints: endpoints
                .iter()
                .map(|address| Endpoint {
                    address: address.clone(),
                    connection: None,
                })
                .collect(),
            next: 0,
            reply: zmq::Message::new(),
        };
        for endpoint in &mut requester.endpoints {
            endpoint.connection(
                &requester.ctx,
                &requester.options,
                requester.credentials.as_ref(),
            )?;
        }
        Ok(requester)
    }

    /// The endpoints, in turn order.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.address.as_str())
    }

    /// Sends `message` to the next endpoint and waits up to `timeout` for its reply.
    ///
    /// On timeout or a refused handshake that endpoint's socket is closed and recreated on
    /// its next turn.
    pub fn request(
        &mut self,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Answer<'_>, RequestError> {
        self.request_unless(message, timeout, None)
    }

    /// [`request`](Requester::request), given up with [`RequestError::Stopped`] within
    /// [`MONITOR_EVERY`] of `stop` being requested: for a loop that must not wait out a dead
    /// peer's timeout before it can stop.
    pub(crate) fn request_unless(
        &mut self,
        message: &[u8],
        timeout: Duration,
        stop: Option<&Shutdown>,
    ) -> Result<Answer<'_>, RequestError> {
        if self.endpoints.is_empty() {
            return Err(RequestError::NoEndpoint);
        }
        let index = self.next;
        self.next = (index + 1) % self.endpoints.len();
        let deadline = later(Instant::now(), timeout);
        let connection = self.endpoints[index]
            .connection(&self.ctx, &self.options, self.credentials.as_ref())
            .map_err(RequestError::Transport)?;
        let outcome = connection.exchange(message, deadline, stop, &mut self.reply);

        match outcome {
            Ok(()) => Ok(Answer {
                index,
                endpoint: &self.endpoints[index].address,
                bytes: &self.reply,
            }),
            Err(failure) => Err(self.fail(index, failure, timeout)),
        }
    }

    /// Sends `message` to the next endpoint without waiting for the reply; returns the
    /// endpoint's index for [`try_reply`](Requester::try_reply). For event loops that poll
    /// [`socket`](Requester::socket) themselves.
    pub(crate) fn send(&mut self, message: &[u8]) -> Result<usize, RequestError> {
        if self.endpoints.is_empty() {
            return Err(RequestError::NoEndpoint);
        }
        let index = self.next;
        self.next = (index + 1) % self.endpoints.len();
        let connection = self.endpoints[index]
            .connection(&self.ctx, &self.options, self.credentials.as_ref())
            .map_err(RequestError::Transport)?;
        match connection
            .read_monitor()
            .and_then(|()| connection.send_now(message))
        {
            Ok(()) => Ok(index),
            Err(failure) => Err(self.fail(index, failure, Duration::ZERO)),
        }
    }

    /// The socket of endpoint `index`, if it has one.
    pub(crate) fn socket(&self, index: usize) -> Option<&zmq::Socket> {
        let connection = self.endpoints.get(index)?.connection.as_ref()?;
        Some(&connection.socket)
    }

    /// The reply from endpoint `index` if it has arrived, without waiting; fails with
    /// [`RequestError::NothingInFlight`] if no request to it is in flight.
    pub(crate) fn try_reply(&mut self, index: usize) -> Result<Option<Answer<'_>>, RequestError> {
        let Some(endpoint) = self.endpoints.get_mut(index) else {
            return Err(RequestError::NothingInFlight {
                endpoint: String::new(),
            });
        };
        let Some(connection) = endpoint.connection.as_mut() else {
            return Err(RequestError::NothingInFlight {
                endpoint: endpoint.address.clone(),
            });
        };
        match connection
            .read_monitor()
            .and_then(|()| connection.try_recv(&mut self.reply))
        {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(Answer {
                index,
                endpoint: &self.endpoints[index].address,
                bytes: &self.reply,
            })),
            Err(failure) => Err(self.fail(index, failure, Duration::ZERO)),
        }
    }

    /// Closes endpoint `index`'s socket after `failure` and says what went wrong.
    fn fail(&mut self, index: usize, failure: Failure, timeout: Duration) -> RequestError {
        let endpoint = &mut self.endpoints[index];
        endpoint.connection = None;
        let address = endpoint.address.clone();
        match failure {
            Failure::Timeout => RequestError::Timeout {
                endpoint: address,
                after: timeout,
            },
            Failure::Stopped => RequestError::Stopped { endpoint: address },
            Failure::Refused(reason) => RequestError::AuthFailed {
                endpoint: address,
                reason,
            },
            Failure::Multipart => RequestError::MultipartReply { endpoint: address },
            Failure::Zmq(op, e) => RequestError::Transport(TransportError::new(op, &address, e)),
        }
    }

    /// Closes endpoint `index`'s socket (it is recreated on its next turn): for a caller that
    /// received a reply it cannot trust.
    pub fn reset(&mut self, index: usize) {
        if let Some(endpoint) = self.endpoints.get_mut(index) {
            endpoint.connection = None;
        }
    }
}

impl Endpoint {
    /// The endpoint's connection, created if needed.
    fn connection(
        &mut self,
        ctx: &zmq::Context,
        options: &SocketOptions,
        credentials: Option<&Credentials>,
    ) -> Result<&mut Connection, TransportError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let address = self.address.as_str();
                let err = |op| move |e| TransportError::new(op, address, e);
                let socket = options
                    .connecting_socket(ctx, zmq::REQ, credentials)
                    .map_err(err("socket"))?;
                socket.set_linger(0).map_err(err("set_linger"))?;
                let monitor = Monitor::attach(ctx, &socket, Watch::Handshakes)?;
                socket.connect(address).map_err(err("connect"))?;
                Connection {
                    socket,
                    monitor,
                    handshakes: Handshakes::default(),
                    timeout: RecvTimeout::default(),
                }
            }
        };
        Ok(self.connection.insert(connection))
    }
}

impl Connection {
    /// One request and its reply before `deadline`.
    fn exchange(
        &mut self,
        message: &[u8],
        deadline: Instant,
        stop: Option<&Shutdown>,
        reply: &mut zmq::Message,
    ) -> Result<(), Failure> {
        // Send at once; only a full pipe makes us wait for room. The monitor is polled with
        // the reply, so a refused handshake ends the wait as soon as libzmq reports it.
        match self.socket.send(message, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => {
                self.wait(zmq::POLLOUT, deadline, stop)?;
                self.send_now(message)?;
            }
            Err(e) => return Err(Failure::Zmq("send", e)),
        }
        self.receive(reply, deadline, stop)
    }

    /// Waits for the reply with blocking receives of at most [`MONITOR_EVERY`] each, reading
    /// the monitor between them. A blocking receive costs libzmq one system call where
    /// polling the socket and its monitor costs several.
    fn receive(
        &mut self,
        reply: &mut zmq::Message,
        deadline: Instant,
        stop: Option<&Shutdown>,
    ) -> Result<(), Failure> {
        loop {
            if stop.is_some_and(Shutdown::is_requested) {
                return Err(Failure::Stopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Timeout);
            }
            self.timeout
                .set(&self.socket, wait_ms(left.min(MONITOR_EVERY)))
                .map_err(|e| Failure::Zmq("set_rcvtimeo", e))?;
            match self.socket.recv(reply, 0) {
                Ok(()) => return self.finish_reply(reply),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => self.read_monitor()?,
                Err(e) => return Err(Failure::Zmq("recv", e)),
            }
        }
    }

    /// Sends without waiting; a full pipe counts as a timeout.
    fn send_now(&mut self, message: &[u8]) -> Result<(), Failure> {
        match self.socket.send(message, zmq::DONTWAIT) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => Err(Failure::Timeout),
            Err(e) => Err(Failure::Zmq("send", e)),
        }
    }

    /// Receives a single-part reply if one is there; `Ok(false)` if not yet.
    fn try_recv(&mut self, reply: &mut zmq::Message) -> Result<bool, Failure> {
        match self.socket.recv(reply, zmq::DONTWAIT) {
            Ok(()) => self.finish_reply(reply).map(|()| true),
            Err(zmq::Error::EAGAIN) => Ok(false),
            Err(e) => Err(Failure::Zmq("recv", e)),
        }
    }

    /// Refuses a reply of more than one part (draining the rest).
    fn finish_reply(&mut self, reply: &mut zmq::Message) -> Result<(), Failure> {
        if reply.get_more() {
            drain_parts(&self.socket, reply).map_err(|e| Failure::Zmq("recv", e))?;
            return Err(Failure::Multipart);
        }
        Ok(())
    }

    /// Polls for `events` (and monitor news) until `deadline`.
    fn wait(
        &mut self,
        events: zmq::PollEvents,
        deadline: Instant,
        stop: Option<&Shutdown>,
    ) -> Result<(), Failure> {
        loop {
            if stop.is_some_and(Shutdown::is_requested) {
                return Err(Failure::Stopped);
            }
            let mut left = deadline.saturating_duration_since(Instant::now());
            if stop.is_some() {
                left = left.min(MONITOR_EVERY);
            }
            let ms = i64::from(wait_ms(left));
            let mut items = [
                self.socket.as_poll_item(events),
                self.monitor.socket().as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(Failure::Zmq("poll", e)),
            }
            let ready = items[0].get_revents().contains(events);
            // Only when it has news: an empty read still costs libzmq a system call.
            if items[1].is_readable() {
                self.read_monitor()?;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::Timeout);
            }
        }
    }

    /// Reads monitor events; fails if the latest handshake was refused (see [`Handshakes`];
    /// a client with retries tries again after a [`HandshakeFailure::NoDetail`]).
    fn read_monitor(&mut self) -> Result<(), Failure> {
        while let Some(event) = self.monitor.next() {
            self.handshakes.observe(event);
        }
        self.handshakes
            .refused()
            .map_or(Ok(()), |reason| Err(Failure::Refused(reason)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    #[test]
    fn a_reply_with_no_request_in_flight_is_refused_by_name() {
        let ctx = zmq::Context::new();
        let endpoint = "inproc://zmqrpc-requester-test".to_owned();
        let mut requester = Requester::connect(
            &ctx,
            std::slice::from_ref(&endpoint),
            &SocketOptions::default(),
            None,
        )
        .unwrap();
        requester.reset(0);
        assert_eq!(
            requester.try_reply(0).unwrap_err(),
            RequestError::NothingInFlight { endpoint }
        );
        assert_eq!(
            requester.try_reply(1).unwrap_err(),
            RequestError::NothingInFlight {
                endpoint: String::new()
            }
        );
    }
}
