//! [`Publisher`]: a PUB side that holds messages while nobody listens, and that no
//! subscriber can hold back for long.
//!
//! The socket is an XPUB, so it learns which topics its subscribers hold. While no
//! subscriber's topic matches a message, the message waits in a bounded core queue; when one
//! attaches, waiting messages go out in order, before anything newer (a subscription that
//! matches nothing attaches nothing). What the queue cannot hold is counted in
//! [`PublisherCounts::dropped`]. The socket never drops a message by itself
//! (`ZMQ_XPUB_NODROP`): when a subscriber falls a high-water mark behind, messages wait in the
//! same queue until it catches up (each `publish` or [`flush`](Publisher::flush) sends what it
//! can), so every message is either handed to libzmq (`published`), waiting (`queued`) or
//! counted as `dropped`. A subscriber that stays that far behind for longer than the
//! publisher's [grace](Publisher::set_slow_subscriber_grace) (one second by default) stops
//! holding the others back, if there are others: from then on each message goes to every
//! subscriber with room and the full ones miss it. libzmq then skips a subscriber that
//! missed a message until it has read half its high-water mark, so
//! [`PublisherCounts::missed_by_slow`] counts the sends that started such a skip, not every
//! message the slow one missed. A lone subscriber (by the handshakes and disconnections the
//! publisher has seen) holds nobody back and is never skipped: what it cannot take waits,
//! and what the queue cannot hold is `dropped`. A message already handed to libzmq can still be lost with its
//! connection (the subscriber goes away); use REQ/REP or a buffered proxy where every message
//! must arrive. Subscription changes are read whenever the publisher is used
//! ([`publish`](Publisher::publish), [`heartbeat`](Publisher::heartbeat),
//! [`flush`](Publisher::flush)) or waited for with
//! [`wait_for_subscriber`](Publisher::wait_for_subscriber).
//!
//! The pending queue is bounded in messages and in bytes ([`PendingLimits`]) and draws on
//! the process's [budget](crate::budget). [`publish`](Publisher::publish) makes room by
//! dropping the oldest (counted); [`offer`](Publisher::offer) refuses a message there is no
//! room for, so a caller can be told `Busy` rather than have an older acknowledged message
//! dropped; with [back-pressure](Publisher::set_backpressure), `publish` first waits, up to
//! a deadline, for a subscriber to take what is held, so a burst reaches a subscriber that
//! keeps up whole, at its pace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::{BoundedQueue, OverflowPolicy, Pushed};

use crate::auth::{AuthStats, Users, Verifier};
use crate::budget::Share;
use crate::dialect::{Dialect, Native};
use crate::error::ConfigError;
use crate::messaging::subscriptions::{Change, Subscriptions};
use crate::socket::monitor::{Event, MonitoredSocket};
use crate::socket::options::{later, SocketOptions};
use crate::socket::raw::set_xpub_nodrop;
use crate::socket::stats::{bump, counters, set};
use crate::socket::wait_ms;
use crate::TransportError;

/// The most messages a publisher can hold while no subscriber is attached.
pub const MAX_PENDING: usize = 4096;

/// The bytes a publisher holds by default: 8 MiB.
pub const DEFAULT_PENDING_BYTES: usize = 8 << 20;

/// What a publisher's pending queue holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// Messages (at most [`MAX_PENDING`]; default 1000).
    pub messages: usize,
    /// Bytes of messages (default [`DEFAULT_PENDING_BYTES`]).
    pub bytes: usize,
}

impl PendingLimits {
    /// These limits, or the [`ConfigError::OutOfRange`] that says which is too large:
    /// a publisher refuses at `bind` what it could not hold rather than hold less.
    pub(crate) fn checked(self) -> Result<PendingLimits, ConfigError> {
        if self.messages > MAX_PENDING {
            return Err(ConfigError::OutOfRange {
                setting: "pending_limit",
                value: self.messages as u64,
                min: 0,
                max: MAX_PENDING as u64,
            });
        }
        Ok(self)
    }
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            messages: 1000,
            bytes: DEFAULT_PENDING_BYTES,
        }
    }
}

