//! Counters: one definition gives a live, shareable set of atomics and its plain snapshot;
//! and [`FailureLog`], the rate-limited warning that goes with a counted failure.

use std::fmt;
use std::time::{Duration, Instant};

/// Defines `$live` (atomic counters, shared between a loop and its handle) and `$snapshot`
/// (the same fields as plain numbers, read at one moment).
macro_rules! counters {
    (
        $(#[$live_meta:meta])* $live:ident;
        $(#[$snap_meta:meta])* $snapshot:ident {
            $( $(#[$field_meta:meta])* $field:ident, )*
        }
    ) => {
        $(#[$live_meta])*
        #[derive(Debug, Default)]
        pub struct $live {
            $( $(#[$field_meta])* pub(crate) $field: std::sync::atomic::AtomicU64, )*
        }

        impl $live {
            /// The counters' values now.
            pub fn snapshot(&self) -> $snapshot {
                $snapshot {
                    $( $field: self.$field.load(std::sync::atomic::Ordering::Relaxed), )*
                }
            }
        }

        $(#[$snap_meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $snapshot {
            $( $(#[$field_meta])* pub $field: u64, )*
        }

        impl $snapshot {
            /// Each counter's name (as its field is named) and value, in the order they are
            /// declared: for status lines and metrics.
            pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$( (stringify!($field), self.$field), )*].into_iter()
            }
        }
    };
}

pub(crate) use counters;

/// Adds one to a counter.
pub(crate) fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(counter: &std::sync::atomic::AtomicU64, value: u64) {
    counter.store(value, std::sync::atomic::Ordering::Relaxed);
}

/// Says in the log when a loop fails or drops messages, as it happens: the first failure
/// at once, then at most one line per interval (a second unless [`every`](Self::every)
/// says otherwise), saying how many more there were in between (a flood of garbage must
/// not flood the log, nor hide behind one line at exit).
#[derive(Debug)]
pub(crate) struct FailureLog {
    every: Duration,
    last: Option<Instant>,
    unsaid: u64,
}

impl Default for FailureLog {
    fn default() -> Self {
        FailureLog::every(Duration::from_secs(1))
    }
}

impl FailureLog {
    /// A log of at most one line per `interval`.
    pub(crate) fn every(interval: Duration) -> FailureLog {
        FailureLog {
            every: interval,
            last: None,
            unsaid: 0,
        }
    }

    /// Logs at warn that `name` failed: `what`.
    pub(crate) fn warn(&mut self, name: &dyn fmt::Display, what: &dyn fmt::Display) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.unsaid += 1;
            return;
        }
        match std::mem::take(&mut self.unsaid) {
            0 => log::warn!("{name}: {what}"),
            more => log::warn!("{name}: {what} (and {more} more failures since the last line)"),
        }
        self.last = Some(now);
    }
}
