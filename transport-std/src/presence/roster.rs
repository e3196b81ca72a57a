//! [`Roster`]: who announced, and whether each is still up — a state machine over
//! announcements and the clock ([`Book`]), and the two services a server hosts it with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Announce, GetRoster, Member, Presence, RosterView};
use crate::dialect::Dialect;
use crate::{Caller, RegisterError, ServerBuilder, ServiceError, WithCaller};

/// How many of its own intervals a node may stay silent before it is counted down.
pub const SILENCE_TURNS: u32 = 3;

/// The shortest interval a node may announce at (a shorter one is taken as this).
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// The longest interval a node may announce at (a longer one is taken as this), so that no
/// announcement keeps a node up for ever.
pub const MAX_EVERY: Duration = Duration::from_secs(3600);

/// The longest name, role or version, and endpoint, a roster keeps, in bytes.
const MAX_FIELD: usize = 256;

/// The most endpoints a node may give.
const MAX_ENDPOINTS: usize = 16;

/// A roster's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RosterCounts {
    /// Announcements heard.
    pub heard: u64,
    /// Announcements refused: the roster was full of nodes that are up, or the announcement
    /// was larger than a roster keeps.
    pub refused: u64,
    /// Members forgotten to make room (the one down longest).
    pub forgotten: u64,
}

/// A roster of the nodes that announce to it; see the [module docs](super). A cheap handle:
/// its clones share one roster.
#[derive(Clone, Debug)]
pub struct Roster {
    book: Arc<Mutex<Book>>,
}

impl Roster {
    /// A roster keeping at most `max_members` nodes (at least 1). When it is full, a new
    /// node takes the place of the one down longest; with every member up, it is refused.
    pub fn new(max_members: usize) -> Roster {
        Roster {
            book: Arc::new(Mutex::new(Book::new(max_members.max(1)))),
        }
    }

