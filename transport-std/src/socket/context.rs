//! The libzmq contexts clients share, so that a process with many clients does not run a
//! libzmq I/O thread (and a reaper thread) for each.
//!
//! A client, pipeline, shared client or sender built without a context of its own takes a
//! [`Seat`] in one of the process's shared contexts, counted in the sockets it may open (a
//! socket and the two ends of its monitor per endpoint). A context seats up to
//! [`SOCKETS_PER_CONTEXT`] sockets: libzmq's per-context limit (`ZMQ_MAX_SOCKETS`, 1,023,
//! which the `zmq` crate cannot change) less room for sockets that are closing (libzmq
//! frees a socket's slot only once its reaper is done with it) or being made anew. When
//! every shared context is full another is made, so a process with `n` such clients runs
//! `2 × ⌈3n / 768⌉` libzmq threads where it ran `2n`. A context whose last seat is given
//! up is terminated, as a client's own context was: what its sockets still had to send is
//! sent first (within their linger).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The sockets one shared context seats: libzmq allows 1,023, the rest is kept for sockets
/// closing or made anew.
pub(crate) const SOCKETS_PER_CONTEXT: usize = 768;

/// The sockets a client opens for each endpoint it connects to: the socket and the two
/// ends of its monitor.
pub(crate) const SOCKETS_PER_ENDPOINT: usize = 3;

/// One shared context and the sockets its seats hold.
struct Shared {
    ctx: zmq::Context,
    seated: AtomicUsize,
}

/// Shared contexts and the sockets seated in each; a dead entry is swept when the next
/// seat is taken.
struct Contexts(Mutex<Vec<Weak<Shared>>>);

/// The process's shared contexts.
static CONTEXTS: Contexts = Contexts::new();

impl Contexts {
    const fn new() -> Contexts {
        Contexts(Mutex::new(Vec::new()))
    }

    /// A seat for `sockets` sockets in the first context with room for them, or in a new
    /// one. One that would not fit even an empty context gets a new one to itself.
    fn seat(&self, sockets: usize) -> Seat {
        let mut contexts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        contexts.retain(|shared| shared.strong_count() > 0);
        let roomy = contexts.iter().filter_map(Weak::upgrade).find(|shared| {
            shared
                .seated
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seated| {
                    (seated + sockets <= SOCKETS_PER_CONTEXT).then_some(seated + sockets)
                })
                .is_ok()
        });
        let shared = roomy.unwrap_or_else(|| {
            let shared = Arc::new(Shared {
                ctx: zmq::Context::new(),
                seated: AtomicUsize::new(sockets),
            });
            contexts.push(Arc::downgrade(&shared));
            shared
        });
        Seat { shared, sockets }
    }

    /// How many contexts are alive.
    #[cfg(test)]
    fn alive(&self) -> usize {
        let contexts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        contexts
            .iter()
            .filter(|shared| shared.strong_count() > 0)
            .count()
    }
}

/// A place for up to some number of sockets in one of the process's shared contexts, held
/// as long as they may exist. The context lives while a seat in it (or a socket of it) does.
pub(crate) struct Seat {
    shared: Arc<Shared>,
    sockets: usize,
}

impl Seat {
    /// A seat for `sockets` sockets in the first shared context with room for them, or in a
    /// new one. One that would not fit even an empty context gets a new one to itself.
    pub(crate) fn take(sockets: usize) -> Seat {
        CONTEXTS.seat(sockets)
    }

    /// The context to make the sockets in.
    pub(crate) fn context(&self) -> &zmq::Context {
        &self.shared.ctx
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.shared.seated.fetch_sub(self.sockets, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("sockets", &self.sockets)
            .finish()
    }
}

/// The context a builder was given, or else one shared by the process, with the seat that
/// keeps `sockets` sockets' room in it.
pub(crate) fn given_or_shared(
    given: Option<zmq::Context>,
    sockets: usize,
) -> (zmq::Context, Option<Seat>) {
    match given {
        Some(ctx) => (ctx, None),
        None => {
            let seat = Seat::take(sockets);
            (seat.context().clone(), Some(seat))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seats_fill_a_context_before_another_is_made_and_free_it_when_given_up() {
        let contexts = Contexts::new();
        let per_context = SOCKETS_PER_CONTEXT / SOCKETS_PER_ENDPOINT;
        let mut first: Vec<Seat> = (0..per_context)
            .map(|_| contexts.seat(SOCKETS_PER_ENDPOINT))
            .collect();
        assert!(first
            .windows(2)
            .all(|pair| Arc::ptr_eq(&pair[0].shared, &pair[1].shared)));
        assert_eq!(contexts.alive(), 1);
        let next = contexts.seat(SOCKETS_PER_ENDPOINT);
        assert!(!Arc::ptr_eq(&next.shared, &first[0].shared));
        assert_eq!(contexts.alive(), 2);
        // A seat given up makes room again.
        let kept = first.remove(0);
        drop(first);
        let again = contexts.seat(SOCKETS_PER_ENDPOINT);
        assert!(Arc::ptr_eq(&again.shared, &kept.shared));
        let freed = Arc::downgrade(&kept.shared);
        drop((kept, again));
        // The last seat gone, its context is terminated.
        assert_eq!(freed.strong_count(), 0);
        // One too large for any context gets one of its own.
        let huge = contexts.seat(SOCKETS_PER_CONTEXT + 1);
        assert!(!Arc::ptr_eq(&huge.shared, &next.shared));
    }
}
