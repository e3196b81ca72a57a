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
    type Response = DeviceStats;
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
