//! The shared client's I/O thread: it owns the sockets, sends queued calls, hands answers
//! to their callers and ends calls whose deadlines pass.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use zmqrpc_protocol::calls::Why;

use super::{Inside, Shared, ToWake};
use crate::auth::Credentials;
use crate::dialect::{Addressee, Dialect};
use crate::socket::monitor::{Event, Handshakes, MonitoredSocket};
use crate::socket::options::SocketOptions;
use crate::socket::{drain_parts, poll, wait_ms};
use crate::TransportError;

/// One server endpoint's DEALER socket and what its monitor has said.
struct Link {
    socket: MonitoredSocket,
    handshakes: Handshakes,
    /// An `inproc://` peer has no handshake to wait for.
    in_process: bool,
}

impl Link {
    fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        options: &SocketOptions,
        credentials: Option<&Credentials>,
    ) -> Result<Link, TransportError> {
        let err = |op| move |e| TransportError::new(op, endpoint, e);
        let socket = options
            .connecting_socket(ctx, zmq::DEALER, credentials)
            .map_err(err("socket"))?;
        // Calls not yet sent when the client goes are abandoned.
        socket.set_linger(0).map_err(err("set_linger"))?;
        let socket = MonitoredSocket::new(ctx, socket)?;
        socket.connect(endpoint).map_err(err("connect"))?;
        Ok(Link {
            socket,
            handshakes: Handshakes::default(),
            in_process: endpoint.starts_with("inproc://"),
        })
    }

    /// Whether calls may be sent on it: its connection's handshake is done.
    fn is_up(&self) -> bool {
        self.in_process || self.handshakes.is_up()
    }
}

/// What the I/O thread owns.
pub(super) struct Io<D: Dialect> {
    shared: Arc<Shared>,
    dialect: D,
    ctx: zmq::Context,
    endpoints: Arc<[String]>,
    options: SocketOptions,
    credentials: Option<Credentials>,
    links: Vec<Link>,
    /// The link whose turn is next.
    next: usize,
    /// The end of the wake-up pair callers write to.
    woken: UnixStream,
    part: zmq::Message,
    /// Per link, after a poll: whether its socket, and its monitor, had something.
    readable: Vec<(bool, bool)>,
    /// Calls just ended together, to wake their callers.
    ended: Vec<u32>,
    /// The callers to wake once the lock is let go (swapped with the list under it).
    to_wake: Vec<ToWake>,
}

