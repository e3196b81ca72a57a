//! [`ReceiverBuilder`]: a receiver's endpoints, options and protection, and the set-up of
//! the side facing the network that the receiver and the worker pool share.

use std::sync::Arc;
use std::time::Duration;

use super::calls::CallsSide;
use super::rep::RepSide;
use super::{Heartbeats, Receiver, ReceiverStats};
use crate::auth::{Credentials, Users, Verifier};
use crate::dialect::{Dialect, Native};
use crate::error::ConfigError;
use crate::messaging::subscriber::{connect_all, SubSide};
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::{Shutdown, StopListener};
use crate::TransportError;

/// The most calls a ROUTER input holds unanswered at once
/// ([`ReceiverBuilder::calls_at_once`]).
pub const MAX_CALLS_AT_ONCE: usize = 1 << 16;

/// Builds a [`Receiver`]: endpoints, options, context.
pub struct ReceiverBuilder {
    pub(crate) heartbeats: Heartbeats,
    pub(crate) ctx: Option<zmq::Context>,
    pub(crate) rep: Vec<String>,
    pub(crate) subs: Vec<(String, Option<Duration>)>,
    pub(crate) options: SocketOptions,
    pub(crate) shutdown: Shutdown,
    pub(crate) users: Option<Users>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) stats: Arc<ReceiverStats>,
    /// Calls held unanswered at once on a ROUTER input; `None`: a REP input.
    pub(crate) calls_at_once: Option<usize>,
    /// What the receiver serves (a "server", a "proxy input"), in configuration errors.
    pub(crate) what: &'static str,
}

impl Default for ReceiverBuilder {
    fn default() -> Self {
        ReceiverBuilder {
            heartbeats: Native::heartbeat_answer,
            ctx: None,
            rep: Vec::new(),
            subs: Vec::new(),
            options: SocketOptions::default(),
            shutdown: Shutdown::new(),
            users: None,
            credentials: None,
            stats: Arc::default(),
            calls_at_once: None,
            what: "receiver",
        }
    }
}

impl ReceiverBuilder {
    /// The handle that will stop the receiver, available before it exists (for a handler
    /// or service that stops its own loop).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Names what the receiver serves in configuration errors.
    pub(crate) fn named(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// Recognises heartbeats with `heartbeats` (default: the native dialect's).
    pub(crate) fn heartbeats(mut self, heartbeats: Heartbeats) -> Self {
        self.heartbeats = heartbeats;
        self
    }

    /// Uses `ctx` (needed for `inproc://` endpoints shared with other sockets); by default the
    /// receiver makes its own context.
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.ctx = Some(ctx.clone());
        self
    }

    /// Binds the REP socket to `endpoint` too (`tcp://127.0.0.1:*` picks a free port; read it
    /// back with [`Receiver::rep_endpoints`]).
    pub fn rep(mut self, endpoint: impl Into<String>) -> Self {
        self.rep.push(endpoint.into());
        self
    }

    /// Binds the call endpoints ([`rep`](ReceiverBuilder::rep)) with a ROUTER socket instead
    /// of a REP one, which takes calls from many callers at once: up to `calls` of them
    /// are held unanswered while the handler answers them later
    /// ([`Answering::Later`](super::Answering::Later)); the next is refused at once
    /// ([`Rejection::Busy`](super::Rejection::Busy)). REQ and DEALER callers need no
    /// change. Without it, a REP socket answers one call at a time. Outside
    /// 1..=[`MAX_CALLS_AT_ONCE`], [`bind`](ReceiverBuilder::bind) refuses with
    /// [`ConfigError::OutOfRange`].
    pub fn calls_at_once(mut self, calls: usize) -> Self {
        self.calls_at_once = Some(calls);
        self
    }

    /// Subscribes to everything the publisher at `endpoint` sends. The publishers
    /// subscribed to this way share one SUB socket, however many there are.
    pub fn subscribe(mut self, endpoint: impl Into<String>) -> Self {
        self.subs.push((endpoint.into(), None));
        self
    }

    /// Subscribes to the publisher at `endpoint` on a SUB socket of its own (a SUB socket
    /// does not tell which publisher a message came from), recreated whenever nothing (not
    /// even a heartbeat) arrives on it for `silence`. Each costs three of the context's
    /// sockets (the SUB socket and the two ends of its monitor).
    pub fn subscribe_with_silence_timeout(
        mut self,
        endpoint: impl Into<String>,
        silence: Duration,
    ) -> Self {
        self.subs.push((endpoint.into(), Some(silence)));
        self
    }

