//! The standard proxies: [`Proxy`] forwards frames from a REP or SUB input to a REQ or PUB
//! output, as bytes.
//!
//! | kind | input | output | the caller gets |
//! |---|---|---|---|
//! | [`ProxyKind::Sub2Req`] | SUB (connects) | REQ (connects) | — |
//! | [`ProxyKind::Sub2Pub`] | SUB (connects) | PUB (binds) | — |
//! | [`ProxyKind::Rep2Pub`] | REP (binds) | PUB (binds) | an empty reply once published |
//! | [`ProxyKind::Rep2Req`] | REP (binds) | REQ (connects) | the downstream reply, or an error |
//!
//! A proxy reads a frame's header (to answer with the right sequence number and key, and to
//! refuse what is not a frame) but never its body. A REQ output waits for each answer at most
//! the proxy's timeout, then answers the caller with a `Timeout` or `Unavailable` error and
//! is ready for the next request at once. Each side has its own endpoints, options and
//! credentials.

pub mod buffered;
pub mod spool;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::ErrorCode;

use crate::auth::Credentials;
use crate::dialect::{Dialect, Native};
use crate::messaging::publisher::Publisher;
use crate::messaging::receiver::{
    Handler, Heartbeats, Incoming, Origin, Receiver, ReceiverBuilder, Rejection,
};
use crate::messaging::requester::Requester;
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::Shutdown;
use crate::socket::stats::{bump, counters, set};
use crate::{RequestError, TransportError};

/// Which sockets a [`Proxy`] joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// SUB in, REQ out: one-way messages forwarded as calls, one attempt each (answers are
    /// discarded; a failed attempt is counted, not retried: use a [`BufferedProxy`] with a SUB
    /// input for that).
    ///
    /// [`BufferedProxy`]: crate::BufferedProxy
    Sub2Req,
    /// SUB in, PUB out: a fan-out relay.
    Sub2Pub,
    /// REP in, PUB out: calls turned into one-way publications, acknowledged at once.
    Rep2Pub,
    /// REP in, REQ out: calls forwarded, answers returned.
    Rep2Req,
}

impl ProxyKind {
    /// Whether the input is a REP socket (otherwise SUB).
    pub fn rep_input(self) -> bool {
        matches!(self, ProxyKind::Rep2Pub | ProxyKind::Rep2Req)
    }

    /// Whether the output is a REQ socket (otherwise PUB).
    pub fn req_output(self) -> bool {
        matches!(self, ProxyKind::Sub2Req | ProxyKind::Rep2Req)
    }

    /// All kinds, for help texts.
    pub const ALL: [ProxyKind; 4] = [
        ProxyKind::Sub2Req,
        ProxyKind::Sub2Pub,
        ProxyKind::Rep2Pub,
        ProxyKind::Rep2Req,
    ];
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Sub2Req => "sub2req",
            ProxyKind::Sub2Pub => "sub2pub",
            ProxyKind::Rep2Pub => "rep2pub",
            ProxyKind::Rep2Req => "rep2req",
        })
    }
}

impl FromStr for ProxyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProxyKind::ALL
            .into_iter()
            .find(|kind| kind.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown proxy kind {s:?} (sub2req, sub2pub, rep2pub, rep2req)"))
    }
}

counters! {
    /// Live counters of a proxy (buffered or not).
    ProxyStats;
    /// A [`ProxyStats`] reading.
    ProxyCounts {
        /// Messages taken from the input.
        received,
        /// Messages handed to the output (published, or answered downstream).
        forwarded,
        /// Messages the output could not take (timeout, unreachable, refused) or that were
        /// not frames.
        failed,
        /// Delivery attempts repeated after a failure (buffered proxy).
        retried,
        /// Messages waiting in the proxy now.
        queued,
        /// Messages the proxy gave up on (a full PUB queue drops the oldest; a full buffered
        /// proxy refuses new requests instead, counted here too).
        dropped,
    }
}

impl ProxyStats {
    /// Logs the counters at info level, at most once per `every`.
    pub(crate) fn log_every(&self, name: &dyn fmt::Display, every: Duration, last: &mut Instant) {
        if last.elapsed() >= every {
            *last = Instant::now();
            log::info!("{name}: {:?}", self.snapshot());
        }
    }
}

/// How soon a PUB output holding messages for a subscriber that fell behind tries again.
const FLUSH_RETRY: Duration = Duration::from_millis(2);

/// How often a busy proxy logs its counters.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

/// What every proxy builder holds: the input receiver and the output endpoints, with how
/// each side is reached and protected.
pub(crate) struct Sides {
    pub(crate) ctx: Option<zmq::Context>,
    pub(crate) input: ReceiverBuilder,
    pub(crate) outputs: Vec<String>,
    pub(crate) output_options: SocketOptions,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) timeout: Duration,
}

