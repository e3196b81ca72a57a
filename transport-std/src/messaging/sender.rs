//! [`Sender`]: a [`Publisher`] and/or a [`Requester`], the sending half of pyzmqrpc3's
//! `ZmqSender`, used alone with raw bytes or under [`RpcClient`](crate::RpcClient).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Credentials, Users};
use crate::error::ConfigError;
use crate::messaging::publisher::{
    PendingLimits, Publisher, PublisherStats, SLOW_SUBSCRIBER_GRACE,
};
use crate::messaging::requester::{Answer, Requester};
use crate::socket::context::{self, Seat, SOCKETS_PER_ENDPOINT};
use crate::socket::options::SocketOptions;
use crate::{RequestError, SocketKind, TransportError};

/// Builds a [`Sender`].
pub struct SenderBuilder {
    ctx: Option<zmq::Context>,
    publish: Vec<String>,
    req: Vec<String>,
    options: SocketOptions,
    pending: PendingLimits,
    backpressure: Option<Duration>,
    credentials: Option<Credentials>,
    users: Option<Users>,
    /// What the sender is, in configuration errors.
    what: &'static str,
    slow_subscriber_grace: Duration,
}

impl Default for SenderBuilder {
    fn default() -> Self {
        SenderBuilder {
            ctx: None,
            publish: Vec::new(),
            req: Vec::new(),
            options: SocketOptions::default(),
            pending: PendingLimits::default(),
            backpressure: None,
            credentials: None,
            users: None,
            what: "sender",
            slow_subscriber_grace: SLOW_SUBSCRIBER_GRACE,
        }
    }
}

impl SenderBuilder {
    /// Names what the sender serves (a "client", …) in configuration errors.
    pub(crate) fn named(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    /// Uses `ctx` (needed for `inproc://`); by default the sender takes room in a context
    /// the process's clients share (see [`RpcClient`](crate::RpcClient#threads)).
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.ctx = Some(ctx.clone());
        self
    }

    /// Binds the publisher to `endpoint` too (subscribers connect to it).
    pub fn publish_on(mut self, endpoint: impl Into<String>) -> Self {
        self.publish.push(endpoint.into());
        self
    }

    /// Adds a REQ endpoint; calls go to the endpoints in turn.
    pub fn req(mut self, endpoint: impl Into<String>) -> Self {
        self.req.push(endpoint.into());
        self
    }

    /// Socket options for every socket (default: [`SocketOptions::default`]).
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// How many messages the publisher holds while no subscriber is attached (default 1000,
    /// at most [`MAX_PENDING`](crate::MAX_PENDING): more is a [`ConfigError::OutOfRange`](crate::ConfigError)
    /// at `connect`); beyond that the oldest are dropped and counted.
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending.messages = limit;
        self
    }

    /// How many bytes of messages the publisher holds at most (default
    /// [`DEFAULT_PENDING_BYTES`](crate::DEFAULT_PENDING_BYTES)); beyond that the oldest are
    /// dropped and counted.
    pub fn pending_bytes(mut self, bytes: usize) -> Self {
        self.pending.bytes = bytes;
        self
    }

    /// Back-pressure: when the publisher holds all it may, a publication waits up to `wait`
    /// for the subscribers to take what is held, at their pace, before the oldest is dropped
    /// (see [`Publisher::set_backpressure`]). Off by default: publishing never waits.
    pub fn backpressure(mut self, wait: Duration) -> Self {
        self.backpressure = Some(wait);
        self
    }

    /// How long one subscriber may stay a high-water mark behind, holding every publication
    /// back, before it misses publications instead (default [`SLOW_SUBSCRIBER_GRACE`]; see
    /// [`Publisher`]).
    pub fn slow_subscriber_grace(mut self, grace: Duration) -> Self {
        self.slow_subscriber_grace = grace;
        self
    }

    /// Presents `credentials` to the servers the REQ sockets connect to (the
    /// [`auth`](crate::auth) rule: a connecting socket presents; the bound publisher never
    /// does). Without a `req` endpoint, `connect` refuses with
    /// [`ConfigError::CredentialsWithoutConnect`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Protects the bound publisher: only subscribers presenting the credentials of one of
    /// `users` attach (a bound socket verifies). Without a `publish_on` endpoint, `connect`
    /// refuses with [`ConfigError::UsersWithoutBind`].
    pub fn users(mut self, users: Users) -> Self {
        self.users = Some(users);
        self
    }

    /// Creates, binds and connects the sockets.
    pub fn connect(self) -> Result<Sender, TransportError> {
        if self.credentials.is_some() && self.req.is_empty() {
            return Err(ConfigError::CredentialsWithoutConnect { what: self.what }.into());
        }
        if self.users.is_some() && self.publish.is_empty() {
            return Err(ConfigError::UsersWithoutBind { what: self.what }.into());
        }
        // A socket and its monitor per REQ endpoint and for the PUB side; the ZAP handler's.
        let sides = self.req.len() + usize::from(!self.publish.is_empty());
        let sides = sides + usize::from(self.users.is_some());
        let (ctx, seat) = context::given_or_shared(self.ctx, SOCKETS_PER_ENDPOINT * sides);
        let publisher = if self.publish.is_empty() {
            None
        } else {
            let mut publisher =
                Publisher::bind(&ctx, &self.publish, &self.options, self.users, self.pending)?;
            publisher.set_slow_subscriber_grace(self.slow_subscriber_grace);
            publisher.set_backpressure(self.backpressure);
            Some(publisher)
        };
        let requester = if self.req.is_empty() {
            None
        } else {
            Some(Requester::connect(
                &ctx,
                &self.req,
                &self.options,
                self.credentials.clone(),
            )?)
        };
        Ok(Sender {
            publisher,
            requester,
            options: self.options,
            _seat: seat,
        })
    }
}

