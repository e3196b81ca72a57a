//! The two libzmq calls zmqrpc needs that the `zmq` crate cannot make, and the crate's only
//! `unsafe` code: setting `ZMQ_XPUB_NODROP`, and stopping a socket monitor.
//!
//! Without `ZMQ_XPUB_NODROP`, an XPUB socket whose subscriber falls a high-water mark behind drops messages
//! without telling anyone; with it, the send fails with `EAGAIN` and the [`Publisher`]
//! keeps the message in its own bounded queue, where anything that overflows is counted.
//!
//! [`Publisher`]: crate::Publisher

use std::os::raw::{c_int, c_void};
use std::ptr;

/// Makes `socket` (an XPUB) refuse a send with `EAGAIN` instead of dropping the message when
/// a subscriber's pipe is full (`on`), or drop it for the full pipes only and deliver it to
/// the others (`!on`). libzmq reads the option at every send, so it can be switched at will.
pub(crate) fn set_xpub_nodrop(socket: &mut zmq::Socket, on: bool) -> zmq::Result<()> {
    let on: c_int = c_int::from(on);
    let option = zmq_sys::ZMQ_XPUB_NODROP as c_int;
    // SAFETY: `as_mut_ptr` is the live libzmq socket `socket` owns; the exclusive borrow
    // keeps it open (and off other threads) for the call. libzmq reads exactly
    // `size_of::<c_int>()` bytes from `&on`, which lives until the call returns, and keeps
    // no pointer to it.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            option,
            (&on as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: reads libzmq's thread-local errno; no arguments, no memory access of ours.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}

/// Stops `socket`'s monitor (`zmq_socket_monitor` with no endpoint): libzmq closes its end of
/// the monitor pipe at once, and sends no more events.
pub(crate) fn stop_monitor(socket: &mut zmq::Socket) -> zmq::Result<()> {
    // SAFETY: `as_mut_ptr` is the live libzmq socket `socket` owns, kept open by the
    // exclusive borrow for the call; a null endpoint is libzmq's documented way to stop
    // monitoring, and it reads no other memory of ours.
    let rc = unsafe { zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), ptr::null(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: reads libzmq's thread-local errno; no arguments, no memory access of ours.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}
