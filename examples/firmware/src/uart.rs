//! UART0 of the mps2-an385: an Arm CMSDK APB UART, polled.
//!
//! [`uart0`] enables it and hands out its two halves: [`Tx`], an [`embedded_io::Write`] that
//! blocks while the transmit buffer is full, and [`Rx`], whose
//! [`try_read_byte`](Rx::try_read_byte) never blocks. The halves touch disjoint state (the
//! transmit and receive sides of `DATA`, and `STATE` read-only), so each can be lent out on
//! its own.
//!
//! Under qemu the receiver holds back the host's bytes until the last one is read. Real
//! hardware does not wait: a byte arriving while the firmware is busy sending an answer can
//! overrun the one-byte receive buffer, and the frame is lost (counted as a link error).
//! A firmware for hardware would receive from an interrupt into a ring buffer, or by DMA.

use core::convert::Infallible;
use core::ptr;

/// UART0's register block.
const BASE: usize = 0x4000_4000;
/// Read: the received byte (clears `STATE_RX_FULL`). Write: the byte to send.
const DATA: usize = 0x00;
/// Buffer status.
const STATE: usize = 0x04;
/// Enables.
const CTRL: usize = 0x08;
/// Clock cycles per bit: at least 16.
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;

/// Reads UART0's register at `offset`.
fn read(offset: usize) -> u32 {
    // SAFETY: `BASE + offset` is one of UART0's 32-bit registers on this board: aligned
    // device memory, always mapped, whose reads have no side effect but the one `Rx` wants.
    unsafe { ptr::read_volatile((BASE + offset) as *const u32) }
}

/// Writes `value` to UART0's register at `offset`.
fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; only `uart0` and `Tx` write, each to registers the other
    // leaves alone.
    unsafe { ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// Enables UART0 at `baud` on a `clock_hz` peripheral clock, transmit and receive, and
/// returns its halves.
///
/// # Safety
/// Call it once: the halves own UART0, and nothing else may touch its registers.
pub unsafe fn uart0(clock_hz: u32, baud: u32) -> (Tx, Rx) {
    write(BAUDDIV, clock_hz / baud);
    write(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE);
    (Tx(()), Rx(()))
}

/// UART0's transmitter.
pub struct Tx(());

impl embedded_io::ErrorType for Tx {
    type Error = Infallible;
}

impl embedded_io::Write for Tx {
    /// Sends every byte of `buf`, waiting for room before each.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            while read(STATE) & STATE_TX_FULL != 0 {}
            write(DATA, u32::from(byte));
        }
        Ok(buf.len())
    }

    /// Waits until the transmit buffer has passed its byte on.
    fn flush(&mut self) -> Result<(), Infallible> {
        while read(STATE) & STATE_TX_FULL != 0 {}
        Ok(())
    }
}

/// UART0's receiver.
pub struct Rx(());

impl Rx {
    /// The byte received, if one is waiting. Never blocks.
    pub fn try_read_byte(&mut self) -> Option<u8> {
        // DATA holds the byte in its low 8 bits.
        (read(STATE) & STATE_RX_FULL != 0).then(|| read(DATA) as u8)
    }
}
