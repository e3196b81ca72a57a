//! [`RpcClient`]: typed calls over REQ, typed notifications over PUB.

use std::sync::Arc;
use std::time::Duration;

use zmqrpc_core::Command;

use crate::auth::{Credentials, Users};
use crate::dialect::{interpret, CallTag, Dialect, Native};
use crate::error::HandshakeFailure;
use crate::messaging::publisher::PublisherStats;
use crate::messaging::sender::{Sender, SenderBuilder};
use crate::rpc::receipt::{receipt, Receipt};
use crate::socket::options::SocketOptions;
use crate::{CallError, RequestError, SocketKind, TransportError};

/// Builds an [`RpcClient`].
pub struct ClientBuilder<D: Dialect = Native> {
    dialect: D,
    sender: SenderBuilder,
    options: SocketOptions,
    timeout: Duration,
    retries: u32,
}

impl<D: Dialect> ClientBuilder<D> {
    /// Uses `ctx` (needed for `inproc://`); by default the client takes room in a context
    /// the process's clients share (see [`RpcClient`]'s [threads](RpcClient#threads)).
    /// libzmq lets one context hold 1,023 sockets, and a client holds three per endpoint:
    /// give one context to at most about 300 clients.
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.sender = self.sender.context(ctx);
        self
    }

    /// Adds a server's REP endpoint; calls go to the endpoints in turn, one call to one
    /// endpoint.
    pub fn req(mut self, endpoint: impl Into<String>) -> Self {
        self.sender = self.sender.req(endpoint);
        self
    }

    /// Binds a PUB socket to `endpoint` too, for [`RpcClient::notify`]; servers subscribe.
    pub fn publish_on(mut self, endpoint: impl Into<String>) -> Self {
        self.sender = self.sender.publish_on(endpoint);
        self
    }

    /// Notifications held while no server subscribes (default 1000); beyond, the oldest are
    /// dropped and counted.
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.sender = self.sender.pending_limit(limit);
        self
    }

    /// Bytes of notifications held at most (default 8 MiB); beyond, the oldest are dropped
    /// and counted.
    pub fn pending_bytes(mut self, bytes: usize) -> Self {
        self.sender = self.sender.pending_bytes(bytes);
        self
    }

    /// Back-pressure for [`RpcClient::notify`]: when the client holds all the notifications
    /// it may, `notify` waits up to `wait` for the subscribers to take them, at their pace,
    /// before dropping the oldest. A burst then reaches a server that keeps up whole. Off by
    /// default: `notify` never waits.
    pub fn backpressure(mut self, wait: Duration) -> Self {
        self.sender = self.sender.backpressure(wait);
        self
    }

    /// How long one subscriber may stay a high-water mark behind, holding every
    /// notification back, before it misses notifications instead (default 1 s; see
    /// [`Publisher`](crate::Publisher)).
    pub fn slow_subscriber_grace(mut self, grace: Duration) -> Self {
        self.sender = self.sender.slow_subscriber_grace(grace);
        self
    }

    /// The default per-call timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a call that timed out, failed in transport, or whose connection was cut
    /// off during the handshake is sent again, each time to the next endpoint (default 0). A retried call may run twice on the servers: use it
    /// for idempotent commands.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Presents `credentials` to the servers the REQ sockets connect to (the
    /// [`auth`](crate::auth) rule: a connecting socket presents; the bound publisher never
    /// does). Without a `req` endpoint, `connect` refuses with
    /// [`ConfigError::CredentialsWithoutConnect`](crate::ConfigError::CredentialsWithoutConnect).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.sender = self.sender.credentials(credentials);
        self
    }

    /// Protects the bound publisher ([`publish_on`](ClientBuilder::publish_on)): only
    /// servers presenting the credentials of one of `users` subscribe (a bound socket
    /// verifies). Without a `publish_on` endpoint, `connect` refuses with
    /// [`ConfigError::UsersWithoutBind`](crate::ConfigError::UsersWithoutBind).
    pub fn users(mut self, users: Users) -> Self {
        self.sender = self.sender.users(users);
        self
    }

    /// Socket options for every socket.
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.sender = self.sender.options(options.clone());
        self.options = options;
        self
    }

    /// Creates and connects the sockets.
    pub fn connect(self) -> Result<RpcClient<D>, TransportError> {
        Ok(RpcClient {
            dialect: self.dialect,
            sender: self.sender.connect()?,
            max_frame: self.options.max_frame(),
            timeout: self.timeout,
            retries: self.retries,
            seq: initial_seq(),
            buf: Vec::with_capacity(256),
        })
    }
}

