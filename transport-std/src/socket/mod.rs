//! What every socket and every loop shares: [`options`], how a loop stops ([`shutdown`]),
//! socket monitors, counters, and the small helpers below, kept here once.

pub(crate) mod context;
pub(crate) mod monitor;
pub mod options;
#[allow(unsafe_code)]
pub(crate) mod raw;
pub mod shutdown;
pub(crate) mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::TransportError;

static NEXT_INPROC: AtomicU64 = AtomicU64::new(0);

/// A fresh `inproc://` endpoint, unique in this process, named for what it carries.
pub(crate) fn inproc_endpoint(what: &str) -> String {
    let n = NEXT_INPROC.fetch_add(1, Ordering::Relaxed);
    format!("inproc://zmqrpc-{what}-{}-{n}", std::process::id())
}

/// A PAIR socket of `ctx` with linger 0 (an in-process pipe closes without waiting),
/// errors naming `what` it is for.
pub(crate) fn pair(ctx: &zmq::Context, what: &str) -> Result<zmq::Socket, TransportError> {
    let socket = ctx
        .socket(zmq::PAIR)
        .map_err(|e| TransportError::new("socket", what, e))?;
    socket
        .set_linger(0)
        .map_err(|e| TransportError::new("set_linger", what, e))?;
    Ok(socket)
}

/// Receives and discards what is left of the multipart message whose part `message` holds.
pub(crate) fn drain_parts(socket: &zmq::Socket, message: &mut zmq::Message) -> zmq::Result<()> {
    while message.get_more() {
        socket.recv(message, zmq::DONTWAIT)?;
    }
    Ok(())
}

/// `left` as the milliseconds a poll or receive waits: rounded up, so a sub-millisecond
/// remainder still waits instead of spinning, and saturating.
pub(crate) fn wait_ms(left: Duration) -> i32 {
    options::millis(left.saturating_add(Duration::from_nanos(999_999)))
}

/// A node loop's poll timeout: until the soonest of `deadlines` ([`wait_ms`]), and at most
/// [`IDLE_TURN`](shutdown::IDLE_TURN), so the loop turns that often even when idle (its
/// [`Liveness`](shutdown::Liveness) tells a loop that waits from one that is stuck).
pub(crate) fn poll_timeout(now: Instant, deadlines: impl Iterator<Item = Instant>) -> i64 {
    let idle = i64::from(wait_ms(shutdown::IDLE_TURN));
    deadlines.min().map_or(idle, |deadline| {
        i64::from(wait_ms(deadline.saturating_duration_since(now))).min(idle)
    })
}

/// A socket's receive timeout, set only when it changes: a waiting loop asks for a slice
/// per receive, and a setsockopt per message would cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecvTimeout(i32);

impl Default for RecvTimeout {
    fn default() -> Self {
        // libzmq's own default: no timeout.
        RecvTimeout(-1)
    }
}

impl RecvTimeout {
    /// Makes `socket`'s receive timeout `ms` (-1: none).
    pub(crate) fn set(&mut self, socket: &zmq::Socket, ms: i32) -> zmq::Result<()> {
        if self.0 != ms {
            socket.set_rcvtimeo(ms)?;
            self.0 = ms;
        }
        Ok(())
    }
}

/// Polls `count` items for at most `timeout_ms` (-1: no limit) and hands the result to
/// `read`; `None` if a signal interrupted the poll. Up to [`INLINE_POLL`] items live on the
/// stack, so the per-message path allocates nothing (the unused slots repeat `filler`, and
/// are not polled); more go in a `Vec`.
pub(crate) fn poll<'s, R>(
    filler: &'s zmq::Socket,
    mut items: impl Iterator<Item = zmq::PollItem<'s>>,
    count: usize,
    timeout_ms: i64,
    read: impl FnOnce(&[zmq::PollItem<'s>]) -> R,
) -> zmq::Result<Option<R>> {
    let polled = if count <= INLINE_POLL {
        let mut inline: [zmq::PollItem<'s>; INLINE_POLL] = std::array::from_fn(|_| {
            items
                .next()
                .unwrap_or_else(|| filler.as_poll_item(zmq::PollEvents::empty()))
        });
        zmq::poll(&mut inline[..count], timeout_ms).map(|_| read(&inline[..count]))
    } else {
        let mut all: Vec<_> = items.collect();
        zmq::poll(&mut all, timeout_ms).map(|_| read(&all))
    };
    match polled {
        Ok(ready) => Ok(Some(ready)),
        Err(zmq::Error::EINTR) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sockets a loop polls from a stack array: the stop signal, a handler's or backend's
/// socket, the REP or ROUTER socket and six SUB sockets with their monitors.
pub(crate) const INLINE_POLL: usize = 15;
