//! One way to stop a running loop: a [`Shutdown`] to ask, a [`Running`] handle to wait; and
//! one way to tell that it still runs: its [`Liveness`].
//!
//! A loop polls its sockets together with a private inproc PAIR socket. [`Shutdown::request`]
//! sets a flag and sends one byte on the other end, so the loop wakes at once, whatever it
//! was waiting for, closes its sockets and returns. No loop ever waits on context
//! termination (which never comes while sockets live).
//!
//! Every node's loop (a server's, a worker pool's, a proxy's, a bridge's) counts its turns
//! and waits at most [`IDLE_TURN`] before it turns again, busy or idle. A loop stuck in a
//! service, a handler or a system call stops counting: [`Liveness::turns`] standing still
//! for longer than that is what a watchdog (systemd's, say) needs to know.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::panic_message;
use crate::socket::{inproc_endpoint, pair};
use crate::TransportError;

/// Asks a loop to stop. Cheap to clone; usable from any thread, including a service of the
/// loop it stops.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Default)]
struct ShutdownInner {
    requested: AtomicBool,
    /// How many times the loop has turned.
    turns: AtomicU64,
    /// Set once the loop's sockets exist; before that the flag alone suffices.
    waker: OnceLock<Mutex<zmq::Socket>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish()
    }
}

impl Shutdown {
    /// A handle not yet tied to a loop (a builder hands it out before the sockets exist).
    pub(crate) fn new() -> Shutdown {
        Shutdown {
            inner: Arc::default(),
        }
    }

    /// Asks the loop to stop; returns at once. Asking twice is harmless.
    pub fn request(&self) {
        if !self.inner.requested.swap(true, Ordering::SeqCst) {
            if let Some(Ok(waker)) = self.inner.waker.get().map(Mutex::lock) {
                // The flag is authoritative; the byte only wakes the poll. A full pipe means
                // a wake-up is already pending.
                let _ = waker.send(&b"!"[..], zmq::DONTWAIT);
            }
        }
    }

    /// Whether a stop has been asked for.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// What tells whether the loop this handle stops still turns.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            inner: self.inner.clone(),
        }
    }
}

/// The longest a node's loop waits before it turns again, idle or not: a [`Liveness`]
/// whose [`turns`](Liveness::turns) stand still for well over this is stuck.
pub const IDLE_TURN: Duration = Duration::from_millis(250);

/// Whether a loop still turns: its count of turns, read from any thread. Cheap to clone;
/// from [`Shutdown::liveness`].
///
/// A loop turns every time it wakes (for a message, a deadline, a stop, or after
/// [`IDLE_TURN`] of nothing), so the count moves at least every [`IDLE_TURN`] while the loop
/// works and stops while it is stuck: in a service that never returns, a handler that
/// blocks, a deadlock. A watchdog compares two readings [`IDLE_TURN`] or more apart.
///
/// ```no_run
/// # use zmqrpc_transport_std::{RpcServer, IDLE_TURN};
/// let server = RpcServer::builder().rep("tcp://127.0.0.1:30000").bind()?;
/// let liveness = server.shutdown().liveness();
/// let running = server.spawn()?;
/// let before = liveness.turns();
/// std::thread::sleep(4 * IDLE_TURN);
/// assert!(liveness.turns() > before, "the server's loop is stuck");
/// # drop(running);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<ShutdownInner>,
}

impl Liveness {
    /// How many times the loop has turned so far.
    pub fn turns(&self) -> u64 {
        self.inner.turns.load(Ordering::Relaxed)
    }

    /// Whether the loop was asked to stop (a loop that stops stops turning too).
    pub fn is_stopping(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("turns", &self.turns())
            .finish()
    }
}

/// The loop's end of a [`Shutdown`]: a socket to include in its poll set.
pub(crate) struct StopListener {
    pub(crate) socket: zmq::Socket,
    shutdown: Shutdown,
}

impl StopListener {
    /// A listener in `ctx` that `shutdown` wakes.
    pub(crate) fn new(
        ctx: &zmq::Context,
        shutdown: Shutdown,
    ) -> Result<StopListener, TransportError> {
        let endpoint = inproc_endpoint("stop");
        let err = |op| move |e| TransportError::new(op, "stop signal", e);
        let socket = pair(ctx, "stop signal")?;
        socket.bind(&endpoint).map_err(err("bind"))?;
        let waker = pair(ctx, "stop signal")?;
        waker.connect(&endpoint).map_err(err("connect"))?;
        if shutdown.inner.waker.set(Mutex::new(waker)).is_err() {
            // One handle, one loop: a second listener could never be woken. Every builder
            // makes its own handle and binding consumes the builder, so this cannot happen.
            return Err(TransportError::Internal {
                what: "a stop handle was attached to a second loop",
            });
        }
        Ok(StopListener { socket, shutdown })
    }