    /// Socket options for every socket (default: [`SocketOptions::default`]).
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Protects the bound REP socket with username/password: only callers presenting the
    /// credentials of one of `users` get through (the [`auth`](crate::auth) rule: a bound
    /// socket verifies). A ZAP handler judges them from [`bind`](ReceiverBuilder::bind)
    /// until the receiver ends. Without a REP endpoint, `bind` refuses with
    /// [`ConfigError::UsersWithoutBind`].
    pub fn users(mut self, users: Users) -> Self {
        self.users = Some(users);
        self
    }

    /// Presents `credentials` to the publishers the SUB sockets connect to (the
    /// [`auth`](crate::auth) rule: a connecting socket presents). Without a SUB endpoint,
    /// `bind` refuses with [`ConfigError::CredentialsWithoutConnect`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Creates, binds and connects the sockets.
    pub fn bind(self) -> Result<Receiver, TransportError> {
        let calls_at_once = self.calls_at_once;
        if let Some(calls) = calls_at_once.filter(|n| !(1..=MAX_CALLS_AT_ONCE).contains(n)) {
            return Err(ConfigError::OutOfRange {
                setting: "calls_at_once",
                value: calls as u64,
                min: 1,
                max: MAX_CALLS_AT_ONCE as u64,
            }
            .into());
        }
        let inputs = self.inputs()?;
        let (rep, calls) = match (inputs.rep.is_empty(), calls_at_once) {
            (true, _) => (None, None),
            (false, None) => (
                Some(RepSide::bind(
                    &inputs.ctx,
                    &inputs.options,
                    inputs.verifier.as_ref(),
                    &inputs.rep,
                )?),
                None,
            ),
            (false, Some(at_once)) => (
                None,
                Some(CallsSide::bind(
                    &inputs.ctx,
                    &inputs.options,
                    inputs.verifier.as_ref(),
                    &inputs.rep,
                    at_once,
                )?),
            ),
        };
        Ok(Receiver {
            heartbeats: inputs.heartbeats,
            ctx: inputs.ctx,
            options: inputs.options,
            rep,
            rep_held: false,
            calls,
            subs: inputs.subs,
            stop: inputs.stop,
            stats: inputs.stats,
            user: String::new(),
            lost_rep: None,
            verifier: inputs.verifier,
        })
    }

    /// Whether the receiver binds a socket (a REP endpoint) and connects one (a SUB
    /// endpoint): what its users and its credentials would apply to.
    pub(crate) fn binds_and_connects(&self) -> (bool, bool) {
        (!self.rep.is_empty(), !self.subs.is_empty())
    }

    /// Sets up what a receiving loop faces the network with, the same way for a receiver
    /// and a worker pool: the REP side's registration with the ZAP handler first (a PLAIN
    /// socket without a handler refuses everyone), the stop signal and the SUB sockets. The
    /// REP endpoints are left for the loop to bind in the socket type it uses.
    pub(crate) fn inputs(self) -> Result<Inputs, TransportError> {
        let (binds, connects) = self.binds_and_connects();
        if self.users.is_some() && !binds {
            return Err(ConfigError::UsersWithoutBind { what: self.what }.into());
        }
        if self.credentials.is_some() && !connects {
            return Err(ConfigError::CredentialsWithoutConnect { what: self.what }.into());
        }
        let ctx = self.ctx.unwrap_or_default();
        let verifier = self
            .users
            .map(|users| Verifier::start(&ctx, users))
            .transpose()?;
        let stop = StopListener::new(&ctx, self.shutdown)?;
        let subs = connect_all(&ctx, &self.options, self.credentials.as_ref(), self.subs)?;
        Ok(Inputs {
            ctx,
            options: self.options,
            stop,
            subs,
            verifier,
            rep: self.rep,
            heartbeats: self.heartbeats,
            stats: self.stats,
        })
    }
}

/// A receiving loop's side facing the network, before its REP endpoints are bound: see
/// [`ReceiverBuilder::inputs`].
pub(crate) struct Inputs {
    pub(crate) ctx: zmq::Context,
    pub(crate) options: SocketOptions,
    pub(crate) stop: StopListener,
    pub(crate) subs: Vec<SubSide>,
    /// How the REP (or ROUTER) socket of a protected loop verifies its peers; to drop after
    /// the sockets.
    pub(crate) verifier: Option<Verifier>,
    /// The endpoints to bind the REP (or ROUTER) socket to.
    pub(crate) rep: Vec<String>,
    pub(crate) heartbeats: Heartbeats,
    pub(crate) stats: Arc<ReceiverStats>,
}