impl Sides {
    /// Sides with no endpoints, an input that tells heartbeats by `heartbeats`.
    pub(crate) fn new(heartbeats: Heartbeats) -> Sides {
        Sides {
            ctx: None,
            input: Receiver::builder().heartbeats(heartbeats),
            outputs: Vec::new(),
            output_options: SocketOptions::default(),
            credentials: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Binds the input in the proxy's context (made here unless one was given).
    pub(crate) fn bind_input(&mut self) -> Result<(zmq::Context, Receiver), TransportError> {
        let ctx = self.ctx.take().unwrap_or_default();
        let input = std::mem::take(&mut self.input).context(&ctx).bind()?;
        Ok((ctx, input))
    }

    /// A REQ output: the endpoints, used in turn.
    pub(crate) fn requester(&self, ctx: &zmq::Context) -> Result<Requester, TransportError> {
        Requester::connect(
            ctx,
            &self.outputs,
            &self.output_options,
            self.credentials.clone(),
        )
    }
}

/// The builder methods every proxy builder shares, over its `sides` field: one definition
/// for both builders.
macro_rules! side_setters {
    () => {
        /// Uses `ctx` for both sides (needed for `inproc://`).
        pub fn context(mut self, ctx: &zmq::Context) -> Self {
            self.sides.ctx = Some(ctx.clone());
            self
        }

        /// Accepts on the input only peers presenting credentials of one of `users`.
        pub fn input_users(mut self, users: $crate::Users) -> Self {
            self.sides.input = self.sides.input.authenticate(users);
            self
        }

        /// Presents `credentials` on the output.
        pub fn output_credentials(mut self, credentials: $crate::Credentials) -> Self {
            self.sides.credentials = Some(credentials);
            self
        }

        /// Socket options of the input side.
        pub fn input_options(mut self, options: $crate::SocketOptions) -> Self {
            self.sides.input = self.sides.input.options(options);
            self
        }

        /// Socket options of the output side.
        pub fn output_options(mut self, options: $crate::SocketOptions) -> Self {
            self.sides.output_options = options;
            self
        }

        /// How long a REQ output waits for each answer, one delivery attempt (default 5 s).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.sides.timeout = timeout;
            self
        }

        /// The handle that will stop the proxy.
        pub fn shutdown(&self) -> $crate::Shutdown {
            self.sides.input.shutdown()
        }
    };
}
pub(crate) use side_setters;

/// The methods every proxy shares, over its `input` receiver and the handler in field
/// `$handler` (which keeps the proxy's counters in `stats`): one definition for both.
macro_rules! relay_methods {
    ($handler:ident, $thread:literal) => {
        /// The REP input's endpoints as bound (empty with only SUB inputs).
        pub fn input_endpoints(&self) -> &[String] {
            self.input.rep_endpoints()
        }

        /// A handle that stops the proxy.
        pub fn shutdown(&self) -> $crate::Shutdown {
            self.input.shutdown()
        }

        /// The live counters.
        pub fn stats(&self) -> std::sync::Arc<$crate::ProxyStats> {
            self.$handler.stats.clone()
        }

        /// Serves on the calling thread until stopped.
        pub fn run(self) -> Result<(), $crate::TransportError> {
            self.input.run(self.$handler)
        }

        /// Serves on a new thread; the handle stops (also on drop) and joins it.
        pub fn spawn(self) -> std::io::Result<$crate::Running<$crate::ProxyStats>> {
            let shutdown = self.shutdown();
            let stats = self.stats();
            $crate::Running::spawn($thread, shutdown, stats, move || self.run())
        }
    };
}
pub(crate) use relay_methods;

/// Builds a [`Proxy`].
pub struct ProxyBuilder<D: Dialect = Native> {
    dialect: D,
    kind: ProxyKind,
    sides: Sides,
    pending_limit: usize,
}

impl<D: Dialect> ProxyBuilder<D> {
    side_setters!();

    /// An input endpoint: bound (REP) or connected to (SUB), as the kind says.
    pub fn input(mut self, endpoint: impl Into<String>) -> Self {
        let input = std::mem::take(&mut self.sides.input);
        self.sides.input = if self.kind.rep_input() {
            input.rep(endpoint)
        } else {
            input.subscribe(endpoint)
        };
        self
    }

    /// An output endpoint: connected to (REQ, used in turn) or bound (PUB), as the kind says.
    pub fn output(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.outputs.push(endpoint.into());
        self
    }

    /// Messages a PUB output holds while no subscriber is attached (default 1000).
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending_limit = limit;
        self
    }

    /// Creates, binds and connects both sides.
    pub fn bind(mut self) -> Result<Proxy<D>, TransportError> {
        let (ctx, input) = self.sides.bind_input()?;
        let sides = &self.sides;
        let output = if self.kind.req_output() {
            Output::Req(sides.requester(&ctx)?)
        } else {
            Output::Pub(Publisher::bind(
                &ctx,
                &sides.outputs,
                &sides.output_options,
                sides.credentials.as_ref(),
                self.pending_limit,
            )?)
        };
        Ok(Proxy {
            forwarder: Forwarder {
                dialect: self.dialect,
                scratch: Vec::new(),
                stop: input.shutdown(),
                kind: self.kind,
                output,
                timeout: sides.timeout,
                stats: Arc::default(),
                last_log: Instant::now(),
            },
            input,
        })
    }
}

