//! [`SerialBridge`]: calls from the ZeroMQ network to a microcontroller on a serial port, and
//! the microcontroller's notifications back out (feature `serial`).
//!
//! The bridge binds a call input like a `rep2req` proxy, but its downstream is a serial
//! device (a UART, a USB adapter, a pseudo-terminal) carrying the core's frames in its COBS
//! stream framing: what [`zmqrpc_core::device::DeviceServer`] serves on the other end. The
//! frames are the same on both sides; only the sequence number changes. Each call goes to
//! the device under a link sequence number of the bridge's own and its answer comes back
//! under the caller's, so an answer that arrives after its call was given up on (a reset
//! device catching up) can never be taken for a later call's: it is counted as `stray` and
//! dropped. One call is on the line at a time: the device answers in turn. Calls from many
//! callers at once wait their turn in order of arrival, up to [`CALLS_HELD`] (the next is
//! refused `Busy` at once), each within the bridge's timeout from the moment it arrived; a
//! call that has waited behind others and has less of its timeout left than the device took
//! over its last call is answered `Timeout` without reaching the device (`expired`), so the
//! device never runs a call whose caller has stopped waiting for it. Both sides speak native
//! frames only (the device's): a pyzmqrpc3 message is refused with `BadFrame`.
//!
//! What a caller gets:
//! - the device's reply or error, relabelled to its call;
//! - a `Timeout` error when the device does not answer within the bridge's timeout (1 s
//!   unless set, counted from the call's arrival; a device that reset mid-call, a frame
//!   damaged on the line), or at once when the call could no longer come back in time;
//! - an `Unavailable` error at once when the device is not open, or went away during the
//!   call (unplugged, its USB adapter reset), or took no bytes for the write timeout (a
//!   wedged USB device): the bridge closes it and tries to open it again, after 50 ms and
//!   then twice as long each time up to a limit (starting over once a reopened device has
//!   carried a frame), while every caller gets that error meanwhile — nothing waits on a
//!   missing device;
//! - `TooLarge` at once for a frame over the device's frame limit
//!   ([`device_frame_max`](SerialBridgeBuilder::device_frame_max), at most and by default
//!   [`LINK_FRAME_MAX`]; set it to the device's buffer, or such a frame is lost on the
//!   device and its caller waits for `Timeout`), `BadFrame` for what is no frame;
//! - a notification is written to the device and acknowledged; a heartbeat is answered by
//!   the bridge itself.
//!
//! What the device sends of its own accord (notifications: sensor samples) is published on
//! the PUB output, if the bridge has one (held while no subscriber is attached, like a
//! [`Publisher`](crate::Publisher)'s), and counted as dropped if not. Frames damaged on the line are counted
//! in `link_errors` and skipped; the link is back in step at the next frame. The device is
//! read in passes of at most 64 frames, 32 KiB and 10 ms, whatever it sends (a stream of
//! bytes without a delimiter included), so no device holds a call past its deadline or the
//! bridge past a stop.
//!
//! ```no_run
//! use std::time::Duration;
//! use zmqrpc_transport_std::bridge::SerialBridge;
//!
//! let bridge = SerialBridge::builder("/dev/ttyACM0")
//!     .baud(115_200)
//!     .input("tcp://*:30010")       // calls in
//!     .output("tcp://*:30011")      // the device's notifications out
//!     .timeout(Duration::from_millis(500))
//!     .bind()?;
//! let running = bridge.spawn()?;
//! # running.stop_and_wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod link;
mod relay;
mod turns;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::dialect::{Dialect, Native};
use crate::error::ConfigError;
use crate::messaging::publisher::PendingLimits;
use crate::messaging::serving::Serving;
use crate::node::NodeReport;
use crate::proxy::{relay_methods, side_setters, Sides};
use crate::socket::stats::counters;
use crate::TransportError;
use link::{SerialLink, SerialPath};
use relay::Relay;

/// The largest frame that crosses the serial link, in bytes (before COBS encoding).
pub const LINK_FRAME_MAX: usize = 1024;

