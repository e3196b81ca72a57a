//! [`PendingCall`]: a shared call awaited instead of waited for.
//!
//! The future holds its command until its first poll, which makes the call (numbered,
//! written and queued under the client's mutex, the task's waker left in its slot at once),
//! and then only its number. Each later poll looks at the call under the mutex: ended, it is
//! finished as a blocking call is; not yet, the waker is renewed in the call's slot, where the I/O thread finds it when it ends the call (answered, timed
//! out, disconnected, stopped). No timer is needed: the I/O thread keeps every deadline.
//! Dropped before it ends, the future cancels its call at once: a queued call is never
//! sent, an answer to one in flight is dropped as late, and the slot is free for the next.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use zmqrpc_core::Command;
use zmqrpc_protocol::calls::State;

use super::Handle;
use crate::dialect::Dialect;
use crate::rpc::receipt::Receipt;
use crate::socket::options::later;
use crate::CallError;

/// A call made with [`SharedClient::submit_async`](super::SharedClient::submit_async) and
/// its kin, not yet ended; dropping it cancels the call.
#[must_use = "a call is cancelled when its future is dropped"]
pub(super) struct PendingCall<'a, D: Dialect, C: Command> {
    handle: &'a Handle<D>,
    /// The command, until the first poll makes the call.
    command: Option<&'a C>,
    /// The call's number once made; `None` again once it ended and was collected.
    seq: Option<u32>,
    timeout: Duration,
}

impl<'a, D: Dialect, C: Command> PendingCall<'a, D, C> {
    /// A call of `command` to be made at the first poll, with `timeout` from then.
    pub(super) fn new(handle: &'a Handle<D>, command: &'a C, timeout: Duration) -> Self {
        PendingCall {
            handle,
            command: Some(command),
            seq: None,
            timeout,
        }
    }
}

impl<D: Dialect, C: Command> Future for PendingCall<'_, D, C> {
    type Output = Result<Receipt<C::Response>, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let handle = self.handle;
        if let Some(command) = self.command.take() {
            // The first poll: the call is made, and its waker left, under one lock.
            let deadline = later(Instant::now(), self.timeout);
            let mut inside = handle.shared.lock();
            let (seq, asleep) = match handle.start(&mut inside, command, deadline) {
                Ok(started) => started,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if let Some(waiter) = inside.calls.data_mut(seq) {
                waiter.waker = Some(cx.waker().clone());
            }
            drop(inside);
            self.seq = Some(seq);
            if asleep {
                handle.shared.wake();
            }
            return Poll::Pending;
        }
        let Some(seq) = self.seq else {
            return Poll::Ready(Err(handle.stopped())); // polled again after it ended
        };
        let mut inside = handle.shared.lock();
        match inside.calls.state(seq) {
            State::Ended(end) => {
                let result = handle.finish::<C>(&mut inside, seq, end, self.timeout);
                inside.collect(seq);
                drop(inside);
                self.seq = None;
                Poll::Ready(result)
            }
            State::Free => {
                drop(inside);
                self.seq = None;
                Poll::Ready(Err(handle.stopped()))
            }
            State::Queued | State::InFlight => {
                if let Some(waiter) = inside.calls.data_mut(seq) {
                    match &waiter.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => waiter.waker = Some(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<D: Dialect, C: Command> Drop for PendingCall<'_, D, C> {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            self.handle.shared.lock().cancel(seq);
        }
    }
}
