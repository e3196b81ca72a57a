//! [`Calls`]: the caller's side of many calls in flight, as a state machine with no I/O.
//!
//! A call is *submitted* (numbered, given a deadline, queued), *sent* when the transport
//! takes it from the queue ([`Calls::next_to_send`]), and *ends* answered, timed out, or
//! ended by the transport (a dropped connection, a refused handshake, a stop); the caller
//! then *collects* it, which frees its slot. A caller that gives up *cancels* instead, at
//! any point: a queued call is then never sent, and a late answer is dropped and counted.
//!
//! The machine owns numbering, deadlines, matching and the bounds (calls in flight, calls
//! queued behind them, request bytes in flight); the transport only moves bytes and tells
//! it what happened, with the time (`now`) passed in, so every path is tested here without
//! a socket or a clock. Each call carries a `T` of the transport's choosing (its buffers, its
//! waiter), kept in its slot and reused by the next call there: a warmed-up machine
//! allocates nothing per call.
//!
//! Call numbers increase (wrapping, never 0) and pick out their slot directly: a number is
//! only given out while its slot is free, and the table has twice the slots the bounds
//! allow, so an answer is matched without hashing and a late answer to a reused slot is
//! told by its number.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use zmqrpc_core::Key;
//! use zmqrpc_protocol::calls::{Calls, End, Limits};
//!
//! let mut calls: Calls<()> = Calls::new(Limits { in_flight: 2, queued: 8, bytes: 1 << 20 });
//! let now = Instant::now();
//! let key = Key::of("add");
//! let seq = calls.submit(key, 20, now + Duration::from_secs(1)).unwrap();
//! assert_eq!(calls.next_to_send(), Some(seq)); // the transport sends it
//! assert!(calls.answered(seq, key).is_some()); // its answer came
//! assert_eq!(calls.collect(seq), Some(End::Answered));
//! assert_eq!(calls.in_flight(), 0);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::Instant;

use zmqrpc_core::Key;

/// How many calls, and how many bytes of them, a [`Calls`] holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls sent and not yet ended (at least 1).
    pub in_flight: usize,
    /// Calls submitted behind them, waiting to be sent.
    pub queued: usize,
    /// Bytes of the requests in flight. A call that would go past it waits in the queue
    /// (one call in flight is always let through, however large).
    pub bytes: usize,
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No such call (never submitted, collected, or cancelled).
    Free,
    /// Submitted, waiting to be sent.
    Queued,
    /// Sent; its answer is awaited.
    InFlight,
    /// Ended, waiting for its caller to [`collect`](Calls::collect) it.
    Ended(End),
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Its answer came ([`Calls::answered`]).
    Answered,
    /// Its deadline passed. `sent`: it had been sent, so it may have run; if not, it
    /// never will.
    TimedOut {
        /// Whether the call had been sent.
        sent: bool,
    },
    /// The transport ended it ([`Calls::end`], [`Calls::end_in_flight`]), saying why; the
    /// transport knows the details.
    Ended(Why),
}

/// Why the transport ended a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The connection carrying it dropped: its answer can no longer come (it may have run).
    Disconnected,
    /// The peer refused the connection's security handshake.
    Refused,
    /// The transport is stopping (or failed) and will answer nothing more.
    Stopped,
}

