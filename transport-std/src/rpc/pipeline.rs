//! [`Pipeline`]: many calls of one command in flight over one connection.
//!
//! A REQ socket allows one call at a time, so a sequential client waits a full round trip
//! (two thread wake-ups on each side) per call. A pipeline uses a DEALER socket instead: it
//! sends calls as fast as the caller submits them and matches the answers by the frame's
//! sequence number, in whatever order they come back. Servers need no change: a DEALER that
//! prefixes each frame with an empty delimiter speaks to a REP socket like a REQ does.
//!
//! Why a window API rather than a thread-safe client: sockets must stay on one thread, and
//! a shared client would need a lock or a channel per call (an allocation and two wake-ups
//! each, the very costs pipelining removes). A pipeline is cheap (one socket): give each
//! thread its own. The caller keeps as many calls in flight as it likes — `send` until the
//! window is full, then `recv` one answer and `send` again — and every call keeps its own
//! deadline: an answer that does not come in time is reported as a [`CallError::Timeout`] for
//! its sequence number, and a late answer is dropped.
//!
//! The socket is monitored. A server that refuses the pipeline's credentials ends every call
//! in flight with [`CallError::AuthFailed`] as soon as libzmq reports it, and `send` refuses
//! with the same error until a handshake succeeds. A dropped connection (the server went
//! away, or libzmq cut it for a message over `max_message_size`, after which libzmq 4.3
//! would never reconnect) ends every call in flight with [`CallError::Disconnected`] — their
//! answers can no longer come — and the socket is made anew for the next call.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use zmqrpc_core::Command;
use zmqrpc_protocol::calls::{Calls, Limits, Why};

use crate::auth::Credentials;
use crate::dialect::{Addressee, AnswerView, Dialect, Native};
use crate::rpc::receipt::{receipt, Receipt};
use crate::socket::context::{self, Seat, SOCKETS_PER_ENDPOINT};
use crate::socket::monitor::{Event, Handshakes, MonitoredSocket};
use crate::socket::options::{later, SocketOptions};
use crate::socket::{drain_parts, wait_ms};
use crate::{CallError, TransportError};

/// One call's end: its sequence number and its response or error.
pub type Outcome<C> = (u32, Result<<C as Command>::Response, CallError>);

/// Builds a [`Pipeline`].
pub struct PipelineBuilder<D: Dialect = Native> {
    dialect: D,
    ctx: Option<zmq::Context>,
    endpoint: Option<String>,
    options: SocketOptions,
    credentials: Option<Credentials>,
    timeout: Duration,
    window: usize,
    window_bytes: usize,
}

/// The bytes of calls a pipeline has in flight by default: 16 MiB.
pub const DEFAULT_WINDOW_BYTES: usize = 16 << 20;

impl<D: Dialect> PipelineBuilder<D> {
    /// Uses `ctx` (needed for `inproc://`); by default the pipeline takes room in a context
    /// the process's clients share (see [`RpcClient`](crate::RpcClient#threads)).
    pub fn context(mut self, ctx: &zmq::Context) -> Self {
        self.ctx = Some(ctx.clone());
        self
    }

