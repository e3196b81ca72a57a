//! Socket monitors: what libzmq knows about a socket's connections: whether the security
//! handshake with a peer failed, and whether a connection was dropped.

use crate::error::HandshakeFailure;
use crate::socket::raw::stop_monitor;
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
    /// libzmq is connecting (again): a connection attempt started, was retried or
    /// succeeded. Reported only by a monitor [`watching_reconnects`](MonitoredSocket::watching_reconnects).
    Connecting,
    Other,
}

/// The events a monitor reports: handshake outcomes and dropped connections, each once per
/// connection, never per message.
fn watched_events() -> u16 {
    zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw()
        | zmq::SocketEvent::DISCONNECTED.to_raw()
}

/// The events that say libzmq is connecting again: one per attempt, so only for a socket
/// whose monitor is read at every turn of its loop (an idle client's would pile up).
fn reconnect_events() -> u16 {
    zmq::SocketEvent::CONNECT_DELAYED.to_raw()
        | zmq::SocketEvent::CONNECT_RETRIED.to_raw()
        | zmq::SocketEvent::CONNECTED.to_raw()
}

/// What the handshakes of one connecting socket have said: whether the peer refuses it,
/// and whether a connection is up (its handshake done, no disconnection since).
///
/// A server that requires credentials cuts off a client offering none, often before the
/// client learns why (a handshake failure "without detail"). One such cut-off can be a
/// server going down mid-handshake; two in a row, with no success between, are taken as a
/// refusal ([`HandshakeFailure::NoDetail`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Handshakes {
    refused: Option<HandshakeFailure>,
    cut_off: u32,
    up: bool,
}

impl Handshakes {
    /// Takes one monitor event into account.
    pub(crate) fn observe(&mut self, event: Event) {
        match event {
            Event::HandshakeSucceeded => {
                *self = Handshakes {
                    up: true,
                    ..Handshakes::default()
                }
            }
            Event::HandshakeFailed(HandshakeFailure::NoDetail) => {
                self.up = false;
                self.cut_off += 1;
                if self.cut_off >= 2 {
                    self.refused = Some(HandshakeFailure::NoDetail);
                }
            }
            Event::HandshakeFailed(reason) => {
                self.up = false;
                self.refused = Some(reason);
            }
            Event::Disconnected => self.up = false,
            Event::Connecting | Event::Other => {}
        }
    }

    /// Whether a connection finished its handshake and has not been seen to drop since
    /// (a socket of one peer; with several, whether the latest event was a success).
    pub(crate) fn is_up(&self) -> bool {
        self.up
    }

    /// How the peer refused the latest handshake, if it did.
    pub(crate) fn refused(&self) -> Option<HandshakeFailure> {
        self.refused
    }
}

/// A socket with its monitor, closed in the order libzmq needs.
///
/// libzmq's I/O thread sends monitor events with blocking sends. Once the PAIR end here is
/// closed, an event for the socket (say a connection its connecter completes while the
/// socket is being reaped) would block that I/O thread for good, and with it every socket of
/// the context: calls on a fresh socket then never connect. So the monitor is stopped before
/// the socket is closed, and the PAIR end closed last.
pub(crate) struct MonitoredSocket {
    socket: zmq::Socket,
    monitor: Monitor,
}

impl MonitoredSocket {
    /// Starts monitoring `socket`'s handshakes and dropped connections.
    pub(crate) fn new(
        ctx: &zmq::Context,
        socket: zmq::Socket,
    ) -> Result<MonitoredSocket, TransportError> {
        let monitor = Monitor::attach(ctx, &socket, watched_events())?;
        Ok(MonitoredSocket { socket, monitor })
    }

    /// Like [`new`](MonitoredSocket::new), and reports every connection attempt too
    /// ([`Event::Connecting`]): for a socket whose loop reads its monitor at every turn.
    pub(crate) fn watching_reconnects(
        ctx: &zmq::Context,
        socket: zmq::Socket,
    ) -> Result<MonitoredSocket, TransportError> {
        let monitor = Monitor::attach(ctx, &socket, watched_events() | reconnect_events())?;
        Ok(MonitoredSocket { socket, monitor })
    }

