//! The bridge's calls taking turns on the serial line, without the line: the device answers
//! one call at a time, so the others wait here in order of arrival, each within the bridge's
//! timeout from the moment it arrived. A waiting call that could no longer come back in
//! time is given up before it reaches the device: its caller gets `Timeout` at once, and
//! the device runs nothing whose caller stopped waiting. Time is passed in; nothing here
//! reads a clock or touches the line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use zmqrpc_core::Header;

use crate::messaging::receiver::HeldCall;

/// A call from the input, waiting for the line.
pub(super) struct Waiting {
    /// Where its answer goes.
    pub(super) call: HeldCall,
    /// The request as the caller sent it.
    pub(super) caller: Header,
    pub(super) body: Vec<u8>,
    /// Its arrival plus the bridge's timeout.
    pub(super) deadline: Instant,
    /// Whether it came while the line was taken: only such a call is ever given up (one
    /// that finds the line free goes on it, however slow the device was last time).
    pub(super) behind: bool,
}

/// The call on the line, waiting for the device's answer.
#[derive(Clone, Copy)]
pub(super) struct OnLine {
    pub(super) call: HeldCall,
    /// The request as it went to the device (the link sequence number).
    pub(super) on_link: Header,
    /// The request as the caller sent it.
    pub(super) caller: Header,
    pub(super) sent_at: Instant,
    pub(super) deadline: Instant,
}

/// The calls waiting their turn, and the one on the line.
#[derive(Default)]
pub(super) struct Turns {
    waiting: VecDeque<Waiting>,
    on_line: Option<OnLine>,
    /// How long the device took over the last call it answered, or at least over the last
    /// it did not answer in time: a waiting call with less than this left is given up.
    turnaround: Duration,
}

impl Turns {
    /// Queues `call` behind the others.
    pub(super) fn queue(&mut self, mut call: Waiting) {
        call.behind = self.on_line.is_some() || !self.waiting.is_empty();
        self.waiting.push_back(call);
    }

    /// The call on the line, if any.
    pub(super) fn on_line(&self) -> Option<&OnLine> {
        self.on_line.as_ref()
    }

    /// What the device took over the last call.
    pub(super) fn turnaround(&self) -> Duration {
        self.turnaround
    }

    /// The oldest waiting call if, having waited behind others, it can no longer come back
    /// in time: less of its timeout is left than the device's last turnaround. Deadlines
    /// grow with arrival, so those given up are always the oldest.
    pub(super) fn give_up(&mut self, now: Instant) -> Option<Waiting> {
        let oldest = self.waiting.front()?;
        let left = oldest.deadline.saturating_duration_since(now);
        match oldest.behind && left < self.turnaround.max(MIN_LEFT) {
            true => self.waiting.pop_front(),
            false => None,
        }
    }

    /// The next call to put on the line, once the line is free.
    pub(super) fn next(&mut self) -> Option<Waiting> {
        match self.on_line {
            Some(_) => None,
            None => self.waiting.pop_front(),
        }
    }

    /// `call` went on the line as `on_link` at `now`.
    pub(super) fn sent(&mut self, call: &Waiting, on_link: Header, now: Instant) {
        self.on_line = Some(OnLine {
            call: call.call,
            on_link,
            caller: call.caller,
            sent_at: now,
            deadline: call.deadline,
        });
    }

    /// The call on the line was answered at `now`: the line is free.
    pub(super) fn answered(&mut self, now: Instant) -> Option<OnLine> {
        let done = self.on_line.take()?;
        self.turnaround = now.saturating_duration_since(done.sent_at);
        Some(done)
    }

    /// The call on the line, if its deadline has passed at `now`: the line is free (what
    /// the device sends for it later is stray).
    pub(super) fn overdue(&mut self, now: Instant) -> Option<OnLine> {
        let on_line = self.on_line.filter(|on_line| now >= on_line.deadline)?;
        self.on_line = None;
        let took_at_least = now.saturating_duration_since(on_line.sent_at);
        self.turnaround = self.turnaround.max(took_at_least);
        Some(on_line)
    }

    /// The call on the line ended without an answer from the device (the line failed).
    pub(super) fn failed(&mut self) -> Option<OnLine> {
        self.on_line.take()
    }

