//! A server whose async services run as tasks on a tokio runtime: one receiving thread,
//! many calls served at once.
//!
//! The receiving thread owns what faces the network, as a worker pool's broker does: a
//! ROUTER bound to the server's endpoints, the SUB sockets, the stop signal and the ZAP
//! handler of a protected server. It dispatches each message itself ([`Dispatcher::dispatch`]:
//! the same reading, refusals, permissions, lookup and counters as every server), so
//! blocking services run right there; an async service's future is spawned on the runtime
//! with a *ticket*, the slot that keeps its caller's envelope. A finished task puts its
//! answer on a queue and wakes the thread through a socket pair it polls; the thread sends
//! each answer behind its envelope. With every ticket out (`concurrency`), the thread stops
//! reading the network, so a flood waits in libzmq's queues, not in memory here.
//!
//! A task the runtime drops unfinished (the runtime shutting down) gives its ticket back
//! unanswered, counted as failed; its caller times out. A stop ends reading at once and
//! waits for the tasks in flight to answer, up to a grace; then cancels what still runs.

use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::dispatch::{Dispatched, Dispatcher, Later, Outcome};
use crate::auth::Verifier;
use crate::dialect::Dialect;
use crate::messaging::receiver::{
    Heartbeats, Incoming, MessageHandler as _, Origin, ReceiverBuilder, ReceiverStats, Rejection,
    BATCH,
};
use crate::messaging::router::{self, Read};
use crate::messaging::subscriber::{revive_all, Received, SubSide, SubsReady};
use crate::socket::options::{later, SocketOptions};
use crate::socket::shutdown::{Shutdown, StopListener};
use crate::socket::stats::bump;
use crate::socket::{self, poll_timeout, wait_ms};
use crate::TransportError;

/// How long a stop waits for async calls in flight before cancelling them, unless told
/// ([`ServerBuilder::stop_grace`](crate::ServerBuilder::stop_grace)).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// The default bound on async calls served at once
/// ([`ServerBuilder::concurrency`](crate::ServerBuilder::concurrency)).
pub const DEFAULT_ASYNC_CONCURRENCY: usize = 64;

/// A server with async services, bound, ready to run.
pub(super) struct Tasks<D: Dialect> {
    dispatcher: Dispatcher<D>,
    runtime: tokio::runtime::Handle,
    ctx: zmq::Context,
    options: SocketOptions,
    heartbeats: Heartbeats,
    frontend: Option<zmq::Socket>,
    endpoints: Vec<String>,
    subs: Vec<SubSide>,
    stop: StopListener,
    stats: Arc<ReceiverStats>,
    /// Whether the ROUTER verifies its peers: only then has a message a `User-Id`.
    protected: bool,
    /// How a protected ROUTER verifies its peers; dropped after the sockets.
    verifier: Option<Verifier>,
    tickets: Tickets,
    finished: Arc<Finished>,
    /// The current call's `User-Id`, reused from call to call.
    user: String,
    /// How long a stop waits for the calls in flight before cancelling them.
    stop_grace: Duration,
    /// The end of the wake-up pair finished tasks write to.
    woken: UnixStream,
}

/// The tickets of calls being served, each with its caller's envelope (none for a
/// notification).
struct Tickets {
    envelopes: Vec<Vec<zmq::Message>>,
    /// Whether a ticket is out with a call (whose answer goes back) or a notification.
    calls: Vec<bool>,
    /// How to cancel the task a ticket is out with.
    tasks: Vec<Option<tokio::task::AbortHandle>>,
    free: Vec<usize>,
}

/// Answers of finished tasks, and how they wake the receiving thread.
struct Finished {
    answers: Mutex<Vec<Answer>>,
    wake: UnixStream,
}

/// What a task gives back with its ticket: how serving ended and the reply; none if the
/// runtime dropped it unfinished.
type Answer = (usize, Option<(Outcome, Vec<u8>)>);

