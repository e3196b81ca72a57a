//! [`BufferedProxy`]: a REP→REQ proxy that acknowledges a request once it is safely queued,
//! then delivers it downstream, in order, retrying until the downstream answers.
//!
//! The model pyzmqrpc3's README proposes for its proxies: a site collects samples and
//! forwards them reliably over a link that comes and goes. Requests wait in a bounded
//! in-memory queue and, with a [`Spool`], in an append-only file that is `fsync`ed before
//! the acknowledgement, so a restart or power cut loses nothing acknowledged. A full proxy
//! refuses new requests with a `Busy` error: the caller knows, nothing is dropped silently.
//!
//! Delivery is **at-least-once**: a message whose answer was lost (or whose delivery record
//! did not reach the disk before a crash) is delivered again. The proxy forwards frames
//! unchanged, so the command's key and the caller's sequence number travel with it and a
//! server can recognise a duplicate.
//!
//! The acknowledgement is an *acceptance* ([`Kind::Accepted`](zmqrpc_core::Kind::Accepted);
//! in pyzmqrpc3's dialect a 200 whose status message is
//! [`ACCEPTED_MESSAGE`](crate::dialect::pyzmqrpc3::ACCEPTED_MESSAGE)), not a reply: the
//! downstream's answers are counted, not returned. A caller's
//! [`call`](crate::RpcClient::call) of a command whose response is `()` returns `Ok`; one
//! with a value is [`CallError::Accepted`](crate::CallError::Accepted), never a made-up
//! value; [`submit`](crate::RpcClient::submit) returns [`Receipt::Accepted`](crate::Receipt)
//! for both. A pyzmqrpc3 caller gets `None`, as from pyzmqrpc3's own buffered proxy. Use the
//! buffered proxy for commands whose response is `()`. One request is in
//! flight at a time, which is what keeps the order; the loop never blocks on the downstream,
//! so acknowledging new requests goes on while a delivery waits.

mod delivery;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zmqrpc_core::{BoundedQueue, OverflowPolicy};

use crate::dialect::{DefaultDialect, Dialect};
use crate::error::ConfigError;
use crate::messaging::receiver::BATCH;
use crate::messaging::serving::Serving;
use crate::node::NodeReport;
use crate::proxy::spool::{Spool, SpoolError};
use crate::proxy::{relay_methods, side_setters, ProxyStats, Sides};
use crate::socket::stats::set;
use crate::TransportError;
use delivery::{Buffer, Delivery};

/// The most requests a buffered proxy can hold.
pub const MAX_BUFFERED: usize = 16_384;

/// Builds a [`BufferedProxy`].
pub struct BufferedProxyBuilder<D: Dialect = DefaultDialect> {
    dialect: D,
    sides: Sides,
    retry: (Duration, Duration),
    capacity: usize,
    max_bytes: usize,
    spool: Option<(PathBuf, u64)>,
}

impl<D: Dialect> BufferedProxyBuilder<D> {
    side_setters!();

    /// Binds the REP input to `endpoint` too.
    pub fn input(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.input = std::mem::take(&mut self.sides.input).rep(endpoint);
        self
    }

    /// Subscribes to a publisher at `endpoint` too: its messages are queued like requests
    /// (with no one to acknowledge; when the buffer is full they are counted as dropped).
    pub fn subscribe(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.input = std::mem::take(&mut self.sides.input).subscribe(endpoint);
        self
    }

    /// Adds a downstream REQ endpoint (several are used in turn, one delivery at a time).
    pub fn output(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.outputs.push(endpoint.into());
        self
    }