impl<D: Dialect> Io<D> {
    pub(super) fn new(
        ctx: &zmq::Context,
        shared: Arc<Shared>,
        dialect: D,
        endpoints: Arc<[String]>,
        options: SocketOptions,
        credentials: Option<Credentials>,
        woken: UnixStream,
    ) -> Result<Io<D>, TransportError> {
        let links = endpoints
            .iter()
            .map(|endpoint| Link::connect(ctx, endpoint, &options, credentials.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Io {
            shared,
            dialect,
            ctx: ctx.clone(),
            readable: Vec::with_capacity(links.len()),
            links,
            endpoints,
            options,
            credentials,
            next: 0,
            woken,
            part: zmq::Message::new(),
            ended: Vec::new(),
            to_wake: Vec::new(),
        })
    }

    /// Serves until the last clone asks it to stop, or until it fails or panics; whichever,
    /// every call still waiting then ends with `Stopped`, and later calls are refused.
    pub(super) fn run(mut self) {
        match catch_unwind(AssertUnwindSafe(|| self.serve())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("shared client: its I/O thread failed: {e}"),
            Err(_) => log::error!("shared client: its I/O thread panicked"),
        }
        let mut inside = self.shared.lock();
        inside.stopped = true;
        inside.calls.end_all(Why::Stopped, |_, waiter| {
            if let Some(waker) = waiter.waker.take() {
                waker.wake();
            }
        });
        drop(inside);
        for ready in self.shared.ready.iter() {
            ready.notify_all();
        }
    }

    fn serve(&mut self) -> Result<(), TransportError> {
        loop {
            let timeout = {
                let shared = Arc::clone(&self.shared);
                let mut inside = shared.lock();
                inside.asleep = false;
                if inside.stop {
                    return Ok(());
                }
                let now = Instant::now();
                while let Some(seq) = inside.calls.expire(now) {
                    self.shared.notify(&mut inside, seq);
                }
                self.send_queued(&mut inside);
                inside.asleep = true;
                let timeout = inside.calls.next_deadline().map_or(-1, |deadline| {
                    i64::from(wait_ms(deadline.saturating_duration_since(now)))
                });
                shared.unlock(inside, &mut self.to_wake);
                timeout
            };
            let woken = self.poll(timeout)?;
            if woken {
                self.drain_wake_ups();
            }
            for index in 0..self.links.len() {
                let (socket, monitor) = self.readable.get(index).copied().unwrap_or_default();
                if monitor {
                    self.check_link(index)?;
                }
                if socket {
                    self.receive(index)?;
                }
            }
        }
    }

    /// Sends queued calls, in turn to the links that are up, while the bounds allow.
    fn send_queued(&mut self, inside: &mut MutexGuard<'_, Inside>) {
        while let Some(seq) = inside.calls.next_to_send() {
            let Some(index) = self.take_turn() else {
                inside.calls.unsend(seq); // no connection up: it waits, unsent
                return;
            };
            let Some(waiter) = inside.calls.data_mut(seq) else {
                continue;
            };
            let socket = &self.links[index].socket;
            // [empty delimiter][frame], as a REQ socket sends it.
            let sent = socket
                .send(&b""[..], zmq::SNDMORE | zmq::DONTWAIT)
                .and_then(|()| socket.send(&waiter.request[..], zmq::DONTWAIT));
            match sent {
                Ok(()) => waiter.endpoint = index,
                Err(zmq::Error::EAGAIN) => {
                    inside.calls.unsend(seq);
                    return;
                }
                Err(e) => {
                    log::warn!(
                        "shared client: sending to {} failed: {e}",
                        self.endpoints[index]
                    );
                    waiter.endpoint = index;
                    inside.calls.end(seq, Why::Disconnected);
                    self.shared.notify(inside, seq);
                }
            }
        }
    }

    /// The next link that is up, in turn.
    fn take_turn(&mut self) -> Option<usize> {
        let count = self.links.len();
        (0..count)
            .map(|k| (self.next + k) % count)
            .find(|&index| self.links[index].is_up())
            .inspect(|&index| self.next = (index + 1) % count)
    }

    /// Polls the wake-up pair, every socket and every monitor; whether a caller woke us.
    fn poll(&mut self, timeout: i64) -> Result<bool, TransportError> {
        let Io {
            links,
            readable,
            woken,
            ..
        } = self;
        let Some(filler) = links.first() else {
            return Ok(false);
        };
        let items = std::iter::once(zmq::PollItem::from_fd(woken.as_raw_fd(), zmq::POLLIN)).chain(
            links.iter().flat_map(|link| {
                [
                    link.socket.as_poll_item(zmq::POLLIN),
                    link.socket.monitor().socket().as_poll_item(zmq::POLLIN),
                ]
            }),
        );
        let count = 1 + 2 * links.len();
        let polled = poll(&filler.socket, items, count, timeout, |items| {
            readable.clear();
            readable.extend(
                items[1..]
                    .chunks(2)
                    .map(|pair| (pair[0].is_readable(), pair[1].is_readable())),
            );
            items[0].is_readable()
        })
        .map_err(|e| TransportError::new("poll", "shared client", e))?;
        if polled.is_none() {
            readable.clear(); // a signal: nothing read, poll again
        }
        Ok(polled.unwrap_or(false))
    }

    /// Empties the wake-up pair (its bytes only say "look").
    fn drain_wake_ups(&mut self) {
        // One read: callers write only while the thread sleeps, so there is rarely more
        // than a byte, and what is left makes the next poll return at once.
        let mut bytes = [0u8; 256];
        let _ = self.woken.read(&mut bytes);
    }

    /// Reads link `index`'s monitor: a refused handshake ends its calls (and, refused
    /// everywhere, the queued ones), a dropped connection ends its calls and makes it anew.
    fn check_link(&mut self, index: usize) -> Result<(), TransportError> {
        let link = &mut self.links[index];
        let mut dropped = false;
        while let Some(event) = link.socket.monitor_mut().next() {
            dropped |= event == Event::Disconnected && link.handshakes.is_up();
            link.handshakes.observe(event);
        }
        let refused = link.handshakes.refused();
        let mut inside = self.shared.lock();
        inside.refused[index] = refused;
        let ended = &mut self.ended;
        ended.clear();
        if refused.is_some() {
            inside.calls.end_in_flight_if(
                Why::Refused,
                |w| w.endpoint == index,
                |seq, _| ended.push(seq),
            );
            if inside.refused_everywhere().is_some() {
                inside.calls.end_all(Why::Refused, |seq, _| ended.push(seq));
            }
        } else if dropped {
            inside.calls.end_in_flight_if(
                Why::Disconnected,
                |w| w.endpoint == index,
                |seq, _| ended.push(seq),
            );
        }
        for &seq in self.ended.iter() {
            self.shared.notify(&mut inside, seq);
        }
        self.shared.unlock(inside, &mut self.to_wake);
        if dropped && refused.is_none() {
            // libzmq 4.3 never reconnects a connection it cut for a protocol error.
            log::info!(
                "shared client: the connection to {} dropped; connecting anew",
                self.endpoints[index]
            );
            self.links[index] = Link::connect(
                &self.ctx,
                &self.endpoints[index],
                &self.options,
                self.credentials.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Takes every answer link `index` has, each to its call's slot, waking its caller.
    fn receive(&mut self, index: usize) -> Result<(), TransportError> {
        let shared = Arc::clone(&self.shared);
        let mut inside = None;
        let received = self.receive_locked(index, &shared, &mut inside);
        if let Some(inside) = inside {
            shared.unlock(inside, &mut self.to_wake);
        }
        received
    }

    /// [`receive`](Io::receive)'s loop; the lock, once taken, stays in `inside`.
    fn receive_locked<'s>(
        &mut self,
        index: usize,
        shared: &'s Shared,
        inside: &mut Option<MutexGuard<'s, Inside>>,
    ) -> Result<(), TransportError> {
        loop {
            let socket = &self.links[index].socket;
            match socket.recv(&mut self.part, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(TransportError::new("recv", &self.endpoints[index], e)),
            }
            let inside = inside.get_or_insert_with(|| shared.lock());
            // [empty delimiter][frame], as a REP socket sends it.
            let framed = self.part.is_empty()
                && self.part.get_more()
                && socket.recv(&mut self.part, zmq::DONTWAIT).is_ok()
                && !self.part.get_more();
            if !framed {
                let _ = drain_parts(socket, &mut self.part);
                inside.stray += 1;
                continue;
            }
            let tag = match self.dialect.read_answer(&self.part) {
                Ok(answer) => match answer.to {
                    Addressee::Call(tag) => tag,
                    Addressee::Anyone => {
                        inside.stray += 1;
                        continue;
                    }
                },
                Err(_) => {
                    inside.stray += 1;
                    continue;
                }
            };
            if let Some(waiter) = inside.calls.answered(tag.seq, tag.key) {
                waiter.reply.clear();
                waiter.reply.extend_from_slice(&self.part);
                shared.notify(inside, tag.seq);
            }
            // With no call left in flight, no answer can be waiting: not looking saves a
            // read that would find nothing (a system call, for a lone caller one per call).
            // A stray, if one came, is read at the next pass: the poll is level-triggered.
            if inside.calls.in_flight() == 0 {
                return Ok(());
            }
        }
    }
}