impl Finished {
    fn push(&self, answer: Answer) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
        let _ = (&self.wake).write(&[1]);
    }
}

/// Gives a task's answer back, or, dropped unfinished, its ticket alone.
struct Report {
    finished: Arc<Finished>,
    ticket: usize,
    answer: Option<(Outcome, Vec<u8>)>,
}

impl Report {
    /// Gives `answer` back (as the report drops).
    fn answer(mut self, answer: (Outcome, Vec<u8>)) {
        self.answer = Some(answer);
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.finished.push((self.ticket, self.answer.take()));
    }
}

impl<D: Dialect> Tasks<D> {
    /// Binds `builder`'s inputs (a ROUTER for its REP endpoints) for `dispatcher`, whose async
    /// services run on `runtime`, at most `concurrency` at once.
    pub(super) fn bind(
        builder: ReceiverBuilder,
        dispatcher: Dispatcher<D>,
        runtime: tokio::runtime::Handle,
        concurrency: usize,
        stop_grace: Duration,
    ) -> Result<Tasks<D>, TransportError> {
        let inputs = builder.inputs()?;
        let (frontend, endpoints) = router::bind(
            &inputs.ctx,
            &inputs.options,
            inputs.verifier.as_ref(),
            &inputs.rep,
        )?;
        let (wake, woken) = UnixStream::pair()
            .and_then(|(wake, woken)| {
                wake.set_nonblocking(true)?;
                woken.set_nonblocking(true)?;
                Ok((wake, woken))
            })
            .map_err(|e| TransportError::Spawn {
                thread: "zmqrpc-server (its wake-up socket pair)".into(),
                reason: e.to_string(),
            })?;
        let concurrency = concurrency.max(1);
        Ok(Tasks {
            dispatcher,
            runtime,
            ctx: inputs.ctx,
            options: inputs.options,
            heartbeats: inputs.heartbeats,
            frontend,
            endpoints,
            subs: inputs.subs,
            stop: inputs.stop,
            stats: inputs.stats,
            protected: inputs.verifier.is_some(),
            verifier: inputs.verifier,
            tickets: Tickets {
                envelopes: (0..concurrency).map(|_| Vec::with_capacity(4)).collect(),
                calls: vec![false; concurrency],
                tasks: vec![None; concurrency],
                free: (0..concurrency).rev().collect(),
            },
            finished: Arc::new(Finished {
                answers: Mutex::new(Vec::with_capacity(concurrency)),
                wake,
            }),
            woken,
            user: String::new(),
            stop_grace,
        })
    }

    /// The ROUTER's endpoints as bound, wildcard ports resolved.
    pub(super) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A handle that stops the server.
    pub(super) fn shutdown(&self) -> Shutdown {
        self.stop.shutdown()
    }

    /// The input's socket counters.
    pub(super) fn stats(&self) -> Arc<ReceiverStats> {
        self.stats.clone()
    }

    /// Serves until stopped; then waits for the tasks in flight and sends their answers.
    pub(super) fn run(mut self) -> Result<(), TransportError> {
        let served = self.serve();
        let finished = self.finish();
        drop(self.frontend.take());
        self.subs.clear();
        drop(self.verifier.take());
        served.and(finished)
    }

    fn serve(&mut self) -> Result<(), TransportError> {
        let mut answers = Vec::with_capacity(self.tickets.envelopes.len());
        let mut reply = Vec::with_capacity(256);
        let mut body = zmq::Message::new();
        loop {
            self.stop.turned();
            if self.stop.requested() {
                return Ok(());
            }
            let ready = self.poll()?;
            if self.stop.requested() {
                return Ok(());
            }
            if ready.finished {
                self.drain_wake_ups();
                self.send_answers(&mut answers);
            }
            if ready.frontend {
                self.take_calls(&mut body, &mut reply)?;
            }
            for index in 0..self.subs.len() {
                if ready.subs.messages(index) {
                    self.take_notifications(index, &mut body, &mut reply)?;
                }
            }
            revive_all(
                &mut self.subs,
                &self.ctx,
                &self.options,
                ready.subs,
                &self.stats,
            )?;
        }
    }

