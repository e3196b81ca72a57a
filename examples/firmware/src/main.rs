//! zmqrpc on a microcontroller: a Cortex-M3 firmware serving typed commands over its UART.
//!
//! The firmware runs on the mps2-an385 board (Cortex-M3, 25 MHz) as `qemu-system-arm`
//! emulates it. Its UART0 carries zmqrpc frames, COBS-framed ([`zmqrpc_core::stream`]): a
//! [`DeviceServer`](zmqrpc_core::device::DeviceServer) answers the three [commands]
//! `device.ping`, `led.set` and `device.stats`, and every 250 ms the device sends a
//! `sensor.sample` notification of its own. A frame that does not decode or names an
//! unknown command is answered with an error and counted; one damaged on the line is
//! counted and skipped; never a panic. Nothing is allocated: the frame buffers (answer,
//! deframer, writer: about 128 bytes each), the server and its handlers live on `main`'s
//! stack.
//!
//! Build (`.cargo/config.toml` sets the target and the linker script):
//!
//! ```text
//! rustup target add thumbv7m-none-eabi
//! cd examples/firmware && cargo build --release
//! ```
//!
//! Run it with UART0 on a pseudo-terminal, which a host program opens in raw mode to talk
//! to the device (`cargo run --release` does the same):
//!
//! ```text
//! qemu-system-arm -machine mps2-an385 -nographic -monitor none -serial pty \
//!     -kernel target/thumbv7m-none-eabi/release/zmqrpc-firmware
//! ```
//!
//! qemu prints `char device redirected to /dev/pts/N (label serial0)` (on stdout, as of
//! qemu 7.2) and drops what the device sends until the pty is opened. qemu 7.2 accepts but
//! ignores `-chardev pty,id=uart,path=…`: it makes no link at that path. A Unix socket
//! gives a fixed path on any version: `-chardev socket,id=uart,path=/tmp/uart,server=on,
//! wait=off -serial chardev:uart`.
//!
//! Without the default `server` feature the firmware echoes every frame it receives instead
//! of serving it: the baseline `scripts/firmware-footprint.sh` measures the server against.

#![no_std]
#![no_main]

#[cfg_attr(not(feature = "server"), allow(dead_code))]
mod commands;
#[cfg(feature = "server")]
mod server;
mod uart;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::{entry, exception};
use zmqrpc_core::device::notify;
use zmqrpc_core::stream::{encoded_len, Deframer, Feed, FrameWriter};

use commands::Sample;

/// The core clock, which also drives SysTick and the UART.
const SYSCLK_HZ: u32 = 25_000_000;
/// UART0's line rate (qemu ignores it; hardware would not).
const BAUD: u32 = 115_200;
/// SysTick interrupts per second.
const TICK_HZ: u32 = 100;
/// Ticks between two samples: 250 ms.
const SAMPLE_PERIOD: u32 = TICK_HZ / 4;
/// The largest frame, request or answer, the device handles.
const FRAME: usize = 128;
/// The largest such frame COBS-encoded, as the deframer and writer hold it.
const WIRE: usize = encoded_len(FRAME);

/// SysTick interrupts since boot.
static TICKS: AtomicU32 = AtomicU32::new(0);

/// Counts the ticks.
#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Starts SysTick interrupting `TICK_HZ` times a second, on the core clock.
fn start_ticks(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Serves the frames arriving on UART0 and sends a sample every `SAMPLE_PERIOD`, forever.
#[entry]
fn main() -> ! {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        unreachable!("taken once, here");
    };
    start_ticks(peripherals.SYST);
    // SAFETY: the only call; nothing else touches UART0.
    let (tx, mut rx) = unsafe { uart::uart0(SYSCLK_HZ, BAUD) };
    let mut link: FrameWriter<_, WIRE> = FrameWriter::new(tx);
    let mut deframer: Deframer<WIRE> = Deframer::new();
    let mut out = [0u8; FRAME];

    #[cfg(feature = "server")]
    let stats = core::cell::Cell::default();
    #[cfg(feature = "server")]
    let mut handlers = server::handlers(&stats);
    #[cfg(feature = "server")]
    let mut device = server::Device::new(&mut handlers, &stats);
    #[cfg(not(feature = "server"))]
    let mut device = echo::Device;

    let mut samples = 0u32;
    let mut last_sample = TICKS.load(Ordering::Relaxed);
    loop {
        if let Some(byte) = rx.try_read_byte() {
            match deframer.feed(&[byte]) {
                Feed::NeedMore => {}
                Feed::Frame { frame, .. } => {
                    if let Some(answer) = device.answer(frame, &mut out) {
                        // Cannot fail: the UART does not, and `link` holds any FRAME bytes.
                        let _ = link.write_frame(answer);
                    }
                }
                // The deframer is back in step at the next delimiter.
                Feed::Error { .. } => device.link_error(),
            }
        }

        let now = TICKS.load(Ordering::Relaxed);
        if now.wrapping_sub(last_sample) >= SAMPLE_PERIOD {
            last_sample = now;
            let sample = Sample {
                seq: samples,
                millivolts: fake_millivolts(samples),
            };
            // Cannot fail: a sample fits `out`, and the UART does not fail.
            let _ = notify(&mut link, &sample, &mut out);
            samples = samples.wrapping_add(1);
        }
    }
}

/// A made-up sensor: a slow sawtooth between 3000 and 3315 mV.
fn fake_millivolts(sample: u32) -> u16 {
    3000 + (sample % 64) as u16 * 5
}

/// The baseline without the `server` feature: every frame goes back as it came.
#[cfg(not(feature = "server"))]
mod echo {
    /// Echoes frames.
    pub struct Device;

    impl Device {
        /// `frame` itself.
        pub fn answer<'o>(&mut self, frame: &'o [u8], _: &mut [u8]) -> Option<&'o [u8]> {
            Some(frame)
        }

        /// Nothing to count.
        pub fn link_error(&mut self) {}
    }
}

/// A panic is a bug, never input (the core does not panic on what arrives): stop here, where
/// a debugger finds it.
#[panic_handler]
fn halt(_: &PanicInfo) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