    /// Registers the roster's services on `builder`: [`Announce`] and [`GetRoster`]
    /// (cloneable: they serve from any worker).
    pub fn register<D: Dialect>(
        self,
        builder: ServerBuilder<D>,
    ) -> Result<(ServerBuilder<D>, Roster), RegisterError> {
        let heard = self.clone();
        let builder = builder.register_clone(WithCaller(
            move |announce: Announce, caller: &Caller<'_>| {
                let user = caller.user_id.map(str::to_owned);
                heard
                    .lock()
                    .heard(announce, user, Instant::now())
                    .map_err(ServiceError::new)
            },
        ))?;
        let viewed = self.clone();
        let builder =
            builder.register_clone(move |_: GetRoster| Ok::<_, ServiceError>(viewed.view()))?;
        Ok((builder, self))
    }

    /// Who is up now.
    pub fn view(&self) -> RosterView {
        self.lock().view(Instant::now())
    }

    /// The roster's counters.
    pub fn counts(&self) -> RosterCounts {
        self.lock().counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The roster's state, apart from any socket: what was heard when, judged against `now`.
#[derive(Debug)]
pub(crate) struct Book {
    members: HashMap<String, Entry>,
    max: usize,
    counts: RosterCounts,
}

#[derive(Debug)]
struct Entry {
    presence: Presence,
    user_id: Option<String>,
    every: Duration,
    last_heard: Instant,
    /// When it said it was leaving, if its last word was that.
    left: Option<Instant>,
    /// When it came up (its first announcement after being down).
    up_since: Instant,
    announcements: u64,
}

impl Entry {
    /// The silence after which it is down.
    fn timeout(&self) -> Duration {
        self.every * SILENCE_TURNS
    }

    /// Whether it is up at `now`.
    fn is_up(&self, now: Instant) -> bool {
        self.left.is_none() && now.saturating_duration_since(self.last_heard) <= self.timeout()
    }

    /// Since when it is in its state at `now`.
    fn since(&self, now: Instant) -> Instant {
        match (self.is_up(now), self.left) {
            (true, _) => self.up_since,
            (false, Some(left)) => left,
            (false, None) => self.last_heard + self.timeout(),
        }
    }
}

impl Book {
    pub(crate) fn new(max: usize) -> Book {
        Book {
            members: HashMap::new(),
            max,
            counts: RosterCounts::default(),
        }
    }

    /// Hears `announce` from `user_id` at `now`; an error says why it was refused.
    pub(crate) fn heard(
        &mut self,
        announce: Announce,
        user_id: Option<String>,
        now: Instant,
    ) -> Result<(), String> {
        if let Err(why) = fits(&announce.presence) {
            self.counts.refused += 1;
            return Err(why);
        }
        let every = Duration::from_millis(announce.every_ms).clamp(MIN_EVERY, MAX_EVERY);
        let left = announce.leaving.then_some(now);
        let name = announce.presence.name.clone();
        if let Some(entry) = self.members.get_mut(&name) {
            if !entry.is_up(now) {
                entry.up_since = now;
            }
            entry.presence = announce.presence;
            entry.user_id = user_id;
            entry.every = every;
            entry.last_heard = now;
            entry.left = left;
            entry.announcements += 1;
            self.counts.heard += 1;
            return Ok(());
        }
        if self.members.len() >= self.max && !self.forget_one(now) {
            self.counts.refused += 1;
            return Err(format!(
                "the roster is full: {} nodes, every one up",
                self.members.len()
            ));
        }
        self.members.insert(
            name,
            Entry {
                presence: announce.presence,
                user_id,
                every,
                last_heard: now,
                left,
                up_since: now,
                announcements: 1,
            },
        );
        self.counts.heard += 1;
        Ok(())
    }

    /// Forgets the member down longest, if one is down; whether one was.
    fn forget_one(&mut self, now: Instant) -> bool {
        let oldest = self
            .members
            .iter()
            .filter(|(_, entry)| !entry.is_up(now))
            .min_by_key(|(_, entry)| entry.since(now))
            .map(|(name, _)| name.clone());
        match oldest {
            Some(name) => {
                self.members.remove(&name);
                self.counts.forgotten += 1;
                true
            }
            None => false,
        }
    }

    /// Every member as seen at `now`, by name.
    pub(crate) fn view(&self, now: Instant) -> RosterView {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut members: Vec<Member> = self
            .members
            .values()
            .map(|entry| Member {
                name: entry.presence.name.clone(),
                role: entry.presence.role.clone(),
                version: entry.presence.version.clone(),
                endpoints: entry.presence.endpoints.clone(),
                user_id: entry.user_id.clone(),
                up: entry.is_up(now),
                for_ms: ms(now.saturating_duration_since(entry.since(now))),
                last_heard_ms: ms(now.saturating_duration_since(entry.last_heard)),
                announcements: entry.announcements,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        RosterView {
            members,
            refused: self.counts.refused,
        }
    }
}

/// Refuses an announcement larger than a roster keeps.
fn fits(presence: &Presence) -> Result<(), String> {
    let fields = [
        ("name", &presence.name),
        ("role", &presence.role),
        ("version", &presence.version),
    ];
    for (what, value) in fields {
        if value.len() > MAX_FIELD {
            return Err(format!(
                "a {what} of {} bytes: at most {MAX_FIELD}",
                value.len()
            ));
        }
    }
    if presence.name.is_empty() {
        return Err("a node without a name".to_owned());
    }
    if presence.endpoints.len() > MAX_ENDPOINTS {
        let n = presence.endpoints.len();
        return Err(format!("{n} endpoints: at most {MAX_ENDPOINTS}"));
    }
    if let Some(long) = presence.endpoints.iter().find(|e| e.len() > MAX_FIELD) {
        return Err(format!(
            "an endpoint of {} bytes: at most {MAX_FIELD}",
            long.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn announce(name: &str, every_ms: u64, leaving: bool) -> Announce {
        Announce {
            presence: Presence::new(name, "server", vec![format!("tcp://{name}:30000")]),
            every_ms,
            leaving,
        }
    }

    #[test]
    fn a_node_is_up_once_heard_and_down_after_three_silent_intervals() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut book = Book::new(8);
        book.heard(announce("a", 1000, false), Some("ops".into()), at(0))
            .unwrap();
        let seen = book.view(at(2999));
        let a = seen.member("a").unwrap();
        assert!(a.up);
        assert_eq!((a.for_ms, a.last_heard_ms), (2999, 2999));
        assert_eq!(a.user_id.as_deref(), Some("ops"));
        let a = book.view(at(3001)).member("a").unwrap().clone();
        assert!(!a.up);
        // Down since its timeout ran out, at 3000.
        assert_eq!(a.for_ms, 1);
        // Heard again: up, since now.
        book.heard(announce("a", 1000, false), None, at(5000))
            .unwrap();
        let a = book.view(at(5500)).member("a").unwrap().clone();
        assert!(a.up);
        assert_eq!((a.for_ms, a.announcements), (500, 2));
    }

    #[test]
    fn a_node_leaving_is_down_at_once() {
        let start = Instant::now();
        let mut book = Book::new(8);
        book.heard(announce("a", 1000, false), None, start).unwrap();
        let later = start + Duration::from_millis(10);
        book.heard(announce("a", 1000, true), None, later).unwrap();
        let a = book.view(later).member("a").unwrap().clone();
        assert!(!a.up);
        assert_eq!(a.for_ms, 0);
    }

    #[test]
    fn an_interval_out_of_bounds_is_taken_at_its_bound() {
        let start = Instant::now();
        let mut book = Book::new(8);
        // "Every 0 ms": down after 3 × MIN_EVERY, not at once.
        book.heard(announce("quick", 0, false), None, start)
            .unwrap();
        // "Every u64::MAX ms": down after 3 × MAX_EVERY, not never.
        book.heard(announce("slow", u64::MAX, false), None, start)
            .unwrap();
        let view = book.view(start + MIN_EVERY * 2);
        assert!(view.member("quick").unwrap().up);
        let view = book.view(start + MIN_EVERY * 4);
        assert!(!view.member("quick").unwrap().up);
        let view = book.view(start + MAX_EVERY * 4);
        assert!(!view.member("slow").unwrap().up);
    }

    #[test]
    fn a_full_roster_forgets_the_node_down_longest_and_refuses_when_all_are_up() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut book = Book::new(2);
        book.heard(announce("a", 100, false), None, at(0)).unwrap();
        book.heard(announce("b", 100, false), None, at(100))
            .unwrap();
        let refused = book
            .heard(announce("c", 100, false), None, at(150))
            .unwrap_err();
        assert!(refused.contains("full"), "{refused}");
        // a is down from 300, b from 400: a goes.
        book.heard(announce("c", 100, false), None, at(1000))
            .unwrap();
        let view = book.view(at(1000));
        let names: Vec<&str> = view.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(view.refused, 1);
        assert_eq!(book.counts.forgotten, 1);
    }

    #[test]
    fn announcements_larger_than_a_roster_keeps_are_refused() {
        let mut book = Book::new(8);
        let now = Instant::now();
        let mut long = announce("a", 100, false);
        long.presence.name = "n".repeat(MAX_FIELD + 1);
        assert!(book.heard(long, None, now).is_err());
        let mut many = announce("a", 100, false);
        many.presence.endpoints = vec!["tcp://x:1".into(); MAX_ENDPOINTS + 1];
        assert!(book.heard(many, None, now).is_err());
        assert!(book.heard(announce("", 100, false), None, now).is_err());
        assert!(book.view(now).members.is_empty());
        assert_eq!(book.counts.refused, 3);
    }
}