    /// Waits for finished tasks, and for the network while a ticket is free.
    fn poll(&self) -> Result<Ready, TransportError> {
        let network = match self.tickets.free.is_empty() {
            true => zmq::PollEvents::empty(),
            false => zmq::POLLIN,
        };
        let first_sub = 2 + usize::from(self.frontend.is_some());
        let count = first_sub + 2 * self.subs.len();
        let items = std::iter::once(self.stop.socket.as_poll_item(zmq::POLLIN))
            .chain(std::iter::once(zmq::PollItem::from_fd(
                self.woken.as_raw_fd(),
                zmq::POLLIN,
            )))
            .chain(self.frontend.iter().map(|f| f.as_poll_item(network)))
            .chain(self.subs.iter().flat_map(|sub| sub.poll_items(network)));
        let timeout = poll_timeout(
            Instant::now(),
            self.subs.iter().filter_map(SubSide::deadline),
        );
        socket::poll(&self.stop.socket, items, count, timeout, |items| Ready {
            finished: items[1].is_readable(),
            frontend: first_sub == 3 && items[2].is_readable(),
            subs: SubsReady::of(&items[first_sub..]),
        })
        .map(Option::unwrap_or_default)
        .map_err(|e| TransportError::new("poll", "server", e))
    }

    /// Empties the wake-up pair (its bytes only say "look").
    fn drain_wake_ups(&mut self) {
        let mut bytes = [0u8; 64];
        while matches!(self.woken.read(&mut bytes), Ok(n) if n > 0) {}
    }

