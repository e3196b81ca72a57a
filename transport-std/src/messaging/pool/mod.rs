//! A worker pool: one receiving thread hands each message to a free worker (a server's
//! dispatchers, a `Rep2Req` proxy's forwarders).
//!
//! The receiving thread (the broker) owns what faces the network: a ROUTER socket bound to
//! the server's endpoints, the SUB sockets, and the ZAP handler of a protected server, so
//! every socket a peer reaches is verified the same way as a single-thread server's. Behind
//! it, each worker thread holds a REQ socket on a private inproc ROUTER and asks for work by
//! answering its last task (the ZeroMQ guide's load-balancing broker): the broker keeps the
//! free workers in a queue, handing out the one free longest (a server: the load spread) or
//! the one free last ([`Pick`]: a proxy, whose warm connections stay in use), and reads the
//! network only while one is free, so a call waits only when every worker is busy. A task carries what the worker
//! cannot learn from its own socket: where the message came from and the `User-Id` its
//! sender authenticated as. The broker answers heartbeats itself and keeps each caller's
//! envelope until its worker answers.
//!
//! Workers call their handler's [`handle`](MessageHandler::handle) and
//! [`reject`](MessageHandler::reject) only: the pool is for handlers that need no socket to
//! watch, deadline or wake-up of their own (a server's dispatchers, a proxy's REQ forwarders).
//!
//! A stop wakes the broker at once; it tells every free worker to end, lets busy ones finish
//! the call in hand (and delivers their answers), and joins them all together.

mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::auth::Verifier;
use crate::error::panic_message;
use crate::messaging::receiver::{
    Heartbeats, MessageHandler, Origin, ReceiverBuilder, ReceiverStats, BATCH,
};
use crate::messaging::router::{self, Read};
use crate::messaging::subscriber::{revive_all, Received, SubSide, SubsReady};
use crate::socket::options::SocketOptions;
use crate::socket::shutdown::{Shutdown, StopListener};
use crate::socket::stats::bump;
use crate::socket::{self, inproc_endpoint};
use crate::TransportError;
use worker::{connect_worker, send_task, task_header, work, worker_index, worker_thread, END};
use worker::{HANDLE, REJECT};

/// What a worker is doing, as the broker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    /// Not started, or free.
    No,
    /// Serving a call whose caller waits for the answer.
    Call,
    /// Serving a notification (its answer is the worker asking for more).
    Notification,
}

/// Which free worker takes the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// The one free longest: the load spread over every worker.
    Rested,
    /// The one free last: as few workers in use as the load needs, so what each keeps
    /// (a connection downstream, made anew after a failure) is kept warm.
    Warm,
}

/// The free workers, in the order they became free.
struct FreeWorkers {
    queue: VecDeque<usize>,
    pick: Pick,
}

impl FreeWorkers {
    /// The free worker that takes the next message, as the [`Pick`] says.
    fn next(&self) -> Option<usize> {
        match self.pick {
            Pick::Rested => self.queue.front(),
            Pick::Warm => self.queue.back(),
        }
        .copied()
    }

    /// Marks the [`next`](FreeWorkers::next) busy.
    fn take(&mut self) {
        match self.pick {
            Pick::Rested => self.queue.pop_front(),
            Pick::Warm => self.queue.pop_back(),
        };
    }
}

/// The broker's record of one worker.
struct Slot {
    busy: Busy,
    /// The caller's routing envelope (up to the empty delimiter), for the answer.
    envelope: Vec<zmq::Message>,
    thread: Option<JoinHandle<Result<(), TransportError>>>,
}

/// A bound pool, ready to [`run`](Pool::run).
pub(crate) struct Pool<H: MessageHandler> {
    /// The receiving side, its workers not yet started.
    broker: Broker,
    endpoints: Vec<String>,
    /// Each worker's REQ socket (connected to the backend) and handler.
    workers: Vec<(zmq::Socket, H)>,
    stop: StopListener,
    /// How a protected pool's ROUTER verifies its peers; dropped after the sockets.
    verifier: Option<Verifier>,
}

impl<H: MessageHandler> Pool<H> {
    /// Binds the ROUTER front to the builder's REP endpoints, connects its SUB sockets and
    /// one REQ socket per handler to the private backend.
    pub(crate) fn bind(
        builder: ReceiverBuilder,
        handlers: Vec<H>,
        pick: Pick,
    ) -> Result<Pool<H>, TransportError> {
        let inputs = builder.inputs()?;
        let ctx = inputs.ctx;
        let (frontend, endpoints) =
            router::bind(&ctx, &inputs.options, inputs.verifier.as_ref(), &inputs.rep)?;
        let backend_endpoint = inproc_endpoint("pool");
        let err = |op| move |e| TransportError::new(op, "worker pool backend", e);
        let backend = ctx.socket(zmq::ROUTER).map_err(err("socket"))?;
        backend.set_linger(0).map_err(err("set_linger"))?;
        backend.bind(&backend_endpoint).map_err(err("bind"))?;
        let workers: Vec<(zmq::Socket, H)> = handlers
            .into_iter()
            .enumerate()
            .map(|(index, handler)| Ok((connect_worker(&ctx, &backend_endpoint, index)?, handler)))
            .collect::<Result<_, TransportError>>()?;
        Ok(Pool {
            broker: Broker {
                heartbeats: inputs.heartbeats,
                ctx,
                options: inputs.options,
                frontend,
                subs: inputs.subs,
                backend,
                slots: Vec::with_capacity(workers.len()),
                free: FreeWorkers {
                    queue: VecDeque::with_capacity(workers.len()),
                    pick,
                },
                protected: inputs.verifier.is_some(),
                stats: inputs.stats,
                part: zmq::Message::new(),
                user: String::new(),
            },
            endpoints,
            workers,
            stop: inputs.stop,
            verifier: inputs.verifier,
        })
    }

