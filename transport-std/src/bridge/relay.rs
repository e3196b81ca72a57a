//! The bridge's handler: each call from the REP side goes to the device under a link
//! sequence number of the bridge's own, and the device's answer comes back under the
//! caller's; what the device sends on its own is published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::{ErrorCode, Header, Kind, HEADER_LEN};

use super::link::{Arrival, LinkError, SerialLink};
use super::BridgeStats;
use crate::dialect::{Dialect, Native};
use crate::messaging::publisher::Publisher;
use crate::messaging::receiver::{Handler, Incoming, Origin, Rejection};
use crate::proxy::FailureLog;
use crate::socket::shutdown::Shutdown;
use crate::socket::stats::{bump, set};

/// How long a wait for the device lasts at most before the stop flag is looked at again.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// How soon held notifications are offered again to a subscriber that fell behind.
const FLUSH_RETRY: Duration = Duration::from_millis(2);

/// How often held notifications look for a subscriber while none is attached.
const SUBSCRIBER_CHECK: Duration = Duration::from_millis(100);

/// What the bridge calls itself in the log.
const NAME: &str = "rep2serial";

/// The handler the bridge's receiver runs.
pub(crate) struct Relay {
    pub(crate) link: SerialLink,
    pub(crate) publisher: Option<Publisher>,
    pub(crate) timeout: Duration,
    pub(crate) stop: Shutdown,
    pub(crate) stats: Arc<BridgeStats>,
    /// The link sequence number of the next call (never 0, which notifications carry).
    pub(crate) next_seq: u32,
    pub(crate) failures: FailureLog,
    /// A frame for the device, being put together.
    pub(crate) outgoing: Vec<u8>,
}

/// The call waiting for the device's answer.
#[derive(Clone, Copy)]
struct Waiting {
    /// The request as it went to the device (the link sequence number).
    on_link: Header,
    /// The request as the caller sent it.
    caller: Header,
}

impl Relay {
    /// The bridge's counters.
    pub(crate) fn stats(&self) -> &Arc<BridgeStats> {
        &self.stats
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
        self.outgoing.clear();
        self.outgoing.resize(HEADER_LEN, 0);
        // The buffer has its header's room: writing the header cannot fail.
        let _ = header.write(&mut self.outgoing);
        self.outgoing.extend_from_slice(body);
        let sent = self.link.write_frame(&self.outgoing);
        if let Err(LinkError::Lost { .. }) = &sent {
            bump(&self.stats.lost);
        }
        sent
    }

    /// Reads what the device has sent until `waiting`'s answer is among it (written to
    /// `reply` under the caller's sequence number: `true`) or nothing is left to read.
    fn take_arrivals(
        &mut self,
        waiting: Option<Waiting>,
        reply: &mut Vec<u8>,
    ) -> Result<bool, LinkError> {
        loop {
            let arrival = match self.link.next() {
                Ok(Some(arrival)) => arrival,
                Ok(None) => return Ok(false),
                Err(e) => {
                    bump(&self.stats.lost);
                    return Err(e);
                }
            };
            let frame = match arrival {
                Arrival::Frame(frame) => frame,
                Arrival::Damaged(error) => {
                    bump(&self.stats.link_errors);
                    let what = format_args!("a frame from the device was lost: {error}");
                    self.failures.warn(&NAME, &what);
                    continue;
                }
            };
            let header = match Header::read(frame) {
                Ok(header) => header,
                Err(error) => {
                    bump(&self.stats.link_errors);
                    let what = format_args!("the device sent an unreadable frame: {error}");
                    self.failures.warn(&NAME, &what);
                    continue;
                }
            };
            match header.kind {
                Kind::Reply | Kind::Error => match waiting {
                    Some(w) if w.on_link.takes_answer(&header) => {
                        let answer = Header {
                            seq: w.caller.seq,
                            key: w.caller.key,
                            ..header
                        };
                        reply.clear();
                        reply.resize(HEADER_LEN, 0);
                        let _ = answer.write(reply);
                        reply.extend_from_slice(frame.get(HEADER_LEN..).unwrap_or_default());
                        return Ok(true);
                    }
                    // An answer to a call that was given up on (timed out) or to nothing.
                    _ => bump(&self.stats.stray),
                },
                Kind::Notify => match self.publisher.as_mut() {
                    Some(publisher) => {
                        let published = publisher.publish(frame);
                        set(&self.stats.queued, publisher.queued() as u64);
                        match published {
                            Ok(()) => bump(&self.stats.published),
                            Err(e) => {
                                bump(&self.stats.dropped);
                                let what = format_args!("a notification was not published: {e}");
                                self.failures.warn(&NAME, &what);
                            }
                        }
                    }
                    None => bump(&self.stats.dropped),
                },
                // The device echoes heartbeats; it has no business calling the host.
                Kind::Heartbeat | Kind::Request => bump(&self.stats.stray),
            }
        }
    }