/// Why a call was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// As many calls are in flight and queued as the [`Limits`] allow (or every slot
    /// holds a call its caller has not collected yet).
    Full {
        /// Calls in flight.
        in_flight: usize,
        /// Calls queued behind them.
        queued: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full { in_flight, queued } => write!(
                f,
                "{in_flight} calls in flight and {queued} queued: no room for another"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// What the machine has counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls submitted.
    pub submitted: u64,
    /// Calls refused ([`Refusal`]).
    pub refused: u64,
    /// Calls sent.
    pub sent: u64,
    /// Calls answered.
    pub answered: u64,
    /// Calls whose deadline passed (sent or not).
    pub timed_out: u64,
    /// Calls cancelled by their caller.
    pub cancelled: u64,
    /// Calls the transport ended.
    pub ended: u64,
    /// Answers that matched no call in flight: late (after a timeout or a cancellation),
    /// for another command, or not ours. Dropped.
    pub late: u64,
}

/// Many calls in flight and queued: see the [module docs](self).
pub struct Calls<T> {
    slots: Box<[Slot<T>]>,
    /// `slots.len() - 1` (a power of two less one): a call's slot is `seq & mask`.
    mask: u32,
    last_seq: u32,
    /// Calls waiting to be sent, oldest first; numbers no longer queued are skipped.
    queue: VecDeque<u32>,
    /// Each live call's deadline, soonest on top; entries of ended calls are skipped.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    limits: Limits,
    in_flight: usize,
    queued: usize,
    bytes_in_flight: usize,
    counts: CallCounts,
}

struct Slot<T> {
    seq: u32,
    state: State,
    key: Key,
    bytes: usize,
    deadline: Instant,
    data: T,
}

impl<T: Default> Calls<T> {
    /// A machine for `limits`, its slots made at once (`T::default()` in each).
    pub fn new(limits: Limits) -> Calls<T> {
        let limits = Limits {
            in_flight: limits.in_flight.max(1),
            ..limits
        };
        let live = limits.in_flight.saturating_add(limits.queued);
        // Twice the live calls: a free slot is always near, and ended calls waiting to be
        // collected do not crowd out new ones.
        let len = live
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(1 << 31)
            .clamp(2, 1 << 31);
        let now = Instant::now();
        let slots = (0..len)
            .map(|_| Slot {
                seq: 0,
                state: State::Free,
                key: Key(0),
                bytes: 0,
                deadline: now,
                data: T::default(),
            })
            .collect();
        Calls {
            slots,
            mask: u32::try_from(len - 1).unwrap_or(u32::MAX),
            last_seq: 0,
            // Both hold stale entries too, bounded (see `submit`, `push_deadline`): made at
            // their full size, they never grow on the per-call path.
            queue: VecDeque::with_capacity(len),
            deadlines: BinaryHeap::with_capacity(2 * len + 1),
            limits,
            in_flight: 0,
            queued: 0,
            bytes_in_flight: 0,
            counts: CallCounts::default(),
        }
    }
}

impl<T> Calls<T> {
    /// Numbers a call of command `key` whose request is `bytes` long, to end by `deadline`,
    /// and queues it. The caller writes the request under the number it gets (its `T` is
    /// [`data_mut`](Calls::data_mut)).
    pub fn submit(&mut self, key: Key, bytes: usize, deadline: Instant) -> Result<u32, Refusal> {
        let full = Refusal::Full {
            in_flight: self.in_flight,
            queued: self.queued,
        };
        if self.in_flight + self.queued >= self.limits.in_flight + self.limits.queued {
            self.counts.refused += 1;
            return Err(full);
        }
        let Some(seq) = self.free_number() else {
            self.counts.refused += 1;
            return Err(full);
        };
        let slot = &mut self.slots[(seq & self.mask) as usize];
        // The slot's `T` stays: the next call reuses what the last one grew.
        slot.seq = seq;
        slot.state = State::Queued;
        slot.key = key;
        slot.bytes = bytes;
        slot.deadline = deadline;
        if self.queue.len() >= self.slots.len() {
            // Numbers of cancelled calls have piled up: keep the queued ones only.
            let slots = &self.slots;
            let mask = self.mask;
            self.queue.retain(|&seq| {
                let slot = &slots[(seq & mask) as usize];
                slot.seq == seq && slot.state == State::Queued
            });
        }
        self.queue.push_back(seq);
        self.queued += 1;
        self.push_deadline(deadline, seq);
        self.counts.submitted += 1;
        Ok(seq)
    }

    /// The next call number whose slot is free, if any.
    fn free_number(&mut self) -> Option<u32> {
        for _ in 0..self.slots.len() {
            self.last_seq = self.last_seq.wrapping_add(1);
            if self.last_seq == 0 {
                continue; // 0 is no call's number
            }
            if self.slots[(self.last_seq & self.mask) as usize].state == State::Free {
                return Some(self.last_seq);
            }
        }
        None
    }

    /// Sets the request size of the queued call `seq`, for a caller that learns it only
    /// once the request is written under its number.
    pub fn set_bytes(&mut self, seq: u32, bytes: usize) {
        if let Some(slot) = self.live_mut(seq) {
            if slot.state == State::Queued {
                slot.bytes = bytes;
            }
        }
    }

    /// The oldest queued call, now counted as sent, if the bounds let one more go: the
    /// transport sends it at once (or gives it back with [`unsend`](Calls::unsend)).
    pub fn next_to_send(&mut self) -> Option<u32> {
        if self.in_flight >= self.limits.in_flight {
            return None;
        }
        while let Some(&seq) = self.queue.front() {
            let index = (seq & self.mask) as usize;
            let slot = &self.slots[index];
            if slot.seq != seq || slot.state != State::Queued {
                self.queue.pop_front(); // cancelled, or timed out while queued
                continue;
            }
            if self.in_flight > 0
                && self.bytes_in_flight.saturating_add(slot.bytes) > self.limits.bytes
            {
                return None;
            }
            self.queue.pop_front();
            let slot = &mut self.slots[index];
            slot.state = State::InFlight;
            self.queued -= 1;
            self.in_flight += 1;
            self.bytes_in_flight += slot.bytes;
            self.counts.sent += 1;
            return Some(seq);
        }
        None
    }

    /// Call `seq`, just taken by [`next_to_send`](Calls::next_to_send), could not be sent
    /// after all (no room in the socket): it goes back to the front of the queue.
    pub fn unsend(&mut self, seq: u32) {
        let Some(slot) = self.live_mut(seq) else {
            return;
        };
        if slot.state != State::InFlight {
            return;
        }
        slot.state = State::Queued;
        let bytes = slot.bytes;
        self.in_flight -= 1;
        self.bytes_in_flight -= bytes;
        self.queued += 1;
        self.counts.sent -= 1;
        self.queue.push_front(seq);
    }

    /// An answer to call `seq` of command `key` came: the call ends
    /// [`Answered`](End::Answered) and its `T` is lent to take the answer. `None` if no such
    /// call is in flight (a late answer, another command's, not ours): counted in
    /// [`CallCounts::late`], and to be dropped.
    pub fn answered(&mut self, seq: u32, key: Key) -> Option<&mut T> {
        let index = (seq & self.mask) as usize;
        let slot = &mut self.slots[index];
        if slot.seq != seq || slot.state != State::InFlight || slot.key != key {
            self.counts.late += 1;
            return None;
        }
        slot.state = State::Ended(End::Answered);
        self.in_flight -= 1;
        self.bytes_in_flight -= slot.bytes;
        self.counts.answered += 1;
        Some(&mut self.slots[index].data)
    }

    /// The next live call whose deadline is at or before `now`, now ended
    /// [`TimedOut`](End::TimedOut); `None` once there is none.
    pub fn expire(&mut self, now: Instant) -> Option<u32> {
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop();
            let Some(slot) = self.live_mut(seq) else {
                continue; // ended already
            };
            if slot.deadline != deadline {
                continue;
            }
            let sent = slot.state == State::InFlight;
            self.finish(seq, End::TimedOut { sent });
            self.counts.timed_out += 1;
            return Some(seq);
        }
        None
    }

    /// The soonest deadline of a live call: when [`expire`](Calls::expire) has work next.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, seq))) = self.deadlines.peek() {
            match self.live(seq) {
                Some(slot) if slot.deadline == deadline => return Some(deadline),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Ends call `seq` (queued or in flight) for `why`; whether it was live.
    pub fn end(&mut self, seq: u32, why: Why) -> bool {
        if self.live(seq).is_none() {
            return false;
        }
        self.finish(seq, End::Ended(why));
        self.counts.ended += 1;
        true
    }

    /// Ends every call in flight for `why` (their connection dropped, say), calling `each`
    /// with each one's number, oldest first. Queued calls stay queued, to be sent on the
    /// next connection.
    pub fn end_in_flight(&mut self, why: Why, each: impl FnMut(u32, &mut T)) {
        self.end_in_flight_if(why, |_| true, each);
    }

    /// [`end_in_flight`](Calls::end_in_flight) for the calls in flight whose `T` passes
    /// `which` (those sent on one connection of several, say).
    pub fn end_in_flight_if(
        &mut self,
        why: Why,
        mut which: impl FnMut(&T) -> bool,
        mut each: impl FnMut(u32, &mut T),
    ) {
        let mut seqs: Vec<u32> = self
            .slots
            .iter()
            .filter(|slot| slot.state == State::InFlight && which(&slot.data))
            .map(|slot| slot.seq)
            .collect();
        let newest = self.last_seq;
        // Oldest first: the furthest behind the newest number, wrapping.
        seqs.sort_unstable_by_key(|&seq| std::cmp::Reverse(newest.wrapping_sub(seq)));
        for seq in seqs {
            self.end(seq, why);
            each(seq, &mut self.slots[(seq & self.mask) as usize].data);
        }
    }

    /// Ends every live call, queued or in flight, for `why` (the transport is stopping);
    /// `each` as for [`end_in_flight`](Calls::end_in_flight).
    pub fn end_all(&mut self, why: Why, mut each: impl FnMut(u32, &mut T)) {
        self.end_in_flight(why, &mut each);
        while let Some(seq) = self.queue.pop_front() {
            if self.end(seq, why) {
                each(seq, &mut self.slots[(seq & self.mask) as usize].data);
            }
        }
    }

    /// Takes the ended call `seq` back: how it ended, its slot freed for the next call.
    /// `None` if it has not ended (or is no call).
    pub fn collect(&mut self, seq: u32) -> Option<End> {
        let slot = self.slot_mut(seq)?;
        let State::Ended(end) = slot.state else {
            return None;
        };
        slot.state = State::Free;
        Some(end)
    }

    /// Its caller gave call `seq` up: its slot is freed at once, whatever its state. A
    /// queued call is never sent; an answer to one in flight is dropped as late. Returns
    /// the state it was in.
    pub fn cancel(&mut self, seq: u32) -> State {
        let Some(slot) = self.slot_mut(seq) else {
            return State::Free;
        };
        let was = slot.state;
        let bytes = slot.bytes;
        slot.state = State::Free;
        match was {
            State::Queued => self.queued -= 1,
            State::InFlight => {
                self.in_flight -= 1;
                self.bytes_in_flight -= bytes;
            }
            State::Free | State::Ended(_) => {}
        }
        if matches!(was, State::Queued | State::InFlight) {
            self.counts.cancelled += 1;
        }
        was
    }

    /// Where call `seq` is.
    pub fn state(&self, seq: u32) -> State {
        let slot = &self.slots[(seq & self.mask) as usize];
        if slot.seq == seq {
            slot.state
        } else {
            State::Free
        }
    }

    /// Call `seq`'s command key, if it is a call.
    pub fn key(&self, seq: u32) -> Option<Key> {
        let slot = &self.slots[(seq & self.mask) as usize];
        (slot.seq == seq && slot.state != State::Free).then_some(slot.key)
    }

    /// Call `seq`'s `T`, if it is a call (not free).
    pub fn data_mut(&mut self, seq: u32) -> Option<&mut T> {
        self.slot_mut(seq).map(|slot| &mut slot.data)
    }

    /// The index of call `seq`'s slot, below [`slot_count`](Calls::slot_count): for a
    /// transport that keeps something per slot beside the machine (a condition variable).
    pub fn slot_of(&self, seq: u32) -> usize {
        (seq & self.mask) as usize
    }

    /// How many slots the machine has.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Calls sent and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Calls waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes of the requests in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// What has been counted.
    pub fn counts(&self) -> CallCounts {
        self.counts
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn slot_mut(&mut self, seq: u32) -> Option<&mut Slot<T>> {
        let slot = &mut self.slots[(seq & self.mask) as usize];
        (slot.seq == seq && slot.state != State::Free).then_some(slot)
    }

    /// Call `seq` if it is queued or in flight.
    fn live(&self, seq: u32) -> Option<&Slot<T>> {
        let slot = &self.slots[(seq & self.mask) as usize];
        (slot.seq == seq && matches!(slot.state, State::Queued | State::InFlight)).then_some(slot)
    }

    fn live_mut(&mut self, seq: u32) -> Option<&mut Slot<T>> {
        let slot = &mut self.slots[(seq & self.mask) as usize];
        (slot.seq == seq && matches!(slot.state, State::Queued | State::InFlight)).then_some(slot)
    }

    /// Ends the live call `seq` as `end`, taking it off the counts it was on.
    fn finish(&mut self, seq: u32, end: End) {
        let Some(slot) = self.live_mut(seq) else {
            return;
        };
        let (was, bytes) = (slot.state, slot.bytes);
        slot.state = State::Ended(end);
        if was == State::InFlight {
            self.in_flight -= 1;
            self.bytes_in_flight -= bytes;
        } else {
            self.queued -= 1;
        }
    }

    /// Records a deadline, first dropping the entries of ended calls if they have come to
    /// outnumber the slots (calls answered long before their deadlines): the heap stays
    /// bounded by the table.
    fn push_deadline(&mut self, deadline: Instant, seq: u32) {
        if self.deadlines.len() >= 2 * self.slots.len() {
            let slots = &self.slots;
            let mask = self.mask;
            self.deadlines.retain(|&Reverse((deadline, seq))| {
                let slot = &slots[(seq & mask) as usize];
                slot.seq == seq
                    && slot.deadline == deadline
                    && matches!(slot.state, State::Queued | State::InFlight)
            });
        }
        self.deadlines.push(Reverse((deadline, seq)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is the test's failure report
mod tests {
    use std::time::Duration;

    use super::*;

    const ADD: Key = Key(1);
    const ECHO: Key = Key(2);

    fn limits(in_flight: usize, queued: usize) -> Limits {
        Limits {
            in_flight,
            queued,
            bytes: usize::MAX,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn numbers_increase_are_never_zero_and_pick_out_their_call() {
        let mut calls: Calls<u32> = Calls::new(limits(4, 4));
        let now = Instant::now();
        let a = calls.submit(ADD, 1, now + ms(10)).unwrap();
        let b = calls.submit(ECHO, 1, now + ms(10)).unwrap();
        assert!(a != 0 && b > a, "{a} {b}");
        *calls.data_mut(a).unwrap() = 7;
        assert_eq!(calls.next_to_send(), Some(a));
        assert_eq!(calls.next_to_send(), Some(b));
        // Answers in any order, each to its own call.
        assert!(calls.answered(b, ECHO).is_some());
        assert_eq!(calls.answered(a, ADD).copied(), Some(7));
        assert_eq!(calls.collect(a), Some(End::Answered));
        assert_eq!(calls.collect(b), Some(End::Answered));
        assert_eq!((calls.in_flight(), calls.queued()), (0, 0));
    }

    #[test]
    fn numbering_wraps_past_zero() {
        let mut calls: Calls<()> = Calls::new(limits(1, 0));
        calls.last_seq = u32::MAX - 1;
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let seq = calls.submit(ADD, 1, now + ms(10)).unwrap();
            assert_eq!(calls.next_to_send(), Some(seq));
            assert!(calls.answered(seq, ADD).is_some());
            calls.collect(seq).unwrap();
            seen.push(seq);
        }
        assert_eq!(seen, [u32::MAX, 1, 2]);
    }

    #[test]
    fn an_answer_for_another_command_or_no_call_is_late_and_leaves_the_call_waiting() {
        let mut calls: Calls<()> = Calls::new(limits(2, 0));
        let seq = calls.submit(ADD, 1, Instant::now() + ms(10)).unwrap();
        // Not sent yet: nothing can answer it.
        assert!(calls.answered(seq, ADD).is_none());
        calls.next_to_send().unwrap();
        assert!(calls.answered(seq, ECHO).is_none());
        assert!(calls.answered(seq + 1000, ADD).is_none());
        assert_eq!(calls.state(seq), State::InFlight);
        assert!(calls.answered(seq, ADD).is_some());
        // A second answer to the same call is late.
        assert!(calls.answered(seq, ADD).is_none());
        assert_eq!(calls.counts().late, 4);
        assert_eq!(calls.counts().answered, 1);
    }

    #[test]
    fn deadlines_end_calls_in_their_order_whatever_the_order_of_submission() {
        let mut calls: Calls<()> = Calls::new(limits(8, 8));
        let t0 = Instant::now();
        let long = calls.submit(ADD, 1, t0 + ms(500)).unwrap();
        let short = calls.submit(ADD, 1, t0 + ms(10)).unwrap();
        let middle = calls.submit(ADD, 1, t0 + ms(100)).unwrap();
        calls.next_to_send().unwrap(); // `long` is sent; the others stay queued
        assert_eq!(calls.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(calls.expire(t0 + ms(5)), None);
        assert_eq!(calls.expire(t0 + ms(200)), Some(short));
        assert_eq!(calls.expire(t0 + ms(200)), Some(middle));
        assert_eq!(calls.expire(t0 + ms(200)), None);
        assert_eq!(calls.next_deadline(), Some(t0 + ms(500)));
        assert_eq!(
            calls.collect(short),
            Some(End::TimedOut { sent: false }),
            "a queued call that timed out was never sent"
        );
        assert_eq!(calls.expire(t0 + ms(500)), Some(long));
        assert_eq!(calls.collect(long), Some(End::TimedOut { sent: true }));
        // A timed-out call is never sent, and its late answer is dropped.
        assert_eq!(calls.next_to_send(), None);
        assert!(calls.answered(long, ADD).is_none());
        assert_eq!(calls.counts().timed_out, 3);
    }

    #[test]
    fn a_cancelled_call_frees_its_slot_at_once_and_a_queued_one_is_never_sent() {
        let mut calls: Calls<()> = Calls::new(limits(1, 2));
        let now = Instant::now();
        let sent = calls.submit(ADD, 10, now + ms(10)).unwrap();
        let queued = calls.submit(ADD, 10, now + ms(10)).unwrap();
        assert_eq!(calls.next_to_send(), Some(sent));
        assert_eq!(calls.cancel(queued), State::Queued);
        assert_eq!(calls.cancel(sent), State::InFlight);
        assert_eq!(
            (calls.in_flight(), calls.queued(), calls.bytes_in_flight()),
            (0, 0, 0)
        );
        assert_eq!(
            calls.next_to_send(),
            None,
            "the cancelled call stays unsent"
        );
        assert!(calls.answered(sent, ADD).is_none(), "its answer is late");
        assert_eq!(calls.expire(now + ms(20)), None, "nothing left to time out");
        assert_eq!(calls.cancel(sent), State::Free);
        assert_eq!(calls.counts().cancelled, 2);
    }

    #[test]
    fn calls_past_the_bounds_are_refused_and_the_queue_waits_for_room() {
        let mut calls: Calls<()> = Calls::new(limits(2, 1));
        let now = Instant::now();
        let seqs: Vec<u32> = (0..3)
            .map(|_| calls.submit(ADD, 1, now + ms(10)).unwrap())
            .collect();
        assert_eq!(
            calls.submit(ADD, 1, now + ms(10)),
            Err(Refusal::Full {
                in_flight: 0,
                queued: 3
            })
        );
        assert_eq!(calls.next_to_send(), Some(seqs[0]));
        assert_eq!(calls.next_to_send(), Some(seqs[1]));
        assert_eq!(calls.next_to_send(), None, "two in flight at most");
        calls.answered(seqs[0], ADD).unwrap();
        assert_eq!(calls.next_to_send(), Some(seqs[2]));
        assert_eq!(calls.counts().refused, 1);
    }

    #[test]
    fn bytes_in_flight_are_bounded_but_one_call_always_goes() {
        let mut calls: Calls<()> = Calls::new(Limits {
            in_flight: 8,
            queued: 8,
            bytes: 100,
        });
        let now = Instant::now();
        let big = calls.submit(ADD, 500, now + ms(10)).unwrap();
        let small = calls.submit(ADD, 10, now + ms(10)).unwrap();
        assert_eq!(
            calls.next_to_send(),
            Some(big),
            "alone, it goes however large"
        );
        assert_eq!(calls.next_to_send(), None, "past the bytes bound, it waits");
        calls.answered(big, ADD).unwrap();
        assert_eq!(calls.next_to_send(), Some(small));
        assert_eq!(calls.bytes_in_flight(), 10);
    }

    #[test]
    fn a_call_that_could_not_be_sent_goes_back_first_in_line() {
        let mut calls: Calls<()> = Calls::new(limits(4, 4));
        let now = Instant::now();
        let first = calls.submit(ADD, 1, now + ms(10)).unwrap();
        let second = calls.submit(ADD, 1, now + ms(10)).unwrap();
        assert_eq!(calls.next_to_send(), Some(first));
        calls.unsend(first);
        assert_eq!((calls.in_flight(), calls.queued()), (0, 2));
        assert_eq!(calls.next_to_send(), Some(first));
        assert_eq!(calls.next_to_send(), Some(second));
        assert_eq!(calls.counts().sent, 2);
    }

    #[test]
    fn a_dropped_connection_ends_the_calls_in_flight_oldest_first_and_keeps_the_queue() {
        let mut calls: Calls<()> = Calls::new(limits(3, 2));
        let now = Instant::now();
        let seqs: Vec<u32> = (0..5)
            .map(|_| calls.submit(ADD, 1, now + ms(10)).unwrap())
            .collect();
        for _ in 0..3 {
            calls.next_to_send().unwrap();
        }
        let mut ended = Vec::new();
        calls.end_in_flight(Why::Disconnected, |seq, ()| ended.push(seq));
        assert_eq!(ended, seqs[..3]);
        assert_eq!(calls.collect(seqs[1]), Some(End::Ended(Why::Disconnected)));
        assert_eq!((calls.in_flight(), calls.queued()), (0, 2));
        // The queued ones go out on the next connection.
        assert_eq!(calls.next_to_send(), Some(seqs[3]));
        let mut stopped = Vec::new();
        calls.end_all(Why::Stopped, |seq, ()| stopped.push(seq));
        assert_eq!(stopped, seqs[3..]);
        assert_eq!((calls.in_flight(), calls.queued()), (0, 0));
    }

    #[test]
    fn calls_not_collected_hold_their_slots_and_refuse_new_ones_when_every_slot_is_held() {
        let mut calls: Calls<()> = Calls::new(limits(1, 0));
        let now = Instant::now();
        // Two slots for one live call: answered but uncollected calls fill them.
        for _ in 0..2 {
            let seq = calls.submit(ADD, 1, now + ms(10)).unwrap();
            calls.next_to_send().unwrap();
            calls.answered(seq, ADD).unwrap();
        }
        assert!(matches!(
            calls.submit(ADD, 1, now + ms(10)),
            Err(Refusal::Full { .. })
        ));
    }

    #[test]
    fn many_calls_answered_long_before_their_deadlines_keep_the_deadline_heap_bounded() {
        let mut calls: Calls<()> = Calls::new(limits(4, 4));
        let far = Instant::now() + Duration::from_secs(3600);
        for _ in 0..100_000 {
            let seq = calls.submit(ADD, 1, far).unwrap();
            calls.next_to_send().unwrap();
            calls.answered(seq, ADD).unwrap();
            calls.collect(seq).unwrap();
        }
        assert!(calls.deadlines.len() <= 2 * calls.slots.len() + 1);
        assert_eq!(calls.next_deadline(), None);
        assert_eq!(calls.counts().answered, 100_000);
    }

    #[test]
    fn a_timed_out_calls_slot_is_reused_and_its_late_answer_is_not_taken_for_the_new_call() {
        let mut calls: Calls<()> = Calls::new(limits(1, 0));
        let t0 = Instant::now();
        let old = calls.submit(ADD, 1, t0 + ms(10)).unwrap();
        calls.next_to_send().unwrap();
        calls.expire(t0 + ms(10)).unwrap();
        calls.collect(old).unwrap();
        let mut new = old;
        // Go round the table until the old call's slot is used again.
        while new & calls.mask != old & calls.mask || new == old {
            new = calls.submit(ADD, 1, t0 + ms(100)).unwrap();
            calls.cancel(new);
        }
        let new = calls.submit(ADD, 1, t0 + ms(100)).unwrap();
        calls.next_to_send().unwrap();
        assert!(calls.answered(old, ADD).is_none(), "the old call's answer");
        assert!(calls.answered(new, ADD).is_some());
    }

    #[test]
    fn calls_cancelled_while_queued_leave_the_queue_bounded() {
        let mut calls: Calls<()> = Calls::new(limits(1, 4));
        let far = Instant::now() + Duration::from_secs(3600);
        for _ in 0..100_000 {
            let seq = calls.submit(ADD, 1, far).unwrap();
            calls.cancel(seq);
        }
        assert!(calls.queue.len() <= calls.slots.len());
        assert_eq!(calls.queued(), 0);
    }
}