    /// The server's REP (or ROUTER) endpoint, as for a client's `req` (one: a pipeline talks to
    /// one server, so a second call replaces the first). Required: without it
    /// [`connect`](PipelineBuilder::connect) fails with
    /// [`ConfigError::NoEndpoint`](crate::ConfigError::NoEndpoint).
    pub fn req(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Socket options.
    pub fn options(mut self, options: SocketOptions) -> Self {
        self.options = options;
        self
    }

    /// Presents `credentials` to a server that requires them.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Each call's timeout, from its `send` (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most calls in flight (default 256); beyond it [`Pipeline::send`] refuses with
    /// [`CallError::WindowFull`].
    pub fn window(mut self, calls: usize) -> Self {
        self.window = calls.max(1);
        self
    }

    /// The most bytes of requests in flight (default [`DEFAULT_WINDOW_BYTES`]); a call that
    /// would go past it is refused with [`CallError::WindowFull`] too (one call is always
    /// let through, however large).
    pub fn window_bytes(mut self, bytes: usize) -> Self {
        self.window_bytes = bytes;
        self
    }

    /// Creates and connects the DEALER socket, for calls of command `C`.
    ///
    /// Fails with [`ConfigError::UnnumberedDialect`](crate::ConfigError::UnnumberedDialect)
    /// for a dialect whose answers carry no call number (pyzmqrpc3's).
    pub fn connect<C: Command>(self) -> Result<Pipeline<C, D>, TransportError> {
        if !D::NUMBERS_ANSWERS {
            return Err(crate::ConfigError::UnnumberedDialect {
                what: "pipeline",
                dialect: std::any::type_name::<D>(),
            }
            .into());
        }
        let endpoint = self
            .endpoint
            .ok_or(crate::ConfigError::NoEndpoint { what: "pipeline" })?;
        let (ctx, seat) = context::given_or_shared(self.ctx, SOCKETS_PER_ENDPOINT);
        let link = Link::connect(
            &ctx,
            &endpoint,
            &self.options,
            self.credentials.as_ref(),
            self.window,
        )?;
        Ok(Pipeline {
            dialect: self.dialect,
            link,
            ctx,
            _seat: seat,
            options: self.options.clone(),
            credentials: self.credentials,
            endpoint,
            max_frame: self.options.max_frame(),
            timeout: self.timeout,
            window: self.window,
            calls: Calls::new(Limits {
                in_flight: self.window,
                queued: 0,
                bytes: self.window_bytes,
            }),
            ended: VecDeque::new(),
            buf: Vec::with_capacity(256),
            part: zmq::Message::new(),
            stray: 0,
            command: PhantomData,
        })
    }
}

/// The DEALER socket and what its monitor has said.
struct Link {
    socket: MonitoredSocket,
    /// What the handshakes said, and whether a connection is up.
    handshakes: Handshakes,
    /// When the monitor was last read.
    last_read: Instant,
}

/// How often a busy pipeline reads its monitor.
const READ_EVERY: Duration = Duration::from_millis(1);

impl Link {
    fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        options: &SocketOptions,
        credentials: Option<&Credentials>,
        window: usize,
    ) -> Result<Link, TransportError> {
        let err = |op| move |e| TransportError::new(op, endpoint, e);
        let socket = options
            .connecting_socket(ctx, zmq::DEALER, credentials)
            .map_err(err("socket"))?;
        // Calls not yet sent when the pipeline closes are abandoned, like a timed-out REQ's.
        socket.set_linger(0).map_err(err("set_linger"))?;
        // The window bounds what we queue; let libzmq queue that much too.
        let hwm = i32::try_from(window)
            .unwrap_or(i32::MAX)
            .max(options.send_hwm);
        socket.set_sndhwm(hwm).map_err(err("set_sndhwm"))?;
        socket.set_rcvhwm(hwm).map_err(err("set_rcvhwm"))?;
        let socket = MonitoredSocket::new(ctx, socket)?;
        socket.connect(endpoint).map_err(err("connect"))?;
        Ok(Link {
            socket,
            handshakes: Handshakes::default(),
            last_read: Instant::now(),
        })
    }

    /// Reads monitor events: whether an established connection was dropped.
    fn read_monitor(&mut self) -> bool {
        self.last_read = Instant::now();
        let mut dropped = false;
        while let Some(event) = self.socket.monitor_mut().next() {
            dropped |= event == Event::Disconnected && self.handshakes.is_up();
            self.handshakes.observe(event);
        }
        dropped
    }
}

/// Calls of command `C` in flight over one DEALER socket; see the [module docs](self).
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # use std::time::Duration;
/// # use zmqrpc_transport_std::Pipeline;
/// # #[derive(Serialize, Deserialize)] struct Add(i32, i32);
/// # impl zmqrpc_core::Command for Add { const NAME: &'static str = "add"; type Response = i32; }
/// let mut pipeline = Pipeline::builder().req("tcp://127.0.0.1:30000").connect::<Add>()?;
/// for i in 0..100 {
///     pipeline.send(&Add(i, i))?;
/// }
/// while pipeline.in_flight() > 0 {
///     if let Some((seq, answer)) = pipeline.recv(Duration::from_secs(1))? {
///         println!("call {seq}: {:?}", answer);
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The dialect must number its answers (the native one does): answers are matched to calls
/// by their sequence number, and an answer that names no call is dropped as a stray.
pub struct Pipeline<C, D: Dialect = Native> {
    dialect: D,
    link: Link,
    ctx: zmq::Context,
    /// Its room in a shared context, if it was given none.
    _seat: Option<Seat>,
    options: SocketOptions,
    credentials: Option<Credentials>,
    endpoint: String,
    max_frame: usize,
    timeout: Duration,
    window: usize,
    /// The calls in flight: numbers, deadlines, sizes, matching.
    calls: Calls<()>,
    /// Calls that ended without an answer (refused, disconnected), to report in turn.
    ended: VecDeque<(u32, CallError)>,
    buf: Vec<u8>,
    part: zmq::Message,
    stray: u64,
    command: PhantomData<fn(C)>,
}

