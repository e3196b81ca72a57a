//! [`BufferedProxy`]: a REP→REQ proxy that acknowledges a request once it is safely queued,
//! then delivers it downstream, in order, retrying until the downstream answers.
//!
//! The seed's favourite model: a site collects samples and forwards them reliably over a link
//! that comes and goes. Requests wait in a bounded in-memory queue and, with a [`Spool`], in
//! an append-only file that is `fsync`ed before the acknowledgement, so a restart or power cut
//! loses nothing acknowledged. A full proxy refuses new requests with a `Busy` error: the
//! caller knows, nothing is dropped silently.
//!
//! Delivery is **at-least-once**: a message whose answer was lost (or whose delivery record
//! did not reach the disk before a crash) is delivered again. The proxy forwards frames
//! unchanged, so the command's key and the caller's sequence number travel with it and a
//! server can recognise a duplicate.
//!
//! The acknowledgement is an empty reply: use the buffered proxy for commands whose response
//! is `()` (the downstream's actual answers are counted, not returned). One request is in
//! flight at a time, which is what keeps the order; the loop never blocks on the downstream,
//! so acknowledging new requests goes on while a delivery waits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::{BoundedQueue, ErrorCode, OverflowPolicy};

use crate::dialect::{AnswerView, Dialect, Native};
use crate::messaging::receiver::{Handler, Incoming, Origin, Receiver, Rejection};
use crate::messaging::requester::Requester;
use crate::proxy::spool::{Spool, SpoolError};
use crate::proxy::{relay_methods, side_setters, ProxyStats, Sides, LOG_EVERY};
use crate::socket::options::later;
use crate::socket::stats::{bump, set};
use crate::TransportError;

/// The most requests a buffered proxy can hold.
pub const MAX_BUFFERED: usize = 16_384;

/// Builds a [`BufferedProxy`].
pub struct BufferedProxyBuilder<D: Dialect = Native> {
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

