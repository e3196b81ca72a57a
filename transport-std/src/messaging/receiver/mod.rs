//! [`Receiver`]: a REP socket and any number of SUB sockets feeding one [`MessageHandler`].
//!
//! The layer under [`RpcServer`](crate::RpcServer) and the proxies, usable alone with raw
//! byte messages. One thread owns every socket: it polls them together with a stop signal,
//! answers heartbeats itself, recreates a SUB socket that stayed silent too long, and hands
//! every other single-part message to the handler. A REP request always gets exactly one
//! reply, so a REP socket can never be left waiting.

mod builder;
mod handler;
mod rep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{AuthStats, Verifier};
use crate::messaging::subscriber::{revive_all, Received, SubSide, SubsReady};
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::{Running, Shutdown, StopListener};
use crate::socket::stats::{bump, counters};
use crate::socket::{self, drain_parts};
use crate::TransportError;
use rep::RepSide;

pub use builder::ReceiverBuilder;
pub use handler::{Incoming, MessageHandler, Origin, Rejection};

counters! {
    /// Live counters of a [`Receiver`]; [`snapshot`](ReceiverStats::snapshot) reads them.
    ReceiverStats;
    /// A [`ReceiverStats`] reading.
    ReceiverCounts {
        /// Messages handed to the handler.
        received,
        /// Replies sent on the REP socket.
        replied,
        /// Heartbeats received (answered on REP, absorbed on SUB).
        heartbeats,
        /// Messages refused before the handler (multipart).
        rejected,
        /// SUB sockets made anew after their connection dropped or their silence timeout.
        sub_recreated,
        /// Security handshakes a publisher refused a SUB socket (wrong or missing
        /// credentials, or credentials it does not expect): nothing arrives from that
        /// publisher meanwhile. Logged too, the first at once, then at most once a minute.
        sub_refused,
        /// REP sockets recreated after a failed reply.
        rep_recreated,
    }
}

/// Most messages taken from one socket per wake-up, so no socket starves the others.
pub(crate) const BATCH: usize = 64;

/// Recognises a heartbeat and says what a REP socket answers it with: a dialect's
/// [`Dialect::heartbeat_answer`](crate::Dialect::heartbeat_answer).
pub(crate) type Heartbeats = fn(&[u8]) -> Option<&'static [u8]>;

/// A REP socket and SUB sockets, bound and connected, ready to [`run`](Receiver::run) or
/// [`spawn`](Receiver::spawn).
pub struct Receiver {
    heartbeats: Heartbeats,
    ctx: zmq::Context,
    options: SocketOptions,
    rep: Option<RepSide>,
    subs: Vec<SubSide>,
    stop: StopListener,
    stats: Arc<ReceiverStats>,
    /// The current message's `User-Id`, reused from message to message.
    user: String,
    /// The endpoints of a REP socket that could not be rebound yet (retried on every wake).
    lost_rep: Option<Vec<String>>,
    /// How a protected receiver's REP socket verifies its peers; its registration with the
    /// ZAP handler ends when the receiver drops, after its sockets (fields drop in
    /// declaration order).
    verifier: Option<Verifier>,
}

impl Receiver {
    /// Starts building a receiver.
    pub fn builder() -> ReceiverBuilder {
        ReceiverBuilder::default()
    }

    /// The REP socket's endpoints as bound, with wildcard ports resolved.
    pub fn rep_endpoints(&self) -> &[String] {
        self.rep.as_ref().map_or(&[], |rep| &rep.endpoints)
    }

    /// A handle that stops [`run`](Receiver::run) from another thread.
    pub fn shutdown(&self) -> Shutdown {
        self.stop.shutdown()
    }

    /// The receiver's live counters.
    pub fn stats(&self) -> Arc<ReceiverStats> {
        self.stats.clone()
    }

    /// The counters of the peers the REP socket verified, on a protected receiver.
    pub fn auth_stats(&self) -> Option<&AuthStats> {
        self.verifier.as_ref().map(Verifier::stats)
    }

