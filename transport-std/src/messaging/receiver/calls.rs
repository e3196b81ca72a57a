//! The receiver's ROUTER input: many calls taken at once, each caller's envelope held until
//! its handler answers it ([`Answering::Later`](super::Answering::Later)), at most a bound of them.

use super::handler::HeldCall;
use crate::auth::Verifier;
use crate::messaging::router::{self, Read};
use crate::socket::options::SocketOptions;
use crate::TransportError;

/// A bound ROUTER socket and the callers it holds unanswered.
pub(super) struct CallsSide {
    pub(super) socket: zmq::Socket,
    pub(super) endpoints: Vec<String>,
    /// One per call held at once: the caller's envelope while its call is unanswered.
    slots: Vec<Slot>,
    /// Slots holding no call; the last is where the next call is read.
    free: Vec<u32>,
}

struct Slot {
    /// The caller's routing envelope, up to the empty delimiter.
    envelope: Vec<zmq::Message>,
    /// Counts the calls the slot held: a [`HeldCall`] of an earlier one answers nothing.
    generation: u32,
    held: bool,
}

/// What [`CallsSide::read`] found.
pub(super) enum Taken {
    /// Nothing waiting.
    Nothing,
    /// A call, its envelope in a free slot: answer it with [`CallsSide::answer_now`] or keep
    /// it with [`CallsSide::hold`].
    Call(HeldCall),
    /// A call while every slot holds one: its envelope is in `spare`, for a refusal.
    Full,
    /// A call of several parts: to refuse, envelope as for [`Taken::Call`].
    Multipart,
    /// No delimiter: no one to answer.
    Undelimited,
}

impl CallsSide {
    /// Binds a ROUTER to `endpoints`, to hold at most `at_once` calls unanswered.
    pub(super) fn bind(
        ctx: &zmq::Context,
        options: &SocketOptions,
        verifier: Option<&Verifier>,
        endpoints: &[String],
        at_once: usize,
    ) -> Result<CallsSide, TransportError> {
        let (socket, endpoints) = options.bound_socket(ctx, zmq::ROUTER, verifier, endpoints)?;
        let at_once = u32::try_from(at_once.max(1)).unwrap_or(u32::MAX);
        // One more slot than calls held: a call that comes while all are held is read into
        // it, to be refused.
        Ok(CallsSide {
            socket,
            endpoints,
            slots: (0..=at_once)
                .map(|_| Slot {
                    envelope: Vec::with_capacity(4),
                    generation: 0,
                    held: false,
                })
                .collect(),
            free: (0..=at_once).rev().collect(),
        })
    }

    /// The calls held unanswered.
    pub(super) fn held(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Reads the next message without waiting, its body into `body`.
    pub(super) fn read(&mut self, body: &mut zmq::Message) -> Result<Taken, TransportError> {
        let Some(&slot) = self.free.last() else {
            return Err(TransportError::Internal {
                what: "a ROUTER input with no slot to read a call into",
            });
        };
        let index = slot as usize;
        let read = router::read_call(&self.socket, &mut self.slots[index].envelope, body)?;
        let caller = HeldCall {
            slot,
            generation: self.slots[index].generation,
        };
        Ok(match read {
            Read::Nothing => Taken::Nothing,
            Read::Undelimited => Taken::Undelimited,
            Read::Multipart => Taken::Multipart,
            Read::Call if self.free.len() == 1 => Taken::Full,
            Read::Call => Taken::Call(caller),
        })
    }

    /// Answers the call just read (its envelope in the next free slot) with `bytes`.
    pub(super) fn answer_now(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let Some(&slot) = self.free.last() else {
            return Ok(());
        };
        let slot = &mut self.slots[slot as usize];
        // A `HeldCall` kept in spite of the answer given now answers nothing later.
        slot.generation = slot.generation.wrapping_add(1);
        let sent = router::send_enveloped(&self.socket, &mut slot.envelope, bytes);
        slot.envelope.clear();
        sent
    }

    /// Keeps the call just read for `caller`'s later answer.
    pub(super) fn hold(&mut self, caller: HeldCall) {
        if self.free.last() == Some(&caller.slot) {
            self.free.pop();
            self.slots[caller.slot as usize].held = true;
        }
    }

    /// Answers the call `caller` holds with `bytes`; `Ok(false)` if it holds none (answered
    /// already).
    pub(super) fn answer(
        &mut self,
        caller: HeldCall,
        bytes: &[u8],
    ) -> Result<bool, TransportError> {
        let Some(slot) = self.slots.get_mut(caller.slot as usize) else {
            return Ok(false);
        };
        if !slot.held || slot.generation != caller.generation {
            return Ok(false);
        }
        slot.held = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(caller.slot);
        let sent = router::send_enveloped(&self.socket, &mut slot.envelope, bytes);
        slot.envelope.clear();
        sent.map(|()| true)
    }
}