    /// The ROUTER's endpoints as bound, wildcard ports resolved.
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A handle that stops the pool.
    pub(crate) fn shutdown(&self) -> Shutdown {
        self.stop.shutdown()
    }

    /// The pool's socket counters (all workers together).
    pub(crate) fn stats(&self) -> Arc<ReceiverStats> {
        self.broker.stats.clone()
    }

    /// Starts the workers and brokers until stopped; then ends the workers and joins them.
    /// Returns the first error of the broker or of a worker.
    pub(crate) fn run(self) -> Result<(), TransportError> {
        let Pool {
            mut broker,
            workers,
            stop,
            verifier,
            ..
        } = self;
        let mut served = Ok(());
        for (index, (socket, handler)) in workers.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(worker_thread(index))
                .spawn(move || work(&socket, handler));
            match spawned {
                Ok(thread) => broker.slots.push(Slot {
                    busy: Busy::No,
                    envelope: Vec::with_capacity(4),
                    thread: Some(thread),
                }),
                Err(e) => {
                    // Those already started wait for tasks: `finish` ends them.
                    log::error!("worker pool: cannot start worker {index}: {e}");
                    served = Err(TransportError::Spawn {
                        thread: worker_thread(index),
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        if served.is_ok() {
            served = broker.serve(&stop);
        }
        let finished = broker.finish();
        drop(broker);
        drop(verifier);
        served.and(finished)
    }
}

/// The receiving thread's state.
struct Broker {
    heartbeats: Heartbeats,
    ctx: zmq::Context,
    options: SocketOptions,
    frontend: Option<zmq::Socket>,
    subs: Vec<SubSide>,
    backend: zmq::Socket,
    slots: Vec<Slot>,
    /// Free workers, least recently used first.
    free: FreeWorkers,
    /// Whether the ROUTER verifies its peers: only then has a message a `User-Id`.
    protected: bool,
    stats: Arc<ReceiverStats>,
    part: zmq::Message,
    /// The current message's `User-Id`, reused from message to message.
    user: String,
}

impl Broker {
    /// Brokers until a stop is asked for.
    fn serve(&mut self, stop: &StopListener) -> Result<(), TransportError> {
        loop {
            stop.turned();
            if stop.requested() {
                return Ok(());
            }
            let ready = self.poll(stop)?;
            if stop.requested() {
                return Ok(());
            }
            if ready.backend {
                self.take_answers()?;
            }
            if ready.frontend {
                self.take_calls()?;
            }
            for index in 0..self.subs.len() {
                if ready.subs.messages(index) {
                    self.take_notifications(index)?;
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

    /// Waits for the backend, and for the network while a worker is free.
    fn poll(&self, stop: &StopListener) -> Result<Ready, TransportError> {
        // The network only while a worker can take what it brings (a SUB's monitor always).
        let network = if self.free.queue.is_empty() {
            zmq::PollEvents::empty()
        } else {
            zmq::POLLIN
        };
        let first_sub = 2 + usize::from(self.frontend.is_some());
        let count = first_sub + 2 * self.subs.len();
        let items = std::iter::once(stop.socket.as_poll_item(zmq::POLLIN))
            .chain(std::iter::once(self.backend.as_poll_item(zmq::POLLIN)))
            .chain(self.frontend.iter().map(|f| f.as_poll_item(network)))
            .chain(self.subs.iter().flat_map(|sub| sub.poll_items(network)));
        let timeout = socket::poll_timeout(
            Instant::now(),
            self.subs.iter().filter_map(SubSide::deadline),
        );
        socket::poll(&stop.socket, items, count, timeout, |items| Ready {
            backend: items[1].is_readable(),
            frontend: first_sub == 3 && items[2].is_readable(),
            subs: SubsReady::of(&items[first_sub..]),
        })
        .map(Option::unwrap_or_default)
        .map_err(|e| TransportError::new("poll", "worker pool", e))
    }

    /// Reads workers' messages: an answer to pass on, and in any case "I am free".
    fn take_answers(&mut self) -> Result<(), TransportError> {
        let err = |e| TransportError::new("recv", "worker pool backend", e);
        loop {
            // [worker id][empty][answer]
            match self.backend.recv(&mut self.part, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(err(e)),
            }
            let worker = worker_index(&self.part);
            for _ in 0..2 {
                if self.part.get_more() {
                    self.backend
                        .recv(&mut self.part, zmq::DONTWAIT)
                        .map_err(err)?;
                }
            }
            let answer = &self.part;
            let Some(slot) = worker.and_then(|w| self.slots.get_mut(w)) else {
                continue;
            };
            if slot.busy == Busy::Call {
                if let Some(frontend) = &self.frontend {
                    match router::send_enveloped(frontend, &mut slot.envelope, answer) {
                        Ok(()) => bump(&self.stats.replied),
                        // The caller is gone or not reading: nowhere to put the answer.
                        Err(e) => log::debug!("worker pool: answer dropped: {e}"),
                    }
                }
            }
            slot.busy = Busy::No;
            slot.envelope.clear();
            if let Some(w) = worker {
                self.free.queue.push_back(w);
            }
        }
    }

    /// Reads calls from the ROUTER while a worker is free; hands each to the
    /// [`next`](FreeWorkers::next) free worker.
    fn take_calls(&mut self) -> Result<(), TransportError> {
        let Some(frontend) = &self.frontend else {
            return Ok(());
        };
        for _ in 0..BATCH {
            let Some(worker) = self.free.next() else {
                return Ok(());
            };
            let slot = &mut self.slots[worker];
            let mut body = zmq::Message::new();
            let what = match router::read_call(frontend, &mut slot.envelope, &mut body)? {
                Read::Nothing => return Ok(()),
                Read::Undelimited => {
                    bump(&self.stats.rejected);
                    continue;
                }
                Read::Multipart => {
                    bump(&self.stats.rejected);
                    REJECT
                }
                Read::Call => match (self.heartbeats)(&body) {
                    Some(answer) => {
                        bump(&self.stats.heartbeats);
                        let sent = router::send_enveloped(frontend, &mut slot.envelope, answer);
                        if sent.is_ok() {
                            bump(&self.stats.replied);
                        }
                        slot.envelope.clear();
                        continue;
                    }
                    None => {
                        bump(&self.stats.received);
                        HANDLE
                    }
                },
            };
            router::copy_user(&mut body, self.protected, &mut self.user);
            let header = task_header(what, Origin::Rep);
            send_task(&self.backend, worker, header, &self.user, &body)?;
            self.slots[worker].busy = Busy::Call;
            self.free.take();
        }
        Ok(())
    }

    /// Reads notifications from SUB `index` while a worker is free.
    fn take_notifications(&mut self, index: usize) -> Result<(), TransportError> {
        for _ in 0..BATCH {
            let Some(worker) = self.free.next() else {
                return Ok(());
            };
            let what = match self.subs[index].recv(&mut self.part, self.heartbeats)? {
                Received::Nothing => return Ok(()),
                Received::Heartbeat => {
                    bump(&self.stats.heartbeats);
                    continue;
                }
                Received::Multipart => {
                    bump(&self.stats.rejected);
                    REJECT
                }
                Received::Message => {
                    bump(&self.stats.received);
                    HANDLE
                }
            };
            // A SUB socket connects: it verified nobody, so a publication has no user id.
            let header = task_header(what, Origin::Sub(index));
            send_task(&self.backend, worker, header, "", &self.part)?;
            self.slots[worker].busy = Busy::Notification;
            self.free.take();
        }
        Ok(())
    }

    /// Ends every worker: free ones at once, busy ones once their task is done (their
    /// answers still go out). Joins them all; the first worker error, if any.
    fn finish(&mut self) -> Result<(), TransportError> {
        let end = task_header(END, Origin::Rep);
        loop {
            while let Some(worker) = self.free.queue.pop_front() {
                // A worker that cannot be told has ended on an error of its own.
                let _ = send_task(&self.backend, worker, end, "", b"");
            }
            let running = self
                .slots
                .iter()
                .any(|slot| slot.thread.as_ref().is_some_and(|t| !t.is_finished()));
            if !running {
                break;
            }
            // Busy workers (and any not yet started) answer, and are then told to end.
            match self.backend.poll(zmq::POLLIN, 1) {
                Ok(n) if n > 0 => self.take_answers()?,
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(TransportError::new("poll", "worker pool backend", e)),
            }
        }
        let mut first_error = Ok(());
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(thread) = slot.thread.take() else {
                continue;
            };
            let outcome = thread.join().unwrap_or_else(|panic| {
                Err(TransportError::Panicked {
                    thread: worker_thread(index),
                    message: panic_message(&*panic).to_owned(),
                })
            });
            if let Err(e) = outcome {
                log::error!("worker {index}: {e}");
                if first_error.is_ok() {
                    first_error = Err(e);
                }
            }
        }
        first_error
    }
}

/// Which of the broker's sockets a poll found readable.
#[derive(Default)]
struct Ready {
    backend: bool,
    frontend: bool,
    subs: SubsReady,
}