impl Pipeline<()> {
    /// Starts building a pipeline of the native dialect.
    pub fn builder() -> PipelineBuilder {
        Pipeline::builder_for(Native)
    }

    /// Starts building a pipeline that calls in `dialect`.
    pub fn builder_for<D: Dialect>(dialect: D) -> PipelineBuilder<D> {
        PipelineBuilder {
            dialect,
            ctx: None,
            endpoint: None,
            options: SocketOptions::default(),
            credentials: None,
            timeout: Duration::from_secs(5),
            window: 256,
            window_bytes: DEFAULT_WINDOW_BYTES,
        }
    }
}

impl<C: Command, D: Dialect> Pipeline<C, D> {
    /// Sends `command` without waiting; returns its sequence number, which
    /// [`recv`](Pipeline::recv) reports with its answer.
    ///
    /// Fails with [`CallError::WindowFull`] while the window is full: `recv` first.
    pub fn send(&mut self, command: &C) -> Result<u32, CallError> {
        let full = |calls: &Calls<()>| CallError::WindowFull {
            in_flight: calls.in_flight(),
        };
        if self.calls.in_flight() >= self.window {
            return Err(full(&self.calls));
        }
        let now = Instant::now();
        self.check_link(false, now)?;
        if let Some(reason) = self.link.handshakes.refused() {
            return Err(CallError::AuthFailed {
                endpoint: self.endpoint.clone(),
                reason,
            });
        }
        let deadline = later(now, self.timeout);
        let seq = self
            .calls
            .submit(C::KEY, 0, deadline)
            .map_err(|_| full(&self.calls))?;
        if let Err(e) = self
            .dialect
            .encode_call(seq, command, &mut self.buf, self.max_frame)
        {
            self.calls.cancel(seq);
            return Err(CallError::Encode(e));
        }
        self.calls.set_bytes(seq, self.buf.len());
        // Past the window's bytes the call stays unsent: refused.
        if self.calls.next_to_send() != Some(seq) {
            self.calls.cancel(seq);
            return Err(full(&self.calls));
        }
        let socket = &self.link.socket;
        let sent = socket
            .send(&b""[..], zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| socket.send(&self.buf[..], zmq::DONTWAIT));
        if let Err(e) = sent {
            self.calls.cancel(seq);
            return Err(CallError::Transport(TransportError::new(
                "send",
                &self.endpoint,
                e,
            )));
        }
        Ok(seq)
    }

    /// Waits up to `wait` for the next answer (or the next call to time out).
    ///
    /// `Ok(None)`: nothing within `wait`. `Ok(Some((seq, result)))`: call `seq` ended, with
    /// its response or its error (remote error, timeout, bad reply).
    pub fn recv(&mut self, wait: Duration) -> Result<Option<Outcome<C>>, CallError> {
        let mut now = Instant::now();
        let until = later(now, wait);
        let mut monitor_ready = false;
        loop {
            self.check_link(std::mem::take(&mut monitor_ready), now)?;
            if let Some(ended) = self.ended.pop_front() {
                return Ok(Some((ended.0, Err(ended.1))));
            }
            if let Some(answer) = self.try_recv(until)? {
                return Ok(Some(answer));
            }
            now = Instant::now();
            if let Some(seq) = self.calls.expire(now) {
                self.calls.collect(seq);
                return Ok(Some((
                    seq,
                    Err(CallError::Timeout {
                        endpoint: self.endpoint.clone(),
                        after: self.timeout,
                    }),
                )));
            }
            if now >= until {
                return Ok(None);
            }
            let next = self
                .calls
                .next_deadline()
                .map_or(until, |deadline| deadline.min(until));
            let ms = i64::from(wait_ms(next.saturating_duration_since(now)));
            let mut items = [
                self.link.socket.as_poll_item(zmq::POLLIN),
                self.link
                    .socket
                    .monitor()
                    .socket()
                    .as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, ms) {
                Ok(_) | Err(zmq::Error::EINTR) => monitor_ready = items[1].is_readable(),
                Err(e) => {
                    return Err(CallError::Transport(TransportError::new(
                        "poll",
                        &self.endpoint,
                        e,
                    )))
                }
            }
        }
    }

