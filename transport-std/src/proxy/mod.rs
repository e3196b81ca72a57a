//! The standard proxies: [`Proxy`] forwards frames from a REP or SUB input to a REQ or PUB
//! output, as bytes.
//!
//! | kind | input | output | the caller gets |
//! |---|---|---|---|
//! | [`ProxyKind::Sub2Req`] | SUB (connects) | REQ (connects) | — |
//! | [`ProxyKind::Sub2Pub`] | SUB (connects) | PUB (binds) | — |
//! | [`ProxyKind::Rep2Pub`] | REP (binds) | PUB (binds) | an acceptance once published ([`Receipt::Accepted`](crate::Receipt)) |
//! | [`ProxyKind::Rep2Req`] | REP (binds) | REQ (connects) | the downstream reply, or an error |
//!
//! A proxy reads a frame's header (to answer with the right sequence number and key, and to
//! refuse what is not a frame) but never its body. A REQ output waits for each answer at most
//! the proxy's timeout, then answers the caller with a `Timeout` or `Unavailable` error and
//! is ready for the next request at once. Each side has its own endpoints, options and
//! credentials.
//!
//! A `Rep2Req` proxy forwards up to [`concurrency`](ProxyBuilder::concurrency) calls at once
//! (default [`DEFAULT_PROXY_CONCURRENCY`]): its input is a ROUTER in front of a pool of forwarders,
//! each with its own REQ socket to the output, as a server's [`workers`] are; every call has
//! its own timeout and its answer goes back to its own caller, in either dialect (no answer
//! is matched by number: each REQ socket carries one call at a time). A site proxy in front
//! of a pool of workers therefore serialises nothing. The other kinds forward on one thread,
//! in order.
//!
//! [`workers`]: crate::ServerBuilder::workers

pub mod buffered;
mod forward;
mod sides;
pub mod spool;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::socket::stats::counters;

pub use forward::{Proxy, ProxyBuilder, DEFAULT_PROXY_CONCURRENCY};
pub(crate) use sides::{relay_methods, side_setters, Sides};

/// Which sockets a [`Proxy`] joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// SUB in, REQ out: one-way messages forwarded as calls, one attempt each (answers are
    /// discarded; a failed attempt is counted, not retried: use a [`BufferedProxy`] with a SUB
    /// input for that).
    ///
    /// [`BufferedProxy`]: crate::BufferedProxy
    Sub2Req,
    /// SUB in, PUB out: a fan-out relay.
    Sub2Pub,
    /// REP in, PUB out: calls turned into one-way publications, acknowledged at once.
    Rep2Pub,
    /// REP in, REQ out: calls forwarded, answers returned.
    Rep2Req,
}

impl ProxyKind {
    /// Whether the input is a REP socket (otherwise SUB).
    pub fn rep_input(self) -> bool {
        matches!(self, ProxyKind::Rep2Pub | ProxyKind::Rep2Req)
    }

    /// Whether the output is a REQ socket (otherwise PUB).
    pub fn req_output(self) -> bool {
        matches!(self, ProxyKind::Sub2Req | ProxyKind::Rep2Req)
    }

    /// The kind's name, as `zmqrpc-proxy --kind` takes it (`rep2req`, …).
    pub const fn name(self) -> &'static str {
        match self {
            ProxyKind::Sub2Req => "sub2req",
            ProxyKind::Sub2Pub => "sub2pub",
            ProxyKind::Rep2Pub => "rep2pub",
            ProxyKind::Rep2Req => "rep2req",
        }
    }

    /// All kinds, for help texts.
    pub const ALL: [ProxyKind; 4] = [
        ProxyKind::Sub2Req,
        ProxyKind::Sub2Pub,
        ProxyKind::Rep2Pub,
        ProxyKind::Rep2Req,
    ];
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProxyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProxyKind::ALL
            .into_iter()
            .find(|kind| kind.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown proxy kind {s:?} (sub2req, sub2pub, rep2pub, rep2req)"))
    }
}

counters! {
    /// Live counters of a proxy (buffered or not).
    ProxyStats;
    /// A [`ProxyStats`] reading.
    ProxyCounts {
        /// Messages taken from the input.
        received,
        /// Messages handed to the output (published, or answered downstream).
        forwarded,
        /// Messages the output could not take (timeout, unreachable, refused) or that were
        /// not requests.
        failed,
        /// Delivery attempts repeated after a failure (buffered proxy).
        retried,
        /// Messages waiting in the proxy now.
        queued,
        /// Messages the proxy gave up on (a full PUB queue drops the oldest; a full buffered
        /// proxy refuses new requests instead, counted here too).
        dropped,
        /// Calls and notifications no input permission allowed their caller.
        forbidden,
        /// Messages a PUB output's subscriber missed because it stayed full past the
        /// publisher's grace ([`PublisherCounts::missed_by_slow`](crate::PublisherCounts)):
        /// with a single subscriber, lost.
        missed_by_slow,
        /// Messages refused for their size: a command larger, decoded, than the input's
        /// `max_message_size` (a pyzmqrpc3 message inflating past it).
        too_large,
        /// Built-in calls ([`node`](crate::node): `Ping`, `GetStats`, `Describe`) the
        /// proxy answered itself rather than forwarding.
        builtin,
        /// Syncs of a buffered proxy's spool that made accepted requests durable: one per
        /// batch of requests taken at once, however many callers sent them.
        synced,
    }
}

impl ProxyStats {
    /// Logs the counters at info level, at most once per `every`.
    pub(crate) fn log_every(&self, name: &dyn fmt::Display, every: Duration, last: &mut Instant) {
        if last.elapsed() >= every {
            *last = Instant::now();
            log::info!("{name}: {:?}", self.snapshot());
        }
    }
}

/// How often a busy proxy logs its counters.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);
