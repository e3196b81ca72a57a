//! [`SocketOptions`]: the libzmq options every zmqrpc socket sets explicitly.

use std::time::{Duration, Instant};

use crate::TransportError;

/// The most ZMTP pings a socket configured [`for_peers`](SocketOptions::for_peers) sends a
/// second, all its peers together.
pub const PINGS_PER_SECOND: u32 = 250;

/// Options applied to every socket a receiver, sender, server or client creates.
///
/// The defaults suit a small device on a flaky link: bounded buffers, bounded message size,
/// ZMTP heartbeats that notice a dead TCP peer within seconds, and a short linger so closing
/// a socket never blocks for long. Start from the defaults and change what you need, so a
/// later release can add options without breaking your code:
///
/// ```
/// use std::time::Duration;
/// use zmqrpc_transport_std::SocketOptions;
/// let options = SocketOptions::default()
///     .with_max_message_size(Some(64 << 10))
///     .with_linger(Duration::ZERO);
/// assert_eq!(options.send_hwm, 1000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// How long a closing socket keeps trying to deliver queued messages (`ZMQ_LINGER`).
    /// Default 200 ms. REQ sockets always use 0: a timed-out request still queued in libzmq is
    /// discarded with its socket.
    pub linger: Duration,
    /// Outgoing messages queued per peer before libzmq blocks or drops (`ZMQ_SNDHWM`).
    /// Default 1000.
    pub send_hwm: i32,
    /// Incoming messages queued per peer (`ZMQ_RCVHWM`). Default 1000.
    pub recv_hwm: i32,
    /// Largest message accepted from a peer, in bytes (`ZMQ_MAXMSGSIZE`); libzmq disconnects
    /// a peer that sends more. Default 1 MiB. `None` for no limit.
    pub max_message_size: Option<u64>,
    /// ZMTP heartbeats: ping interval and how long without traffic before the connection is
    /// dropped (`ZMQ_HEARTBEAT_IVL`, `ZMQ_HEARTBEAT_TIMEOUT`). Default 1 s and 5 s.
    pub heartbeat: Option<(Duration, Duration)>,
    /// First and longest reconnect interval (`ZMQ_RECONNECT_IVL`, `ZMQ_RECONNECT_IVL_MAX`).
    /// Default 100 ms, backing off to 5 s.
    pub reconnect: (Duration, Duration),
    /// Connections a bound TCP socket lets wait to be accepted (`ZMQ_BACKLOG`; the kernel
    /// caps it at `net.core.somaxconn`). Default 1024, where libzmq's is 100: when a site's
    /// devices all reconnect at once (the server restarted), connections past the backlog
    /// are dropped and their devices wait out TCP's SYN back-off, seconds each time.
    pub backlog: i32,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            linger: Duration::from_millis(200),
            send_hwm: 1000,
            recv_hwm: 1000,
            max_message_size: Some(1 << 20),
            heartbeat: Some((Duration::from_secs(1), Duration::from_secs(5))),
            reconnect: (Duration::from_millis(100), Duration::from_secs(5)),
            backlog: 1024,
        }
    }
}

impl SocketOptions {
    /// With [`linger`](SocketOptions::linger) `linger`.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// With [`send_hwm`](SocketOptions::send_hwm) `messages` (0: no limit).
    pub fn with_send_hwm(mut self, messages: i32) -> Self {
        self.send_hwm = messages;
        self
    }

    /// With [`recv_hwm`](SocketOptions::recv_hwm) `messages` (0: no limit).
    pub fn with_recv_hwm(mut self, messages: i32) -> Self {
        self.recv_hwm = messages;
        self
    }

