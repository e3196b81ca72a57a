//! [`Requester`]: REQ sockets to several endpoints, one call to one endpoint, round-robin.
//!
//! Each endpoint has its own REQ socket, so a dead endpoint costs only the calls sent to it.
//!
//! A request is handed to libzmq only once its socket's monitor has reported a connection
//! that finished its handshake: a call made while the server is down waits for one until
//! its deadline and, if none comes, fails with [`RequestError::NotConnected`] — never sent,
//! so it cannot run later, when the server comes up long after its caller gave up (libzmq
//! would otherwise queue it and deliver it on connection). `ZMQ_IMMEDIATE` would say the
//! same, but it also discards a reply that arrived just before its connection dropped (a
//! server answering, then exiting), so it is not used. A connection that drops unnoticed
//! between the last monitor read and a send still queues that one request; it is discarded
//! with the socket if no answer comes in time.
//!
//! A socket whose request failed is closed at once and recreated before its next use — the
//! ZeroMQ guide's "Lazy Pirate" pattern; the new socket connects at once instead of after
//! libzmq's reconnect backoff, so the first call after a server comes back is not held up.
//! A request that timed out waiting for its reply ([`RequestError::Timeout`]) was sent, so
//! it may still reach the server and run there: such a call may have run. The monitor also
//! ends a call at once as [`RequestError::AuthFailed`] when the security handshake is
//! refused, instead of at its timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Credentials;
use crate::error::HandshakeFailure;
use crate::socket::monitor::{Handshakes, MonitoredSocket};
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
    /// Whose turn is next (counted on, modulo the endpoints); shared by requesters that
    /// [take turns together](Requester::sharing_turns_with).
    turns: Arc<AtomicUsize>,
    reply: zmq::Message,
}

struct Endpoint {
    address: String,
    connection: Option<Connection>,
}

/// A connected REQ socket and what its monitor has said.
struct Connection {
    socket: MonitoredSocket,
    handshakes: Handshakes,
    /// An `inproc://` peer: no handshake, so no monitor event says it is up; it is taken to
    /// be (a request sent before its server binds waits in libzmq until it does).
    in_process: bool,
    timeout: RecvTimeout,
}

/// What [`Connection::wait`] waits for.
#[derive(Clone, Copy)]
enum Until {
    /// Room in the socket's pipe.
    Writable,
    /// A connection whose handshake is done.
    Up,
}

/// How often a waiting call reads its socket's monitor (so a refused handshake ends it
/// within this long).
const MONITOR_EVERY: Duration = Duration::from_millis(50);