/// A running or ready-to-run proxy; see the [module docs](self).
pub struct Proxy<D: Dialect = Native> {
    input: Receiver,
    forwarder: Forwarder<D>,
}

impl Proxy {
    /// Starts building a proxy of `kind` for the native dialect.
    pub fn builder(kind: ProxyKind) -> ProxyBuilder {
        Proxy::builder_for(kind, Native)
    }
}

impl<D: Dialect> Proxy<D> {
    /// Starts building a proxy of `kind` that reads (and answers) `dialect`.
    pub fn builder_for(kind: ProxyKind, dialect: D) -> ProxyBuilder<D> {
        ProxyBuilder {
            dialect,
            kind,
            sides: Sides::new(D::heartbeat_answer),
            pending_limit: 1000,
        }
    }

    /// The PUB output's endpoints as bound (empty for a REQ output).
    pub fn output_endpoints(&self) -> &[String] {
        match &self.forwarder.output {
            Output::Pub(publisher) => publisher.endpoints(),
            Output::Req(_) => &[],
        }
    }

    relay_methods!(forwarder, "zmqrpc-proxy");
}

enum Output {
    Req(Requester),
    Pub(Publisher),
}

struct Forwarder<D: Dialect> {
    dialect: D,
    /// Lent to the dialect to read a request.
    scratch: Vec<u8>,
    /// The proxy's own stop: a wait for the downstream gives up when it is asked.
    stop: Shutdown,
    kind: ProxyKind,
    output: Output,
    timeout: Duration,
    stats: Arc<ProxyStats>,
    last_log: Instant,
}

impl<D: Dialect> Handler for Forwarder<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        let answer = message.origin == Origin::Rep;
        // The head only: to answer correctly and to refuse what is not a request.
        let head = match self.dialect.read_request(message.bytes, &mut self.scratch) {
            Ok(request) => request.head,
            Err(refusal) => {
                bump(&self.stats.failed);
                if answer {
                    refusal.answer(&self.dialect, reply);
                }
                return;
            }
        };
        match &mut self.output {
            Output::Pub(publisher) => {
                let published = publisher.publish(message.bytes);
                let counts = publisher.stats().snapshot();
                set(&self.stats.queued, counts.queued);
                set(&self.stats.dropped, counts.dropped);
                match published {
                    Ok(()) => {
                        bump(&self.stats.forwarded);
                        if answer {
                            // Published (or held for a subscriber): an empty reply.
                            self.dialect.encode_ack(&head, reply);
                        }
                    }
                    Err(e) => {
                        bump(&self.stats.failed);
                        if answer {
                            let why = e.to_string();
                            self.dialect
                                .encode_error(&head, ErrorCode::Unavailable, &why, reply);
                        }
                    }
                }
            }
            Output::Req(requester) => {
                match requester.request_unless(message.bytes, self.timeout, Some(&self.stop)) {
                    Ok(downstream) => {
                        bump(&self.stats.forwarded);
                        if answer {
                            reply.extend_from_slice(downstream.bytes);
                        }
                    }
                    Err(e) => {
                        bump(&self.stats.failed);
                        log::debug!("{}: {e}", self.kind);
                        if answer {
                            let code = match e {
                                RequestError::Timeout { .. } => ErrorCode::Timeout,
                                _ => ErrorCode::Unavailable,
                            };
                            self.dialect
                                .encode_error(&head, code, &e.to_string(), reply);
                        }
                    }
                }
            }
        }
        self.stats
            .log_every(&self.kind, LOG_EVERY, &mut self.last_log);
    }

    fn watch(&self) -> Option<&zmq::Socket> {
        match &self.output {
            Output::Pub(publisher) => Some(publisher.socket()),
            Output::Req(_) => None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.output {
            // Messages held while a subscriber catches up: try again shortly, even if nothing
            // new arrives (the XPUB socket signals subscriptions, not room).
            Output::Pub(publisher) if publisher.has_subscriber() && publisher.queued() > 0 => {
                Some(Instant::now() + FLUSH_RETRY)
            }
            _ => None,
        }
    }

    fn on_wake(&mut self) {
        // A subscriber may have attached, or caught up: send what was held for it.
        if let Output::Pub(publisher) = &mut self.output {
            if let Ok(left) = publisher.flush() {
                set(&self.stats.queued, left as u64);
            }
        }
    }

    fn reject(&mut self, _: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        bump(&self.stats.failed);
        if origin == Origin::Rep {
            let head = self.dialect.unreadable();
            self.dialect
                .encode_error(&head, ErrorCode::BadFrame, "multipart message", reply);
        }
    }
}
