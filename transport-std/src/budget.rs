//! The process's memory budget: what all the queues of this process together may hold on
//! behalf of others.
//!
//! Each queue that holds messages for someone else (a publisher's pending messages, a
//! buffered proxy's requests, a pipeline's calls in flight) has a byte bound of its own,
//! and all of them draw on one budget per process, [`process_budget`] bytes (default
//! [`DEFAULT_PROCESS_BUDGET`], sized for a 512 MB node running a few of them). A queue that
//! cannot take a message within both refuses it as its own bound would: a request is
//! answered `Busy`, a publication is dropped and counted. What libzmq holds in its own
//! pipes is bounded by its high-water marks, in messages, not bytes: `docs/limits.md` in
//! the repository lists every bound, its default, and what libzmq can and cannot bound.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default process budget: 128 MiB.
pub const DEFAULT_PROCESS_BUDGET: usize = 128 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_PROCESS_BUDGET);
static HELD: AtomicUsize = AtomicUsize::new(0);

/// Sets the bytes all queues of this process may hold together. Queues already over it
/// keep what they hold and take nothing more until they are under it again.
pub fn set_process_budget(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The bytes all queues of this process may hold together.
pub fn process_budget() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// The bytes all queues of this process hold now.
pub fn held_bytes() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// One queue's share of the process budget: what it holds, given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Share {
    bytes: usize,
}

impl Share {
    /// Takes `bytes` more if the process budget has room; whether it did.
    pub(crate) fn try_take(&mut self, bytes: usize) -> bool {
        let taken = HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            let after = held.checked_add(bytes)?;
            (after <= LIMIT.load(Ordering::Relaxed)).then_some(after)
        });
        if taken.is_ok() {
            self.bytes += bytes;
        }
        taken.is_ok()
    }

    /// Takes `bytes` more whatever the budget says (messages acknowledged before a restart
    /// are held, not refused).
    pub(crate) fn take(&mut self, bytes: usize) {
        HELD.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
    }

    /// Gives `bytes` back.
    pub(crate) fn give(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        HELD.fetch_sub(bytes, Ordering::Relaxed);
        self.bytes -= bytes;
    }

    /// The bytes this share holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        HELD.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_draw_on_one_budget_and_give_back_when_dropped() {
        // Changes the process's budget: the suite runs each test in a process of its own.
        let before = held_bytes();
        set_process_budget(before + 1000);
        let mut a = Share::default();
        let mut b = Share::default();
        assert!(a.try_take(600));
        assert!(!b.try_take(500));
        assert!(b.try_take(400));
        assert_eq!(held_bytes(), before + 1000);
        a.give(600);
        assert!(b.try_take(500));
        assert_eq!(b.bytes(), 900);
        drop(b);
        assert_eq!(held_bytes(), before);
        a.take(5000);
        assert_eq!(held_bytes(), before + 5000);
        drop(a);
        set_process_budget(DEFAULT_PROCESS_BUDGET);
    }
}
