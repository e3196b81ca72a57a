//! The buffer behind a [`BufferedProxy`](super::BufferedProxy): it accepts requests into
//! its queue (and spool), delivers the oldest one at a time without ever blocking the input,
//! and judges each downstream answer through the dialect.
//!
//! With a spool, requests are *staged*: written to the file as they come, each caller held
//! ([`Answering::Later`]), and the whole batch the receiver read in one pass is synced once
//! ([`MessageHandler::answers`]) before any of them is acknowledged — one `fsync` for every
//! caller at once, where a REP input paid one per call while the others waited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::{BoundedQueue, ErrorCode};

use super::MAX_BUFFERED;
use crate::budget::{self, Share};
use crate::dialect::{AnswerView, Dialect, Says};
use crate::messaging::receiver::{
    Answering, HeldCall, Incoming, MessageHandler, Origin, Rejection,
};
use crate::messaging::requester::Requester;
use crate::node::{Gate, Screened};
use crate::proxy::spool::Spool;
use crate::proxy::{ProxyStats, LOG_EVERY};
use crate::socket::options::later;
use crate::socket::stats::FailureLog;
use crate::socket::stats::{bump, set};
use crate::RequestError;

/// The delivery in progress: which endpoint, whether the request went out, until when
/// (for a connection, then for the answer).
struct InFlight {
    endpoint: usize,
    sent: bool,
    deadline: Instant,
}

/// A request written to the spool, not yet synced: acknowledged (and queued) once it is.
struct Staged<H> {
    /// Its caller, for a call (a published message has none).
    caller: Option<HeldCall>,
    head: H,
    message: Vec<u8>,
}

pub(super) struct Buffer<D: Dialect> {
    dialect: D,
    /// Requests staged in the spool since the last sync, oldest first.
    staged: Vec<Staged<D::Head>>,
    /// Where an answer to a staged caller is written.
    answer: Vec<u8>,
    /// Lent to the dialect to read a request.
    scratch: Vec<u8>,
    /// The largest command read, decoded.
    max_body: usize,
    queue: Box<BoundedQueue<Vec<u8>, MAX_BUFFERED>>,
    spool: Option<Spool>,
    requester: Requester,
    timeout: Duration,
    retry: (Duration, Duration),
    backoff: Duration,
    in_flight: Option<InFlight>,
    retry_at: Option<Instant>,
    /// Bytes of the requests in `queue` (bounded by `max_bytes`): the buffer's share of the
    /// process budget.
    queued: Share,
    max_bytes: usize,
    stats: Arc<ProxyStats>,
    last_log: Instant,
    failures: FailureLog,
    /// Who may hand the buffer what, and the built-ins it answers itself.
    gate: Gate,
}

/// How a buffer delivers: the wait for each answer, the backoff after a failure (first,
/// longest), the bytes it holds at most.
pub(super) struct Delivery {
    pub(super) timeout: Duration,
    pub(super) retry: (Duration, Duration),
    pub(super) max_bytes: usize,
    /// The largest command read, decoded.
    pub(super) max_body: usize,
}

impl<D: Dialect> Buffer<D> {
    /// A buffer holding `queue` (and, with a spool, its file), delivering through
    /// `requester`.
    pub(super) fn new(
        dialect: D,
        queue: Box<BoundedQueue<Vec<u8>, MAX_BUFFERED>>,
        spool: Option<Spool>,
        requester: Requester,
        delivery: Delivery,
        stats: Arc<ProxyStats>,
    ) -> Buffer<D> {
        // What was acknowledged before a restart is held whatever the budget says.
        let mut queued = Share::default();
        queued.take(queue.iter().map(Vec::len).sum());
        Buffer {
            dialect,
            staged: Vec::new(),
            answer: Vec::new(),
            scratch: Vec::new(),
            max_body: delivery.max_body,
            queue,
            spool,
            requester,
            timeout: delivery.timeout,
            retry: delivery.retry,
            backoff: delivery.retry.0,
            in_flight: None,
            retry_at: None,
            queued,
            max_bytes: delivery.max_bytes,
            stats,
            last_log: Instant::now(),
            failures: FailureLog::default(),
            gate: Gate::default(),
        }
    }

