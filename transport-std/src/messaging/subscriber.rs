//! The SUB sockets that stay alive: the input side a [`Receiver`](crate::Receiver), a
//! server's worker pool and the async server share.
//!
//! The publishers a loop subscribes to share one SUB socket, so a node can subscribe to
//! thousands of them: one socket (and its monitor) whatever their number, where a socket per
//! publisher would spend libzmq's per-context socket limit (`ZMQ_MAX_SOCKETS`, 1,023) and a
//! poll item per publisher on every turn. A publisher given a silence timeout gets a socket
//! of its own, since a SUB socket does not say which publisher a message came from.
//!
//! libzmq reconnects a connection whose publisher went away, but not one it cut itself for
//! a protocol error (a message over `max_message_size`, in libzmq 4.3.4 and 4.3.5): that
//! publisher would stay unheard for good. So every SUB socket is monitored. On a shared
//! socket a dropped connection must be followed, within [`RECONNECT_GRACE`], by libzmq
//! connecting again; one that is not is taken out and given a socket of its own (the
//! shared one made anew without it, so the others reconnect once, and never again for that
//! publisher). A socket of its own is made anew whenever its connection drops, or when it
//! hears nothing for its silence timeout. A handshake the publisher refuses (wrong or
//! missing credentials, a security mechanism it does not speak) would leave the publisher
//! as unheard: each one is counted (`sub_refused`) and logged, the first at once, then at
//! most once a minute per socket. Messages are read without waiting, heartbeats absorbed
//! here, and multipart messages (never zmqrpc's) drained and reported as such.

use std::collections::HashMap;
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

/// How long a shared socket waits, after a publisher's connection dropped, for libzmq to
/// start connecting to it again (it does at once, unless it cut the connection itself).
pub(crate) const RECONNECT_GRACE: Duration = Duration::from_secs(2);

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

/// One publisher a SUB socket connects to, as its monitor tells it.
#[derive(Debug)]
struct Link {
    endpoint: String,
    /// A handshake succeeded on the current connection.
    up: bool,
    /// The latest handshake was refused (said once it succeeds again).
    refused: bool,
}

/// What the monitor's events said about a socket's publishers that needs doing.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// Nothing to say or do.
    Nothing,
    /// Publisher `0` refused the handshake (count and log it).
    Refused(usize, crate::error::HandshakeFailure),
    /// Publisher `0` accepts the subscriber again after refusing it.
    Accepted(usize),
    /// Publisher `0`'s established connection dropped.
    Dropped(usize),
}

/// The publishers of one SUB socket and what its monitor said of each, without I/O: events
/// are matched to publishers by address, and a shared socket's dropped connections wait
/// here for libzmq to connect again.
#[derive(Debug, Default)]
struct Links {
    links: Vec<Link>,
    /// Each publisher's endpoint, and the addresses libzmq was seen to name it by, to its
    /// index in `links`.
    by_address: HashMap<String, usize>,
    /// Publishers whose connection dropped, and when, with no sign yet of libzmq
    /// connecting again.
    dropped: Vec<(usize, Instant)>,
}

impl Links {
    fn new(endpoints: Vec<String>) -> Links {
        let by_address = (endpoints.iter().cloned().enumerate())
            .map(|(i, endpoint)| (endpoint, i))
            .collect();
        let links = endpoints
            .into_iter()
            .map(|endpoint| Link {
                endpoint,
                up: false,
                refused: false,
            })
            .collect();
        Links {
            links,
            by_address,
            dropped: Vec::new(),
        }
    }

    /// The publisher `address` names: the endpoint itself on a first connection. An
    /// address libzmq resolved it to (a host name's, on a later attempt) is unknown; while
    /// exactly one publisher waits to be reconnected, it is that one, and is learnt.
    fn find(&mut self, address: &str) -> Option<usize> {
        if self.links.len() == 1 {
            return Some(0);
        }
        if let Some(&index) = self.by_address.get(address) {
            return Some(index);
        }
        let &[(index, _)] = self.dropped.as_slice() else {
            return None;
        };
        // Bounded: a few names per publisher at most.
        if self.by_address.len() < 4 * self.links.len() {
            self.by_address.insert(address.to_owned(), index);
        }
        Some(index)
    }

