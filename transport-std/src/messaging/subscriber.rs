//! One SUB socket that stays alive: the input side a [`Receiver`](crate::Receiver) and a
//! server's worker pool share.
//!
//! libzmq reconnects a SUB socket whose publisher went away, but not one whose connection it
//! cut itself for a protocol error (a message over `max_message_size`, in libzmq 4.3.4 and
//! 4.3.5): that socket would stay deaf for good. So every SUB socket is monitored, and one
//! that loses its connection, or that hears nothing for its optional silence timeout, is
//! closed and made anew. A handshake the publisher refuses (wrong or missing credentials, a
//! security mechanism it does not speak) would leave the socket as deaf and as quiet: each
//! one is counted (`sub_refused`) and logged, the first at once, then at most once a
//! minute. Messages are read without waiting, heartbeats absorbed here, and multipart
//! messages (never zmqrpc's) drained and reported as such.

use std::time::{Duration, Instant};

use crate::auth::Credentials;
use crate::messaging::receiver::{Heartbeats, ReceiverStats};
use crate::socket::drain_parts;
use crate::socket::monitor::{Event, MonitoredSocket};
use crate::socket::options::{later, SocketOptions};
use crate::socket::stats::{bump, FailureLog};
use crate::TransportError;

/// How often a subscriber its publisher keeps refusing says so again.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(60);

/// What one read from a SUB socket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Nothing waiting.
    Nothing,
    /// A single-part message, in the caller's buffer.
    Message,
    /// A heartbeat, absorbed.
    Heartbeat,
    /// A message of several parts; the parts were read and discarded.
    Multipart,
}

/// A connected SUB socket, its monitor and its silence deadline.
pub(crate) struct SubSide {
    pub(crate) endpoint: String,
    /// Presented to the publisher (again by every socket made anew).
    credentials: Option<Credentials>,
    pub(crate) socket: MonitoredSocket,
    silence: Option<Duration>,
    last_heard: Instant,
    /// A handshake succeeded on the current connection.
    connected: bool,
    /// An established connection was dropped; the socket is made anew at the next check.
    /// (A refused handshake is not: libzmq retries that itself, with backoff.)
    lost: bool,
    /// The latest handshake was refused (said once it succeeds again).
    refused: bool,
    /// Says the refusals (kept when the socket is made anew).
    refusals: FailureLog,
}

impl SubSide {
    /// A SUB socket subscribed to everything at `endpoint`, presenting `credentials` to the
    /// publisher there.
    pub(crate) fn connect(
        ctx: &zmq::Context,
        options: &SocketOptions,
        credentials: Option<Credentials>,
        endpoint: String,
        silence: Option<Duration>,
    ) -> Result<SubSide, TransportError> {
        let name = endpoint.as_str();
        let err = |op| move |e| TransportError::new(op, name, e);
        let socket = options
            .connecting_socket(ctx, zmq::SUB, credentials.as_ref())
            .map_err(err("socket"))?;
        socket.set_subscribe(b"").map_err(err("subscribe"))?;
        let socket = MonitoredSocket::new(ctx, socket)?;
        socket.connect(&endpoint).map_err(err("connect"))?;
        Ok(SubSide {
            endpoint,
            credentials,
            socket,
            silence,
            last_heard: Instant::now(),
            connected: false,
            lost: false,
            refused: false,
            refusals: FailureLog::every(REFUSALS_LOGGED_EVERY),
        })
    }

