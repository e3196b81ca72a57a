//! [`Proxy`]: the standard proxies, forwarding each frame as bytes to a REQ or PUB output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc_core::ErrorCode;

use super::{relay_methods, side_setters, ProxyKind, ProxyStats, Sides, LOG_EVERY};
use crate::dialect::{DefaultDialect, Dialect};
use crate::messaging::pool::Pick;
use crate::messaging::publisher::{PendingLimits, Publisher};
use crate::messaging::receiver::{Incoming, MessageHandler, Origin, Rejection};
use crate::messaging::requester::Requester;
use crate::messaging::serving::Serving;
use crate::node::{Gate, NodeReport, Screened};
use crate::socket::shutdown::Shutdown;
use crate::socket::stats::FailureLog;
use crate::socket::stats::{bump, set};
use crate::{ConfigError, RequestError, TransportError};

/// How soon a PUB output holding messages for a subscriber that fell behind tries again.
const FLUSH_RETRY: Duration = Duration::from_millis(2);

/// Builds a [`Proxy`].
pub struct ProxyBuilder<D: Dialect = DefaultDialect> {
    dialect: D,
    kind: ProxyKind,
    sides: Sides,
    pending: PendingLimits,
    /// Calls a `Rep2Req` proxy forwards at once.
    concurrency: usize,
    /// A setting this kind has no use for, refused at `bind`.
    misfit: Option<&'static str>,
}

impl<D: Dialect> ProxyBuilder<D> {
    side_setters!();

    /// The REP input endpoint to bind (`Rep2Req`, `Rep2Pub`). For the kinds with a SUB input
    /// it is subscribed to instead, as [`subscribe`](Self::subscribe) says explicitly (and
    /// as `zmqrpc-proxy --in` gives it, whatever the kind).
    pub fn input(mut self, endpoint: impl Into<String>) -> Self {
        let input = std::mem::take(&mut self.sides.input);
        self.sides.input = if self.kind.rep_input() {
            input.rep(endpoint)
        } else {
            input.subscribe(endpoint)
        };
        self
    }

    /// A SUB input endpoint to subscribe to (`Sub2Req`, `Sub2Pub`), as a server's and a
    /// buffered proxy's `subscribe`; a kind with a REP input refuses it at `bind`
    /// ([`ConfigError::NotForKind`](crate::ConfigError::NotForKind)).
    pub fn subscribe(mut self, endpoint: impl Into<String>) -> Self {
        if self.kind.rep_input() {
            self.misfit = Some("subscribe");
        } else {
            let input = std::mem::take(&mut self.sides.input);
            self.sides.input = input.subscribe(endpoint);
        }
        self
    }

    /// A REP endpoint to bind for a kind whose input is a subscription (`Sub2Req`,
    /// `Sub2Pub`), on which the proxy answers its built-in commands
    /// ([`node`](crate::node): `Ping`, `GetStats`, `Describe`) and refuses every other
    /// call with `UnknownCommand`: it forwards only what it hears. Its callers are verified
    /// as the input's bound sockets are ([`input_users`](Self::input_users)) and screened by
    /// the [`input_permissions`](Self::input_permissions). A kind with a REP input answers
    /// the built-ins there, and refuses a control endpoint at `bind`
    /// ([`ConfigError::NotForKind`](crate::ConfigError::NotForKind)).
    pub fn control(mut self, endpoint: impl Into<String>) -> Self {
        if self.kind.rep_input() {
            self.misfit = Some("control");
        } else {
            let input = std::mem::take(&mut self.sides.input);
            self.sides.input = input.rep(endpoint);
        }
        self
    }

    /// An output endpoint: connected to (REQ, used in turn) or bound (PUB), as the kind says.
    pub fn output(mut self, endpoint: impl Into<String>) -> Self {
        self.sides.outputs.push(endpoint.into());
        self
    }