    /// Serves on the calling thread until [`Shutdown::request`].
    pub fn run<H: MessageHandler>(mut self, mut handler: H) -> Result<(), TransportError> {
        let mut message = zmq::Message::new();
        let mut reply = Vec::with_capacity(256);
        loop {
            // The flag, not the socket: a stop sends one wake-up byte and the loop ends, so
            // the byte never needs reading (and an empty read would cost a system call).
            if self.stop.requested() {
                return Ok(());
            }
            self.restore_rep();
            let timeout = self.poll_timeout_ms(handler.deadline());
            let watch = handler.watch();
            // A receiver with only a REP socket (the usual server) blocks in the socket
            // itself: one system call, where polling it with the stop socket costs several.
            let (ready, received) = if self.subs.is_empty() && watch.is_none() && self.rep.is_some()
            {
                let received = match &mut self.rep {
                    Some(rep) => rep.wait(timeout, &mut message)?,
                    None => false,
                };
                (
                    Ready {
                        rep: received,
                        subs: SubsReady::default(),
                    },
                    received,
                )
            } else {
                (self.poll(timeout, watch)?, false)
            };
            if self.stop.requested() {
                return Ok(());
            }
            handler.on_wake();
            // Only sockets the poll found readable: an empty non-blocking read still costs
            // libzmq a system call.
            if ready.rep {
                self.serve_rep(&mut handler, &mut message, &mut reply, received)?;
            }
            for index in 0..self.subs.len() {
                if ready.subs.messages(index) {
                    self.serve_sub(index, &mut handler, &mut message, &mut reply)?;
                }
            }
            self.revive_subs(ready.subs)?;
        }
    }

    /// Serves on a new thread; the returned handle stops and joins it.
    pub fn spawn<H: MessageHandler>(self, handler: H) -> std::io::Result<Running<ReceiverStats>> {
        let shutdown = self.shutdown();
        let stats = self.stats.clone();
        Running::spawn("zmqrpc-receiver", shutdown, stats, move || {
            self.run(handler)
        })
    }

    /// Waits until a socket is readable, a stop is asked for, or `timeout_ms` passes.
    fn poll(
        &self,
        timeout_ms: i64,
        watch: Option<zmq::PollItem<'_>>,
    ) -> Result<Ready, TransportError> {
        let first_own = 1 + usize::from(watch.is_some());
        let first_sub = first_own + usize::from(self.rep.is_some());
        let count = first_sub + 2 * self.subs.len();
        let items = std::iter::once(self.stop.socket.as_poll_item(zmq::POLLIN))
            .chain(watch)
            .chain(
                self.rep
                    .iter()
                    .map(|rep| rep.socket.as_poll_item(zmq::POLLIN)),
            )
            .chain(self.subs.iter().flat_map(|sub| sub.poll_items(zmq::POLLIN)));
        let has_rep = self.rep.is_some();
        socket::poll(&self.stop.socket, items, count, timeout_ms, |items| {
            Ready::of(items, first_own, first_sub, has_rep)
        })
        .map(Option::unwrap_or_default)
        .map_err(|e| TransportError::new("poll", "", e))
    }

    /// Binds a lost REP socket again, if there is one and its endpoints are free.
    fn restore_rep(&mut self) {
        let Some(endpoints) = &self.lost_rep else {
            return;
        };
        if let Ok(rep) = RepSide::bind(&self.ctx, &self.options, self.verifier.as_ref(), endpoints)
        {
            log::info!("REP socket bound again");
            self.rep = Some(rep);
            self.lost_rep = None;
            bump(&self.stats.rep_recreated);
        }
    }

    /// Milliseconds until the next SUB silence deadline or the handler's (or the next try
    /// to bind a lost REP socket), or -1 (forever).
    fn poll_timeout_ms(&self, handler: Option<Instant>) -> i64 {
        let now = Instant::now();
        let retry = self
            .lost_rep
            .as_ref()
            .map(|_| now + Duration::from_millis(500));
        let subs = self.subs.iter().filter_map(SubSide::deadline);
        socket::poll_timeout(now, subs.chain(handler).chain(retry))
    }

