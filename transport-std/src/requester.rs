//! [`Requester`]: REQ sockets to several endpoints, one call to one endpoint, round-robin.
//!
//! Each endpoint has its own REQ socket, so a dead endpoint costs only the calls sent to it.
//! A socket whose reply did not come in time is closed at once (linger 0: the unanswered
//! request is discarded, never delivered late) and recreated before its next use — the
//! ZeroMQ guide's "Lazy Pirate" pattern.

use std::time::{Duration, Instant};

use crate::options::{millis, SocketOptions};
use crate::{RequestError, TransportError};

/// An answer from one endpoint, borrowed until the next request.
#[derive(Debug)]
pub struct Reply<'a> {
    /// Index of the endpoint that answered, in the order endpoints were given.
    pub index: usize,
    /// Its address.
    pub endpoint: &'a str,
    /// The reply's bytes.
    pub bytes: &'a [u8],
}

struct Endpoint {
    address: String,
    socket: Option<zmq::Socket>,
}

/// REQ sockets to a list of endpoints, used in turn.
pub struct Requester {
    ctx: zmq::Context,
    options: SocketOptions,
    endpoints: Vec<Endpoint>,
    next: usize,
    reply: zmq::Message,
}

impl Requester {
    /// Connects a REQ socket to each endpoint.
    pub fn connect(
        ctx: &zmq::Context,
        endpoints: &[String],
        options: &SocketOptions,
    ) -> Result<Requester, TransportError> {
        let mut requester = Requester {
            ctx: ctx.clone(),
            options: options.clone(),
            endpoints: endpoints
                .iter()
                .map(|address| Endpoint {
                    address: address.clone(),
                    socket: None,
                })
                .collect(),
            next: 0,
            reply: zmq::Message::new(),
        };
        for endpoint in &mut requester.endpoints {
            endpoint.socket(&requester.ctx, &requester.options)?;
        }
        Ok(requester)
    }

    /// The endpoints, in turn order.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.address.as_str())
    }

    /// Sends `message` to the next endpoint and waits up to `timeout` for its reply.
    ///
    /// On timeout that endpoint's socket is closed and recreated on its next turn.
    pub fn request(
        &mut self,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Reply<'_>, RequestError> {
        if self.endpoints.is_empty() {
            return Err(RequestError::NoEndpoint);
        }
        let index = self.next;
        self.next = (index + 1) % self.endpoints.len();
        let deadline = Instant::now() + timeout;
        let socket = self.endpoints[index]
            .socket(&self.ctx, &self.options)
            .map_err(RequestError::Transport)?;

        let outcome = exchange(socket, message, deadline, &mut self.reply);
        let endpoint = &mut self.endpoints[index];
        match outcome {
            Ok(true) => Ok(Reply {
                index,
                endpoint: &endpoint.address,
                bytes: &self.reply,
            }),
            Ok(false) => {
                endpoint.socket = None;
                Err(RequestError::Timeout {
                    endpoint: endpoint.address.clone(),
                    after: timeout,
                })
            }
            Err((op, e)) => {
                endpoint.socket = None;
                Err(RequestError::Transport(TransportError::new(
                    op,
                    &endpoint.address,
                    e,
                )))
            }
        }
    }

    /// Closes endpoint `index`'s socket (it is recreated on its next turn): for a caller that
    /// received a reply it cannot trust.
    pub fn reset(&mut self, index: usize) {
        if let Some(endpoint) = self.endpoints.get_mut(index) {
            endpoint.socket = None;
        }
    }
}

impl Endpoint {
    /// The endpoint's socket, created and connected if needed.
    fn socket(
        &mut self,
        ctx: &zmq::Context,
        options: &SocketOptions,
    ) -> Result<&zmq::Socket, TransportError> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => {
                let address = self.address.as_str();
                let err = |op| move |e| TransportError::new(op, address, e);
                let socket = options.socket(ctx, zmq::REQ).map_err(err("socket"))?;
                socket.set_linger(0).map_err(err("set_linger"))?;
                socket.connect(address).map_err(err("connect"))?;
                socket
            }
        };
        Ok(self.socket.insert(socket))
    }
}

/// One request and its reply before `deadline`. `Ok(false)`: timed out.
fn exchange(
    socket: &zmq::Socket,
    message: &[u8],
    deadline: Instant,
    reply: &mut zmq::Message,
) -> Result<bool, (&'static str, zmq::Error)> {
    if !wait(socket, zmq::POLLOUT, deadline)? {
        return Ok(false);
    }
    match socket.send(message, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(false),
        Err(e) => return Err(("send", e)),
    }
    if !wait(socket, zmq::POLLIN, deadline)? {
        return Ok(false);
    }
    socket.recv(reply, zmq::DONTWAIT).map_err(|e| ("recv", e))?;
    if reply.get_more() {
        while reply.get_more() {
            socket.recv(reply, zmq::DONTWAIT).map_err(|e| ("recv", e))?;
        }
        return Err(("recv", zmq::Error::EPROTO));
    }
    Ok(true)
}

/// Polls for `events` until `deadline`; whether they came.
fn wait(
    socket: &zmq::Socket,
    events: zmq::PollEvents,
    deadline: Instant,
) -> Result<bool, (&'static str, zmq::Error)> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = i64::from(millis(left + Duration::from_nanos(999_999)));
        match socket.poll(events, ms) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if Instant::now() >= deadline => return Ok(false),
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(("poll", e)),
        }
    }
}