counters! {
    /// Live counters of a [`Publisher`].
    PublisherStats;
    /// A [`PublisherStats`] reading.
    PublisherCounts {
        /// Messages handed to libzmq for at least one subscriber.
        published,
        /// Messages waiting for a subscriber now.
        queued,
        /// Messages lost because the queue was full, in messages or bytes, or the process's
        /// budget was (the oldest go first).
        dropped,
        /// Bytes of the messages waiting now.
        queued_bytes,
        /// Messages [`offer`](Publisher::offer) refused for want of room (nothing dropped).
        refused_full,
        /// Times back-pressure made `publish` wait for room.
        waited,
        /// Heartbeats sent.
        heartbeats,
        /// Times the first subscriber attached.
        attached,
        /// Times the last subscriber left.
        detached,
        /// Messages that a subscriber full for longer than the grace missed, handed to the
        /// subscribers with room.
        missed_by_slow,
        /// New subscription topics ignored because the publisher tracks
        /// [`MAX_TOPICS`](crate::messaging::subscriptions::MAX_TOPICS) already.
        topics_ignored,
        /// Security handshakes a subscriber failed with this publisher: the publisher has
        /// users and the subscriber presented no credentials or wrong ones (or the
        /// reverse: it presented some to a publisher without users).
        refused,
    }
}

/// A bound XPUB socket with a pending-message queue.
pub struct Publisher {
    socket: MonitoredSocket,
    endpoints: Vec<String>,
    pending: Box<BoundedQueue<zmq::Message, MAX_PENDING>>,
    /// Bytes of the messages in `pending`, and their share of the process budget.
    pending_share: Share,
    max_pending_bytes: usize,
    /// With back-pressure, how long `publish` waits for room before dropping.
    backpressure: Option<Duration>,
    /// Topics some subscriber holds (zmqrpc subscribers use only the empty topic).
    subscriptions: Subscriptions,
    /// Since when sends have been refused because a subscriber is full, and for how long
    /// that may last before the full ones miss messages.
    stall: Stall,
    event: zmq::Message,
    /// When subscriptions were last read.
    last_read: Instant,
    stats: Arc<PublisherStats>,
    /// How a protected publisher verifies its subscribers; its registration with the ZAP
    /// handler ends after the socket closes (fields drop in declaration order).
    verifier: Option<Verifier>,
}

/// How long a subscriber may stay a high-water mark behind, holding every message back,
/// before it misses messages instead.
pub const SLOW_SUBSCRIBER_GRACE: Duration = Duration::from_secs(1);

/// Whether sends are being refused for a full subscriber, and since when.
#[derive(Debug)]
struct Stall {
    since: Option<Instant>,
    grace: Duration,
    /// Subscribers whose handshake succeeded, and connections that went away: while fewer
    /// than two may be attached, a full one holds nobody else back and is never skipped.
    joined: u64,
    left: u64,
}

impl Stall {
    /// Whether another subscriber may be there for a full one to hold back. Connections
    /// that went away before their handshake count as gone too, so this errs towards
    /// holding (nothing lost), never towards skipping a lone subscriber.
    fn others_waiting(&self) -> bool {
        self.joined.saturating_sub(self.left) >= 2
    }
}

/// What became of one send.
enum Sent {
    /// Handed to libzmq for every matching subscriber.
    Delivered,
    /// Handed to libzmq for the subscribers with room; a full one missed it.
    MissedBySlow,
    /// Refused: a subscriber is full, within its grace. The message must wait.
    Refused,
}

/// Sends `message` on `socket` without waiting: to every matching subscriber, or, once a full
/// one has held sends back longer than the grace, to those with room.
fn send_past_slow(
    socket: &mut zmq::Socket,
    stall: &mut Stall,
    message: &[u8],
) -> zmq::Result<Sent> {
    match socket.send(message, zmq::DONTWAIT) {
        Ok(()) => {
            stall.since = None;
            return Ok(Sent::Delivered);
        }
        Err(zmq::Error::EAGAIN) => {}
        Err(e) => return Err(e),
    }
    let since = *stall.since.get_or_insert_with(Instant::now);
    if since.elapsed() < stall.grace || !stall.others_waiting() {
        return Ok(Sent::Refused);
    }
    // For this send only, libzmq drops the message for the full pipes and delivers it to
    // the others.
    set_xpub_nodrop(socket, false)?;
    let sent = socket.send(message, zmq::DONTWAIT);
    set_xpub_nodrop(socket, true)?;
    match sent {
        Ok(()) => Ok(Sent::MissedBySlow),
        Err(zmq::Error::EAGAIN) => Ok(Sent::Refused),
        Err(e) => Err(e),
    }
}

