//! The bridge's handler: each call from the input waits its turn ([`Turns`]), goes to the
//! device under a link sequence number of the bridge's own, and the device's answer comes
//! back under the caller's; what the device sends on its own is published. Calls are held
//! ([`Answering::Later`]) while they wait, so the input takes other callers meanwhile and
//! the receiver's poll, not a loop in here, waits for the device.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zmqrpc_core::{ErrorCode, Frame, Header, Kind};

use super::link::{Arrival, LinkError, Opener, SerialLink, SerialPath};
use super::turns::{OnLine, Turns, Waiting};
use super::BridgeStats;
use crate::dialect::{Dialect, Native};
use crate::messaging::publisher::Publisher;
use crate::messaging::receiver::{
    Answering, HeldCall, Incoming, MessageHandler, Origin, Rejection,
};
use crate::node::{Gate, Screened};
use crate::socket::shutdown::Shutdown;
use crate::socket::stats::FailureLog;
use crate::socket::stats::{bump, set};

/// How soon held notifications are offered again to a subscriber that fell behind.
const FLUSH_RETRY: Duration = Duration::from_millis(2);

/// How often held notifications look for a subscriber while none is attached.
const SUBSCRIBER_CHECK: Duration = Duration::from_millis(100);

/// The most frames read from the device in one pass: a device streaming notifications
/// cannot keep a waiting call from its deadline, nor the bridge from a stop.
const FRAMES_PER_PASS: usize = 64;

/// The most reads from the device in one pass, frames or not: a device streaming bytes
/// without a delimiter is read at most this many times (512 bytes each: 32 KiB) before the
/// pass ends.
const READS_PER_PASS: usize = 64;

/// The longest one pass lasts, whatever the device sends.
const PASS_TIME: Duration = Duration::from_millis(10);

/// What the bridge calls itself in the log.
const NAME: &str = "rep2serial";

/// The handler the bridge's receiver runs, over the device `O` opens (a serial device by
/// path unless a test says otherwise).
pub(crate) struct Relay<O: Opener = SerialPath> {
    link: SerialLink<O>,
    notifications: Notifications,
    timeout: Duration,
    stop: Shutdown,
    stats: Arc<BridgeStats>,
    /// The link sequence number of the next call (never 0, which notifications carry).
    next_seq: u32,
    /// Whether the device answered an unreadable frame with its unaddressed error while the
    /// current call waited (the request may have been damaged on the line).
    refused_meanwhile: bool,
    failures: FailureLog,
    /// A frame for the device, being put together.
    outgoing: Vec<u8>,
    /// Who may call or notify what through the bridge, and the built-ins it answers itself.
    gate: Gate,
    /// The largest frame the device takes: a larger request is refused at once.
    frame_max: usize,
    /// The calls waiting for the line, and the one on it.
    turns: Turns,
    /// Answers to held calls, for the receiver to send.
    ready: Vec<(HeldCall, Vec<u8>)>,
}

/// What one pass over the device's frames found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The waiting call's answer, now in the reply.
    Answered,
    /// Nothing more to read for now.
    Drained,
    /// The pass read its most frames; more may be waiting.
    Busy,
}

impl<O: Opener> Relay<O> {
    /// A relay between `link` and, for the device's notifications, `publisher`; it waits
    /// `timeout` for each answer and gives up waiting when `stop` is asked.
    pub(crate) fn new(
        link: SerialLink<O>,
        publisher: Option<Publisher>,
        timeout: Duration,
        stop: Shutdown,
        frame_max: usize,
    ) -> Relay<O> {
        Relay {
            link,
            notifications: Notifications {
                publisher,
                unpublished: 0,
            },
            timeout,
            stop,
            stats: Arc::default(),
            next_seq: first_seq(),
            refused_meanwhile: false,
            failures: FailureLog::default(),
            outgoing: Vec::new(),
            gate: Gate::default(),
            frame_max,
            turns: Turns::default(),
            ready: Vec::new(),
        }
    }

