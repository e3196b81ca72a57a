//! The half every proxy shares: the input receiver and the REQ or PUB output endpoints, how
//! each side is reached and protected, and the builder and proxy methods over them (one
//! definition, used by [`Proxy`](super::Proxy) and [`BufferedProxy`](super::buffered::BufferedProxy)).

use std::time::Duration;

use crate::auth::Credentials;
use crate::messaging::receiver::{Heartbeats, Receiver, ReceiverBuilder};
use crate::messaging::requester::Requester;
use crate::socket::options::SocketOptions;
use crate::TransportError;

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
            self.sides.input = self.sides.input.users(users);
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

        /// How long the output waits for each answer: a REQ output's delivery attempt
        /// (default 5 s), a serial device's answer (default 1 s).
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
/// `$handler` (whose `stats()` are the proxy's counters, of type `$stats`): one definition
/// for all of them.
macro_rules! relay_methods {
    ($handler:ident, $thread:literal, $stats:ident) => {
        /// The REP input's endpoints as bound (empty with only SUB inputs).
        pub fn input_endpoints(&self) -> &[String] {
            self.input.rep_endpoints()
        }

        /// A handle that stops the proxy.
        pub fn shutdown(&self) -> $crate::Shutdown {
            self.input.shutdown()
        }

        /// The live counters.
        pub fn stats(&self) -> std::sync::Arc<$stats> {
            self.$handler.stats().clone()
        }

        /// Serves on the calling thread until stopped.
        pub fn run(self) -> Result<(), $crate::TransportError> {
            self.input.run(self.$handler)
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