    /// The pause after a failed attempt, doubling up to `max` (default 100 ms to 5 s).
    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry = (first, max.max(first));
        self
    }

    /// How many requests the proxy holds (default 1000, at most [`MAX_BUFFERED`]: more is a
    /// [`ConfigError::OutOfRange`](crate::ConfigError) at `bind`).
    pub fn capacity(mut self, requests: usize) -> Self {
        self.capacity = requests;
        self
    }

    /// How many bytes of requests the proxy holds in memory (default 16 MiB); beyond it new
    /// requests are refused with `Busy` like when [`capacity`](Self::capacity) is reached.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Keeps requests in a spool file at `path` as well, at most `max_bytes` large, so they
    /// survive a restart. Requests found in it at start are delivered first.
    pub fn spool(mut self, path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        self.spool = Some((path.into(), max_bytes));
        self
    }

    /// Opens the spool (recovering what it holds), binds and connects both sides.
    pub fn bind(mut self) -> Result<BufferedProxy<D>, BufferedProxyError> {
        // Before the spool is opened: a configuration mistake must not touch it.
        self.sides.check().map_err(TransportError::from)?;
        if self.capacity > MAX_BUFFERED {
            let refused = ConfigError::OutOfRange {
                setting: "capacity",
                value: self.capacity as u64,
                min: 0,
                max: MAX_BUFFERED as u64,
            };
            return Err(TransportError::from(refused).into());
        }
        let mut queue = Box::new(BoundedQueue::with_limit(
            OverflowPolicy::RejectNew,
            self.capacity,
        ));
        let spool = match &self.spool {
            Some((path, max_bytes)) => {
                let (spool, recovered) = Spool::open(path, *max_bytes)?;
                if recovered.len() > MAX_BUFFERED {
                    return Err(BufferedProxyError::TooManyRecovered(recovered.len()));
                }
                // What was acknowledged before a restart is kept even beyond the capacity.
                queue = Box::new(BoundedQueue::with_limit(
                    OverflowPolicy::RejectNew,
                    self.capacity.max(recovered.len()),
                ));
                if !recovered.is_empty() {
                    log::info!("spool: {} requests to deliver from before", recovered.len());
                }
                for message in recovered {
                    let _ = queue.push(message);
                }
                Some(spool)
            }
            None => None,
        };
        let report = NodeReport::new("buffered");
        report.limit("capacity", self.capacity as u64);
        report.limit("queue_bytes", self.max_bytes as u64);
        if let (Some(spool), Some((path, max_bytes))) = (&spool, &self.spool) {
            report.limit("spool_max_bytes", *max_bytes);
            let found = spool.recovery();
            let found = [
                ("recovered", found.recovered as u64),
                ("skipped", found.skipped),
                ("lost", found.lost),
                ("torn_bytes", found.torn_bytes),
                ("unread_bytes", found.unread_bytes),
            ];
            let path = path.display().to_string();
            report.section("spool", vec![path], move || found);
        }
        let max_body = self.sides.max_body();
        // A ROUTER input: the calls of one pass are staged together and synced once.
        let (ctx, input) = self
            .sides
            .bind_input_with(|input| input.calls_at_once(BATCH))?;
        let requester = self.sides.requester(&ctx)?;
        let stats = Arc::new(ProxyStats::default());
        set(&stats.queued, queue.len() as u64);
        // Acknowledged requests the spool found damaged beyond use: lost, and counted.
        set(
            &stats.dropped,
            spool.as_ref().map_or(0, Spool::lost_on_open),
        );
        let buffer = Buffer::new(
            self.dialect,
            queue,
            spool,
            requester,
            Delivery {
                timeout: self.sides.timeout,
                retry: self.retry,
                max_bytes: self.max_bytes,
                max_body,
            },
            Arc::clone(&stats),
        )
        .with_gate(self.sides.gate(&report));
        let serving = Serving::One {
            receiver: input,
            handler: buffer,
        };
        self.sides.report_on(&report, &serving);
        let counts = Arc::clone(&stats);
        report.section("proxy", Vec::new(), move || counts.snapshot().named());
        report.section("output", self.sides.outputs.clone(), Vec::new);
        report.limit("timeout_ms", self.sides.timeout.as_millis() as u64);
        Ok(BufferedProxy {
            serving,
            stats,
            report,
        })
    }
}

/// A [`BufferedProxy`] could not start.
#[derive(Debug)]
pub enum BufferedProxyError {
    /// A socket failed.
    Transport(TransportError),
    /// The spool could not be opened or read.
    Spool(SpoolError),
    /// The spool holds more requests than [`MAX_BUFFERED`].
    TooManyRecovered(usize),
}

impl std::fmt::Display for BufferedProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BufferedProxyError::Transport(e) => e.fmt(f),
            BufferedProxyError::Spool(e) => e.fmt(f),
            BufferedProxyError::TooManyRecovered(n) => {
                write!(f, "the spool holds {n} requests, more than {MAX_BUFFERED}")
            }
        }
    }
}

impl std::error::Error for BufferedProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BufferedProxyError::Transport(e) => Some(e),
            BufferedProxyError::Spool(e) => Some(e),
            BufferedProxyError::TooManyRecovered(_) => None,
        }
    }
}

impl From<TransportError> for BufferedProxyError {
    fn from(e: TransportError) -> Self {
        BufferedProxyError::Transport(e)
    }
}

impl From<SpoolError> for BufferedProxyError {
    fn from(e: SpoolError) -> Self {
        BufferedProxyError::Spool(e)
    }
}

/// A store-and-forward REP→REQ proxy; see the [module docs](self).
pub struct BufferedProxy<D: Dialect = DefaultDialect> {
    /// The input and the buffer that serves it, on one thread.
    serving: Serving<Buffer<D>>,
    stats: Arc<ProxyStats>,
    /// What the proxy says about itself.
    report: NodeReport,
}

impl BufferedProxy {
    /// Starts building a buffered proxy of the [`DefaultDialect`].
    pub fn builder() -> BufferedProxyBuilder {
        BufferedProxy::builder_for(DefaultDialect::default())
    }
}

impl<D: Dialect> BufferedProxy<D> {
    /// Starts building a buffered proxy that reads (and acknowledges) `dialect`.
    pub fn builder_for(dialect: D) -> BufferedProxyBuilder<D> {
        BufferedProxyBuilder {
            dialect,
            sides: Sides::new(D::heartbeat_answer, false),
            retry: (Duration::from_millis(100), Duration::from_secs(5)),
            capacity: 1000,
            max_bytes: 16 << 20,
            spool: None,
        }
    }

    // The spool is synced when `run` ends (the buffer's drop).
    relay_methods!("zmqrpc-buffered", ProxyStats);
}
