//! Counters: one definition gives a live, shareable set of atomics and its plain snapshot.

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