    /// Sends the call to the device and waits for its answer, at most the timeout.
    fn call(&mut self, caller: Header, body: &[u8], reply: &mut Vec<u8>) {
        let on_link = Header::request(self.take_seq(), caller.key);
        if let Err(e) = self.send(&on_link, body) {
            return self.fail(&caller, &e, reply);
        }
        let waiting = Some(Waiting { on_link, caller });
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.take_arrivals(waiting, reply) {
                Ok(true) => {
                    bump(&self.stats.answered);
                    return;
                }
                Ok(false) => {}
                Err(e) => return self.fail(&caller, &e, reply),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.stop.is_requested() {
                bump(&self.stats.unavailable);
                let why = "the bridge is stopping";
                return Native.encode_error(&caller, ErrorCode::Unavailable, why, reply);
            }
            if left.is_zero() {
                bump(&self.stats.timeouts);
                let why = format!(
                    "the device on {} did not answer within {:?}",
                    self.link.path().display(),
                    self.timeout
                );
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
        let answer = message.origin == Origin::Rep;
        let mut no_scratch = Vec::new();
        let request = match Native.read_request(message.bytes, &mut no_scratch) {
            Ok(request) => request,
            Err(refusal) => {
                bump(&self.stats.refused);
                let what = format_args!("refused a message: {}", refusal.message);
                self.failures.warn(&NAME, &what);
                if answer {
                    refusal.answer(&Native, reply);
                }
                return;
            }
        };
        self.open_if_due();
        if request.head.kind == Kind::Notify {
            match self.send(&request.head, request.body) {
                Ok(()) => {
                    bump(&self.stats.forwarded);
                    Native.encode_ack(&request.head, reply);
                }
                Err(e) => self.fail(&request.head, &e, reply),
            }
            return;
        }
        // Whatever the device sent before this call is no answer to it: out of the way first.
        if let Err(e) = self.take_arrivals(None, reply) {
            return self.fail(&request.head, &e, reply);
        }
        self.call(request.head, request.body, reply);
    }

    fn reject(&mut self, _: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        bump(&self.stats.refused);
        self.failures.warn(&NAME, &"refused a multipart message");
        if origin == Origin::Rep {
            Native.encode_error(
                &Native.unreadable(),
                ErrorCode::BadFrame,
                "multipart message",
                reply,
            );
        }
    }

    fn watch(&self) -> Option<zmq::PollItem<'_>> {
        self.link.poll_item()
    }

    fn deadline(&self) -> Option<Instant> {
        // Notifications held for a subscriber: try again soon (the XPUB socket, which would
        // say a subscriber came, is not polled: the device is).
        let flush = self
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
            // Notifications (and late answers) the device sent while no call was waiting.
            let mut unused = Vec::new();
            if let Err(e) = self.take_arrivals(None, &mut unused) {
                self.failures.warn(&NAME, &e);
            }
        }
        if let Some(publisher) = self.publisher.as_mut() {
            if let Ok(left) = publisher.flush() {
                set(&self.stats.queued, left as u64);
            }
        }
    }
}
