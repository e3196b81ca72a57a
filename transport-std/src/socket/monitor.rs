//! Socket monitors: what libzmq knows about a socket's connections: whether the security
//! handshake with a peer failed, and whether a connection was dropped.

use crate::error::HandshakeFailure;
use crate::socket::{drain_parts, inproc_endpoint, pair};
use crate::TransportError;

/// One monitor event, as far as zmqrpc cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    HandshakeSucceeded,
    HandshakeFailed(HandshakeFailure),
    /// A connection was dropped: the peer went away, or libzmq cut it (a message over
    /// `max_message_size`, a missed ZMTP heartbeat).
    Disconnected,
    Other,
}

/// Which events a monitor reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Handshake outcomes: once per connection attempt, never per message.
    Handshakes,
    /// Handshake outcomes and dropped connections.
    HandshakesAndDisconnects,
}

impl Watch {
    fn events(self) -> u16 {
        let handshakes = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw();
        match self {
            Watch::Handshakes => handshakes,
            Watch::HandshakesAndDisconnects => handshakes | zmq::SocketEvent::DISCONNECTED.to_raw(),
        }
    }
}

/// What the handshakes of one connecting socket have said: whether the peer refuses it.
///
/// A server that requires credentials cuts off a client offering none, often before the
/// client learns why (a handshake failure "without detail"). One such cut-off can be a
/// server going down mid-handshake; two in a row, with no success between, are taken as a
/// refusal ([`HandshakeFailure::NoDetail`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Handshakes {
    refused: Option<HandshakeFailure>,
    cut_off: u32,
}

impl Handshakes {
    /// Takes one monitor event into account.
    pub(crate) fn observe(&mut self, event: Event) {
        match event {
            Event::HandshakeSucceeded => *self = Handshakes::default(),
            Event::HandshakeFailed(HandshakeFailure::NoDetail) => {
                self.cut_off += 1;
                if self.cut_off >= 2 {
                    self.refused = Some(HandshakeFailure::NoDetail);
                }
            }
            Event::HandshakeFailed(reason) => self.refused = Some(reason),
            Event::Disconnected | Event::Other => {}
        }
    }

    /// How the peer refused the latest handshake, if it did.
    pub(crate) fn refused(&self) -> Option<HandshakeFailure> {
        self.refused
    }
}

/// The PAIR end of a libzmq socket monitor.
pub(crate) struct Monitor {
    socket: zmq::Socket,
    part: zmq::Message,
}

impl Monitor {
    /// Starts monitoring `socket` for the events `watch` names.
    pub(crate) fn attach(
        ctx: &zmq::Context,
        socket: &zmq::Socket,
        watch: Watch,
    ) -> Result<Monitor, TransportError> {
        let endpoint = inproc_endpoint("monitor");
        let err = |op| move |e| TransportError::new(op, "socket monitor", e);
        // Connection events only: they come once per connection, never per message.
        socket
            .monitor(&endpoint, i32::from(watch.events()))
            .map_err(err("monitor"))?;
        let pair = pair(ctx, "socket monitor")?;
        // libzmq's I/O thread sends events without DONTWAIT: a full monitor pipe would stall
        // it (and every socket of the context). Events are read whenever the socket is used;
        // in between they must be able to pile up, so the pipe has no limit.
        pair.set_rcvhwm(0).map_err(err("set_rcvhwm"))?;
        pair.set_sndhwm(0).map_err(err("set_sndhwm"))?;
        pair.connect(&endpoint).map_err(err("connect"))?;
        Ok(Monitor {
            socket: pair,
            part: zmq::Message::new(),
        })
    }

    /// The monitor socket, to poll beside the monitored one.
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The next pending event, without waiting.
    pub(crate) fn next(&mut self) -> Option<Event> {
        self.socket.recv(&mut self.part, zmq::DONTWAIT).ok()?;
        // Part one: event id (u16) and value (u32), native byte order; part two: the address.
        let event = match self.part.get(..6) {
            Some(&[e0, e1, v0, v1, v2, v3]) => decode(
                u16::from_ne_bytes([e0, e1]),
                u32::from_ne_bytes([v0, v1, v2, v3]),
            ),
            _ => Event::Other,
        };
        // An unreadable rest is gone with the message; the event is what counts.
        let _ = drain_parts(&self.socket, &mut self.part);
        Some(event)
    }
}

fn decode(id: u16, value: u32) -> Event {
    if id == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() {
        Event::HandshakeSucceeded
    } else if id == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw() {
        Event::HandshakeFailed(HandshakeFailure::Refused)
    } else if id == zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw() {
        Event::HandshakeFailed(HandshakeFailure::Protocol(value))
    } else if id == zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw() {
        Event::HandshakeFailed(HandshakeFailure::NoDetail)
    } else if id == zmq::SocketEvent::DISCONNECTED.to_raw() {
        Event::Disconnected
    } else {
        Event::Other
    }
}
