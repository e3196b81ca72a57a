//! The process's memory budget: what all the queues of this process together may hold on
//! behalf of others.
//!
//! Each queue that holds messages for someone else (a publisher's pending messages, a
//! buffered proxy's requests, a pipeline's calls in flight) has a byte bound of its own,
//! and all of them draw on one budget per process, [`process_budget`] bytes (default
//! [`DEFAULT_PROCESS_BUDGET`], sized for a 512 MB node running a few of them). A queue that
//! cannot take a message within both refuses it as its own bound would: a request is
//! answered `Busy`, a publication is dropped and counted. What libzmq holds in its own
//! pipes is bounded by its high-water marks, in messages, not bytes, and each connection
//! costs libzmq memory of its own outside the budget (a busy caller 85 KiB of a server's):
//! `docs/limits.md` in the repository lists every bound, its default, what libzmq can and
//! cannot bound, and what each peer costs.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default process budget: 128 MiB.
pub const DEFAULT_PROCESS_BUDGET: usize = 128 << 20;

/// A budget: a limit and what is held against it.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: AtomicUsize,
    held: AtomicUsize,
}

impl Budget {
    const fn new(limit: usize) -> Budget {
        Budget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
        }
    }
}

/// The process's budget, which every queue's [`Share`] draws on.
static PROCESS: Budget = Budget::new(DEFAULT_PROCESS_BUDGET);

/// Sets the bytes all queues of this process may hold together. Queues already over it
/// keep what they hold and take nothing more until they are under it again.
pub fn set_process_budget(bytes: usize) {
    PROCESS.limit.store(bytes, Ordering::Relaxed);
}

/// The bytes all queues of this process may hold together.
pub fn process_budget() -> usize {
    PROCESS.limit.load(Ordering::Relaxed)
}

/// The bytes all queues of this process hold now.
pub fn held_bytes() -> usize {
    PROCESS.held.load(Ordering::Relaxed)
}

/// One queue's share of a budget (the process's, by default): what it holds, given back
/// when dropped.
#[derive(Debug)]
pub(crate) struct Share {
    budget: &'static Budget,
    bytes: usize,
}

impl Default for Share {
    fn default() -> Share {
        Share {
            budget: &PROCESS,
            bytes: 0,
        }
    }
}

impl Share {
    /// Takes `bytes` more if the budget has room; whether it did.
    pub(crate) fn try_take(&mut self, bytes: usize) -> bool {
        let budget = self.budget;
        let taken = budget
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                let after = held.checked_add(bytes)?;
                (after <= budget.limit.load(Ordering::Relaxed)).then_some(after)
            });
        if taken.is_ok() {
            self.bytes += bytes;
        }
        taken.is_ok()
    }

    /// Takes `bytes` more whatever the budget says (messages acknowledged before a restart
    /// are held, not refused).
    pub(crate) fn take(&mut self, bytes: usize) {
        self.budget.held.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
    }

    /// Gives `bytes` back.
    pub(crate) fn give(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
        self.bytes -= bytes;
    }

    /// The bytes this share holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_draw_on_one_budget_and_give_back_when_dropped() {
        // A budget of the test's own: the process's is shared by every test in the binary.
        static BUDGET: Budget = Budget::new(1000);
        let share = || Share {
            budget: &BUDGET,
            bytes: 0,
        };
        let held = || BUDGET.held.load(Ordering::Relaxed);
        let mut a = share();
        let mut b = share();
        assert!(a.try_take(600));
        assert!(!b.try_take(500));
        assert!(b.try_take(400));
        assert_eq!(held(), 1000);
        a.give(600);
        assert!(b.try_take(500));
        assert_eq!(b.bytes(), 900);
        drop(b);
        assert_eq!(held(), 0);
        a.take(5000);
        assert_eq!(held(), 5000);
        drop(a);
        assert_eq!(held(), 0);
    }
}