    /// Carries only what `gate` lets through: refuses what its permissions do not allow,
    /// answers the built-ins.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// The bridge's counters.
    pub(crate) fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
    }

    /// The serial side.
    pub(crate) fn link(&self) -> &SerialLink<O> {
        &self.link
    }

    /// The PUB output, if there is one.
    pub(crate) fn publisher(&self) -> Option<&Publisher> {
        self.notifications.publisher.as_ref()
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        seq
    }

    /// Opens the device if it is closed and a try is due; logs how it went.
    pub(crate) fn open_if_due(&mut self) {
        match self.link.open_if_due() {
            Some(Ok(())) => {
                bump(&self.stats.opened);
                log::info!("{NAME}: serial device {} open", self.link.path().display());
            }
            Some(Err(e)) => {
                let what = format_args!("cannot open {}: {e}", self.link.path().display());
                self.failures.warn(&NAME, &what);
            }
            None => {}
        }
    }

    /// Sends `header` and `body` to the device as one frame.
    fn send(&mut self, header: &Header, body: &[u8]) -> Result<(), LinkError> {
        Native.relabelled(header, body, &mut self.outgoing);
        let stop = self.stop.clone();
        let sent = self
            .link
            .write_frame(&self.outgoing, &|| stop.is_requested());
        if let Err(LinkError::Lost { .. } | LinkError::Stalled { .. }) = &sent {
            bump(&self.stats.lost);
        }
        sent
    }

    /// Reads what the device has sent, in a pass of at most [`FRAMES_PER_PASS`] frames,
    /// [`READS_PER_PASS`] reads and [`PASS_TIME`]: the answer of `waiting` is written to
    /// `reply` under the caller's sequence number; notifications are published; anything
    /// else is counted.
    fn take_arrivals(
        &mut self,
        waiting: Option<OnLine>,
        reply: &mut Vec<u8>,
    ) -> Result<Pass, LinkError> {
        let mut frames = 0;
        let mut steps = 0;
        let until = Instant::now() + PASS_TIME;
        while frames < FRAMES_PER_PASS && steps < READS_PER_PASS {
            steps += 1;
            if steps % 8 == 0 && Instant::now() >= until {
                break;
            }
            let arrival = match self.link.next() {
                Ok(Some(arrival)) => arrival,
                Ok(None) => return Ok(Pass::Drained),
                Err(e) => {
                    bump(&self.stats.lost);
                    return Err(e);
                }
            };
            let frame = match arrival {
                Arrival::Frame(frame) => frame,
                Arrival::Partial => continue,
                Arrival::Damaged(error) => {
                    frames += 1;
                    bump(&self.stats.link_errors);
                    let what = format_args!("a frame from the device was lost: {error}");
                    self.failures.warn(&NAME, &what);
                    continue;
                }
            };
            frames += 1;
            let Frame { header, body } = match Frame::decode(frame) {
                Ok(frame) => frame,
                Err(error) => {
                    bump(&self.stats.link_errors);
                    let what = format_args!("the device sent an unreadable frame: {error}");
                    self.failures.warn(&NAME, &what);
                    continue;
                }
            };
            match header.kind {
                // Only the call's own answer: the unaddressed error says the device could
                // not read *a* frame (line noise, a frame cut by a reset), not which.
                Kind::Reply | Kind::Error | Kind::Accepted => match waiting {
                    Some(w) if w.on_link.is_answered_by(&header) => {
                        let answer = Header {
                            seq: w.caller.seq,
                            key: w.caller.key,
                            ..header
                        };
                        Native.relabelled(&answer, body, reply);
                        return Ok(Pass::Answered);
                    }
                    _ => {
                        if waiting.is_some() && header.is_unaddressed_error() {
                            self.refused_meanwhile = true;
                        }
                        bump(&self.stats.stray);
                    }
                },
                Kind::Notify => {
                    let (stats, failures) = (&self.stats, &mut self.failures);
                    self.notifications.publish(frame, stats, failures);
                }
                // The device echoes heartbeats; it has no business calling the host.
                Kind::Heartbeat | Kind::Request => bump(&self.stats.stray),
            }
        }
        Ok(Pass::Busy)
    }

    /// Takes a call from the input: refused, or a notification sent, at once (the answer in
    /// `reply`), or a request queued for its turn on the line ([`Answering::Later`]).
    fn take(&mut self, message: Incoming<'_>, call: HeldCall, reply: &mut Vec<u8>) -> Answering {
        bump(&self.stats.received);
        let mut no_scratch = Vec::new();
        // What the device cannot take is refused before it reaches the line, where the
        // device would drop it and the call would hold the line for its whole timeout.
        let max_body = Native::body_room(self.frame_max);
        let request = match Native.read_request(message.bytes, &mut no_scratch, max_body) {
            Ok(request) => request,
            Err(refusal) if refusal.is_too_large() => {
                bump(&self.stats.too_large);
                let why = format!(
                    "a frame of {} bytes is larger than the device takes ({} bytes, its \
                     frame limit)",
                    message.bytes.len(),
                    self.frame_max
                );
                self.failures.warn(&NAME, &why);
                Native.encode_error(&refusal.head, ErrorCode::TooLarge, &why, reply);
                return Answering::Now;
            }
            Err(refusal) => {
                bump(&self.stats.refused);
                let what = format_args!("refused a message: {}", refusal.message);
                self.failures.warn(&NAME, &what);
                refusal.answer(&Native, reply);
                return Answering::Now;
            }
        };
        match self
            .gate
            .screen(&Native, &message, &request, reply, self.frame_max)
        {
            Screened::Pass => {}
            Screened::Forbidden => {
                bump(&self.stats.forbidden);
                return Answering::Now;
            }
            Screened::Answered => {
                bump(&self.stats.builtin);
                return Answering::Now;
            }
        }
        self.open_if_due();
        if request.head.kind == Kind::Notify {
            match self.send(&request.head, request.body) {
                Ok(()) => {
                    bump(&self.stats.forwarded);
                    Native.encode_accepted(&request.head, reply);
                }
                Err(e) => self.fail(&request.head, &e, reply),
            }
            return Answering::Now;
        }
        if self.stop.is_requested() {
            self.fail(&request.head, &LinkError::Stopping, reply);
            return Answering::Now;
        }
        if !self.link.is_open() {
            // Nothing waits on a missing device.
            let missing = self.link.not_open();
            self.fail(&request.head, &missing, reply);
            return Answering::Now;
        }
        self.turns.queue(Waiting {
            call,
            caller: request.head,
            body: request.body.to_vec(),
            deadline: Instant::now() + self.timeout,
            behind: false,
        });
        self.start_next();
        Answering::Later
    }

    /// Gives up the waiting calls that can no longer come back in time, and puts the next
    /// call on the line if it is free.
    fn start_next(&mut self) {
        while let Some(given_up) = self.turns.give_up(Instant::now()) {
            self.expire(given_up);
        }
        'next: while let Some(next) = self.turns.next() {
            // Whatever the device sent before this call is no answer to it: out of the way
            // first (a pass at a time, so a chatty device cannot hold the call back long).
            let mut none = Vec::new();
            for _ in 0..4 {
                match self.take_arrivals(None, &mut none) {
                    Ok(Pass::Busy) => {}
                    Ok(_) => break,
                    Err(e) => {
                        self.answer_failure(next.call, &next.caller, &e);
                        continue 'next;
                    }
                }
            }
            let on_link = Header::request(self.take_seq(), next.caller.key);
            match self.send(&on_link, &next.body) {
                Ok(()) => {
                    self.refused_meanwhile = false;
                    self.turns.sent(&next, on_link, Instant::now());
                }
                Err(e) => self.answer_failure(next.call, &next.caller, &e),
            }
        }
    }

    /// Reads what the device sent (the answer to the call on the line frees the line for
    /// the next), and times out the call on the line once its deadline has passed.
    fn drive(&mut self) {
        for _ in 0..4 {
            if !self.link.is_open() {
                break;
            }
            let on_line = self.turns.on_line().copied();
            let mut reply = Vec::new();
            match self.take_arrivals(on_line, &mut reply) {
                Ok(Pass::Answered) => {
                    if let Some(done) = self.turns.answered(Instant::now()) {
                        bump(&self.stats.answered);
                        self.ready.push((done.call, reply));
                    }
                    self.start_next();
                }
                Ok(Pass::Busy) => {}
                Ok(Pass::Drained) => break,
                Err(e) => {
                    match self.turns.failed() {
                        Some(failed) => self.answer_failure(failed.call, &failed.caller, &e),
                        None => self.failures.warn(&NAME, &e),
                    }
                    break;
                }
            }
        }
        if let Some(overdue) = self.turns.overdue(Instant::now()) {
            bump(&self.stats.timeouts);
            let mut why = format!(
                "the device on {} did not answer within {:?}",
                self.link.path().display(),
                self.timeout
            );
            if self.refused_meanwhile {
                why.push_str(" (it refused a frame it could not read meanwhile)");
            }
            self.failures.warn(&NAME, &why);
            let mut reply = Vec::new();
            Native.encode_error(&overdue.caller, ErrorCode::Timeout, &why, &mut reply);
            self.ready.push((overdue.call, reply));
        }
        self.start_next();
    }

    /// Answers a waiting call that can no longer come back in time: `Timeout`, unsent.
    fn expire(&mut self, given_up: Waiting) {
        bump(&self.stats.expired);
        let left = given_up.deadline.saturating_duration_since(Instant::now());
        let why = format!(
            "gave up before the device on {}: {left:?} left of {:?} after waiting behind \
             other calls, and its last call took {:?}",
            self.link.path().display(),
            self.timeout,
            self.turns.turnaround()
        );
        self.failures.warn(&NAME, &why);
        let mut reply = Vec::new();
        Native.encode_error(&given_up.caller, ErrorCode::Timeout, &why, &mut reply);
        self.ready.push((given_up.call, reply));
    }

    /// Answers the held `call` with the link's failure.
    fn answer_failure(&mut self, call: HeldCall, caller: &Header, error: &LinkError) {
        let mut reply = Vec::new();
        self.fail(caller, error, &mut reply);
        self.ready.push((call, reply));
    }

    /// Answers `caller` with the link's failure.
    fn fail(&mut self, caller: &Header, error: &LinkError, reply: &mut Vec<u8>) {
        let code = match error {
            LinkError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::Unavailable,
        };
        bump(&self.stats.unavailable);
        self.failures.warn(&NAME, error);
        Native.encode_error(caller, code, &error.to_string(), reply);
    }
}