    /// Calls in flight (sent, not yet reported by [`recv`](Pipeline::recv)).
    pub fn in_flight(&self) -> usize {
        self.calls.in_flight() + self.ended.len()
    }

    /// Reads the monitor. A refused handshake ends the calls in flight with
    /// [`CallError::AuthFailed`]; a dropped connection ends them with
    /// [`CallError::Disconnected`] and makes the socket anew.
    ///
    /// The monitor is read when a poll found it readable (`polled`), else at most once
    /// every [`READ_EVERY`] (`now` is the caller's clock reading, so a call reads the clock
    /// once): an empty read costs libzmq a system call, which would dominate the cost of a
    /// pipelined call.
    fn check_link(&mut self, polled: bool, now: Instant) -> Result<(), CallError> {
        if !polled && now.saturating_duration_since(self.link.last_read) < READ_EVERY {
            return Ok(());
        }
        let dropped = self.link.read_monitor();
        let ended = if let Some(reason) = self.link.handshakes.refused() {
            CallError::AuthFailed {
                endpoint: self.endpoint.clone(),
                reason,
            }
        } else if dropped {
            log::info!(
                "pipeline to {}: connection dropped; connecting anew",
                self.endpoint
            );
            self.link = Link::connect(
                &self.ctx,
                &self.endpoint,
                &self.options,
                self.credentials.as_ref(),
                self.window,
            )?;
            CallError::Disconnected {
                endpoint: self.endpoint.clone(),
            }
        } else {
            return Ok(());
        };
        let why = match ended {
            CallError::AuthFailed { .. } => Why::Refused,
            _ => Why::Disconnected,
        };
        let first = self.ended.len();
        let reported = &mut self.ended;
        self.calls
            .end_in_flight(why, |seq, ()| reported.push_back((seq, ended.clone())));
        for &(seq, _) in self.ended.range(first..) {
            self.calls.collect(seq);
        }
        Ok(())
    }

    /// Answers dropped because they matched no call in flight (late, or not ours).
    pub fn stray_answers(&self) -> u64 {
        self.stray + self.calls.counts().late
    }

    /// An answer already received, if any. Strays are skipped until `until` at most: a peer
    /// that floods them cannot hold the caller past its wait (the clock is read only on a
    /// stray, never on the way to an answer).
    fn try_recv(&mut self, until: Instant) -> Result<Option<Outcome<C>>, CallError> {
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) && Instant::now() >= until {
                return Ok(None);
            }
            // [empty delimiter][frame], as a REP socket sends it.
            match self.link.socket.recv(&mut self.part, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(None),
                Err(e) => {
                    return Err(CallError::Transport(TransportError::new(
                        "recv",
                        &self.endpoint,
                        e,
                    )))
                }
            }
            if !self.part.is_empty() || !self.part.get_more() {
                self.drain();
                self.stray += 1;
                continue;
            }
            if self
                .link
                .socket
                .recv(&mut self.part, zmq::DONTWAIT)
                .is_err()
                || self.part.get_more()
            {
                self.drain();
                self.stray += 1;
                continue;
            }
            let Some((seq, result)) = self.answer() else {
                continue; // counted as a stray
            };
            return Ok(Some((seq, result)));
        }
    }

    /// Reads the answer in `part`, if it answers a call in flight; counts it as a stray if
    /// not (the call machine counts the late ones).
    fn answer(&mut self) -> Option<Outcome<C>> {
        let answer = match self.dialect.read_answer(&self.part) {
            Ok(
                answer @ AnswerView {
                    to: Addressee::Call(_),
                    ..
                },
            ) => answer,
            _ => {
                self.stray += 1;
                return None;
            }
        };
        let Addressee::Call(tag) = answer.to else {
            return None;
        };
        self.calls.answered(tag.seq, tag.key)?;
        self.calls.collect(tag.seq);
        let meaning = answer.meaning::<D, C::Response>(&self.dialect);
        let result = receipt(&self.endpoint, meaning).and_then(Receipt::into_response);
        Some((tag.seq, result))
    }

    /// Discards the rest of a message counted as a stray (a rest that cannot be read is
    /// gone with it).
    fn drain(&mut self) {
        let _ = drain_parts(&self.link.socket, &mut self.part);
    }
}