    /// Takes only what `gate` lets through: refuses what its permissions do not allow,
    /// answers the built-ins.
    pub(super) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// Queues `message`, or with a spool stages it for the next sync; the error reply says
    /// why not. `Ok(true)`: staged, to be acknowledged by [`commit`](Buffer::commit).
    fn accept(&mut self, message: &[u8]) -> Result<bool, (ErrorCode, String)> {
        if self.queue.len() + self.staged.len() >= self.queue.capacity() {
            return Err((
                ErrorCode::Busy,
                format!("buffer full ({} requests)", self.queue.capacity()),
            ));
        }
        if self.queued.bytes() + message.len() > self.max_bytes {
            return Err((
                ErrorCode::Busy,
                format!("buffer full ({} bytes)", self.max_bytes),
            ));
        }
        if !self.queued.try_take(message.len()) {
            return Err((
                ErrorCode::Busy,
                format!(
                    "the process's memory budget is spent ({} of {} bytes held)",
                    budget::held_bytes(),
                    budget::process_budget()
                ),
            ));
        }
        if let Some(spool) = &mut self.spool {
            // Compaction rewrites the pending and the staged alike.
            let pending = self.queue.iter().map(Vec::as_slice);
            let staged = self.staged.iter().map(|s| s.message.as_slice());
            if let Err(e) = spool.stage(message, pending.chain(staged)) {
                self.queued.give(message.len());
                return Err((ErrorCode::Busy, e.to_string()));
            }
            return Ok(true);
        }
        // Cannot overflow: checked above, and this loop is the only producer.
        let _ = self.queue.push(message.to_vec());
        Ok(false)
    }

    /// Syncs the staged requests: queued and acknowledged if the sync holds, refused `Busy`
    /// (and taken back out of the spool) if not; each caller's answer goes to `answer`.
    fn commit(&mut self, answer: &mut dyn FnMut(HeldCall, &[u8])) {
        if self.staged.is_empty() {
            return;
        }
        // A compaction while staging syncs the requests staged before it: those hold even
        // if this sync fails. The spool's own count is of the ones still waiting for it.
        let waiting = self.spool.as_ref().map_or(0, Spool::staged);
        let durable = self.staged.len().saturating_sub(waiting);
        let committed = self.spool.as_mut().map_or(Ok(()), Spool::commit);
        if committed.is_ok() && self.spool.is_some() {
            bump(&self.stats.synced);
        }
        if let Err(e) = &committed {
            let what = format_args!("refused {} requests: {e}", self.staged.len() - durable);
            self.failures.warn(&NAME, &what);
        }
        let mut reply = std::mem::take(&mut self.answer);
        for (i, staged) in std::mem::take(&mut self.staged).into_iter().enumerate() {
            reply.clear();
            match &committed {
                Err(e) if i >= durable => {
                    bump(&self.stats.dropped);
                    self.queued.give(staged.message.len());
                    let why = e.to_string();
                    let code = ErrorCode::Busy;
                    self.dialect
                        .encode_error(&staged.head, code, &why, &mut reply);
                }
                _ => {
                    self.dialect.encode_accepted(&staged.head, &mut reply);
                    // Cannot overflow: `accept` counted the staged ones against the room.
                    let _ = self.queue.push(staged.message);
                }
            }
            if let Some(caller) = staged.caller {
                answer(caller, &reply);
            }
        }
        self.answer = reply;
        set(&self.stats.queued, self.queue.len() as u64);
        self.pump();
    }

    /// Takes a request (from `caller`, for a call) or a published message: refused, queued
    /// and acknowledged in `reply`, or staged until the next sync ([`Answering::Later`]).
    fn take(
        &mut self,
        message: Incoming<'_>,
        caller: Option<HeldCall>,
        reply: &mut Vec<u8>,
    ) -> Answering {
        bump(&self.stats.received);
        // On SUB the reply is discarded: what would be an error reply is only counted.
        let read = self
            .dialect
            .read_request(message.bytes, &mut self.scratch, self.max_body);
        let head = match read {
            Ok(request) => {
                let max = self.max_body;
                match self
                    .gate
                    .screen(&self.dialect, &message, &request, reply, max)
                {
                    Screened::Pass => request.head,
                    Screened::Forbidden => {
                        bump(&self.stats.forbidden);
                        return Answering::Now;
                    }
                    Screened::Answered => {
                        bump(&self.stats.builtin);
                        return Answering::Now;
                    }
                }
            }
            Err(refusal) => {
                bump(match refusal.is_too_large() {
                    true => &self.stats.too_large,
                    false => &self.stats.failed,
                });
                let what = format_args!("refused a message: {}", refusal.message);
                self.failures.warn(&NAME, &what);
                refusal.answer(&self.dialect, reply);
                return Answering::Now;
            }
        };
        let answer = match self.accept(message.bytes) {
            Ok(true) => {
                self.staged.push(Staged {
                    caller,
                    head,
                    message: message.bytes.to_vec(),
                });
                match caller {
                    Some(_) => Answering::Later,
                    None => Answering::Now,
                }
            }
            Ok(false) => {
                set(&self.stats.queued, self.queue.len() as u64);
                self.dialect.encode_accepted(&head, reply);
                self.pump();
                Answering::Now
            }
            Err((code, why)) => {
                bump(&self.stats.dropped);
                let what = match message.origin {
                    Origin::Rep => format_args!("refused a request: {why}"),
                    Origin::Sub(_) => format_args!("dropped a published message: {why}"),
                };
                self.failures.warn(&NAME, &what);
                self.dialect.encode_error(&head, code, &why, reply);
                Answering::Now
            }
        };
        self.stats.log_every(&NAME, LOG_EVERY, &mut self.last_log);
        answer
    }