impl<O: Opener> MessageHandler for Relay<O> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        // Calls come through `call`; the bridge has no SUB input, so nothing else comes.
        bump(&self.stats.received);
        bump(&self.stats.refused);
        let why = "the bridge takes calls on its input only";
        self.failures.warn(&NAME, &why);
        if message.origin == Origin::Rep {
            Native.encode_error(&Native.unreadable(), ErrorCode::BadFrame, why, reply);
        }
    }

    fn call(&mut self, message: Incoming<'_>, call: HeldCall, reply: &mut Vec<u8>) -> Answering {
        self.take(message, call, reply)
    }

    fn answers(&mut self, answer: &mut dyn FnMut(HeldCall, &[u8])) {
        if self.stop.is_requested() {
            // Stopping: every call still held is answered, none left waiting.
            let held: Vec<_> = self.turns.drain().collect();
            for (call, caller) in held {
                self.answer_failure(call, &caller, &LinkError::Stopping);
            }
        }
        for (call, reply) in self.ready.drain(..) {
            answer(call, &reply);
        }
    }

    fn reject(&mut self, reason: Rejection, _: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        bump(&self.stats.refused);
        let why = reason.to_string();
        self.failures
            .warn(&NAME, &format_args!("refused a message: {why}"));
        let head = Native.unreadable();
        Native.encode_error(&head, reason.code(), &why, reply);
    }

    fn watch(&self) -> Option<zmq::PollItem<'_>> {
        self.link.poll_item()
    }

    fn deadline(&self) -> Option<Instant> {
        // Notifications held for a subscriber: try again soon (the XPUB socket, which would
        // say a subscriber came, is not polled: the device is).
        let flush = self
            .notifications
            .publisher
            .as_ref()
            .filter(|publisher| publisher.queued() > 0)
            .map(|publisher| match publisher.has_subscriber() {
                true => Instant::now() + FLUSH_RETRY,
                false => Instant::now() + SUBSCRIBER_CHECK,
            });
        let turns = self.turns.deadline();
        self.link
            .next_try()
            .into_iter()
            .chain(flush)
            .chain(turns)
            .min()
    }

    fn on_wake(&mut self) {
        self.open_if_due();
        // The answer to the call on the line, notifications, late answers: a few passes at
        // a time; if more wait, the device polls readable and the loop is back at once.
        self.drive();
        self.notifications.flush(&self.stats, &mut self.failures);
    }
}