    /// A handle that stops this listener's loop.
    pub(crate) fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Counts one turn of the loop (see [`Liveness`]): once a pass, where the loop wakes.
    pub(crate) fn turned(&self) {
        self.shutdown.inner.turns.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a stop was asked for, without touching the socket (for checks between
    /// messages).
    pub(crate) fn requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// Whether a stop was asked for; drains pending wake-up bytes.
    pub(crate) fn stop_requested(&self) -> bool {
        while self.socket.recv_bytes(zmq::DONTWAIT).is_ok() {}
        self.shutdown.is_requested()
    }
}

/// A loop running on its own thread, with its statistics.
///
/// Two words, two acts: [`stop`](Running::stop) asks the loop to end and returns at once;
/// [`wait`](Running::wait) waits for it to end (as `std::thread::JoinHandle::join` does,
/// stopping nothing) and returns how it ended. [`stop_and_wait`](Running::stop_and_wait)
/// does both, and so does dropping the handle.
pub struct Running<S> {
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), TransportError>>>,
    stats: Arc<S>,
}

impl<S> Running<S> {
    pub(crate) fn spawn(
        name: &str,
        shutdown: Shutdown,
        stats: Arc<S>,
        body: impl FnOnce() -> Result<(), TransportError> + Send + 'static,
    ) -> std::io::Result<Running<S>> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(body)?;
        Ok(Running {
            shutdown,
            thread: Some(thread),
            stats,
        })
    }

    /// Asks the loop to stop; returns at once.
    pub fn stop(&self) {
        self.shutdown.request();
    }

    /// A handle that stops the loop, for another thread.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The loop's live statistics.
    pub fn stats(&self) -> &S {
        &self.stats
    }

    /// Whether the loop's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the loop to end, without asking it to: until something stops it (a
    /// [`Shutdown`] handle, a service, a signal handler) or it fails.
    ///
    /// Returns the loop's error if it ended on one; a panic in the loop (in a
    /// [`Receiver`](crate::Receiver)'s handler, say) is reported as
    /// [`TransportError::Panicked`] with the panic's message.
    pub fn wait(mut self) -> Result<(), TransportError> {
        self.wait_for_thread()
    }

    /// Asks the loop to stop, then waits for it to end: [`stop`](Self::stop), then
    /// [`wait`](Self::wait).
    pub fn stop_and_wait(mut self) -> Result<(), TransportError> {
        self.stop();
        self.wait_for_thread()
    }

    /// The name of [`stop_and_wait`](Self::stop_and_wait) before 0.1, which stopped the
    /// loop although `std`'s `join` does not.
    #[deprecated(
        since = "0.1.0",
        note = "it stops the loop too: call `stop_and_wait()`, or `wait()` to wait without stopping"
    )]
    pub fn join(self) -> Result<(), TransportError> {
        self.stop_and_wait()
    }

    fn wait_for_thread(&mut self) -> Result<(), TransportError> {
        match self.thread.take() {
            Some(thread) => {
                let name = thread.thread().name().unwrap_or("unnamed").to_owned();
                thread.join().unwrap_or_else(|panic| {
                    Err(TransportError::Panicked {
                        thread: name,
                        message: panic_message(&*panic).to_owned(),
                    })
                })
            }
            None => Ok(()),
        }
    }
}

impl<S> Drop for Running<S> {
    fn drop(&mut self) {
        self.stop();
        let _ = self.wait_for_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not reachable through the public API (every builder makes its own handle and binding
    /// consumes the builder): the guard against a handle that could wake only one loop.
    #[test]
    fn one_handle_stops_one_loop() {
        let ctx = zmq::Context::new();
        let shutdown = Shutdown::new();
        let first = StopListener::new(&ctx, shutdown.clone());
        assert!(first.is_ok());
        assert!(matches!(
            StopListener::new(&ctx, shutdown).err(),
            Some(TransportError::Internal { .. })
        ));
    }
}
