//! The half every proxy shares: the input receiver and the REQ or PUB output endpoints, how
//! each side is reached and protected, and the builder and proxy methods over them (one
//! definition, used by [`Proxy`](super::Proxy) and [`BufferedProxy`](super::buffered::BufferedProxy)).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Credentials, Permissions, Users};
use crate::error::ConfigError;
use crate::messaging::publisher::{PendingLimits, Publisher};
use crate::messaging::receiver::{Heartbeats, Receiver, ReceiverBuilder};
use crate::messaging::requester::Requester;
use crate::messaging::serving::Serving;
use crate::node::{Gate, NodeReport};
use crate::socket::options::SocketOptions;
use crate::TransportError;

/// What every proxy builder holds: the input receiver and the output endpoints, with how
/// each side is reached and protected.
pub(crate) struct Sides {
    pub(crate) ctx: Option<zmq::Context>,
    pub(crate) input: ReceiverBuilder,
    pub(crate) outputs: Vec<String>,
    /// Whether the output binds (PUB) rather than connects (REQ).
    output_binds: bool,
    pub(crate) output_options: SocketOptions,
    /// What a connecting (REQ) output presents.
    pub(crate) output_credentials: Option<Credentials>,
    /// Whom a bound (PUB) output lets subscribe.
    pub(crate) output_users: Option<Users>,
    /// Who may call or notify what through the input.
    pub(crate) permissions: Option<Arc<Permissions>>,
    /// Whether the node answers its built-in commands itself.
    pub(crate) builtins: bool,
    /// The SUB input's endpoints, kept when the input's builder is taken.
    subscribed: Vec<String>,
    pub(crate) timeout: Duration,
}

