//! The handler contract: what a receiving loop hands on ([`Incoming`], from an [`Origin`]),
//! what it refuses before ([`Rejection`]), and what the handler answers ([`MessageHandler`]):
//! at once, or later for a [`HeldCall`] it holds ([`Answering::Later`]).

use std::fmt;
use std::time::Instant;

use zmqrpc_core::ErrorCode;

use crate::auth::Action;

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The REP socket: the handler's reply is sent back.
    Rep,
    /// The SUB socket of the endpoint at this index (in the order they were added); any
    /// reply is discarded.
    Sub(usize),
}

impl Origin {
    /// What a peer does by sending a message here: a request on REP is a call, a message
    /// from a subscription a notification.
    pub fn action(self) -> Action {
        match self {
            Origin::Rep => Action::Call,
            Origin::Sub(_) => Action::Notify,
        }
    }
}

/// Why a message was not handed to [`MessageHandler::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// It had more than one part; zmqrpc messages have exactly one.
    Multipart,
    /// It is a call, and as many calls as the input holds at once
    /// ([`ReceiverBuilder::calls_at_once`](super::ReceiverBuilder::calls_at_once)) are
    /// still unanswered: refused at once rather than left to wait unseen.
    Busy {
        /// The calls held unanswered.
        held: usize,
    },
}

impl Rejection {
    /// The error code a caller is answered with.
    pub fn code(self) -> ErrorCode {
        match self {
            Rejection::Multipart => ErrorCode::BadFrame,
            Rejection::Busy { .. } => ErrorCode::Busy,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Multipart => f.write_str("multipart message"),
            Rejection::Busy { held } => write!(f, "{held} calls in hand: no room for another"),
        }
    }
}

/// A call the handler has not answered yet ([`Answering::Later`]): it answers it once, through
/// [`MessageHandler::answers`]. Opaque; a caller answered twice, or one whose input was
/// made anew meanwhile, is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeldCall {
    pub(super) slot: u32,
    pub(super) generation: u32,
}

#[cfg(test)]
impl HeldCall {
    /// A held call numbered `n`, for handlers tested without a receiver.
    pub(crate) fn for_test(n: u32) -> HeldCall {
        HeldCall {
            slot: n,
            generation: 0,
        }
    }
}

/// What [`MessageHandler::call`] did with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answering {
    /// The answer is in `reply`: it goes back now.
    Now,
    /// The handler holds the [`HeldCall`] and answers later; the receiver takes other
    /// calls meanwhile (on a REP input, none: REP answers one call at a time).
    Later,
}

/// A message as a [`MessageHandler`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The message's bytes.
    pub bytes: &'a [u8],
    /// The socket it came in on.
    pub origin: Origin,
    /// The user its sender authenticated as (ZMQ `User-Id`), on a protected receiver.
    pub user_id: Option<&'a str>,
}

/// What a [`Receiver`](super::Receiver) calls with each message.
///
/// Closures `FnMut(Incoming, &mut Vec<u8>)` are handlers.
pub trait MessageHandler: Send + 'static {
    /// Handles one message. For [`Origin::Rep`], whatever is in `reply` (empty on entry) is
    /// sent back as the answer.
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>);

    /// Handles a call (a message on the REP or ROUTER input). By default it is
    /// [`handle`](MessageHandler::handle)d and answered at once; a handler that answers
    /// calls later (a bridge waiting for its device, a buffered proxy syncing a batch to
    /// disk) keeps `caller` and returns [`Answering::Later`].
    fn call(&mut self, message: Incoming<'_>, caller: HeldCall, reply: &mut Vec<u8>) -> Answering {
        let _ = caller;
        self.handle(message, reply);
        Answering::Now
    }

    /// Hands each answer ready for a call answered [`Answering::Later`] to `answer`. The
    /// receiver asks after every batch of messages and every wake-up.
    fn answers(&mut self, answer: &mut dyn FnMut(HeldCall, &[u8])) {
        let _ = answer;
    }

    /// Called instead of [`handle`](MessageHandler::handle) for a message the receiver refused. For
    /// [`Origin::Rep`], `reply` is sent back (empty unless the handler fills it).
    fn reject(&mut self, reason: Rejection, origin: Origin, reply: &mut Vec<u8>) {
        let _ = (reason, origin, reply);
    }

    /// Something of the handler's own for the receiver to poll with its sockets: a socket
    /// (a publisher's XPUB, which learns of subscribers, or a REQ awaiting a reply) or a file
    /// descriptor (a serial device), as a poll item (`socket.as_poll_item(zmq::POLLIN)`,
    /// `zmq::PollItem::from_fd(fd, zmq::POLLIN)`).
    fn watch(&self) -> Option<zmq::PollItem<'_>> {
        None
    }

    /// When the handler next wants [`on_wake`](MessageHandler::on_wake) called even if nothing
    /// arrives.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Called every time the receiver wakes: a message arrived, the watched item is ready,
    /// or the deadline passed.
    fn on_wake(&mut self) {}
}

impl<F> MessageHandler for F
where
    F: FnMut(Incoming<'_>, &mut Vec<u8>) + Send + 'static,
{
    fn handle(&mut self, message: Incoming<'_>, reply: &mut Vec<u8>) {
        self(message, reply)
    }
}