/// Where the device's notifications go: the PUB output, if there is one.
struct Notifications {
    publisher: Option<Publisher>,
    /// Notifications dropped for want of a PUB output.
    unpublished: u64,
}

impl Notifications {
    /// Publishes a notification from the device (or counts it, without a PUB output).
    fn publish(&mut self, frame: &[u8], stats: &BridgeStats, failures: &mut FailureLog) {
        let Some(publisher) = self.publisher.as_mut() else {
            self.unpublished += 1;
            set(&stats.dropped, self.unpublished);
            return;
        };
        if let Err(e) = publisher.publish(frame) {
            let what = format_args!("a notification was not published: {e}");
            failures.warn(&NAME, &what);
        }
        self.mirror(stats);
    }

    /// Offers held notifications to the subscribers again.
    fn flush(&mut self, stats: &BridgeStats, failures: &mut FailureLog) {
        if let Some(publisher) = self.publisher.as_mut() {
            if let Err(e) = publisher.flush() {
                let what = format_args!("held notifications not sent: {e}");
                failures.warn(&NAME, &what);
            }
            self.mirror(stats);
        }
    }

    /// The bridge's publication counters are the publisher's: what it sent, holds and
    /// dropped (plus what had no output to go to).
    fn mirror(&self, stats: &BridgeStats) {
        if let Some(publisher) = &self.publisher {
            let counts = publisher.stats().snapshot();
            set(&stats.published, counts.published);
            set(&stats.queued, counts.queued);
            set(&stats.dropped, counts.dropped + self.unpublished);
            set(&stats.missed_by_slow, counts.missed_by_slow);
        }
    }
}

