//! What the firmware serves, and what it sends on its own: shared with the host.
//!
//! Plain serde types and `zmqrpc_core`, nothing else, so a host program or test includes
//! this very file (`#[path = "…/examples/firmware/src/commands.rs"] mod commands;`) and
//! both ends agree on every name and field by construction.

use serde::{Deserialize, Serialize};
use zmqrpc_core::device::DeviceStats;
use zmqrpc_core::Command;

/// Answers with `n`: a round trip through the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed back.
    pub n: u32,
}

impl Command for Ping {
    const NAME: &'static str = "device.ping";
    type Response = u32;
}

/// Turns LED `led` (0 to 7) on or off; answers with the LEDs lit afterwards, one bit each
/// (bit `i` is LED `i`). Fails with "no such LED" for `led` 8 and up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLed {
    /// Which LED, 0 to 7.
    pub led: u8,
    /// Lit or not.
    pub on: bool,
}

impl Command for SetLed {
    const NAME: &'static str = "led.set";
    type Response = u8;
}

/// Answers with the device's counters, as they were before this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats;

impl Command for ReadStats {
    const NAME: &'static str = "device.stats";
    type Response = DeviceStatsReply;
}

/// The device's counters, as [`ReadStats`] answers them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatsReply {
    /// Requests whose handler answered.
    pub served: u32,
    /// Requests whose handler failed.
    pub failed: u32,
    /// Requests for a command the device does not serve.
    pub unknown: u32,
    /// Frames that arrived whole but did not decode.
    pub bad_frames: u32,
    /// Frames lost on the link: damaged, or larger than the device's buffer.
    pub link_errors: u32,
    /// Heartbeats echoed.
    pub heartbeats: u32,
}

impl From<DeviceStats> for DeviceStatsReply {
    fn from(s: DeviceStats) -> Self {
        DeviceStatsReply {
            served: s.served,
            failed: s.failed,
            unknown: s.unknown,
            bad_frames: s.bad_frames,
            link_errors: s.link_errors,
            heartbeats: s.heartbeats,
        }
    }
}

/// A sensor reading the device sends on its own, as a notification, every 250 ms: nothing
/// answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Counts the samples sent since boot, from 0; a gap means samples were lost.
    pub seq: u32,
    /// The reading (made up: the board has no sensor).
    pub millivolts: u16,
}

impl Command for Sample {
    const NAME: &'static str = "sensor.sample";
    type Response = ();
}