impl Sides {
    /// Sides with no endpoints, an input that tells heartbeats by `heartbeats`, and an
    /// output that binds (PUB) or connects (REQ).
    pub(crate) fn new(heartbeats: Heartbeats, output_binds: bool) -> Sides {
        Sides {
            ctx: None,
            input: Receiver::builder()
                .heartbeats(heartbeats)
                .named("proxy input"),
            outputs: Vec::new(),
            output_binds,
            output_options: SocketOptions::default(),
            output_credentials: None,
            output_users: None,
            permissions: None,
            builtins: true,
            subscribed: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Refuses protection the sides cannot carry (the [`auth`](crate::auth) rule): users
    /// where a side only connects, credentials where it only binds.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        const OUTPUT: &str = "proxy output";
        let (binds, connects) = self.input.binds_and_connects();
        if self.input.users.is_some() && !binds {
            return Err(ConfigError::UsersWithoutBind {
                what: "proxy input",
            });
        }
        if self.input.credentials.is_some() && !connects {
            return Err(ConfigError::CredentialsWithoutConnect {
                what: "proxy input",
            });
        }
        match self.output_binds {
            true if self.output_credentials.is_some() => {
                Err(ConfigError::CredentialsWithoutConnect { what: OUTPUT })
            }
            false if self.output_users.is_some() => {
                Err(ConfigError::UsersWithoutBind { what: OUTPUT })
            }
            _ => Ok(()),
        }
    }

    /// The screen of the input: its permissions, then the built-ins answered from `report`
    /// (unless they are off).
    pub(crate) fn gate(&self, report: &NodeReport) -> Gate {
        let builtins = self.builtins.then(|| report.clone());
        Gate::new(self.permissions.clone(), builtins)
    }

    /// Tells `report` what every proxy counts: its input's counters and its loop's turns;
    /// and which built-ins it answers.
    pub(crate) fn report_on<H: crate::MessageHandler>(
        &self,
        report: &NodeReport,
        serving: &Serving<H>,
    ) {
        let input = serving.stats();
        let mut endpoints = serving.rep_endpoints().to_vec();
        endpoints.extend(self.subscribed.iter().cloned());
        report.section("input", endpoints, move || input.snapshot().named());
        let liveness = serving.shutdown().liveness();
        report.section("loop", Vec::new(), move || [("turns", liveness.turns())]);
        report.limit("max_message_bytes", self.max_body() as u64);
        if self.builtins {
            report.builtins();
        }
    }

    /// The largest command the input reads, decoded (a pyzmqrpc3 message inflated): its
    /// `max_message_size`, the largest message it forwards.
    pub(crate) fn max_body(&self) -> usize {
        self.input.options.max_frame()
    }

    /// The input's builder in the proxy's context (made here unless one was given), once
    /// the protection of both sides is [checked](Sides::check).
    pub(crate) fn input_builder(
        &mut self,
    ) -> Result<(zmq::Context, ReceiverBuilder), TransportError> {
        self.check()?;
        self.subscribed = self.input.subs.iter().map(|(e, _)| e.clone()).collect();
        let ctx = self.ctx.take().unwrap_or_default();
        Ok((ctx.clone(), std::mem::take(&mut self.input).context(&ctx)))
    }

    /// The input (see [`input_builder`](Sides::input_builder)), bound as `configure`
    /// finishes its builder (a ROUTER input that takes many
    /// calls at once: [`ReceiverBuilder::calls_at_once`]).
    pub(crate) fn bind_input_with(
        &mut self,
        configure: impl FnOnce(ReceiverBuilder) -> ReceiverBuilder,
    ) -> Result<(zmq::Context, Receiver), TransportError> {
        let (ctx, input) = self.input_builder()?;
        Ok((ctx, configure(input).bind()?))
    }

    /// A REQ output: the endpoints, used in turn, presenting the output credentials.
    pub(crate) fn requester(&self, ctx: &zmq::Context) -> Result<Requester, TransportError> {
        Requester::connect(
            ctx,
            &self.outputs,
            &self.output_options,
            self.output_credentials.clone(),
        )
    }

    /// A REQ output like [`requester`](Sides::requester) whose sockets are made on first
    /// use.
    pub(crate) fn unconnected_requester(&self, ctx: &zmq::Context) -> Requester {
        Requester::unconnected(
            ctx,
            &self.outputs,
            &self.output_options,
            self.output_credentials.clone(),
        )
    }

    /// A PUB output: bound to the endpoints, verifying subscribers against the output
    /// users; holds up to `limits` while none is attached.
    pub(crate) fn publisher(
        &self,
        ctx: &zmq::Context,
        limits: PendingLimits,
    ) -> Result<Publisher, TransportError> {
        Publisher::bind(
            ctx,
            &self.outputs,
            &self.output_options,
            self.output_users.clone(),
            limits,
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

        /// Accepts on a bound (REP) input only callers presenting the credentials of one of
        /// `users` (the [`auth`](crate::auth) rule: a bound socket verifies). On an input
        /// that only connects (SUB), `bind` refuses with
        /// [`ConfigError::UsersWithoutBind`](crate::ConfigError::UsersWithoutBind).
        pub fn input_users(mut self, users: $crate::Users) -> Self {
            self.sides.input = self.sides.input.users(users);
            self
        }

        /// Presents `credentials` to the publishers a SUB input connects to (a connecting
        /// socket presents). On an input that only binds (REP), `bind` refuses with
        /// [`ConfigError::CredentialsWithoutConnect`](crate::ConfigError::CredentialsWithoutConnect).
        pub fn input_credentials(mut self, credentials: $crate::Credentials) -> Self {
            self.sides.input = self.sides.input.credentials(credentials);
            self
        }

        /// Presents `credentials` to the servers a REQ output connects to. On an output
        /// that binds (PUB), `bind` refuses with
        /// [`ConfigError::CredentialsWithoutConnect`](crate::ConfigError::CredentialsWithoutConnect):
        /// a bound socket never presents credentials.
        pub fn output_credentials(mut self, credentials: $crate::Credentials) -> Self {
            self.sides.output_credentials = Some(credentials);
            self
        }

        /// Lets only subscribers presenting the credentials of one of `users` attach to a
        /// bound (PUB) output. On an output that connects (REQ), `bind` refuses with
        /// [`ConfigError::UsersWithoutBind`](crate::ConfigError::UsersWithoutBind).
        pub fn output_users(mut self, users: $crate::Users) -> Self {
            self.sides.output_users = Some(users);
            self
        }

        /// Forwards only what `permissions` allow each caller of the input (by the user id
        /// its PLAIN username or CURVE key gives it): a refused call is answered with a
        /// `Forbidden` error (a 403 status to a pyzmqrpc3 caller), a refused notification
        /// dropped, both counted as `forbidden`. A proxy sees command keys, not names:
        /// wildcard patterns match only names it was taught
        /// ([`Permissions::knowing`](crate::auth::Permissions::knowing)).
        pub fn input_permissions(mut self, permissions: $crate::auth::Permissions) -> Self {
            self.sides.permissions = Some(std::sync::Arc::new(permissions));
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

        /// How long the output waits for each answer: a REQ output's delivery attempt
        /// (default 5 s), a serial device's answer (default 1 s).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.sides.timeout = timeout;
            self
        }

        /// Whether the node answers the built-in commands ([`node`](crate::node): `Ping`,
        /// `GetStats`, `Describe`) itself, from its own counters (default: it does),
        /// after the [`input_permissions`](Self::input_permissions) allow them; off, they
        /// are forwarded as any call is.
        pub fn builtins(mut self, on: bool) -> Self {
            self.sides.builtins = on;
            self
        }

        /// The handle that will stop the proxy.
        pub fn shutdown(&self) -> $crate::Shutdown {
            self.sides.input.shutdown()
        }
    };
}
pub(crate) use side_setters;

/// The methods every proxy shares, over its `serving` field (a
/// [`Serving`](crate::messaging::serving::Serving)) and its `stats` (an `Arc<$stats>`, the
/// proxy's counters): one definition for all of them.
macro_rules! relay_methods {
    ($thread:literal, $stats:ident) => {
        /// The REP input's endpoints as bound (empty with only SUB inputs).
        pub fn input_endpoints(&self) -> &[String] {
            self.serving.rep_endpoints()
        }

        /// A handle that stops the proxy.
        pub fn shutdown(&self) -> $crate::Shutdown {
            self.serving.shutdown()
        }

        /// The live counters.
        pub fn stats(&self) -> std::sync::Arc<$stats> {
            self.stats.clone()
        }

        /// What the node says about itself: what its built-in commands answer
        /// ([`node`](crate::node)), every counter it has.
        pub fn report(&self) -> $crate::node::NodeReport {
            self.report.clone()
        }

        /// The live counters of the input's sockets: heartbeats, SUB sockets made anew,
        /// and handshakes a publisher refused a SUB input (`sub_refused`).
        pub fn input_stats(&self) -> std::sync::Arc<$crate::ReceiverStats> {
            self.serving.stats()
        }

        /// Serves on the calling thread until stopped.
        pub fn run(self) -> Result<(), $crate::TransportError> {
            self.serving.run()
        }

        /// Serves on a new thread; the handle stops (also on drop) and joins it.
        pub fn spawn(self) -> std::io::Result<$crate::Running<$stats>> {
            let shutdown = self.shutdown();
            let stats = self.stats();
            $crate::Running::spawn($thread, shutdown, stats, move || self.run())
        }
    };
}
pub(crate) use relay_methods;