/// A PUB side and/or REQ endpoints.
pub struct Sender {
    publisher: Option<Publisher>,
    requester: Option<Requester>,
    options: SocketOptions,
    /// Its room in a shared context, if it was given none (after the sockets, so given up
    /// once they are closed).
    _seat: Option<Seat>,
}

impl Sender {
    /// Starts building a sender.
    pub fn builder() -> SenderBuilder {
        SenderBuilder::default()
    }

    /// Publishes `message` (queued while no subscriber is attached).
    ///
    /// Fails with [`TransportError::NoSocket`] when no PUB endpoint was configured.
    pub fn publish(&mut self, message: &[u8]) -> Result<(), TransportError> {
        self.publisher_or_err()?.publish(message)
    }

    /// Sends `message` to the next REQ endpoint and waits up to `timeout` for the reply.
    pub fn request(
        &mut self,
        message: &[u8],
        timeout: Duration,
    ) -> Result<Answer<'_>, RequestError> {
        self.requester
            .as_mut()
            .ok_or(RequestError::NoEndpoint)?
            .request(message, timeout)
    }

    /// Sends a heartbeat to subscribers, keeping their silence timeouts from firing.
    ///
    /// Fails with [`TransportError::NoSocket`] when no PUB endpoint was configured.
    pub fn heartbeat(&mut self) -> Result<(), TransportError> {
        self.publisher_or_err()?.heartbeat()
    }

    /// The PUB side, if configured.
    pub fn publisher(&mut self) -> Option<&mut Publisher> {
        self.publisher.as_mut()
    }

    /// The endpoints the PUB side is bound to, wildcard ports resolved (none without
    /// `publish_on`).
    pub fn publish_endpoints(&self) -> &[String] {
        self.publisher.as_ref().map_or(&[], |p| p.endpoints())
    }

    /// The PUB side's live counters, if it is configured.
    pub fn publisher_stats(&self) -> Option<Arc<PublisherStats>> {
        self.publisher.as_ref().map(Publisher::stats)
    }

    /// The REQ side, if configured.
    pub fn requester(&mut self) -> Option<&mut Requester> {
        self.requester.as_mut()
    }

    /// The options the sockets were made with.
    pub fn options(&self) -> &SocketOptions {
        &self.options
    }

    fn publisher_or_err(&mut self) -> Result<&mut Publisher, TransportError> {
        self.publisher
            .as_mut()
            .ok_or(TransportError::NoSocket(SocketKind::Pub))
    }
}