    /// Takes one monitor event into account.
    fn observe(&mut self, event: Event, address: &str, now: Instant) -> Heard {
        let Some(index) = self.find(address) else {
            return Heard::Nothing;
        };
        let link = &mut self.links[index];
        match event {
            Event::HandshakeSucceeded => {
                link.up = true;
                self.dropped.retain(|&(i, _)| i != index);
                match std::mem::take(&mut link.refused) {
                    true => Heard::Accepted(index),
                    false => Heard::Nothing,
                }
            }
            Event::HandshakeFailed(reason) => {
                link.refused = true;
                Heard::Refused(index, reason)
            }
            Event::Disconnected if link.up => {
                link.up = false;
                if !self.dropped.iter().any(|&(i, _)| i == index) {
                    self.dropped.push((index, now));
                }
                Heard::Dropped(index)
            }
            Event::Connecting => {
                self.dropped.retain(|&(i, _)| i != index);
                Heard::Nothing
            }
            Event::Disconnected | Event::Other => Heard::Nothing,
        }
    }

    /// When the first dropped connection's grace ends.
    fn deadline(&self) -> Option<Instant> {
        self.dropped
            .iter()
            .map(|&(_, at)| later(at, RECONNECT_GRACE))
            .min()
    }

    /// The publishers whose connection dropped over [`RECONNECT_GRACE`] ago with libzmq not
    /// connecting again: it cut them itself and will not.
    fn abandoned(&self, now: Instant) -> Vec<usize> {
        self.dropped
            .iter()
            .filter(|&&(_, at)| later(at, RECONNECT_GRACE) <= now)
            .map(|&(index, _)| index)
            .collect()
    }

    fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|link| link.endpoint.as_str())
    }
}

/// Whether a SUB socket serves many publishers or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sharing {
    /// Any number of publishers; a dropped connection is left to libzmq to reconnect.
    Shared,
    /// One publisher; a dropped connection, or a silence this long, makes the socket anew.
    Own { silence: Option<Duration> },
}

/// A connected SUB socket, its monitor and its publishers.
pub(crate) struct SubSide {
    sharing: Sharing,
    /// Presented to the publishers (again by every socket made anew).
    credentials: Option<Credentials>,
    pub(crate) socket: MonitoredSocket,
    links: Links,
    /// What the socket is called in errors and logs.
    name: String,
    last_heard: Instant,
    /// A socket of its own whose established connection dropped: made anew at the next
    /// check. (A refused handshake is not: libzmq retries that itself, with backoff.)
    lost: bool,
    /// Says the refusals (kept when the socket is made anew).
    refusals: FailureLog,
}

impl SubSide {
    /// One SUB socket subscribed to everything at each of `endpoints`, presenting
    /// `credentials` to their publishers.
    pub(crate) fn shared(
        ctx: &zmq::Context,
        options: &SocketOptions,
        credentials: Option<Credentials>,
        endpoints: Vec<String>,
    ) -> Result<SubSide, TransportError> {
        SubSide::open(ctx, options, credentials, endpoints, Sharing::Shared)
    }

    /// A SUB socket of its own subscribed to everything at `endpoint`, presenting
    /// `credentials` to the publisher there, made anew when nothing arrives for `silence`.
    pub(crate) fn own(
        ctx: &zmq::Context,
        options: &SocketOptions,
        credentials: Option<Credentials>,
        endpoint: String,
        silence: Option<Duration>,
    ) -> Result<SubSide, TransportError> {
        let sharing = Sharing::Own { silence };
        SubSide::open(ctx, options, credentials, vec![endpoint], sharing)
    }