/// How one exchange ended, short of a reply.
enum Failure {
    /// No connection was up in time: the request was never handed to libzmq.
    NotConnected,
    /// The request was sent; its reply did not come in time.
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
        let mut requester = Requester::unconnected(ctx, endpoints, options, credentials);
        for endpoint in &mut requester.endpoints {
            endpoint.connection(
                &requester.ctx,
                &requester.options,
                requester.credentials.as_ref(),
            )?;
        }
        Ok(requester)
    }

    /// A requester whose sockets are made and connected on their endpoints' first turns:
    /// for one of many that may never be used (a proxy's spare forwarders), which then
    /// holds no connection, here or at the server.
    pub(crate) fn unconnected(
        ctx: &zmq::Context,
        endpoints: &[String],
        options: &SocketOptions,
        credentials: Option<Credentials>,
    ) -> Requester {
        Requester {
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
            turns: Arc::default(),
            reply: zmq::Message::new(),
        }
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
        let index = self.next_turn();
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

    /// The endpoint whose turn it is, for [`send_to`](Requester::send_to); the turn then
    /// passes to the next.
    pub(crate) fn take_turn(&mut self) -> Result<usize, RequestError> {
        if self.endpoints.is_empty() {
            return Err(RequestError::NoEndpoint);
        }
        Ok(self.next_turn())
    }

    /// The endpoint whose turn it is (there is at least one); the turn passes on.
    fn next_turn(&self) -> usize {
        self.turns.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()
    }

    /// Takes turns with `other` from now on: requesters that serve one output together (a
    /// proxy's forwarders) use its endpoints in turn between them, not each on its own.
    pub(crate) fn sharing_turns_with(mut self, other: &Requester) -> Requester {
        self.turns = Arc::clone(&other.turns);
        self
    }

    /// Sends `message` to endpoint `index` without waiting for the reply, to be read with
    /// [`try_reply`](Requester::try_reply): for event loops that poll
    /// [`socket`](Requester::socket) themselves. While no connection is up it sends nothing
    /// and fails with [`RequestError::NotConnected`], keeping the socket so its handshake
    /// can finish; [`monitor`](Requester::monitor) becomes readable when there is news.
    pub(crate) fn send_to(&mut self, index: usize, message: &[u8]) -> Result<(), RequestError> {
        let Some(endpoint) = self.endpoints.get_mut(index) else {
            return Err(RequestError::NoEndpoint);
        };
        let connection = endpoint
            .connection(&self.ctx, &self.options, self.credentials.as_ref())
            .map_err(RequestError::Transport)?;
        let sent = connection.read_monitor().and_then(|()| {
            if connection.is_up() {
                connection.send_now(message)
            } else {
                Err(Failure::NotConnected)
            }
        });
        match sent {
            Ok(()) => Ok(()),
            Err(Failure::NotConnected) => Err(RequestError::NotConnected {
                endpoint: endpoint.address.clone(),
                waited: Duration::ZERO,
            }),
            Err(failure) => Err(self.fail(index, failure, Duration::ZERO)),
        }
    }

    /// The monitor socket of endpoint `index`, if it has a socket: readable when libzmq has
    /// news of its connections.
    pub(crate) fn monitor(&self, index: usize) -> Option<&zmq::Socket> {
        let connection = self.endpoints.get(index)?.connection.as_ref()?;
        Some(connection.socket.monitor().socket())
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
            Failure::NotConnected => RequestError::NotConnected {
                endpoint: address,
                waited: timeout,
            },
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
                let socket = MonitoredSocket::new(ctx, socket)?;
                socket.connect(address).map_err(err("connect"))?;
                Connection {
                    socket,
                    handshakes: Handshakes::default(),
                    in_process: address.starts_with("inproc://"),
                    timeout: RecvTimeout::default(),
                }
            }
        };
        Ok(self.connection.insert(connection))
    }
}

impl Connection {
    /// Whether a request may be handed to libzmq: a connection is up (as far as the monitor
    /// has said).
    fn is_up(&self) -> bool {
        self.in_process || self.handshakes.is_up()
    }

    /// One request and its reply before `deadline`.
    fn exchange(
        &mut self,
        message: &[u8],
        deadline: Instant,
        stop: Option<&Shutdown>,
        reply: &mut zmq::Message,
    ) -> Result<(), Failure> {
        // Send once a connection is up (the monitor is read only while none is known to be,
        // so a connected socket's call costs no extra system call); only a full pipe makes
        // us wait for room. A refused handshake ends either wait as soon as libzmq says so.
        if !self.is_up() {
            self.read_monitor()?;
            if !self.is_up() {
                match self.wait(Until::Up, deadline, stop) {
                    Err(Failure::Timeout) => return Err(Failure::NotConnected),
                    other => other?,
                }
            }
        }
        match self.socket.send(message, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => {
                self.wait(Until::Writable, deadline, stop)?;
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

    /// Polls for what `until` names (and monitor news) until `deadline`.
    fn wait(
        &mut self,
        until: Until,
        deadline: Instant,
        stop: Option<&Shutdown>,
    ) -> Result<(), Failure> {
        let events = match until {
            Until::Writable => zmq::POLLOUT,
            Until::Up => zmq::PollEvents::empty(),
        };
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
                self.socket.monitor().socket().as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(Failure::Zmq("poll", e)),
            }
            let writable = items[0].get_revents().contains(events);
            // Only when it has news: an empty read still costs libzmq a system call.
            if items[1].is_readable() {
                self.read_monitor()?;
            }
            let ready = match until {
                Until::Writable => writable,
                Until::Up => self.is_up(),
            };
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
        while let Some(event) = self.socket.monitor_mut().next() {
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
