//! The bridge's handler: each call from the REP side goes to the device under a link
//! sequence number of the bridge's own, and the device's answer comes back under the
//! caller's; what the device sends on its own is published.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zmqrpc_core::{ErrorCode, Frame, Header, Kind};

use super::link::{Arrival, LinkError, SerialLink};
use super::BridgeStats;
use crate::auth::Permissions;
use crate::dialect::{Dialect, Native};
use crate::messaging::publisher::Publisher;
use crate::messaging::receiver::{Handler, Incoming, Origin, Rejection};
use crate::proxy::{refuse_forbidden, FailureLog};
use crate::socket::shutdown::Shutdown;
use crate::socket::stats::{bump, set};

/// How long a wait for the device lasts at most before the stop flag is looked at again.
const STOP_CHECK: Duration = Duration::from_millis(50);

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

/// The handler the bridge's receiver runs.
pub(crate) struct Relay {
    link: SerialLink,
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
    /// Who may call or notify what through the bridge.
    permissions: Option<Arc<Permissions>>,
    /// The largest frame the device takes: a larger request is refused at once.
    frame_max: usize,
}

/// The call waiting for the device's answer.
#[derive(Clone, Copy)]
struct Waiting {
    /// The request as it went to the device (the link sequence number).
    on_link: Header,
    /// The request as the caller sent it.
    caller: Header,
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

impl Relay {
    /// A relay between `link` and, for the device's notifications, `publisher`; it waits
    /// `timeout` for each answer and gives up waiting when `stop` is asked.
    pub(crate) fn new(
        link: SerialLink,
        publisher: Option<Publisher>,
        timeout: Duration,
        stop: Shutdown,
        frame_max: usize,
    ) -> Relay {
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
            permissions: None,
            frame_max,
        }
    }

    /// Carries only what `permissions` allow each caller (none: everything).
    pub(crate) fn with_permissions(mut self, permissions: Option<Arc<Permissions>>) -> Self {
        self.permissions = permissions;
        self
    }

    /// The bridge's counters.
    pub(crate) fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
    }

    /// The serial side.
    pub(crate) fn link(&self) -> &SerialLink {
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
        waiting: Option<Waiting>,
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
                Kind::Reply | Kind::Error => match waiting {
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

    /// Sends the call to the device and waits for its answer, at most the timeout.
    fn call(&mut self, caller: Header, body: &[u8], reply: &mut Vec<u8>) {
        let on_link = Header::request(self.take_seq(), caller.key);
        if let Err(e) = self.send(&on_link, body) {
            return self.fail(&caller, &e, reply);
        }
        self.refused_meanwhile = false;
        let waiting = Some(Waiting { on_link, caller });
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.take_arrivals(waiting, reply) {
                Ok(Pass::Answered) => {
                    bump(&self.stats.answered);
                    return;
                }
                Ok(Pass::Drained | Pass::Busy) => {}
                Err(e) => return self.fail(&caller, &e, reply),
            }
            if self.stop.is_requested() {
                return self.fail(&caller, &LinkError::Stopping, reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
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
                return Native.encode_error(&caller, ErrorCode::Timeout, &why, reply);
            }
            self.link.wait_readable(left.min(STOP_CHECK));
        }
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

impl Handler for Relay {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        // The bridge's input is a REP socket: every message gets an answer in `reply`.
        debug_assert_eq!(message.origin, Origin::Rep);
        let mut no_scratch = Vec::new();
        // What the device cannot take is refused before it reaches the line, where the
        // device would drop it and the call would hold the bridge for its whole timeout.
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
                return Native.encode_error(&refusal.head, ErrorCode::TooLarge, &why, reply);
            }
            Err(refusal) => {
                bump(&self.stats.refused);
                let what = format_args!("refused a message: {}", refusal.message);
                self.failures.warn(&NAME, &what);
                return refusal.answer(&Native, reply);
            }
        };
        let permissions = self.permissions.as_deref();
        if refuse_forbidden(permissions, &Native, &message, &request, reply) {
            bump(&self.stats.forbidden);
            return;
        }
        self.open_if_due();
        if request.head.kind == Kind::Notify {
            return match self.send(&request.head, request.body) {
                Ok(()) => {
                    bump(&self.stats.forwarded);
                    Native.encode_ack(&request.head, reply);
                }
                Err(e) => self.fail(&request.head, &e, reply),
            };
        }
        // Whatever the device sent before this call is no answer to it: out of the way
        // first (a pass at a time, so a chatty device cannot hold the call back for long).
        for _ in 0..4 {
            match self.take_arrivals(None, reply) {
                Ok(Pass::Busy) => {}
                Ok(_) => break,
                Err(e) => return self.fail(&request.head, &e, reply),
            }
        }
        self.call(request.head, request.body, reply);
    }

    fn reject(&mut self, _: Rejection, _: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        bump(&self.stats.refused);
        self.failures.warn(&NAME, &"refused a multipart message");
        let head = Native.unreadable();
        Native.encode_error(&head, ErrorCode::BadFrame, "multipart message", reply);
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
        self.link.next_try().into_iter().chain(flush).min()
    }

    fn on_wake(&mut self) {
        self.open_if_due();
        if self.link.is_open() {
            // Notifications (and late answers) the device sent while no call was waiting;
            // a pass at a time: if more wait, the device polls readable and the loop is
            // back at once.
            let mut unused = Vec::new();
            if let Err(e) = self.take_arrivals(None, &mut unused) {
                self.failures.warn(&NAME, &e);
            }
        }
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