/// The first link sequence number: from the clock, so that a bridge restarted while its
/// device still answers an old call does not take that answer for a new call's.
fn first_seq() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |since| since.subsec_nanos() ^ since.as_secs() as u32);
    nanos.max(1)
}

/// The relay over an in-memory line: one end of a socket pair is the device's side of the
/// link, the test's thread at the other end plays the device. No pseudo-terminal, so these
/// run under qemu-user too.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{self, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use serde::{Deserialize, Serialize};
    use zmqrpc_core::stream::{self, Deframer, Feed};
    use zmqrpc_core::{frame, Command, RemoteError};

    use super::*;
    use crate::bridge::link::Port;

    impl Port for UnixStream {
        fn discard_output(&mut self) {}
    }

    /// Opens the prepared end of the pair once; after that the device is unplugged.
    struct Pair {
        next: Option<UnixStream>,
        path: PathBuf,
    }

    impl Opener for Pair {
        type Port = UnixStream;

        fn open(&mut self) -> io::Result<UnixStream> {
            self.next
                .take()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unplugged"))
        }

        fn path(&self) -> &Path {
            &self.path
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl Command for Ping {
        const NAME: &'static str = "test.ping";
        type Response = u32;
    }

    /// What the device does with each frame it reads: the frames it writes back (raw line
    /// bytes, so a test can send noise), or `None` to hang up.
    type Script = Box<dyn FnMut(Frame<'_>) -> Option<Vec<Vec<u8>>> + Send>;

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// A relay whose device runs `script` on a thread; the link headers the device saw
    /// come out of the receiver.
    fn relay(script: Script) -> (Relay<Pair>, mpsc::Receiver<Header>, JoinHandle<()>) {
        relay_with(script, TIMEOUT)
    }

    /// [`relay`], waiting `timeout` for each call.
    fn relay_with(
        script: Script,
        timeout: Duration,
    ) -> (Relay<Pair>, mpsc::Receiver<Header>, JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let opener = Pair {
            next: Some(ours),
            path: PathBuf::from("/test/line"),
        };
        let link = SerialLink::new(opener, Duration::from_secs(1), Duration::from_secs(2));
        let relay = Relay::new(link, None, timeout, Shutdown::new(), 1024);
        let (seen_tx, seen) = mpsc::channel();
        let device = std::thread::spawn(move || play_device(theirs, script, &seen_tx));
        (relay, seen, device)
    }

    fn play_device(mut line: UnixStream, mut script: Script, seen: &mpsc::Sender<Header>) {
        line.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut deframer = Deframer::<2048>::new();
        let mut buf = [0u8; 512];
        loop {
            let Ok(n) = line.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (answers, rest) = match deframer.feed(input) {
                    Feed::NeedMore => break,
                    Feed::Error { rest, .. } => (Some(Vec::new()), rest),
                    Feed::Frame { frame, rest } => {
                        let frame = Frame::decode(frame).unwrap();
                        let _ = seen.send(frame.header);
                        (script(frame), rest)
                    }
                };
                let Some(answers) = answers else { return };
                for bytes in answers {
                    line.write_all(&bytes).unwrap();
                }
                input = rest;
            }
        }
    }

    /// `frame` as it goes on the line: a delimiter, its COBS encoding and a delimiter.
    fn on_line(frame: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; stream::encoded_len(frame.len()) + 2];
        out[0] = stream::DELIMITER;
        let len = stream::encode(frame, &mut out[1..]).unwrap().len();
        out.truncate(len + 1);
        out
    }

    fn reply_to(request: &Header, n: u32) -> Vec<u8> {
        let mut buf = [0u8; 64];
        on_line(frame::encode(&request.reply(), &n, &mut buf).unwrap())
    }

    /// A caller's request for `Ping { n }` under `seq`, held as call `seq`: answered at
    /// once (`Some`) or later.
    fn send(relay: &mut Relay<Pair>, seq: u32, n: u32) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        let request = frame::encode(&Header::request(seq, Ping::KEY), &Ping { n }, &mut buf);
        let message = Incoming {
            bytes: request.unwrap(),
            origin: Origin::Rep,
            user_id: None,
        };
        let mut reply = Vec::new();
        match relay.call(message, HeldCall::for_test(seq), &mut reply) {
            Answering::Now => Some(reply),
            Answering::Later => None,
        }
    }

    /// Drives the relay as its receiver would (waking when the device sends or a deadline
    /// passes) until `held` calls are answered: their answers, in the order they came.
    fn answers(relay: &mut Relay<Pair>, held: usize) -> Vec<(HeldCall, Vec<u8>)> {
        let until = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        loop {
            relay.answers(&mut |call, bytes| got.push((call, bytes.to_vec())));
            if got.len() >= held {
                return got;
            }
            assert!(Instant::now() < until, "{} of {held} answered", got.len());
            let wait = relay.deadline().map_or(Duration::from_millis(20), |at| {
                at.saturating_duration_since(Instant::now())
            });
            relay
                .link()
                .wait_readable(wait.min(Duration::from_millis(20)));
            relay.on_wake();
        }
    }

    /// A caller's request for `Ping { n }` under `seq`, through the relay: its answer.
    fn call(relay: &mut Relay<Pair>, seq: u32, n: u32) -> Vec<u8> {
        if let Some(now) = send(relay, seq, n) {
            return now;
        }
        let mut got = answers(relay, 1);
        assert_eq!(got[0].0, HeldCall::for_test(seq));
        got.remove(0).1
    }

    fn outcome(reply: &[u8]) -> (Header, Result<u32, RemoteError>) {
        let frame = Frame::decode(reply).unwrap();
        (frame.header, frame.outcome::<u32>().unwrap())
    }

    #[test]
    fn a_call_goes_on_the_line_under_a_link_number_and_comes_back_under_the_callers() {
        let script: Script = Box::new(|frame| Some(vec![reply_to(&frame.header, 41)]));
        let (mut relay, seen, _device) = relay(script);
        let (header, answer) = outcome(&call(&mut relay, 7, 1));
        assert_eq!((header.seq, header.key, answer), (7, Ping::KEY, Ok(41)));
        let on_link = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(on_link.seq, 7, "relabelled on the line");
        assert_ne!(on_link.seq, 0, "0 is for notifications");
        // The next call takes the next link number.
        assert_eq!(outcome(&call(&mut relay, 7, 2)).1, Ok(41));
        let next = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(next.seq, on_link.seq.wrapping_add(1).max(1));
        assert_eq!(relay.stats().snapshot().answered, 2);
    }

    #[test]
    fn a_late_answer_is_stray_and_never_taken_for_the_next_call() {
        // The first call is answered only when the second arrives, both by the same caller
        // number: the late answer must not pass for the second's.
        let mut held: Option<Header> = None;
        let script: Script = Box::new(move |frame| {
            let mut out = Vec::new();
            if let Some(first) = held.take() {
                out.push(reply_to(&first, 1));
                out.push(reply_to(&frame.header, 2));
            } else {
                held = Some(frame.header);
            }
            Some(out)
        });
        let (mut relay, _seen, _device) = relay(script);
        let started = Instant::now();
        let (_, first) = outcome(&call(&mut relay, 5, 1));
        assert_eq!(first.unwrap_err().code, ErrorCode::Timeout);
        assert!(started.elapsed() >= TIMEOUT);
        let (header, second) = outcome(&call(&mut relay, 5, 2));
        assert_eq!((header.seq, second), (5, Ok(2)));
        let counts = relay.stats().snapshot();
        assert_eq!((counts.timeouts, counts.stray, counts.answered), (1, 1, 1));
    }

    #[test]
    fn the_devices_unaddressed_error_answers_no_call() {
        let script: Script = Box::new(|frame| {
            let mut refusal = Vec::new();
            Native.encode_error(&Header::UNREADABLE, ErrorCode::BadFrame, "?", &mut refusal);
            Some(vec![on_line(&refusal), reply_to(&frame.header, 9)])
        });
        let (mut relay, _seen, _device) = relay(script);
        let (_, answer) = outcome(&call(&mut relay, 3, 9));
        assert_eq!(answer, Ok(9));
        assert_eq!(relay.stats().snapshot().stray, 1);
    }

    #[test]
    fn noise_on_the_line_costs_only_the_frame_it_hits() {
        let script: Script = Box::new(|frame| {
            let noise = vec![0x00, 0x07, 0xff, 0x13, 0x00];
            Some(vec![noise, reply_to(&frame.header, 4)])
        });
        let (mut relay, _seen, _device) = relay(script);
        assert_eq!(outcome(&call(&mut relay, 1, 4)).1, Ok(4));
        let counts = relay.stats().snapshot();
        assert_eq!((counts.link_errors, counts.answered), (1, 1));
    }

    #[test]
    fn a_device_gone_mid_call_gets_the_caller_unavailable_at_once() {
        let script: Script = Box::new(|_| None);
        let (mut relay, _seen, device) = relay(script);
        let started = Instant::now();
        let (_, answer) = outcome(&call(&mut relay, 2, 0));
        assert_eq!(answer.unwrap_err().code, ErrorCode::Unavailable);
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        device.join().unwrap();
        assert_eq!(relay.stats().snapshot().lost, 1);
        // Unplugged for good (this opener opens once): the next call is refused at once.
        let (_, again) = outcome(&call(&mut relay, 3, 0));
        assert_eq!(again.unwrap_err().code, ErrorCode::Unavailable);
    }

    #[test]
    fn a_notification_from_the_device_without_an_output_is_counted_as_dropped() {
        let script: Script = Box::new(|frame| {
            let mut buf = [0u8; 64];
            let sample = frame::encode(&Header::notify(Ping::KEY), &Ping { n: 1 }, &mut buf);
            Some(vec![on_line(sample.unwrap()), reply_to(&frame.header, 6)])
        });
        let (mut relay, _seen, _device) = relay(script);
        assert_eq!(outcome(&call(&mut relay, 8, 6)).1, Ok(6));
        assert_eq!(relay.stats().snapshot().dropped, 1);
    }

    #[test]
    fn calls_at_once_take_turns_and_one_that_cannot_come_back_in_time_never_goes() {
        // The device takes 400 ms per call; each call has 1 s from its arrival. The first
        // two are answered (at 0.4 and 0.8 s); then the others have 0.2 s left, less than
        // the device takes: they are answered `Timeout` without reaching it.
        let script: Script = Box::new(|frame| {
            std::thread::sleep(Duration::from_millis(400));
            Some(vec![reply_to(&frame.header, frame.header.seq)])
        });
        let (mut relay, seen, _device) = relay_with(script, Duration::from_secs(1));
        let started = Instant::now();
        for seq in 1..=4 {
            assert!(send(&mut relay, seq, seq).is_none(), "held");
        }
        let mut got = answers(&mut relay, 4);
        let took = started.elapsed();
        // Those given up are answered as soon as they are, before the second comes back.
        got.sort_by_key(|(_, reply)| outcome(reply).0.seq);
        let order: Vec<HeldCall> = got.iter().map(|(call, _)| *call).collect();
        assert_eq!(order, (1..=4).map(HeldCall::for_test).collect::<Vec<_>>());
        for (seq, (_, reply)) in (1..=4).zip(&got) {
            let (header, answer) = outcome(reply);
            assert_eq!(header.seq, seq, "relabelled to its caller");
            match seq {
                1 | 2 => assert!(answer.is_ok(), "{seq}: {answer:?}"),
                _ => assert_eq!(answer.unwrap_err().code, ErrorCode::Timeout, "{seq}"),
            }
        }
        assert!(
            took < Duration::from_secs(1),
            "the given-up calls waited {took:?}"
        );
        let on_line: Vec<Header> = seen.try_iter().collect();
        assert_eq!(on_line.len(), 2, "the given-up calls reached the device");
        let counts = relay.stats().snapshot();
        assert_eq!(
            (counts.answered, counts.expired, counts.timeouts),
            (2, 2, 0)
        );
    }

    #[test]
    fn a_stop_answers_every_held_call_unavailable() {
        let script: Script = Box::new(|_| Some(Vec::new()));
        let (mut relay, seen, _device) = relay(script);
        for seq in 1..=3 {
            assert!(send(&mut relay, seq, 0).is_none());
        }
        seen.recv_timeout(Duration::from_secs(5)).unwrap();
        relay.stop.request();
        let mut got = Vec::new();
        relay.answers(&mut |call, bytes| got.push((call, bytes.to_vec())));
        assert_eq!(got.len(), 3);
        for (_, reply) in got {
            assert_eq!(outcome(&reply).1.unwrap_err().code, ErrorCode::Unavailable);
        }
        // A call after the stop is refused at once.
        let refused = send(&mut relay, 4, 0).unwrap();
        assert_eq!(
            outcome(&refused).1.unwrap_err().code,
            ErrorCode::Unavailable
        );
    }
}