    fn open(
        ctx: &zmq::Context,
        options: &SocketOptions,
        credentials: Option<Credentials>,
        endpoints: Vec<String>,
        sharing: Sharing,
    ) -> Result<SubSide, TransportError> {
        let name = match endpoints.as_slice() {
            [endpoint] => endpoint.clone(),
            _ => format!("SUB of {} publishers", endpoints.len()),
        };
        let err = |op, name: &str| {
            let name = name.to_owned();
            move |e| TransportError::new(op, &name, e)
        };
        let socket = options
            .connecting_socket(ctx, zmq::SUB, credentials.as_ref())
            .map_err(err("socket", &name))?;
        socket.set_subscribe(b"").map_err(err("subscribe", &name))?;
        let socket = match sharing {
            Sharing::Shared => MonitoredSocket::watching_reconnects(ctx, socket)?,
            Sharing::Own { .. } => MonitoredSocket::new(ctx, socket)?,
        };
        for endpoint in &endpoints {
            socket.connect(endpoint).map_err(err("connect", endpoint))?;
        }
        Ok(SubSide {
            sharing,
            credentials,
            socket,
            links: Links::new(endpoints),
            name,
            last_heard: Instant::now(),
            lost: false,
            refusals: FailureLog::every(REFUSALS_LOGGED_EVERY),
        })
    }