    /// Sends every finished task's answer behind its caller's envelope, counts its outcome
    /// and frees its ticket. `answers` is a buffer swapped with the queue.
    fn send_answers(&mut self, answers: &mut Vec<Answer>) {
        std::mem::swap(
            answers,
            &mut self
                .finished
                .answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (ticket, answer) in answers.drain(..) {
            let envelope = &mut self.tickets.envelopes[ticket];
            match answer {
                Some((outcome, reply)) => {
                    outcome.count(self.dispatcher.stats());
                    if self.tickets.calls[ticket] {
                        if let Some(frontend) = &self.frontend {
                            match router::send_enveloped(frontend, envelope, &reply) {
                                Ok(()) => bump(&self.stats.replied),
                                Err(e) => log::debug!("server: answer dropped: {e}"),
                            }
                        }
                    }
                }
                None => {
                    Outcome::Failed.count(self.dispatcher.stats());
                    log::warn!("server: the runtime dropped a service's task unfinished");
                }
            }
            envelope.clear();
            self.tickets.tasks[ticket] = None;
            self.tickets.free.push(ticket);
        }
    }

    /// Reads calls from the ROUTER while a ticket is free: dispatches each, answering at
    /// once or spawning its service.
    fn take_calls(
        &mut self,
        body: &mut zmq::Message,
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        let Some(frontend) = &self.frontend else {
            return Ok(());
        };
        for _ in 0..BATCH {
            let Some(&ticket) = self.tickets.free.last() else {
                return Ok(());
            };
            let envelope = &mut self.tickets.envelopes[ticket];
            reply.clear();
            match router::read_call(frontend, envelope, body)? {
                Read::Nothing => return Ok(()),
                Read::Undelimited => {
                    bump(&self.stats.rejected);
                    continue;
                }
                Read::Multipart => {
                    bump(&self.stats.rejected);
                    self.dispatcher
                        .reject(Rejection::Multipart, Origin::Rep, reply);
                }
                Read::Call => {
                    if let Some(answer) = (self.heartbeats)(body) {
                        bump(&self.stats.heartbeats);
                        reply.extend_from_slice(answer);
                    } else {
                        bump(&self.stats.received);
                        router::copy_user(body, self.protected, &mut self.user);
                        let message = Incoming {
                            bytes: body,
                            origin: Origin::Rep,
                            user_id: Some(self.user.as_str()).filter(|u| !u.is_empty()),
                        };
                        if let Dispatched::Later(later) = self.dispatcher.dispatch(message, reply) {
                            self.tickets.calls[ticket] = true;
                            self.tickets.free.pop();
                            let task = spawn(&self.runtime, &self.finished, ticket, later);
                            self.tickets.tasks[ticket] = Some(task);
                            continue;
                        }
                    }
                }
            }
            match router::send_enveloped(frontend, envelope, reply) {
                Ok(()) => bump(&self.stats.replied),
                Err(e) => log::debug!("server: answer dropped: {e}"),
            }
            envelope.clear();
        }
        Ok(())
    }

    /// Reads notifications from SUB `index` while a ticket is free.
    fn take_notifications(
        &mut self,
        index: usize,
        body: &mut zmq::Message,
        reply: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        for _ in 0..BATCH {
            let Some(&ticket) = self.tickets.free.last() else {
                return Ok(());
            };
            reply.clear();
            match self.subs[index].recv(body, self.heartbeats)? {
                Received::Nothing => return Ok(()),
                Received::Heartbeat => bump(&self.stats.heartbeats),
                Received::Multipart => {
                    bump(&self.stats.rejected);
                    self.dispatcher
                        .reject(Rejection::Multipart, Origin::Sub(index), reply);
                }
                Received::Message => {
                    bump(&self.stats.received);
                    // A SUB socket connects: it verified nobody, so a publication has no
                    // user id.
                    let message = Incoming {
                        bytes: body,
                        origin: Origin::Sub(index),
                        user_id: None,
                    };
                    if let Dispatched::Later(later) = self.dispatcher.dispatch(message, reply) {
                        self.tickets.calls[ticket] = false;
                        self.tickets.free.pop();
                        let task = spawn(&self.runtime, &self.finished, ticket, later);
                        self.tickets.tasks[ticket] = Some(task);
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for every task in flight and sends its answer; past the stop grace, cancels
    /// the tasks still running (each then ends at its next await, unanswered, counted as
    /// failed), so a service that never ends cannot hold the stop.
    fn finish(&mut self) -> Result<(), TransportError> {
        let mut answers = Vec::new();
        let give_up = later(Instant::now(), self.stop_grace);
        let mut cancelled = false;
        while self.tickets.free.len() < self.tickets.envelopes.len() {
            if !cancelled && Instant::now() >= give_up {
                let running = self.tickets.tasks.iter().flatten().count();
                log::warn!(
                    "server: {running} call(s) still being served {:?} after the stop; \
                     cancelled",
                    self.stop_grace
                );
                for task in self.tickets.tasks.iter().flatten() {
                    task.abort();
                }
                cancelled = true;
            }
            let mut item = [zmq::PollItem::from_fd(self.woken.as_raw_fd(), zmq::POLLIN)];
            let wait = match cancelled {
                true => Duration::from_millis(100),
                false => give_up
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            };
            match zmq::poll(&mut item, i64::from(wait_ms(wait))) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(TransportError::new("poll", "server", e)),
            }
            self.drain_wake_ups();
            self.send_answers(&mut answers);
        }
        Ok(())
    }
}

/// Runs `later` on `runtime`; its answer (or, dropped unfinished, its ticket) goes back to
/// `finished`. The handle cancels it.
fn spawn(
    runtime: &tokio::runtime::Handle,
    finished: &Arc<Finished>,
    ticket: usize,
    later: Later,
) -> tokio::task::AbortHandle {
    let report = Report {
        finished: Arc::clone(finished),
        ticket,
        answer: None,
    };
    runtime
        .spawn(async move {
            report.answer(later.await);
        })
        .abort_handle()
}

/// What a poll found.
#[derive(Default)]
struct Ready {
    finished: bool,
    frontend: bool,
    subs: SubsReady,
}