/// Calls [`Command`]s on servers and waits for their typed responses.
///
/// A client is `Send` but not `Sync`: its calls take `&mut self`, one at a time, over
/// libzmq REQ sockets that one thread at a time may use. Move it into the thread that
/// calls, or give each thread its own (they are cheap); `Arc<RpcClient>` does not compile
/// (the compiler speaks of a `*mut c_void` inside `Sender`: libzmq's socket). Many calls in
/// flight on one thread: a [`Pipeline`](crate::Pipeline). The repository's
/// `docs/threads.md` says what to use from many threads and from tokio.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use zmqrpc_transport_std::RpcClient;
/// # #[derive(Serialize, Deserialize)] struct Ping;
/// # impl zmqrpc_core::Command for Ping { const NAME: &'static str = "ping"; type Response = u64; }
/// let mut client = RpcClient::builder().req("tcp://127.0.0.1:30000").connect()?;
/// let uptime: u64 = client.call(&Ping)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Threads
///
/// A client starts no thread of its own: its calls run on the thread that makes them, and
/// its sockets live in a libzmq context that clients built without
/// [`context`](ClientBuilder::context) share. Each such context runs two libzmq threads (its
/// I/O thread and its reaper) and holds up to 768 sockets: a client takes three per
/// endpoint (its REQ socket and the two ends of its monitor) and three for a PUB side, so
/// 256 one-endpoint clients share two threads, and a process with `n` of them runs
/// `2 × ⌈n / 256⌉` (a context ends with the last client in it). [`Pipeline`](crate::Pipeline)
/// and [`Sender`] take room the same way; a
/// [`SharedClient`](crate::SharedClient) adds one I/O thread of its own.
pub struct RpcClient<D: Dialect = Native> {
    dialect: D,
    sender: Sender,
    max_frame: usize,
    timeout: Duration,
    retries: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl RpcClient {
    /// Starts building a client of the native dialect.
    pub fn builder() -> ClientBuilder {
        RpcClient::builder_for(Native)
    }
}

impl<D: Dialect> RpcClient<D> {
    /// Starts building a client that calls in `dialect`.
    pub fn builder_for(dialect: D) -> ClientBuilder<D> {
        ClientBuilder {
            dialect,
            sender: Sender::builder().named("client"),
            options: SocketOptions::default(),
            timeout: Duration::from_secs(5),
            retries: 0,
        }
    }

    /// Calls `command` on the next server with the default timeout.
    ///
    /// Through a store-and-forward hop (a buffered proxy, a proxy that publishes), which
    /// answers before the command runs, a command whose response carries nothing (`()`)
    /// returns `Ok` once the hop holds it; any other is [`CallError::Accepted`], as its
    /// response will not come back. [`submit`](Self::submit) tells the two cases apart.
    pub fn call<C: Command>(&mut self, command: &C) -> Result<C::Response, CallError> {
        self.call_timeout(command, self.timeout)
    }

    /// Calls `command` on the next server, waiting up to `timeout` for each attempt.
    pub fn call_timeout<C: Command>(
        &mut self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Response, CallError> {
        self.submit_timeout(command, timeout)?.into_response()
    }

    /// Calls `command` like [`call`](Self::call), and says whether the server answered or
    /// a store-and-forward hop accepted the call to deliver it later.
    ///
    /// ```no_run
    /// # use zmqrpc_transport_std::{Receipt, RpcClient};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct ReadTemperature;
    /// # impl zmqrpc_core::Command for ReadTemperature {
    /// #     const NAME: &'static str = "sensor.temperature"; type Response = f32; }
    /// # let mut client = RpcClient::builder().req("tcp://127.0.0.1:5555").connect()?;
    /// match client.submit(&ReadTemperature)? {
    ///     Receipt::Answered(celsius) => println!("{celsius} °C"),
    ///     Receipt::Accepted { endpoint } => println!("{endpoint} will deliver it later"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit<C: Command>(&mut self, command: &C) -> Result<Receipt<C::Response>, CallError> {
        self.submit_timeout(command, self.timeout)
    }