    /// When this socket next needs looking at without an event: its silence timeout, or
    /// the end of a dropped connection's grace.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.sharing {
            Sharing::Own { silence } => silence.map(|silence| later(self.last_heard, silence)),
            Sharing::Shared => self.links.deadline(),
        }
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
            Err(e) => return Err(TransportError::new("recv", &self.name, e)),
        }
        if self.sharing != Sharing::Shared {
            self.last_heard = Instant::now();
        }
        Ok(if message.get_more() {
            drain_parts(&self.socket, message)
                .map_err(|e| TransportError::new("recv", &self.name, e))?;
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

    /// Reads the monitor (only when a poll found `events` waiting: an empty read costs
    /// libzmq a system call), counting refused handshakes. A socket of its own is made anew
    /// if its connection dropped or its silence timeout passed (counted in
    /// `sub_recreated`). A shared socket returns the publishers libzmq abandoned, for the
    /// caller to take out.
    fn revive(
        &mut self,
        ctx: &zmq::Context,
        options: &SocketOptions,
        now: Instant,
        events: bool,
        stats: &ReceiverStats,
    ) -> Result<Vec<usize>, TransportError> {
        while let Some((event, address)) = events
            .then(|| self.socket.monitor_mut().next_with_address())
            .flatten()
        {
            match self.links.observe(event, &address, now) {
                Heard::Nothing => {}
                Heard::Accepted(index) => log::info!(
                    "SUB {}: the publisher accepts this subscriber",
                    self.links.links[index].endpoint
                ),
                Heard::Refused(index, reason) => {
                    bump(&stats.sub_refused);
                    let name = format_args!("SUB {}", self.links.links[index].endpoint);
                    let what = format_args!(
                        "the publisher refused this subscriber's handshake ({reason}): nothing \
                         arrives from it until it accepts (libzmq tries again)"
                    );
                    self.refusals.warn(&name, &what);
                }
                Heard::Dropped(_) => self.lost = self.sharing != Sharing::Shared,
            }
        }
        let Sharing::Own { silence } = self.sharing else {
            return Ok(self.links.abandoned(now));
        };
        let silent = self.deadline().is_some_and(|deadline| deadline <= now);
        if !self.lost && !silent {
            return Ok(Vec::new());
        }
        if self.lost {
            log::info!("SUB {}: connection dropped; subscribing anew", self.name);
        }
        let endpoint = self.links.endpoints().next().unwrap_or_default().to_owned();
        let credentials = self.credentials.clone();
        // The old socket (and its monitor) close here; what was said of refusals stays.
        let refusals = std::mem::take(&mut self.refusals);
        let refused = self.links.links.first().is_some_and(|link| link.refused);
        *self = SubSide::own(ctx, options, credentials, endpoint, silence)?;
        self.refusals = refusals;
        if let Some(link) = self.links.links.first_mut() {
            link.refused = refused;
        }
        bump(&stats.sub_recreated);
        Ok(Vec::new())
    }

    /// Takes the publishers at `abandoned` out of this shared socket: each gets a socket of
    /// its own, and this one is made anew with the rest (one that cannot get a socket, say
    /// at a limit, stays in the new shared one, which reconnects it too). Returns the new
    /// sockets; `None` in place of `self` when no publisher is left in it.
    fn take_out(
        mut self,
        abandoned: &[usize],
        ctx: &zmq::Context,
        options: &SocketOptions,
        stats: &ReceiverStats,
    ) -> Result<(Option<SubSide>, Vec<SubSide>), TransportError> {
        let mut own = Vec::new();
        let mut stay = Vec::new();
        for (index, link) in std::mem::take(&mut self.links.links)
            .into_iter()
            .enumerate()
        {
            if !abandoned.contains(&index) {
                stay.push(link.endpoint);
                continue;
            }
            log::warn!(
                "SUB {}: libzmq cut the connection and does not reconnect it (a protocol \
                 error, such as a message over max_message_size); it gets a socket of its own",
                link.endpoint
            );
            let credentials = self.credentials.clone();
            match SubSide::own(ctx, options, credentials, link.endpoint.clone(), None) {
                Ok(side) => own.push(side),
                Err(e) => {
                    log::warn!("SUB {}: {e}; it stays on the shared socket", link.endpoint);
                    stay.push(link.endpoint);
                }
            }
            bump(&stats.sub_recreated);
        }
        // The old socket closes before the new one connects.
        let credentials = self.credentials.clone();
        drop(self);
        let shared = match stay.is_empty() {
            true => None,
            false => Some(SubSide::shared(ctx, options, credentials, stay)?),
        };
        Ok((shared, own))
    }
}

/// [`SubSide::revive`] for each of `subs`, `ready` saying whose monitors have events; the
/// publishers a shared socket lost for good are moved to sockets of their own.
pub(crate) fn revive_all(
    subs: &mut Vec<SubSide>,
    ctx: &zmq::Context,
    options: &SocketOptions,
    ready: SubsReady,
    stats: &ReceiverStats,
) -> Result<(), TransportError> {
    let now = Instant::now();
    let mut abandoned = Vec::new();
    for (index, sub) in subs.iter_mut().enumerate() {
        let lost = sub.revive(ctx, options, now, ready.events(index), stats)?;
        if !lost.is_empty() {
            abandoned.push((index, lost));
        }
    }
    // From the last, so the indices before stay valid.
    for (index, lost) in abandoned.into_iter().rev() {
        let side = subs.remove(index);
        let (shared, own) = side.take_out(&lost, ctx, options, stats)?;
        subs.extend(shared);
        subs.extend(own);
    }
    Ok(())
}

/// The SUB sockets for `endpoints` (each with its optional silence timeout): one shared by
/// every publisher without a timeout, one of its own for each with one.
pub(crate) fn connect_all(
    ctx: &zmq::Context,
    options: &SocketOptions,
    credentials: Option<&Credentials>,
    endpoints: Vec<(String, Option<Duration>)>,
) -> Result<Vec<SubSide>, TransportError> {
    let (timed, shared): (Vec<_>, Vec<_>) = endpoints
        .into_iter()
        .partition(|(_, silence)| silence.is_some());
    let shared: Vec<String> = shared.into_iter().map(|(endpoint, _)| endpoint).collect();
    let mut subs = Vec::with_capacity(1 + timed.len());
    if !shared.is_empty() {
        subs.push(SubSide::shared(ctx, options, credentials.cloned(), shared)?);
    }
    for (endpoint, silence) in timed {
        let side = SubSide::own(ctx, options, credentials.cloned(), endpoint, silence)?;
        subs.push(side);
    }
    Ok(subs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HandshakeFailure;

    fn links(endpoints: &[&str]) -> Links {
        Links::new(endpoints.iter().map(|e| e.to_string()).collect())
    }

    const A: &str = "tcp://127.0.0.1:5001";
    const B: &str = "tcp://127.0.0.1:5002";

    #[test]
    fn a_dropped_connection_libzmq_reconnects_is_not_abandoned() {
        let mut links = links(&[A, B]);
        let t0 = Instant::now();
        assert_eq!(
            links.observe(Event::HandshakeSucceeded, A, t0),
            Heard::Nothing
        );
        assert_eq!(links.observe(Event::Disconnected, A, t0), Heard::Dropped(0));
        assert_eq!(links.deadline(), Some(t0 + RECONNECT_GRACE));
        assert_eq!(links.observe(Event::Connecting, A, t0), Heard::Nothing);
        assert_eq!(links.deadline(), None);
        assert!(links.abandoned(t0 + 2 * RECONNECT_GRACE).is_empty());
    }

    #[test]
    fn a_dropped_connection_nobody_reconnects_is_abandoned_after_the_grace() {
        let mut links = links(&[A, B]);
        let t0 = Instant::now();
        links.observe(Event::HandshakeSucceeded, A, t0);
        links.observe(Event::HandshakeSucceeded, B, t0);
        links.observe(Event::Disconnected, B, t0);
        // B's reconnection would name B; A's does not help B.
        links.observe(Event::Connecting, A, t0);
        assert!(links.abandoned(t0 + RECONNECT_GRACE / 2).is_empty());
        assert_eq!(links.abandoned(t0 + RECONNECT_GRACE), vec![1]);
    }

    #[test]
    fn a_refused_handshake_is_said_and_not_a_drop() {
        let mut links = links(&[A, B]);
        let t0 = Instant::now();
        let refused = Event::HandshakeFailed(HandshakeFailure::Refused);
        assert_eq!(
            links.observe(refused, B, t0),
            Heard::Refused(1, HandshakeFailure::Refused)
        );
        // The connection that was never up drops: libzmq retries it itself.
        assert_eq!(links.observe(Event::Disconnected, B, t0), Heard::Nothing);
        assert_eq!(links.deadline(), None);
        assert_eq!(
            links.observe(Event::HandshakeSucceeded, B, t0),
            Heard::Accepted(1)
        );
        assert_eq!(
            links.observe(Event::HandshakeSucceeded, B, t0),
            Heard::Nothing
        );
    }

    #[test]
    fn a_resolved_address_is_the_one_publisher_waiting_and_is_learnt() {
        let mut links = links(&["tcp://sensor-a:5001", "tcp://sensor-b:5001"]);
        let t0 = Instant::now();
        links.observe(Event::HandshakeSucceeded, "tcp://sensor-b:5001", t0);
        links.observe(Event::Disconnected, "tcp://sensor-b:5001", t0);
        // libzmq names its second attempt by the address it resolved.
        links.observe(Event::Connecting, "tcp://10.0.0.2:5001", t0);
        assert!(links.abandoned(t0 + RECONNECT_GRACE).is_empty());
        links.observe(Event::HandshakeSucceeded, "tcp://10.0.0.2:5001", t0);
        assert_eq!(
            links.observe(Event::Disconnected, "tcp://10.0.0.2:5001", t0),
            Heard::Dropped(1)
        );
        // An address nobody can be told by is left alone.
        let mut two_waiting = links;
        two_waiting.observe(Event::HandshakeSucceeded, "tcp://sensor-a:5001", t0);
        two_waiting.observe(Event::Disconnected, "tcp://sensor-a:5001", t0);
        assert_eq!(
            two_waiting.observe(Event::Connecting, "tcp://10.0.0.9:5001", t0),
            Heard::Nothing
        );
        assert_eq!(two_waiting.abandoned(t0 + RECONNECT_GRACE).len(), 2);
    }
}