    /// With [`max_message_size`](SocketOptions::max_message_size) `bytes` (`None`: no limit).
    pub fn with_max_message_size(mut self, bytes: Option<u64>) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// With ZMTP [`heartbeat`](SocketOptions::heartbeat)s every `interval`, dropping a peer
    /// silent for `timeout`; `None` for none.
    pub fn with_heartbeat(mut self, heartbeat: Option<(Duration, Duration)>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// For a socket that thousands of peers connect to (a site server's REP side): ZMTP
    /// heartbeats slowed so that the socket sends at most [`PINGS_PER_SECOND`] of them
    /// whatever its number of `peers`, interval and timeout alike (1 s and 5 s become 20 s
    /// and 100 s for 5,000 peers); up to 250 peers, nothing changes.
    ///
    /// libzmq cancels the timer of each answered ping by walking its I/O thread's timers
    /// one by one, so pings every second to `n` peers cost about `2n²` steps a second: a
    /// whole core at 5,000 peers, starving the calls. A dead peer is dropped later (its
    /// connection lingers that much longer), and none is missed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zmqrpc_transport_std::SocketOptions;
    /// let options = SocketOptions::default().for_peers(5_000);
    /// assert_eq!(options.heartbeat, Some((Duration::from_secs(20), Duration::from_secs(100))));
    /// assert_eq!(SocketOptions::default().for_peers(100), SocketOptions::default());
    /// ```
    pub fn for_peers(mut self, peers: usize) -> Self {
        if let Some((interval, timeout)) = self.heartbeat {
            // The interval at which `peers` pings take a second.
            let spread = Duration::from_secs(1)
                .saturating_mul(u32::try_from(peers).unwrap_or(u32::MAX) / PINGS_PER_SECOND);
            if spread > interval && !interval.is_zero() {
                let factor = spread.as_secs_f64() / interval.as_secs_f64();
                self.heartbeat = Some((spread, timeout.mul_f64(factor)));
            }
        }
        self
    }

    /// With a listen [`backlog`](SocketOptions::backlog) of `connections`.
    pub fn with_backlog(mut self, connections: i32) -> Self {
        self.backlog = connections;
        self
    }

    /// With [`reconnect`](SocketOptions::reconnect) intervals from `first`, backing off to
    /// `longest`.
    pub fn with_reconnect(mut self, first: Duration, longest: Duration) -> Self {
        self.reconnect = (first, longest);
        self
    }

    /// Applies the options to `socket`.
    pub fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()> {
        socket.set_linger(millis(self.linger))?;
        socket.set_sndhwm(self.send_hwm)?;
        socket.set_rcvhwm(self.recv_hwm)?;
        let max = self
            .max_message_size
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        socket.set_maxmsgsize(max)?;
        if let Some((interval, timeout)) = self.heartbeat {
            socket.set_heartbeat_ivl(millis(interval))?;
            socket.set_heartbeat_timeout(millis(timeout))?;
        }
        socket.set_reconnect_ivl(millis(self.reconnect.0))?;
        socket.set_reconnect_ivl_max(millis(self.reconnect.1))?;
        Ok(())
    }

    /// The largest frame these options let a peer take, for encoding limits: the
    /// `max_message_size`, or 64 MiB without one.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_message_size
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(64 << 20)
    }

    /// A new socket of `kind` in `ctx` with these options, to connect: it presents
    /// `credentials` to the socket it connects to, if given.
    pub(crate) fn connecting_socket<S: Security>(
        &self,
        ctx: &zmq::Context,
        kind: zmq::SocketType,
        credentials: Option<&S>,
    ) -> zmq::Result<zmq::Socket> {
        let socket = ctx.socket(kind)?;
        self.apply(&socket)?;
        if let Some(credentials) = credentials {
            credentials.apply(&socket)?;
        }
        Ok(socket)
    }

    /// A new socket of `kind` bound to every endpoint, and the endpoints as bound (wildcard
    /// ports resolved). It verifies the peers that connect to it through `verifier`, if
    /// given; a bound socket never presents credentials (see [`auth`](crate::auth)).
    pub(crate) fn bound_socket<S: Security>(
        &self,
        ctx: &zmq::Context,
        kind: zmq::SocketType,
        verifier: Option<&S>,
        endpoints: &[String],
    ) -> Result<(zmq::Socket, Vec<String>), TransportError> {
        let name = format!("{kind:?}");
        let name = name.as_str();
        let err = |op| move |e| TransportError::new(op, name, e);
        let socket = ctx.socket(kind).map_err(err("socket"))?;
        self.apply(&socket).map_err(err("set options"))?;
        socket
            .set_backlog(self.backlog)
            .map_err(err("set ZMQ_BACKLOG"))?;
        if let Some(verifier) = verifier {
            verifier.apply(&socket).map_err(err("set ZAP domain"))?;
        }
        let mut bound = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            refuse_live_ipc_path(endpoint)?;
            socket
                .bind(endpoint)
                .map_err(|e| TransportError::new("bind", endpoint, e))?;
            let resolved = socket.get_last_endpoint().ok().and_then(Result::ok);
            bound.push(resolved.unwrap_or_else(|| endpoint.clone()));
        }
        Ok((socket, bound))
    }
}

/// A socket's part in the security handshake, set on it before it connects or binds: what
/// a connecting socket presents, or how a bound one verifies its peers. The auth layer
/// implements it; this layer only applies it.
pub(crate) trait Security {
    /// Sets the socket's security options.
    fn apply(&self, socket: &zmq::Socket) -> zmq::Result<()>;
}

/// libzmq binds an `ipc://` path by removing whatever socket file is there, so a second
/// process bound to the path of a live one would silently take it over and orphan the
/// first. Refuse that ([`TransportError::EndpointInUse`], as TCP would refuse with
/// EADDRINUSE); a stale file nobody listens on is fine.
fn refuse_live_ipc_path(endpoint: &str) -> Result<(), TransportError> {
    let Some(path) = endpoint.strip_prefix("ipc://") else {
        return Ok(());
    };
    // `@name` is Linux's abstract namespace, which the kernel itself refuses twice.
    if path.starts_with('@') || path == "*" {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(TransportError::EndpointInUse {
            endpoint: endpoint.to_owned(),
        }),
        Err(_) => Ok(()),
    }
}

/// `from + after`, or a moment decades away when `after` is too large to add (so
/// `Duration::MAX` means "no deadline" instead of a panic).
pub(crate) fn later(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .or_else(|| from.checked_add(Duration::from_secs(60 * 60 * 24 * 365 * 30)))
        .unwrap_or(from)
}

/// A duration as libzmq's `int` milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