    /// The monitor's end, to poll and read.
    pub(crate) fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The monitor's end, to read events from.
    pub(crate) fn monitor_mut(&mut self) -> &mut Monitor {
        &mut self.monitor
    }
}

impl std::ops::Deref for MonitoredSocket {
    type Target = zmq::Socket;

    fn deref(&self) -> &zmq::Socket {
        &self.socket
    }
}

impl std::ops::DerefMut for MonitoredSocket {
    fn deref_mut(&mut self) -> &mut zmq::Socket {
        &mut self.socket
    }
}

impl Drop for MonitoredSocket {
    fn drop(&mut self) {
        if let Err(e) = stop_monitor(&mut self.socket) {
            // Cannot happen for a monitored socket; the PAIR end is closed all the same.
            log::debug!("stopping a socket monitor failed: {e}");
        }
        // Then `socket` closes, and `monitor` (declared after it) last.
    }
}

/// The PAIR end of a libzmq socket monitor.
pub(crate) struct Monitor {
    socket: zmq::Socket,
    part: zmq::Message,
}

impl Monitor {
    /// Starts monitoring `events` of `socket`.
    fn attach(
        ctx: &zmq::Context,
        socket: &zmq::Socket,
        events: u16,
    ) -> Result<Monitor, TransportError> {
        let endpoint = inproc_endpoint("monitor");
        let err = |op| move |e| TransportError::new(op, "socket monitor", e);
        socket
            .monitor(&endpoint, i32::from(events))
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
        let event = self.next_event()?;
        // An unreadable rest is gone with the message; the event is what counts.
        let _ = drain_parts(&self.socket, &mut self.part);
        Some(event)
    }

    /// The next pending event and the address of the connection it concerns, without
    /// waiting. For a connecting socket the address is the endpoint as given to `connect`
    /// on its first connection; libzmq names later attempts of the same connection by the
    /// address it resolved the endpoint to.
    pub(crate) fn next_with_address(&mut self) -> Option<(Event, String)> {
        let event = self.next_event()?;
        let mut address = String::new();
        if self.part.get_more() && self.socket.recv(&mut self.part, zmq::DONTWAIT).is_ok() {
            address.push_str(&String::from_utf8_lossy(&self.part));
        }
        let _ = drain_parts(&self.socket, &mut self.part);
        Some((event, address))
    }

    /// Reads an event's first part: its id (u16) and value (u32), in native byte order.
    fn next_event(&mut self) -> Option<Event> {
        self.socket.recv(&mut self.part, zmq::DONTWAIT).ok()?;
        Some(match self.part.get(..6) {
            Some(&[e0, e1, v0, v1, v2, v3]) => decode(
                u16::from_ne_bytes([e0, e1]),
                u32::from_ne_bytes([v0, v1, v2, v3]),
            ),
            _ => Event::Other,
        })
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
    } else if id & reconnect_events() != 0 {
        Event::Connecting
    } else {
        Event::Other
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;

    /// Regression: the PAIR end closed before libzmq stopped sending to it left an event of
    /// a connection completing during the socket's teardown blocking the context's I/O
    /// thread: no socket of the context connected again.
    #[test]
    fn monitored_sockets_closed_mid_handshake_leave_their_context_working() {
        let server_ctx = zmq::Context::new();
        let server = server_ctx.socket(zmq::REP).unwrap();
        server.set_linger(0).unwrap();
        server.set_rcvtimeo(5_000).unwrap();
        server.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = server.get_last_endpoint().unwrap().unwrap();

        let ctx = zmq::Context::new();
        for _ in 0..300 {
            let socket = ctx.socket(zmq::REQ).unwrap();
            socket.set_linger(0).unwrap();
            let socket = MonitoredSocket::new(&ctx, socket).unwrap();
            socket.connect(&endpoint).unwrap();
            // Closed while its connection and handshake are under way.
            drop(socket);
        }
        let caller = ctx.socket(zmq::REQ).unwrap();
        caller.set_linger(0).unwrap();
        caller.connect(&endpoint).unwrap();
        caller.send("still here", 0).unwrap();
        assert_eq!(
            server.recv_bytes(0).map_err(|e| e.to_string()),
            Ok(b"still here".to_vec()),
            "the caller's context stalled"
        );
    }
}
