//! [`Receiver`]: a REP socket and any number of SUB sockets feeding one [`MessageHandler`].
//!
//! The layer under [`RpcServer`](crate::RpcServer) and the proxies, usable alone with raw
//! byte messages. One thread owns every socket: it polls them together with a stop signal,
//! answers heartbeats itself, recreates a SUB socket that stayed silent too long, and hands
//! every other single-part message to the handler. A REP request always gets exactly one
//! reply, so a REP socket can never be left waiting.
//!
//! A handler may answer a call later ([`Answering::Later`]): on a REP input the receiver then
//! reads no other call until that answer comes; with
//! [`calls_at_once`](ReceiverBuilder::calls_at_once) the input is a ROUTER instead, which
//! holds up to that many callers unanswered while it takes more, and refuses the next at
//! once ([`Rejection::Busy`]).

mod builder;
mod calls;
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
use calls::{CallsSide, Taken};
use rep::RepSide;

pub use builder::{ReceiverBuilder, MAX_CALLS_AT_ONCE};
pub use handler::{Answering, HeldCall, Incoming, MessageHandler, Origin, Rejection};

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
    /// The REP socket's call is answered later: no other is read meanwhile.
    rep_held: bool,
    /// The ROUTER input, instead of the REP one ([`ReceiverBuilder::calls_at_once`]).
    calls: Option<CallsSide>,
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
        match (&self.rep, &self.calls) {
            (Some(rep), _) => &rep.endpoints,
            (None, Some(calls)) => &calls.endpoints,
            (None, None) => &[],
        }
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
            self.stop.turned();
            // The flag, not the socket: a stop sends one wake-up byte and the loop ends, so
            // the byte never needs reading (and an empty read would cost a system call).
            if self.stop.requested() {
                self.deliver_answers(&mut handler);
                return Ok(());
            }
            self.restore_rep();
            let timeout = self.poll_timeout_ms(handler.deadline());
            let watch = handler.watch();
            // A receiver with only a REP socket (the usual server) blocks in the socket
            // itself: one system call, where polling it with the stop socket costs several.
            let (ready, received) = if self.subs.is_empty()
                && watch.is_none()
                && self.rep.is_some()
                && !self.rep_held
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
                self.deliver_answers(&mut handler);
                return Ok(());
            }
            handler.on_wake();
            self.deliver_answers(&mut handler);
            // Only sockets the poll found readable: an empty non-blocking read still costs
            // libzmq a system call.
            if ready.rep && self.rep.is_some() {
                self.serve_rep(&mut handler, &mut message, &mut reply, received)?;
            } else if ready.rep {
                self.serve_calls(&mut handler, &mut message, &mut reply)?;
            }
            for index in 0..self.subs.len() {
                if ready.subs.messages(index) {
                    self.serve_sub(index, &mut handler, &mut message, &mut reply)?;
                }
            }
            self.deliver_answers(&mut handler);
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
        // The call input, read only while it can take a call: a REP socket whose call is
        // not held, a ROUTER always (past its bound it refuses).
        let input = match (&self.rep, &self.calls) {
            (Some(rep), _) => Some((&rep.socket, !self.rep_held)),
            (None, Some(calls)) => Some((&calls.socket, true)),
            (None, None) => None,
        };
        let first_sub = first_own + usize::from(input.is_some());
        let count = first_sub + 2 * self.subs.len();
        let items = std::iter::once(self.stop.socket.as_poll_item(zmq::POLLIN))
            .chain(watch)
            .chain(input.map(|(socket, open)| {
                let events = match open {
                    true => zmq::POLLIN,
                    false => zmq::PollEvents::empty(),
                };
                socket.as_poll_item(events)
            }))
            .chain(self.subs.iter().flat_map(|sub| sub.poll_items(zmq::POLLIN)));
        let has_rep = input.is_some();
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
    /// to bind a lost REP socket), and at most [`IDLE_TURN`](crate::IDLE_TURN).
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
                let message = incoming(message, Origin::Rep, user);
                if handler.call(message, REP_CALL, reply) == Answering::Later {
                    self.rep_held = true;
                    return Ok(());
                }
            }
            if !self.reply_rep(reply) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends `reply` on the REP socket; whether the socket is still there (a reply that
    /// cannot go makes it anew, and one that cannot be bound again is retried later).
    fn reply_rep(&mut self, reply: &[u8]) -> bool {
        let Some(rep) = &self.rep else { return false };
        match rep.socket.send(reply, zmq::DONTWAIT) {
            Ok(()) => {
                bump(&self.stats.replied);
                true
            }
            // The requester is gone or stuck: the reply cannot go anywhere, and the REP
            // socket would wait for it forever. Start afresh.
            Err(_) => {
                let endpoints = rep.endpoints.clone();
                self.rep = None;
                match RepSide::rebind(&self.ctx, &self.options, self.verifier.as_ref(), &endpoints)
                {
                    Ok(rep) => {
                        self.rep = Some(rep);
                        bump(&self.stats.rep_recreated);
                        true
                    }
                    Err(e) => {
                        log::error!("REP socket lost ({e}); retrying every 500 ms");
                        self.lost_rep = Some(endpoints);
                        false
                    }
                }
            }
        }
    }

    /// Takes up to [`BATCH`] calls from the ROUTER input: answered at once, held for a
    /// later answer, or refused past the bound.
    fn serve_calls<H: MessageHandler>(
        &mut self,
        handler: &mut H,
        message: &mut zmq::Message,
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        for _ in 0..BATCH {
            if self.stop.requested() {
                return Ok(());
            }
            let Some(calls) = &mut self.calls else {
                return Ok(());
            };
            reply.clear();
            match calls.read(message)? {
                Taken::Nothing => return Ok(()),
                Taken::Undelimited => {
                    bump(&self.stats.rejected);
                    continue;
                }
                Taken::Multipart => {
                    bump(&self.stats.rejected);
                    handler.reject(Rejection::Multipart, Origin::Rep, reply);
                }
                Taken::Full => {
                    bump(&self.stats.rejected);
                    let held = calls.held();
                    handler.reject(Rejection::Busy { held }, Origin::Rep, reply);
                }
                Taken::Call(caller) => {
                    if let Some(answer) = (self.heartbeats)(message) {
                        bump(&self.stats.heartbeats);
                        reply.extend_from_slice(answer);
                    } else {
                        bump(&self.stats.received);
                        let user = self.verifier.is_some().then_some(&mut self.user);
                        let message = incoming(message, Origin::Rep, user);
                        if handler.call(message, caller, reply) == Answering::Later {
                            calls.hold(caller);
                            continue;
                        }
                    }
                }
            }
            match calls.answer_now(reply) {
                Ok(()) => bump(&self.stats.replied),
                // The caller is gone or not reading: nowhere to put the answer.
                Err(e) => log::debug!("receiver: answer dropped: {e}"),
            }
        }
        Ok(())
    }

    /// Sends the answers the handler has ready for calls it held (asked once more at a
    /// stop, so that a handler answers what it still holds rather than leave it waiting).
    fn deliver_answers<H: MessageHandler>(&mut self, handler: &mut H) {
        handler.answers(&mut |caller, bytes| {
            if caller == REP_CALL {
                if std::mem::take(&mut self.rep_held) {
                    self.reply_rep(bytes);
                }
                return;
            }
            let Some(calls) = &mut self.calls else { return };
            match calls.answer(caller, bytes) {
                Ok(true) => bump(&self.stats.replied),
                Ok(false) => log::debug!("receiver: an answer for no call held, dropped"),
                Err(e) => log::debug!("receiver: answer dropped: {e}"),
            }
        });
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

/// The caller of a call on the REP socket (the one call it can hold).
const REP_CALL: HeldCall = HeldCall {
    slot: u32::MAX,
    generation: 0,
};

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