    /// Messages a PUB output holds while no subscriber is attached (default 1000, at most
    /// [`MAX_PENDING`](crate::MAX_PENDING)).
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending.messages = limit;
        self
    }

    /// Bytes of messages a PUB output holds at most (default 8 MiB). Past either bound, a
    /// call on a REP input is answered `Busy` (nothing acknowledged is dropped); a message
    /// from a SUB input makes room by dropping the oldest, counted.
    pub fn pending_bytes(mut self, bytes: usize) -> Self {
        self.pending.bytes = bytes;
        self
    }

    /// How many calls a [`ProxyKind::Rep2Req`] proxy forwards at once (default
    /// [`DEFAULT_PROXY_CONCURRENCY`], at least 1): each of them has a REQ socket of its own to the
    /// output and its own timeout, and its answer goes back to its own caller, so one slow
    /// call holds no other back. Past `n` calls in flight, callers wait in the input's queue
    /// (its high-water mark). With 1, calls are forwarded one at a time, in order. Any
    /// other kind refuses a value other than 1 at `bind`
    /// ([`ConfigError::NotForKind`](crate::ConfigError::NotForKind)): a SUB input's
    /// messages are forwarded in order, and a PUB output takes each at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        if self.kind == ProxyKind::Rep2Req {
            self.concurrency = n.max(1);
        } else if n != 1 {
            self.misfit = Some("concurrency");
        }
        self
    }

    /// Creates, binds and connects both sides.
    pub fn bind(mut self) -> Result<Proxy<D>, TransportError> {
        if let Some(setting) = self.misfit {
            let kind = self.kind.name();
            return Err(ConfigError::NotForKind { setting, kind }.into());
        }
        let max_body = self.sides.max_body();
        let (ctx, input) = self.sides.input_builder()?;
        let stats: Arc<ProxyStats> = Arc::default();
        let report = NodeReport::new(self.kind.name());
        let sides = &self.sides;
        let gate = sides.gate(&report);
        let forwarder = |output| Forwarder {
            dialect: self.dialect.clone(),
            scratch: Vec::new(),
            max_body,
            stop: input.shutdown(),
            kind: self.kind,
            output,
            timeout: sides.timeout,
            stats: Arc::clone(&stats),
            last_log: Instant::now(),
            failures: FailureLog::default(),
            gate: gate.clone(),
            dropped_seen: 0,
        };
        let mut output_endpoints = Vec::new();
        let mut publisher_stats = None;
        let forwarders = if self.kind.req_output() {
            // The output's endpoints are used in turn by all the forwarders together. The
            // first connects now; the others when first used (the busiest forwarder is
            // the one free last, so a quiet proxy holds one connection per endpoint).
            let first = sides.requester(&ctx)?;
            let mut requesters = Vec::with_capacity(self.concurrency);
            for _ in 1..self.concurrency {
                requesters.push(sides.unconnected_requester(&ctx).sharing_turns_with(&first));
            }
            requesters.push(first);
            requesters
                .into_iter()
                .map(|requester| forwarder(Output::Req(requester)))
                .collect()
        } else {
            let publisher = sides.publisher(&ctx, self.pending)?;
            output_endpoints = publisher.endpoints().to_vec();
            publisher_stats = Some(publisher.stats());
            vec![forwarder(Output::Pub(publisher))]
        };
        let serving = Serving::bind(input, forwarders, Pick::Warm)?;
        sides.report_on(&report, &serving);
        let counts = Arc::clone(&stats);
        report.section("proxy", Vec::new(), move || counts.snapshot().named());
        match publisher_stats {
            Some(publisher) => report.section("output", output_endpoints.clone(), move || {
                publisher.snapshot().named()
            }),
            None => report.section("output", sides.outputs.clone(), Vec::new),
        }
        report.limit("timeout_ms", sides.timeout.as_millis() as u64);
        report.limit("concurrency", self.concurrency as u64);
        if !self.kind.req_output() {
            report.limit("pending_messages", self.pending.messages as u64);
            report.limit("pending_bytes", self.pending.bytes as u64);
        }
        Ok(Proxy {
            serving,
            stats,
            output_endpoints,
            report,
        })
    }
}

/// How many calls a `Rep2Req` proxy forwards at once unless told
/// ([`ProxyBuilder::concurrency`]).
pub const DEFAULT_PROXY_CONCURRENCY: usize = 16;

/// A running or ready-to-run proxy; see the [module docs](super).
pub struct Proxy<D: Dialect = DefaultDialect> {
    /// The input and its forwarder (with `concurrency`, a pool of them).
    serving: Serving<Forwarder<D>>,
    /// The counters, every forwarder's together.
    stats: Arc<ProxyStats>,
    /// A PUB output's endpoints as bound.
    output_endpoints: Vec<String>,
    /// What the proxy says about itself.
    report: NodeReport,
}

impl Proxy {
    /// Starts building a proxy of `kind` of the [`DefaultDialect`](crate::dialect::DefaultDialect).
    pub fn builder(kind: ProxyKind) -> ProxyBuilder {
        Proxy::builder_for(kind, DefaultDialect::default())
    }
}

impl<D: Dialect> Proxy<D> {
    /// Starts building a proxy of `kind` that reads (and answers) `dialect`.
    pub fn builder_for(kind: ProxyKind, dialect: D) -> ProxyBuilder<D> {
        ProxyBuilder {
            dialect,
            kind,
            sides: Sides::new(D::heartbeat_answer, !kind.req_output()),
            pending: PendingLimits::default(),
            concurrency: match kind {
                ProxyKind::Rep2Req => DEFAULT_PROXY_CONCURRENCY,
                _ => 1,
            },
            misfit: None,
        }
    }

    /// The PUB output's endpoints as bound (empty for a REQ output).
    pub fn output_endpoints(&self) -> &[String] {
        &self.output_endpoints
    }