    /// When the silence timeout fires, if there is one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.silence.map(|silence| later(self.last_heard, silence))
    }

    /// Reads one message into `message`, without waiting; `heartbeats` tells a heartbeat.
    pub(crate) fn recv(
        &mut self,
        message: &mut zmq::Message,
        heartbeats: Heartbeats,
    ) -> Result<Received, TransportError> {
        match self.socket.recv(message, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(Received::Nothing),
            Err(e) => return Err(TransportError::new("recv", &self.endpoint, e)),
        }
        self.last_heard = Instant::now();
        Ok(if message.get_more() {
            drain_parts(&self.socket, message)
                .map_err(|e| TransportError::new("recv", &self.endpoint, e))?;
            Received::Multipart
        } else if heartbeats(message).is_some() {
            Received::Heartbeat
        } else {
            Received::Message
        })
    }

    /// The SUB socket (for `events`) and its monitor (always), to poll.
    pub(crate) fn poll_items(&self, events: zmq::PollEvents) -> [zmq::PollItem<'_>; 2] {
        [
            self.socket.as_poll_item(events),
            self.socket.monitor().socket().as_poll_item(zmq::POLLIN),
        ]
    }

    /// Reads the monitor, counting refused handshakes, and makes the socket anew if its
    /// connection was dropped or its silence timeout passed (counted in `sub_recreated`).
    /// The monitor is read only when a poll found `events` waiting: an empty read costs
    /// libzmq a system call.
    fn revive(
        &mut self,
        ctx: &zmq::Context,
        options: &SocketOptions,
        now: Instant,
        events: bool,
        stats: &ReceiverStats,
    ) -> Result<(), TransportError> {
        while let Some(event) = events.then(|| self.socket.monitor_mut().next()).flatten() {
            match event {
                Event::HandshakeSucceeded => {
                    self.connected = true;
                    if std::mem::take(&mut self.refused) {
                        log::info!(
                            "SUB {}: the publisher accepts this subscriber",
                            self.endpoint
                        );
                    }
                }
                Event::HandshakeFailed(reason) => {
                    self.refused = true;
                    bump(&stats.sub_refused);
                    let name = format_args!("SUB {}", self.endpoint);
                    let what = format_args!(
                        "the publisher refused this subscriber's handshake ({reason}): nothing \
                         arrives from it until it accepts (libzmq tries again)"
                    );
                    self.refusals.warn(&name, &what);
                }
                Event::Disconnected if self.connected => {
                    self.connected = false;
                    self.lost = true;
                }
                Event::Disconnected | Event::Other => {}
            }
        }
        let silent = self.deadline().is_some_and(|deadline| deadline <= now);
        if !self.lost && !silent {
            return Ok(());
        }
        if self.lost {
            log::info!(
                "SUB {}: connection dropped; subscribing anew",
                self.endpoint
            );
        }
        let endpoint = self.endpoint.clone();
        let credentials = self.credentials.clone();
        // The old socket (and its monitor) close here; what was said of refusals stays.
        let refusals = std::mem::take(&mut self.refusals);
        let refused = self.refused;
        *self = SubSide::connect(ctx, options, credentials, endpoint, self.silence)?;
        (self.refusals, self.refused) = (refusals, refused);
        bump(&stats.sub_recreated);
        Ok(())
    }
}

/// [`SubSide::revive`] for each of `subs`, `ready` saying whose monitors have events.
pub(crate) fn revive_all(
    subs: &mut [SubSide],
    ctx: &zmq::Context,
    options: &SocketOptions,
    ready: SubsReady,
    stats: &ReceiverStats,
) -> Result<(), TransportError> {
    let now = Instant::now();
    for (index, sub) in subs.iter_mut().enumerate() {
        sub.revive(ctx, options, now, ready.events(index), stats)?;
    }
    Ok(())
}

/// Which SUB sockets, and which of their monitors, a poll found readable: bit `i` for SUB
/// `i` (SUBs from the 64th on share bit 63, so they are all looked at).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SubsReady {
    messages: u64,
    events: u64,
}

impl SubsReady {
    /// Reads `items`: each SUB's [`poll_items`](SubSide::poll_items), in order.
    pub(crate) fn of(items: &[zmq::PollItem<'_>]) -> SubsReady {
        let mut ready = SubsReady::default();
        for (i, pair) in items.chunks(2).enumerate() {
            let bit = 1 << i.min(63);
            if pair[0].is_readable() {
                ready.messages |= bit;
            }
            if pair.get(1).is_some_and(zmq::PollItem::is_readable) {
                ready.events |= bit;
            }
        }
        ready
    }

    /// Whether SUB `index` has messages.
    pub(crate) fn messages(&self, index: usize) -> bool {
        self.messages & (1 << index.min(63)) != 0
    }

    /// Whether SUB `index`'s monitor has events.
    pub(crate) fn events(&self, index: usize) -> bool {
        self.events & (1 << index.min(63)) != 0
    }
}
