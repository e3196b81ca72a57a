//! [`Serving`]: a receiver and its handler on one thread, or a worker pool of handlers
//! behind one receiving thread. One type for every loop that serves an input (the RPC
//! server and the proxies), so each picks its concurrency without a loop of its own.

use std::sync::Arc;

use super::pool::{Pick, Pool};
use super::receiver::{MessageHandler, Receiver, ReceiverBuilder, ReceiverStats};
use crate::socket::shutdown::Shutdown;
use crate::TransportError;

/// A bound input and what serves it.
pub(crate) enum Serving<H: MessageHandler> {
    /// One thread receives and handles, in order.
    One {
        /// The input.
        receiver: Receiver,
        /// Its handler.
        handler: H,
    },
    /// A receiving thread hands each message to the handler free longest; see
    /// [`pool`](super::pool).
    Pool(Pool<H>),
}

impl<H: MessageHandler> Serving<H> {
    /// Binds `builder`'s input: served by the one handler on one thread, or by a pool of
    /// them when there are several, each message handed to the free one `pick` says.
    ///
    /// `handlers` must not be empty.
    pub(crate) fn bind(
        builder: ReceiverBuilder,
        mut handlers: Vec<H>,
        pick: Pick,
    ) -> Result<Serving<H>, TransportError> {
        if handlers.len() > 1 {
            return Ok(Serving::Pool(Pool::bind(builder, handlers, pick)?));
        }
        let handler = handlers.pop().ok_or(TransportError::Internal {
            what: "an input served by no handler",
        })?;
        Ok(Serving::One {
            receiver: builder.bind()?,
            handler,
        })
    }

    /// The handler of an input served on one thread (`None` for a pool: its handlers are
    /// its workers').
    #[cfg_attr(not(feature = "serial"), allow(dead_code))] // read by the bridge only
    pub(crate) fn handler(&self) -> Option<&H> {
        match self {
            Serving::One { handler, .. } => Some(handler),
            Serving::Pool(_) => None,
        }
    }

    /// The REP (or, with a pool, ROUTER) endpoints as bound, wildcard ports resolved.
    pub(crate) fn rep_endpoints(&self) -> &[String] {
        match self {
            Serving::One { receiver, .. } => receiver.rep_endpoints(),
            Serving::Pool(pool) => pool.endpoints(),
        }
    }

    /// A handle that stops the serving.
    pub(crate) fn shutdown(&self) -> Shutdown {
        match self {
            Serving::One { receiver, .. } => receiver.shutdown(),
            Serving::Pool(pool) => pool.shutdown(),
        }
    }

    /// The input's socket counters.
    pub(crate) fn stats(&self) -> Arc<ReceiverStats> {
        match self {
            Serving::One { receiver, .. } => receiver.stats(),
            Serving::Pool(pool) => pool.stats(),
        }
    }

    /// Serves on the calling thread until stopped.
    pub(crate) fn run(self) -> Result<(), TransportError> {
        match self {
            Serving::One { receiver, handler } => receiver.run(handler),
            Serving::Pool(pool) => pool.run(),
        }
    }
}