/// The most calls a bridge holds at once, the one on the line and those waiting their
/// turn; the next caller is refused `Busy` at once.
pub const CALLS_HELD: usize = 64;

counters! {
    /// Live counters of a [`SerialBridge`].
    BridgeStats;
    /// A [`BridgeStats`] reading.
    BridgeCounts {
        /// Messages taken from the input.
        received,
        /// Calls the device answered (with a reply or an error of its own).
        answered,
        /// Notifications written to the device.
        forwarded,
        /// Calls the device did not answer in time.
        timeouts,
        /// Calls answered `Timeout` without reaching the device: after waiting behind
        /// others, less of their timeout was left than the device took over its last call.
        expired,
        /// Calls and notifications refused because the device was not open or went away
        /// (or the bridge was stopping).
        unavailable,
        /// Messages from the input that were no request (answered with `BadFrame`).
        refused,
        /// Requests larger than the device's frame limit, refused with `TooLarge` before
        /// they reached the line.
        too_large,
        /// Calls and notifications no input permission allowed their caller.
        forbidden,
        /// Built-in calls ([`node`](crate::node): `Ping`, `GetStats`, `Describe`) the
        /// bridge answered itself; they never reach the device.
        builtin,
        /// Frames from the device that answered no waiting call (late answers after a
        /// timeout, heartbeats, requests).
        stray,
        /// Frames lost on the line: damaged, too large or unreadable, skipped.
        link_errors,
        /// The device's notifications handed to libzmq for a subscriber (the publisher's
        /// own count).
        published,
        /// The device's notifications waiting for a subscriber now.
        queued,
        /// The device's notifications lost: no PUB output, or its queue was full.
        dropped,
        /// The device's notifications a subscriber full past the publisher's grace missed
        /// (the publisher's `missed_by_slow`).
        missed_by_slow,
        /// Times the device was opened.
        opened,
        /// Times the device went away (a read or write failed) and was closed.
        lost,
    }
}

/// Builds a [`SerialBridge`].
pub struct SerialBridgeBuilder {
    sides: Sides,
    device: PathBuf,
    baud: u32,
    reopen_max: Duration,
    write_timeout: Duration,
    pending: PendingLimits,
    frame_max: usize,
}

impl SerialBridgeBuilder {
    side_setters!();

    /// An input endpoint, bound: calls come in here (a ROUTER socket, which REQ and DEALER
    /// callers reach as they would a REP one).
    pub fn input(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.input = std::mem::take(&mut self.sides.input).rep(endpoint);
        self
    }

    /// A PUB output endpoint, bound: the device's notifications go out here. Without one,
    /// they are counted as dropped.
    pub fn output(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.outputs.push(endpoint.into());
        self
    }

    /// The line's speed in bits per second (default 115200; ignored by pseudo-terminals
    /// and USB CDC devices).
    pub fn baud(mut self, baud: u32) -> Self {
        self.baud = baud;
        self
    }

    /// The longest wait between two tries to open a missing device (default 2 s).
    pub fn reopen_max(mut self, wait: Duration) -> Self {
        self.reopen_max = wait;
        self
    }