    relay_methods!("zmqrpc-proxy", ProxyStats);
}

enum Output {
    Req(Requester),
    Pub(Publisher),
}

struct Forwarder<D: Dialect> {
    dialect: D,
    /// Lent to the dialect to read a request.
    scratch: Vec<u8>,
    /// The largest command read, decoded.
    max_body: usize,
    /// The proxy's own stop: a wait for the downstream gives up when it is asked.
    stop: Shutdown,
    kind: ProxyKind,
    output: Output,
    timeout: Duration,
    stats: Arc<ProxyStats>,
    last_log: Instant,
    failures: FailureLog,
    /// Permissions, then the built-in commands.
    gate: Gate,
    /// The output's dropped messages last logged.
    dropped_seen: u64,
}

impl<D: Dialect> MessageHandler for Forwarder<D> {
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        let answer = message.origin == Origin::Rep;
        // The head only: to answer correctly and to refuse what is not a request.
        let read = self
            .dialect
            .read_request(message.bytes, &mut self.scratch, self.max_body);
        let (head, key) = match read {
            Ok(request) => {
                let max = self.max_body;
                match self
                    .gate
                    .screen(&self.dialect, &message, &request, reply, max)
                {
                    Screened::Pass => {}
                    Screened::Forbidden => return bump(&self.stats.forbidden),
                    Screened::Answered => return bump(&self.stats.builtin),
                }
                if answer && !self.kind.rep_input() {
                    // The control endpoint of a proxy that forwards only what it hears.
                    bump(&self.stats.failed);
                    let why = format!(
                        "command {} is not a built-in: this {} proxy answers only \
                         zmqrpc.node.* here and forwards what it subscribes to",
                        request.key, self.kind
                    );
                    self.dialect.encode_error(
                        &request.head,
                        ErrorCode::UnknownCommand,
                        &why,
                        reply,
                    );
                    return;
                }
                (request.head, request.key)
            }
            Err(refusal) => {
                bump(match refusal.is_too_large() {
                    true => &self.stats.too_large,
                    false => &self.stats.failed,
                });
                let what = format_args!("refused a message: {}", refusal.message);
                self.failures.warn(&self.kind, &what);
                if answer {
                    refusal.answer(&self.dialect, reply);
                }
                return;
            }
        };
        match &mut self.output {
            Output::Pub(publisher) => {
                // A call is refused when there is no room (it was not acknowledged, so nothing
                // acknowledged is dropped); a message from a SUB input makes room.
                let published = match answer {
                    true => publisher.offer(message.bytes),
                    false => publisher.publish(message.bytes).map(|()| true),
                };
                let counts = publisher.stats().snapshot();
                set(&self.stats.queued, counts.queued);
                set(&self.stats.dropped, counts.dropped + counts.refused_full);
                set(&self.stats.missed_by_slow, counts.missed_by_slow);
                let seen = std::mem::replace(&mut self.dropped_seen, counts.dropped);
                if counts.dropped > seen {
                    let what = format_args!(
                        "dropped held messages, the oldest: no subscriber took them in time \
                         ({} dropped in all)",
                        counts.dropped
                    );
                    self.failures.warn(&self.kind, &what);
                }
                match published {
                    Ok(false) => {
                        let why = format!(
                            "the proxy holds all it may for its subscribers ({} messages, {} \
                             bytes): try again later",
                            counts.queued, counts.queued_bytes
                        );
                        let what = format_args!("command {key} refused: {why}");
                        self.failures.warn(&self.kind, &what);
                        self.dialect
                            .encode_error(&head, ErrorCode::Busy, &why, reply);
                    }
                    Ok(true) => {
                        bump(&self.stats.forwarded);
                        if answer {
                            // Published (or held for a subscriber): accepted.
                            self.dialect.encode_accepted(&head, reply);
                        }
                    }
                    Err(e) => {
                        bump(&self.stats.failed);
                        self.failures.warn(
                            &self.kind,
                            &format_args!("command {key} not published: {e}"),
                        );
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
                        self.failures.warn(
                            &self.kind,
                            &format_args!("command {key} not forwarded: {e}"),
                        );
                        if answer {
                            let code = match e {
                                RequestError::Timeout { .. }
                                | RequestError::NotConnected { .. } => ErrorCode::Timeout,
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

    fn watch(&self) -> Option<zmq::PollItem<'_>> {
        match &self.output {
            Output::Pub(publisher) => Some(publisher.socket().as_poll_item(zmq::POLLIN)),
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

    fn reject(&mut self, reason: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        bump(&self.stats.received);
        bump(&self.stats.failed);
        let why = reason.to_string();
        self.failures
            .warn(&self.kind, &format_args!("refused a message: {why}"));
        if origin == Origin::Rep {
            let head = self.dialect.unreadable();
            self.dialect.encode_error(&head, reason.code(), &why, reply);
        }
    }
}