    fn serve_rep<H: MessageHandler>(
        &mut self,
        handler: &mut H,
        message: &mut zmq::Message,
        reply: &mut Vec<u8>,
        mut received: bool,
    ) -> Result<(), TransportError> {
        for _ in 0..BATCH {
            // A handler may block (a proxy waits for its downstream): stop between messages.
            if self.stop.requested() {
                return Ok(());
            }
            let Some(rep) = &self.rep else { return Ok(()) };
            if !std::mem::take(&mut received) {
                match rep.socket.recv(message, zmq::DONTWAIT) {
                    Ok(()) => {}
                    Err(zmq::Error::EAGAIN) => return Ok(()),
                    Err(e) => return Err(TransportError::new("recv", rep.name(), e)),
                }
            }
            reply.clear();
            if message.get_more() {
                drain_parts(&rep.socket, message)
                    .map_err(|e| TransportError::new("recv", rep.name(), e))?;
                bump(&self.stats.rejected);
                handler.reject(Rejection::Multipart, Origin::Rep, reply);
            } else if let Some(answer) = (self.heartbeats)(message) {
                bump(&self.stats.heartbeats);
                reply.extend_from_slice(answer);
            } else {
                bump(&self.stats.received);
                let user = self.verifier.is_some().then_some(&mut self.user);
                handler.handle(incoming(message, Origin::Rep, user), reply);
            }
            match rep.socket.send(&reply[..], zmq::DONTWAIT) {
                Ok(()) => bump(&self.stats.replied),
                // The requester is gone or stuck: the reply cannot go anywhere, and the REP
                // socket would wait for it forever. Start afresh.
                Err(_) => {
                    let endpoints = rep.endpoints.clone();
                    self.rep = None;
                    match RepSide::rebind(
                        &self.ctx,
                        &self.options,
                        self.verifier.as_ref(),
                        &endpoints,
                    ) {
                        Ok(rep) => {
                            self.rep = Some(rep);
                            bump(&self.stats.rep_recreated);
                        }
                        Err(e) => {
                            log::error!("REP socket lost ({e}); retrying every 500 ms");
                            self.lost_rep = Some(endpoints);
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn serve_sub<H: MessageHandler>(
        &mut self,
        index: usize,
        handler: &mut H,
        message: &mut zmq::Message,
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        for _ in 0..BATCH {
            if self.stop.requested() {
                return Ok(());
            }
            let origin = Origin::Sub(index);
            reply.clear();
            match self.subs[index].recv(message, self.heartbeats)? {
                Received::Nothing => return Ok(()),
                Received::Heartbeat => bump(&self.stats.heartbeats),
                Received::Multipart => {
                    bump(&self.stats.rejected);
                    handler.reject(Rejection::Multipart, origin, reply);
                }
                Received::Message => {
                    bump(&self.stats.received);
                    // A SUB socket connects: it presented credentials, it verified nobody,
                    // so a publication has no user id.
                    handler.handle(incoming(message, origin, None), reply);
                }
            }
        }
        Ok(())
    }

    /// Makes anew the SUB sockets that lost their connection or stayed silent too long.
    fn revive_subs(&mut self, ready: SubsReady) -> Result<(), TransportError> {
        revive_all(&mut self.subs, &self.ctx, &self.options, ready, &self.stats)
    }
}

/// Which of the receiver's sockets a poll found readable.
#[derive(Default)]
struct Ready {
    rep: bool,
    subs: SubsReady,
}

impl Ready {
    /// Reads a poll's results: `items` holds the stop socket, the handler's, the REP socket
    /// (from `first_own`), then each SUB socket followed by its monitor (from `first_sub`).
    fn of(items: &[zmq::PollItem<'_>], first_own: usize, first_sub: usize, has_rep: bool) -> Ready {
        Ready {
            rep: has_rep && items[first_own].is_readable(),
            subs: SubsReady::of(&items[first_sub..]),
        }
    }
}

/// The handler's view of `message`. On a protected receiver the `User-Id` property (set by
/// the ZAP handler) is copied into `user`, a buffer reused from message to message.
fn incoming<'a>(
    message: &'a mut zmq::Message,
    origin: Origin,
    user: Option<&'a mut String>,
) -> Incoming<'a> {
    let user_id = user.and_then(|user| {
        user.clear();
        user.push_str(message.gets("User-Id")?);
        Some(&**user)
    });
    Incoming {
        bytes: message,
        origin,
        user_id,
    }
}