    /// Starts delivering the oldest request if nothing is in flight and no pause is on.
    fn pump(&mut self) {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.retry_at = None;
        if self.queue.is_empty() {
            return;
        }
        match self.requester.take_turn() {
            Ok(endpoint) => {
                self.in_flight = Some(InFlight {
                    endpoint,
                    sent: false,
                    deadline: later(Instant::now(), self.timeout),
                });
                self.send_in_flight();
            }
            Err(e) => self.failed(&e.to_string()),
        }
    }

    /// Sends the request at the front once its endpoint has a connection; one that does not
    /// come within the timeout is a failed delivery (nothing was sent).
    fn send_in_flight(&mut self) {
        let (Some(in_flight), Some(message)) = (&mut self.in_flight, self.queue.front()) else {
            return;
        };
        if in_flight.sent {
            return;
        }
        match self.requester.send_to(in_flight.endpoint, message) {
            Ok(()) => {
                in_flight.sent = true;
                in_flight.deadline = later(Instant::now(), self.timeout);
            }
            Err(RequestError::NotConnected { endpoint, .. }) => {
                if Instant::now() >= in_flight.deadline {
                    self.in_flight = None;
                    let why = RequestError::NotConnected {
                        endpoint,
                        waited: self.timeout,
                    };
                    self.failed(&why.to_string());
                }
            }
            Err(e) => {
                self.in_flight = None;
                self.failed(&e.to_string());
            }
        }
    }