    /// How many requests the proxy holds (default 1000, at most [`MAX_BUFFERED`]).
    pub fn capacity(mut self, requests: usize) -> Self {
        self.capacity = requests.min(MAX_BUFFERED);
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
        let (ctx, input) = self.sides.bind_input()?;
        let requester = self.sides.requester(&ctx)?;
        let stats = Arc::new(ProxyStats::default());
        set(&stats.queued, queue.len() as u64);
        // Acknowledged requests the spool found damaged beyond use: lost, and counted.
        set(
            &stats.dropped,
            spool.as_ref().map_or(0, Spool::lost_on_open),
        );
        let queued_bytes = queue.iter().map(Vec::len).sum();
        Ok(BufferedProxy {
            input,
            buffer: Buffer {
                dialect: self.dialect,
                scratch: Vec::new(),
                queue,
                spool,
                requester,
                timeout: self.sides.timeout,
                retry: self.retry,
                backoff: self.retry.0,
                in_flight: None,
                retry_at: None,
                queued_bytes,
                max_bytes: self.max_bytes,
                stats,
                last_log: Instant::now(),
            },
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
pub struct BufferedProxy<D: Dialect = Native> {
    input: Receiver,
    buffer: Buffer<D>,
}

impl BufferedProxy {
    /// Starts building a buffered proxy for the native dialect.
    pub fn builder() -> BufferedProxyBuilder {
        BufferedProxy::builder_for(Native)
    }
}

impl<D: Dialect> BufferedProxy<D> {
    /// Starts building a buffered proxy that reads (and acknowledges) `dialect`.
    pub fn builder_for(dialect: D) -> BufferedProxyBuilder<D> {
        BufferedProxyBuilder {
            dialect,
            sides: Sides::new(D::heartbeat_answer),
            retry: (Duration::from_millis(100), Duration::from_secs(5)),
            capacity: 1000,
            max_bytes: 16 << 20,
            spool: None,
        }
    }

    // The spool is synced when `run` ends (the buffer's drop).
    relay_methods!(buffer, "zmqrpc-buffered");
}

/// The delivery in progress: which endpoint, until when.
struct InFlight {
    endpoint: usize,
    deadline: Instant,
}

struct Buffer<D: Dialect> {
    dialect: D,
    /// Lent to the dialect to read a request.
    scratch: Vec<u8>,
    queue: Box<BoundedQueue<Vec<u8>, MAX_BUFFERED>>,
    spool: Option<Spool>,
    requester: Requester,
    timeout: Duration,
    retry: (Duration, Duration),
    backoff: Duration,
    in_flight: Option<InFlight>,
    retry_at: Option<Instant>,
    /// Bytes of the requests in `queue`, bounded by `max_bytes`.
    queued_bytes: usize,
    max_bytes: usize,
    stats: Arc<ProxyStats>,
    last_log: Instant,
}

impl<D: Dialect> Buffer<D> {
    /// Queues and (with a spool) persists `message`; the error reply says why not.
    fn accept(&mut self, message: &[u8]) -> Result<(), (ErrorCode, String)> {
        if self.queue.is_full() {
            return Err((
                ErrorCode::Busy,
                format!("buffer full ({} requests)", self.queue.capacity()),
            ));
        }
        if self.queued_bytes + message.len() > self.max_bytes {
            return Err((
                ErrorCode::Busy,
                format!("buffer full ({} bytes)", self.max_bytes),
            ));
        }
        if let Some(spool) = &mut self.spool {
            spool
                .append(message, self.queue.iter().map(Vec::as_slice))
                .map_err(|e| (ErrorCode::Busy, e.to_string()))?;
        }
        // Cannot overflow: checked above, and this loop is the only producer.
        let _ = self.queue.push(message.to_vec());
        self.queued_bytes += message.len();
        Ok(())
    }

    /// Starts delivering the oldest request if nothing is in flight and no pause is on.
    fn pump(&mut self) {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.retry_at = None;
        let Some(message) = self.queue.front() else {
            return;
        };
        match self.requester.send(message) {
            Ok(endpoint) => {
                self.in_flight = Some(InFlight {
                    endpoint,
                    deadline: later(Instant::now(), self.timeout),
                });
            }
            Err(e) => self.failed(&e.to_string()),
        }
    }

    /// Checks the delivery in flight: answered, failed, or still waiting.
    fn check_in_flight(&mut self) {
        let Some(InFlight { endpoint, deadline }) = self.in_flight else {
            return;
        };
        match self.requester.try_reply(endpoint) {
            Ok(Some(reply)) => {
                let verdict = judge(&self.dialect, reply.bytes);
                self.in_flight = None;
                match verdict {
                    Verdict::Done => self.delivered(false),
                    Verdict::Refused => self.delivered(true),
                    Verdict::TryAgain(why) => self.failed(&why),
                }
            }
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => {
                self.requester.reset(endpoint);
                self.in_flight = None;
                self.failed("no answer in time");
            }
            Err(e) => {
                self.in_flight = None;
                self.failed(&e.to_string());
            }
        }
    }

    fn delivered(&mut self, refused: bool) {
        if let Some(message) = self.queue.pop() {
            self.queued_bytes -= message.len();
        }
        bump(&self.stats.forwarded);
        if refused {
            // The downstream answered with an error: delivered, but worth counting.
            bump(&self.stats.failed);
        }
        self.backoff = self.retry.0;
        if let Some(spool) = &mut self.spool {
            if let Err(e) = spool.delivered(self.queue.iter().map(Vec::as_slice)) {
                log::error!("{e}");
            }
        }
        set(&self.stats.queued, self.queue.len() as u64);
    }

    fn failed(&mut self, why: &str) {
        bump(&self.stats.retried);
        log::debug!(
            "buffered proxy: delivery failed ({why}); retrying in {:?}",
            self.backoff
        );
        self.retry_at = Some(later(Instant::now(), self.backoff));
        self.backoff = self.backoff.saturating_mul(2).min(self.retry.1);
    }
}

/// What a downstream answer means for the request it answers.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Served.
    Done,
    /// Answered with a permanent error (unknown command, bad frame, service failure): it was
    /// delivered, and sending it again would fail again.
    Refused,
    /// Not delivered: the downstream is busy or could not reach its own downstream (a full
    /// buffered proxy, a Rep2Req proxy whose server is away), or the answer is unreadable.
    TryAgain(String),
}

/// Judges a downstream answer by what `dialect` reads in it.
fn judge<D: Dialect>(dialect: &D, answer: &[u8]) -> Verdict {
    match dialect.read_answer(answer) {
        Ok(AnswerView { says: Ok(_), .. }) => Verdict::Done,
        Ok(AnswerView { says: Err(e), .. }) if e.code.is_transient() => {
            Verdict::TryAgain(e.to_string())
        }
        Ok(AnswerView { says: Err(_), .. }) => Verdict::Refused,
        Err(e) => Verdict::TryAgain(format!("unreadable answer: {e}")),
    }
}

impl<D: Dialect> Handler for Buffer<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        // On SUB the reply is discarded: what would be an error reply is only counted.
        let head = match self.dialect.read_request(message.bytes, &mut self.scratch) {
            Ok(request) => request.head,
            Err(refusal) => {
                bump(&self.stats.failed);
                refusal.answer(&self.dialect, reply);
                return;
            }
        };
        match self.accept(message.bytes) {
            Ok(()) => {
                set(&self.stats.queued, self.queue.len() as u64);
                self.dialect.encode_ack(&head, reply);
                self.pump();
            }
            Err((code, why)) => {
                bump(&self.stats.dropped);
                if message.origin != Origin::Rep {
                    log::warn!("buffered proxy: dropped a published message: {why}");
                }
                self.dialect.encode_error(&head, code, &why, reply);
            }
        }
        self.stats
            .log_every(&"buffered proxy", LOG_EVERY, &mut self.last_log);
    }

    fn reject(&mut self, _: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        if origin == Origin::Rep {
            let head = self.dialect.unreadable();
            self.dialect
                .encode_error(&head, ErrorCode::BadFrame, "multipart message", reply);
        }
    }

    fn watch(&self) -> Option<&zmq::Socket> {
        self.in_flight
            .as_ref()
            .and_then(|f| self.requester.socket(f.endpoint))
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.in_flight {
            Some(in_flight) => Some(in_flight.deadline),
            // Work waiting (recovered from the spool, or paused after a failure): wake for it.
            None if !self.queue.is_empty() => Some(self.retry_at.unwrap_or_else(Instant::now)),
            None => None,
        }
    }

    fn on_wake(&mut self) {
        self.check_in_flight();
        self.pump();
        // A fast downstream may already have answered: keep going while it does.
        while self.in_flight.is_some() {
            let before = self.queue.len();
            self.check_in_flight();
            if self.queue.len() == before {
                break;
            }
            self.pump();
        }
    }
}

impl<D: Dialect> Drop for Buffer<D> {
    fn drop(&mut self) {
        if let Some(spool) = &mut self.spool {
            if let Err(e) = spool.sync() {
                log::error!("{e}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use super::*;
    use zmqrpc_core::{Header, Key};

    fn error_answer(code: ErrorCode) -> Vec<u8> {
        let mut out = Vec::new();
        let head = Header::request(1, Key::of("sample"));
        Native.encode_error(&head, code, "why", &mut out);
        out
    }

    #[test]
    fn a_reply_is_delivered_a_permanent_error_refused_a_transient_one_retried() {
        let mut ack = Vec::new();
        Native.encode_ack(&Header::request(1, Key::of("sample")), &mut ack);
        assert_eq!(judge(&Native, &ack), Verdict::Done);
        for code in [
            ErrorCode::UnknownCommand,
            ErrorCode::BadFrame,
            ErrorCode::ServiceFailed,
            ErrorCode::TooLarge,
        ] {
            assert_eq!(
                judge(&Native, &error_answer(code)),
                Verdict::Refused,
                "{code:?}"
            );
        }
        for code in [ErrorCode::Busy, ErrorCode::Unavailable, ErrorCode::Timeout] {
            assert!(
                matches!(judge(&Native, &error_answer(code)), Verdict::TryAgain(_)),
                "{code:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_answer_is_retried() {
        for garbage in [&b""[..], b"\x01\x02", b"{\"status_code\": 200}"] {
            assert!(matches!(judge(&Native, garbage), Verdict::TryAgain(_)));
        }
        // A request where an answer was due is not an answer either.
        let mut buf = [0u8; 32];
        let request = zmqrpc_core::frame::encode(&Header::request(1, Key(9)), &(), &mut buf);
        assert!(matches!(
            judge(&Native, request.unwrap()),
            Verdict::TryAgain(_)
        ));
    }
}