    /// How long writing one frame may wait for the device to take its bytes before the
    /// device counts as stalled and is closed (and reopened), default 1 s: a line without
    /// flow control takes a frame at once, a wedged USB device never.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Notifications the PUB output holds while no subscriber is attached (default 1000).
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending.messages = limit;
        self
    }

    /// Bytes of notifications the PUB output holds at most (default 8 MiB); past it, and
    /// past [`pending_limit`](Self::pending_limit), the oldest are dropped and counted.
    pub fn pending_bytes(mut self, bytes: usize) -> Self {
        self.pending.bytes = bytes;
        self
    }

    /// The largest frame the device takes, header included (default and at most
    /// [`LINK_FRAME_MAX`]; the firmware example's is 128 bytes): a larger request is
    /// answered `TooLarge` at once, without going to the device (which would drop it and
    /// keep the call waiting for its whole timeout). Out of range, [`bind`](Self::bind)
    /// fails with [`ConfigError::OutOfRange`].
    pub fn device_frame_max(mut self, bytes: usize) -> Self {
        self.frame_max = bytes;
        self
    }

    /// Binds the input (and the output, if any) and tries to open the device once. A device
    /// that is missing does not fail the bridge: it is tried again while it runs.
    pub fn bind(mut self) -> Result<SerialBridge, TransportError> {
        if !(Native::MIN_FRAME..=LINK_FRAME_MAX).contains(&self.frame_max) {
            return Err(ConfigError::OutOfRange {
                setting: "device_frame_max",
                value: self.frame_max as u64,
                min: Native::MIN_FRAME as u64,
                max: LINK_FRAME_MAX as u64,
            }
            .into());
        }
        let (ctx, input) = self
            .sides
            .bind_input_with(|input| input.calls_at_once(CALLS_HELD))?;
        let sides = &self.sides;
        let publisher = match sides.outputs.is_empty() {
            true => None,
            false => Some(sides.publisher(&ctx, self.pending)?),
        };
        let device_name = self.device.clone();
        let device = SerialPath {
            path: self.device,
            baud: self.baud,
        };
        let link = SerialLink::new(device, self.write_timeout, self.reopen_max);
        let stop = input.shutdown();
        let report = NodeReport::new("rep2serial");
        let device = device_name.display().to_string();
        let publisher_stats = publisher
            .as_ref()
            .map(|p| (p.stats(), p.endpoints().to_vec()));
        let mut relay = Relay::new(link, publisher, sides.timeout, stop, self.frame_max)
            .with_gate(sides.gate(&report));
        relay.open_if_due();
        let stats = Arc::clone(relay.stats());
        let output_endpoints = relay
            .publisher()
            .map_or_else(Vec::new, |p| p.endpoints().to_vec());
        let serving = Serving::One {
            receiver: input,
            handler: relay,
        };
        sides.report_on(&report, &serving);
        let counts = Arc::clone(&stats);
        report.section("bridge", vec![device], move || counts.snapshot().named());
        if let Some((publisher, endpoints)) = publisher_stats {
            report.section("output", endpoints, move || publisher.snapshot().named());
        }
        report.limit("timeout_ms", sides.timeout.as_millis() as u64);
        report.limit("device_frame_max", self.frame_max as u64);
        report.limit("baud", u64::from(self.baud));
        Ok(SerialBridge {
            output_endpoints,
            serving,
            stats,
            report,
        })
    }
}

/// A bridge between a REP/PUB pair and a serial device; see the [module docs](self).
pub struct SerialBridge {
    /// The input and the relay that serves it, on one thread.
    serving: Serving<Relay>,
    stats: Arc<BridgeStats>,
    /// The PUB output's endpoints as bound.
    output_endpoints: Vec<String>,
    /// What the bridge says about itself.
    report: NodeReport,
}

impl SerialBridge {
    /// Starts building a bridge to the serial device at `device` (a path such as
    /// `/dev/ttyACM0`, or a stable link such as `/dev/serial/by-id/…`).
    pub fn builder(device: impl Into<PathBuf>) -> SerialBridgeBuilder {
        let mut sides = Sides::new(Native::heartbeat_answer, true);
        // Shorter than a client's own default (5 s), so callers get the bridge's typed
        // `Timeout` rather than giving up first.
        sides.timeout = Duration::from_secs(1);
        SerialBridgeBuilder {
            sides,
            device: device.into(),
            baud: 115_200,
            reopen_max: Duration::from_secs(2),
            write_timeout: Duration::from_secs(1),
            pending: PendingLimits::default(),
            frame_max: LINK_FRAME_MAX,
        }
    }

    /// The PUB output's endpoints as bound (empty without one).
    pub fn output_endpoints(&self) -> &[String] {
        &self.output_endpoints
    }

    /// Whether the device is open now.
    pub fn device_open(&self) -> bool {
        self.serving
            .handler()
            .is_some_and(|relay| relay.link().is_open())
    }

    relay_methods!("zmqrpc-bridge", BridgeStats);
}