    /// [`submit`](Self::submit), waiting up to `timeout` for each attempt.
    pub fn submit_timeout<C: Command>(
        &mut self,
        command: &C,
        timeout: Duration,
    ) -> Result<Receipt<C::Response>, CallError> {
        self.seq = self.seq.wrapping_add(1);
        let call = self
            .dialect
            .encode_call(self.seq, command, &mut self.buf, self.max_frame)
            .map_err(CallError::Encode)?;
        let requester = self
            .sender
            .requester()
            .ok_or(CallError::NoSocket(SocketKind::Req))?;
        let mut attempts_left = self.retries;
        loop {
            let (index, result) = match requester.request(&self.buf, timeout) {
                Ok(reply) => (
                    reply.index,
                    answer::<D, C>(&self.dialect, &call, reply.endpoint, reply.bytes),
                ),
                Err(
                    RequestError::Timeout { .. }
                    | RequestError::NotConnected { .. }
                    | RequestError::Transport(_)
                    | RequestError::MultipartReply { .. }
                    | RequestError::AuthFailed {
                        reason: HandshakeFailure::NoDetail,
                        ..
                    },
                ) if attempts_left > 0 => {
                    attempts_left -= 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Err(CallError::StrayReply { .. }) = result {
                // Whatever that socket carries next cannot be trusted either.
                requester.reset(index);
            }
            return result;
        }
    }

    /// Publishes `command` to subscribed servers, one way. Held in the publisher's pending
    /// queue while none is subscribed or while a subscriber catches up (libzmq never drops
    /// it); what the queue cannot hold is counted as dropped. Held messages go out with the
    /// next `notify`, [`heartbeat`](RpcClient::heartbeat) or [`flush`](RpcClient::flush).
    pub fn notify<C: Command>(&mut self, command: &C) -> Result<(), CallError> {
        self.dialect
            .encode_notify(command, &mut self.buf, self.max_frame)
            .map_err(CallError::Encode)?;
        let publisher = self
            .sender
            .publisher()
            .ok_or(CallError::NoSocket(SocketKind::Pub))?;
        Ok(publisher.publish(&self.buf)?)
    }

    /// Sends what the publisher holds as far as subscribers take it; returns how many
    /// notifications are still held (0 once everything was handed to libzmq).
    pub fn flush(&mut self) -> Result<usize, CallError> {
        let publisher = self
            .sender
            .publisher()
            .ok_or(CallError::NoSocket(SocketKind::Pub))?;
        Ok(publisher.flush()?)
    }

    /// Sends the dialect's heartbeat to subscribed servers.
    pub fn heartbeat(&mut self) -> Result<(), CallError> {
        let publisher = self
            .sender
            .publisher()
            .ok_or(CallError::NoSocket(SocketKind::Pub))?;
        Ok(publisher.send_heartbeat(D::HEARTBEAT)?)
    }

    /// The endpoints the client publishes on, wildcard ports resolved (none without
    /// `publish_on`): what servers `subscribe` to.
    pub fn publish_endpoints(&self) -> &[String] {
        self.sender.publish_endpoints()
    }

    /// The live counters of what the client publishes (published, queued, dropped, …), if
    /// it publishes.
    pub fn publisher_stats(&self) -> Option<Arc<PublisherStats>> {
        self.sender.publisher_stats()
    }

    /// The underlying sender (its publisher, its requester).
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }
}

/// Turns answer bytes into the call's receipt, naming `endpoint` in its errors. A server
/// that could not read the request answers whatever call waits (it says what went wrong);
/// an answer to another call is a stray.
fn answer<D: Dialect, C: Command>(
    dialect: &D,
    call: &CallTag,
    endpoint: &str,
    bytes: &[u8],
) -> Result<Receipt<C::Response>, CallError> {
    receipt(endpoint, interpret::<D, C::Response>(dialect, call, bytes))
}

/// A starting sequence number that differs between runs, so replies meant for an earlier
/// process are unlikely to match.
fn initial_seq() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}