/// Sends `message` on `socket`, blocking up to `wait` for every matching subscriber to
/// have room (libzmq wakes the send as soon as they do); whether it went.
fn send_within(socket: &zmq::Socket, message: &[u8], wait: Duration) -> zmq::Result<bool> {
    socket.set_sndtimeo(wait_ms(wait))?;
    let sent = socket.send(message, 0);
    let _ = socket.set_sndtimeo(-1);
    match sent {
        Ok(()) => Ok(true),
        Err(zmq::Error::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// How often a busy publisher reads subscription changes.
const READ_EVERY: Duration = Duration::from_millis(1);

impl Publisher {
    /// Binds an XPUB socket to every endpoint; holds up to `limits` while no subscriber is
    /// attached, dropping the oldest first. With `users`, only subscribers presenting the
    /// credentials of one of them attach (the [`auth`](crate::auth) rule: a bound socket
    /// verifies; it presents nothing).
    pub fn bind(
        ctx: &zmq::Context,
        endpoints: &[String],
        options: &SocketOptions,
        users: Option<Users>,
        limits: PendingLimits,
    ) -> Result<Publisher, TransportError> {
        let pending_limit = limits.checked()?.messages;
        let verifier = users.map(|users| Verifier::start(ctx, users)).transpose()?;
        // What is held for a subscriber goes out in one burst when it attaches: each
        // subscriber's pipe must take that burst on top of its usual high-water mark, or
        // libzmq's PUB would drop the excess without a word.
        let burst = i32::try_from(pending_limit).unwrap_or(i32::MAX);
        let options = SocketOptions {
            // 0 is "no limit" to libzmq: keep it.
            send_hwm: match options.send_hwm {
                0 => 0,
                hwm => hwm.saturating_add(burst),
            },
            ..options.clone()
        };
        let (mut socket, bound) =
            options.bound_socket(ctx, zmq::XPUB, verifier.as_ref(), endpoints)?;
        // A full subscriber pipe refuses the send instead of dropping the message: it stays
        // in the pending queue, where overflow is counted.
        set_xpub_nodrop(&mut socket, true).map_err(|e| {
            TransportError::new("set ZMQ_XPUB_NODROP", bound.first().map_or("", |s| s), e)
        })?;
        let socket = MonitoredSocket::new(ctx, socket)?;
        Ok(Publisher {
            socket,
            endpoints: bound,
            pending: Box::new(BoundedQueue::with_limit(
                OverflowPolicy::DropOldest,
                pending_limit,
            )),
            pending_share: Share::default(),
            max_pending_bytes: limits.bytes,
            backpressure: None,
            subscriptions: Subscriptions::default(),
            stall: Stall {
                since: None,
                grace: SLOW_SUBSCRIBER_GRACE,
                joined: 0,
                left: 0,
            },
            event: zmq::Message::new(),
            last_read: Instant::now(),
            stats: Arc::default(),
            verifier,
        })
    }

    /// The bound endpoints, wildcard ports resolved.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Publishes `message`, or queues it while no subscriber is attached.
    ///
    /// While a subscriber is attached, subscription changes are read at most once a
    /// millisecond: an empty read costs libzmq a system call, which would dominate the cost
    /// of a message.
    pub fn publish(&mut self, message: &[u8]) -> Result<(), TransportError> {
        if self.send_now(message)? {
            return Ok(());
        }
        // What is held goes first, making room if a subscriber takes it.
        self.flush_pending()?;
        if let Some(wait) = self.backpressure {
            self.wait_for_room(message.len(), wait)?;
        }
        self.make_room(message.len());
        self.hold(message);
        self.flush_pending()?;
        Ok(())
    }

    /// Publishes `message` if it can go out or be held without dropping anything: `false`
    /// (and the message not taken, counted in `refused_full`) when the pending queue, or
    /// the process's budget, has no room for it. For a caller that must be told `Busy`
    /// rather than have an older message dropped.
    pub fn offer(&mut self, message: &[u8]) -> Result<bool, TransportError> {
        if self.send_now(message)? {
            return Ok(true);
        }
        self.flush_pending()?;
        if let Some(wait) = self.backpressure {
            self.wait_for_room(message.len(), wait)?;
        }
        if !self.has_room(message.len()) {
            bump(&self.stats.refused_full);
            return Ok(false);
        }
        self.hold(message);
        self.flush_pending()?;
        Ok(true)
    }

    /// With `Some(wait)`, [`publish`](Self::publish) and [`offer`](Self::offer) wait up to
    /// `wait` for a subscriber to take held messages when the pending queue is full, before
    /// dropping (or refusing); `None` (the default) never waits.
    pub fn set_backpressure(&mut self, wait: Option<Duration>) {
        self.backpressure = wait;
    }

    /// Sends `message` at once if a subscriber takes it and nothing is held before it;
    /// whether it went.
    fn send_now(&mut self, message: &[u8]) -> Result<bool, TransportError> {
        if !self.subscriptions.matches(message) || self.last_read.elapsed() >= READ_EVERY {
            self.read_subscriptions()?;
        }
        if self.subscriptions.matches(message) && self.pending.is_empty() {
            if let Some(wait) = self.backpressure {
                return self.send_waiting(message, wait);
            }
            let sent = send_past_slow(&mut self.socket, &mut self.stall, message)
                .map_err(|e| self.error("send", e))?;
            return Ok(self.count(sent));
        }
        Ok(false)
    }

    /// Sends `message`, waiting up to `wait` for the subscribers to have room (a blocking
    /// send: libzmq wakes it as soon as they do); whether it went.
    fn send_waiting(&mut self, message: &[u8], wait: Duration) -> Result<bool, TransportError> {
        let sent = match self.socket.send(message, zmq::DONTWAIT) {
            Ok(()) => true,
            Err(zmq::Error::EAGAIN) => {
                bump(&self.stats.waited);
                send_within(&self.socket, message, wait).map_err(|e| self.error("send", e))?
            }
            Err(e) => return Err(self.error("send", e)),
        };
        if sent {
            bump(&self.stats.published);
        }
        Ok(sent)
    }

    /// Whether `len` more bytes fit the pending queue and the process budget now.
    fn has_room(&mut self, len: usize) -> bool {
        if self.pending.is_full() || self.pending_share.bytes() + len > self.max_pending_bytes {
            return false;
        }
        // Taken now and given straight back: `hold` takes it for good.
        let fits = self.pending_share.try_take(len);
        if fits {
            self.pending_share.give(len);
        }
        fits
    }

    /// Drops the oldest held messages (counted) until `len` more bytes fit.
    fn make_room(&mut self, len: usize) {
        while !self.pending.is_empty() && !self.has_room(len) {
            if let Some(oldest) = self.pending.pop() {
                self.pending_share.give(oldest.len());
                bump(&self.stats.dropped);
            }
        }
    }

    /// Holds `message` (room was made for it, or it is dropped and counted).
    fn hold(&mut self, message: &[u8]) {
        if self.pending_share.bytes() + message.len() > self.max_pending_bytes
            || !self.pending_share.try_take(message.len())
        {
            // Larger than the whole queue, or the budget is held by others.
            bump(&self.stats.dropped);
            return;
        }
        match self.pending.push(zmq::Message::from(message)) {
            Ok(Pushed::Evicted(oldest)) => {
                self.pending_share.give(oldest.len());
                bump(&self.stats.dropped);
            }
            Ok(_) => {}
            Err(_) => {
                self.pending_share.give(message.len());
                bump(&self.stats.dropped);
            }
        }
    }

    /// With the pending queue full, waits up to `wait` for subscribers to take held
    /// messages until `len` more bytes fit: the head is sent blocking, so the wait ends as
    /// soon as a subscriber has room.
    fn wait_for_room(&mut self, len: usize, wait: Duration) -> Result<(), TransportError> {
        if self.has_room(len) {
            return Ok(());
        }
        bump(&self.stats.waited);
        let deadline = later(Instant::now(), wait);
        loop {
            self.flush_pending()?;
            if self.has_room(len) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let Some(head) = self.pending.front() else {
                return Ok(());
            };
            if !self.subscriptions.matches(head) {
                // Nobody to take it yet: wait for a subscription.
                self.socket
                    .poll(zmq::POLLIN, i64::from(wait_ms(left)))
                    .map_err(|e| self.error("poll", e))?;
                self.read_subscriptions()?;
                continue;
            }
            let slice = left.min(Duration::from_millis(100));
            let sent = send_within(&self.socket, head, slice).map_err(|e| self.error("send", e))?;
            if sent {
                self.stall.since = None;
                bump(&self.stats.published);
                if let Some(sent) = self.pending.pop() {
                    self.pending_share.give(sent.len());
                }
            } else {
                self.read_subscriptions()?;
            }
        }
    }

    /// Sends a heartbeat to every subscriber, so their silence timeouts do not fire. Never
    /// queued: a heartbeat for nobody is pointless.
    pub fn heartbeat(&mut self) -> Result<(), TransportError> {
        self.send_heartbeat(Native::HEARTBEAT)
    }

    /// Sends `heartbeat` (a dialect's) to every subscriber, never queued.
    pub(crate) fn send_heartbeat(&mut self, heartbeat: &[u8]) -> Result<(), TransportError> {
        self.read_subscriptions()?;
        self.flush_pending()?;
        match self.socket.send(heartbeat, zmq::DONTWAIT) {
            Ok(()) | Err(zmq::Error::EAGAIN) => {
                bump(&self.stats.heartbeats);
                Ok(())
            }
            Err(e) => Err(self.error("send", e)),
        }
    }

    /// Reads subscription changes and sends queued messages if a subscriber is attached;
    /// returns how many are still queued.
    pub fn flush(&mut self) -> Result<usize, TransportError> {
        self.read_subscriptions()?;
        self.flush_pending()?;
        Ok(self.pending.len())
    }

    /// Waits up to `timeout` for a subscriber, then flushes; returns whether one is attached.
    pub fn wait_for_subscriber(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        let deadline = later(Instant::now(), timeout);
        loop {
            self.flush()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if self.has_subscriber() || left.is_zero() {
                return Ok(self.has_subscriber());
            }
            self.socket
                .poll(zmq::POLLIN, i64::from(wait_ms(left)))
                .map_err(|e| self.error("poll", e))?;
        }
    }

    /// Messages waiting in the pending queue (for a subscriber to attach or to catch up).
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// Whether a subscriber was attached when subscriptions were last read (with any topic:
    /// see the [module docs](self) for one whose topic matches nothing).
    pub fn has_subscriber(&self) -> bool {
        self.subscriptions.any()
    }

    /// How long a subscriber may stay a high-water mark behind, holding every message back,
    /// before it misses messages instead (default [`SLOW_SUBSCRIBER_GRACE`]).
    pub fn set_slow_subscriber_grace(&mut self, grace: Duration) {
        self.stall.grace = grace;
    }

    /// The XPUB socket, readable when subscriptions change (for a loop to poll).
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// The counters of the subscribers a protected publisher verified.
    pub fn auth_stats(&self) -> Option<&AuthStats> {
        self.verifier.as_ref().map(Verifier::stats)
    }

    fn read_subscriptions(&mut self) -> Result<(), TransportError> {
        self.last_read = Instant::now();
        while let Some(event) = self.socket.monitor_mut().next() {
            match event {
                Event::HandshakeFailed(_) => bump(&self.stats.refused),
                Event::HandshakeSucceeded => self.stall.joined += 1,
                Event::Disconnected => self.stall.left += 1,
                Event::Connecting | Event::Other => {}
            }
        }
        loop {
            match self.socket.recv(&mut self.event, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(self.error("recv", e)),
            }
            match self.subscriptions.apply(&self.event) {
                Change::Attached => bump(&self.stats.attached),
                Change::Detached => bump(&self.stats.detached),
                Change::Ignored => bump(&self.stats.topics_ignored),
                Change::Other => {}
            }
        }
    }

    /// Counts what became of a send; whether the message left.
    fn count(&self, sent: Sent) -> bool {
        match sent {
            Sent::Delivered => bump(&self.stats.published),
            Sent::MissedBySlow => {
                bump(&self.stats.published);
                bump(&self.stats.missed_by_slow);
            }
            Sent::Refused => return false,
        }
        true
    }

    fn flush_pending(&mut self) -> Result<(), TransportError> {
        // In order: the head waits until some subscriber's topic matches it.
        while let Some(message) = self.pending.front() {
            if !self.subscriptions.matches(message) {
                break;
            }
            // Sent by reference and popped only once libzmq took it, so a refused send
            // leaves the message at the head for the next flush.
            let sent = send_past_slow(&mut self.socket, &mut self.stall, message);
            let sent = sent.map_err(|e| self.error("send", e))?;
            if !self.count(sent) {
                break;
            }
            if let Some(sent) = self.pending.pop() {
                self.pending_share.give(sent.len());
            }
        }
        set(&self.stats.queued, self.pending.len() as u64);
        set(&self.stats.queued_bytes, self.pending_share.bytes() as u64);
        Ok(())
    }

    fn error(&self, op: &'static str, e: zmq::Error) -> TransportError {
        TransportError::new(op, self.endpoints.first().map_or("XPUB", |s| s), e)
    }
}