    /// When something is due: the call on the line's deadline, or the moment the oldest
    /// waiting call is given up.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let on_line = self.on_line.map(|on_line| on_line.deadline);
        let give_up = self.waiting.front().filter(|w| w.behind).map(|oldest| {
            let wait = self.turnaround.max(MIN_LEFT);
            oldest.deadline.checked_sub(wait).unwrap_or(oldest.deadline)
        });
        on_line.into_iter().chain(give_up).min()
    }

    /// Every call, the one on the line first: for a bridge that stops.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (HeldCall, Header)> + '_ {
        let on_line = self.on_line.take().map(|c| (c.call, c.caller));
        on_line
            .into_iter()
            .chain(self.waiting.drain(..).map(|w| (w.call, w.caller)))
    }
}

/// The least time left that a call still goes on the line with, however fast the device.
const MIN_LEFT: Duration = Duration::from_millis(1);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messaging::receiver::HeldCall;

    fn call(n: u32, deadline: Instant) -> Waiting {
        Waiting {
            call: HeldCall::for_test(n),
            caller: Header::request(n, zmqrpc_core::Key::of("test")),
            body: Vec::new(),
            deadline,
            behind: false,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn calls_go_on_the_line_one_at_a_time_in_order() {
        let t0 = Instant::now();
        let mut turns = Turns::default();
        for n in 0..3 {
            turns.queue(call(n, t0 + 1000 * MS));
        }
        let first = turns.next().unwrap();
        assert_eq!(first.caller.seq, 0);
        turns.sent(&first, first.caller, t0);
        assert!(turns.next().is_none(), "one on the line at a time");
        assert_eq!(turns.deadline(), Some(t0 + 999 * MS));
        assert_eq!(turns.answered(t0 + 100 * MS).unwrap().caller.seq, 0);
        assert_eq!(turns.turnaround(), 100 * MS);
        assert_eq!(turns.next().unwrap().caller.seq, 1);
        assert_eq!(turns.next().unwrap().caller.seq, 2);
        assert!(turns.next().is_none());
    }

    #[test]
    fn a_waiting_call_without_time_for_the_device_is_given_up_oldest_first() {
        let t0 = Instant::now();
        let mut turns = Turns::default();
        let first = call(0, t0 + 1000 * MS);
        turns.sent(&first, first.caller, t0);
        turns.queue(call(1, t0 + 1000 * MS));
        turns.queue(call(2, t0 + 1500 * MS));
        turns.answered(t0 + 400 * MS);
        // 600 ms left of 1: enough for a 400 ms device.
        assert!(turns.give_up(t0 + 400 * MS).is_none());
        assert_eq!(turns.deadline(), Some(t0 + 600 * MS));
        assert_eq!(turns.give_up(t0 + 601 * MS).unwrap().caller.seq, 1);
        assert!(turns.give_up(t0 + 601 * MS).is_none(), "2 still has time");
        assert_eq!(turns.next().unwrap().caller.seq, 2);
    }

    #[test]
    fn a_call_that_finds_the_line_free_goes_however_slow_the_device_was() {
        let t0 = Instant::now();
        let mut turns = Turns::default();
        let first = call(0, t0 + 500 * MS);
        turns.sent(&first, first.caller, t0);
        turns.overdue(t0 + 500 * MS);
        turns.queue(call(1, t0 + 1000 * MS));
        assert!(turns.give_up(t0 + 500 * MS).is_none());
        assert_eq!(turns.deadline(), None);
        assert_eq!(turns.next().unwrap().caller.seq, 1);
    }

    #[test]
    fn an_overdue_call_frees_the_line_and_the_device_counts_as_slow() {
        let t0 = Instant::now();
        let mut turns = Turns::default();
        let first = call(0, t0 + 500 * MS);
        turns.sent(&first, first.caller, t0);
        assert!(turns.overdue(t0 + 499 * MS).is_none());
        assert_eq!(turns.overdue(t0 + 500 * MS).unwrap().caller.seq, 0);
        assert!(turns.on_line().is_none());
        assert_eq!(turns.turnaround(), 500 * MS);
        turns.queue(call(1, t0 + 600 * MS));
        turns.queue(call(2, t0 + 700 * MS));
        let drained: Vec<u32> = turns.drain().map(|(_, h)| h.seq).collect();
        assert_eq!(drained, [1, 2]);
        assert!(turns.next().is_none());
        assert_eq!(turns.deadline(), None);
    }
}