    /// Checks the delivery in flight: answered, failed, or still waiting.
    fn check_in_flight(&mut self) {
        self.send_in_flight();
        let Some(InFlight {
            endpoint,
            sent: true,
            deadline,
        }) = self.in_flight
        else {
            return;
        };
        match self.requester.try_reply(endpoint) {
            Ok(Some(reply)) => {
                let verdict = judge(&self.dialect, reply.bytes);
                self.in_flight = None;
                match verdict {
                    Verdict::Done => self.delivered(None),
                    Verdict::Refused(said) => {
                        let command = self.front_command();
                        let what = format!(
                            "the downstream refused {command} ({said}): delivered, not retried"
                        );
                        self.delivered(Some(what))
                    }
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

    /// The request at the front was delivered; `refusal` says how the downstream refused it,
    /// if it did.
    fn delivered(&mut self, refusal: Option<String>) {
        if let Some(message) = self.queue.pop() {
            self.queued.give(message.len());
        }
        bump(&self.stats.forwarded);
        if let Some(what) = refusal {
            // The downstream answered with an error: delivered, but worth counting.
            bump(&self.stats.failed);
            self.failures.warn(&NAME, &what);
        }
        self.backoff = self.retry.0;
        if let Some(spool) = &mut self.spool {
            if let Err(e) = spool.delivered(self.queue.iter().map(Vec::as_slice)) {
                log::error!("{e}");
            }
        }
        set(&self.stats.queued, self.queue.len() as u64);
    }

    /// The command of the request at the front (the one being delivered), for the log.
    fn front_command(&mut self) -> String {
        let Some(message) = self.queue.front() else {
            return "no request".into();
        };
        match self
            .dialect
            .read_request(message, &mut self.scratch, self.max_body)
        {
            Ok(request) => format!("command {}", request.key),
            Err(_) => "an unreadable request".into(),
        }
    }

    fn failed(&mut self, why: &str) {
        bump(&self.stats.retried);
        let command = self.front_command();
        let what = format_args!(
            "delivery of {command} failed ({why}); retrying in {:?}",
            self.backoff
        );
        self.failures.warn(&NAME, &what);
        self.retry_at = Some(later(Instant::now(), self.backoff));
        self.backoff = self.backoff.saturating_mul(2).min(self.retry.1);
    }
}

/// The proxy's name in the log.
const NAME: &str = "buffered proxy";

/// What a downstream answer means for the request it answers.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Served.
    Done,
    /// Answered with a permanent error (unknown command, bad frame, service failure): it was
    /// delivered, and sending it again would fail again. What the downstream said.
    Refused(String),
    /// Not delivered: the downstream is busy or could not reach its own downstream (a full
    /// buffered proxy, a Rep2Req proxy whose server is away), or the answer is unreadable.
    TryAgain(String),
}

/// Judges a downstream answer by what `dialect` reads in it.
fn judge<D: Dialect>(dialect: &D, answer: &[u8]) -> Verdict {
    match dialect.read_answer(answer) {
        // A downstream store-and-forward hop that accepted it delivers it from here on.
        Ok(AnswerView {
            says: Says::Response(_) | Says::Accepted,
            ..
        }) => Verdict::Done,
        Ok(AnswerView {
            says: Says::Error(e),
            ..
        }) if e.code.is_transient() => Verdict::TryAgain(e.to_string()),
        Ok(AnswerView {
            says: Says::Error(e),
            ..
        }) => Verdict::Refused(e.to_string()),
        Err(e) => Verdict::TryAgain(format!("unreadable answer: {e}")),
    }
}

impl<D: Dialect> MessageHandler for Buffer<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        // A published message: staged with a spool, queued at the next sync.
        self.take(message, None, reply);
    }

    fn call(&mut self, message: Incoming<'_>, caller: HeldCall, reply: &mut Vec<u8>) -> Answering {
        self.take(message, Some(caller), reply)
    }

    fn answers(&mut self, answer: &mut dyn FnMut(HeldCall, &[u8])) {
        self.commit(answer);
    }

    fn reject(&mut self, reason: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        let why = reason.to_string();
        self.failures
            .warn(&NAME, &format_args!("refused a message: {why}"));
        if origin == Origin::Rep {
            let head = self.dialect.unreadable();
            self.dialect.encode_error(&head, reason.code(), &why, reply);
        }
    }

    fn watch(&self) -> Option<zmq::PollItem<'_>> {
        // The answer once the request is out; news of the connection until then.
        let in_flight = self.in_flight.as_ref()?;
        let socket = if in_flight.sent {
            self.requester.socket(in_flight.endpoint)
        } else {
            self.requester.monitor(in_flight.endpoint)
        };
        socket.map(|socket| socket.as_poll_item(zmq::POLLIN))
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
    use crate::dialect::Native;
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
        Native.encode_accepted(&Header::request(1, Key::of("sample")), &mut ack);
        assert_eq!(judge(&Native, &ack), Verdict::Done);
        for code in [
            ErrorCode::UnknownCommand,
            ErrorCode::BadFrame,
            ErrorCode::ServiceFailed,
            ErrorCode::TooLarge,
        ] {
            assert!(
                matches!(judge(&Native, &error_answer(code)), Verdict::Refused(_)),
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

    /// The buffered proxy judges a pyzmqrpc3 downstream's answers by the peer's codes: 482
    /// (its own downstream failed) is tried again, 451 and 463 are delivered and refused.
    #[cfg(feature = "pyzmqrpc3")]
    #[test]
    fn a_pyzmqrpc3_downstream_is_judged_by_its_status_codes() {
        let mixed = crate::dialect::Mixed::default();
        let ok = br#"{"status_code": 200, "status_message": "OK"}"#;
        assert_eq!(judge(&mixed, ok), Verdict::Done);
        for refused in [451, 463, 400] {
            let answer = format!(r#"{{"status_code": {refused}, "status_message": "no"}}"#);
            assert!(
                matches!(judge(&mixed, answer.as_bytes()), Verdict::Refused(_)),
                "{refused}"
            );
        }
        let proxy_failed = br#"{"status_code": 482, "status_message": "down"}"#;
        assert!(matches!(judge(&mixed, proxy_failed), Verdict::TryAgain(_)));
        // And native answers through the same dialect, as before.
        let mut ack = Vec::new();
        Native.encode_accepted(&Header::request(1, Key::of("sample")), &mut ack);
        assert_eq!(judge(&mixed, &ack), Verdict::Done);
    }
}
