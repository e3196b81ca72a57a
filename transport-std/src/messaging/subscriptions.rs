//! The topics a publisher's subscribers hold, as its XPUB socket reports
//! them, and whether a message matches any. No I/O: the [`Publisher`](crate::Publisher)
//! feeds it the socket's subscription messages.
//!
//! An XPUB socket reports a topic when its first subscriber takes it and again when its last
//! one drops it, so the set holds distinct topics. It is bounded ([`MAX_TOPICS`]; beyond,
//! new topics are ignored and counted), and every operation is a few hash lookups: a
//! message is matched against the empty topic (zmqrpc's subscribers take everything), then
//! against its own prefixes of the lengths some topic has.

use std::collections::{BTreeMap, HashSet};

/// The most distinct topics a publisher keeps track of.
pub const MAX_TOPICS: usize = 1024;

/// What one subscription message changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The first topic arrived: a subscriber is attached now.
    Attached,
    /// The last topic went: no subscriber is left.
    Detached,
    /// Topics changed, subscribers remain (or none was there).
    Other,
    /// A new topic beyond [`MAX_TOPICS`]: ignored.
    Ignored,
}

/// The distinct topics subscribers hold.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Someone subscribed to everything (the empty topic).
    everything: bool,
    topics: HashSet<Vec<u8>>,
    /// How many topics have each length, to try a message's prefixes of those lengths only.
    lengths: BTreeMap<usize, usize>,
}

impl Subscriptions {
    /// Takes one XPUB subscription message (`1` or `0`, then the topic) into account.
    pub(crate) fn apply(&mut self, event: &[u8]) -> Change {
        let before = self.any();
        let changed = match event.split_first() {
            Some((1, [])) => {
                self.everything = true;
                true
            }
            Some((0, [])) => {
                self.everything = false;
                true
            }
            Some((1, topic)) if !self.topics.contains(topic) => {
                if self.topics.len() >= MAX_TOPICS {
                    return Change::Ignored;
                }
                self.topics.insert(topic.to_vec());
                *self.lengths.entry(topic.len()).or_default() += 1;
                true
            }
            Some((0, topic)) if self.topics.remove(topic) => {
                if let Some(count) = self.lengths.get_mut(&topic.len()) {
                    *count -= 1;
                    if *count == 0 {
                        self.lengths.remove(&topic.len());
                    }
                }
                true
            }
            _ => false,
        };
        match (changed, before, self.any()) {
            (true, false, true) => Change::Attached,
            (true, true, false) => Change::Detached,
            _ => Change::Other,
        }
    }

    /// Whether any subscriber holds any topic.
    pub(crate) fn any(&self) -> bool {
        self.everything || !self.topics.is_empty()
    }

    /// Whether some subscriber's topic is a prefix of `message`, so libzmq would deliver it
    /// to someone.
    pub(crate) fn matches(&self, message: &[u8]) -> bool {
        self.everything
            || self
                .lengths
                .keys()
                .take_while(|&&len| len <= message.len())
                .any(|&len| self.topics.contains(&message[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(topic: &[u8]) -> Vec<u8> {
        [&[1][..], topic].concat()
    }

    fn unsubscribe(topic: &[u8]) -> Vec<u8> {
        [&[0][..], topic].concat()
    }

    #[test]
    fn the_empty_topic_matches_everything() {
        let mut subs = Subscriptions::default();
        assert!(!subs.matches(b"x"));
        assert_eq!(subs.apply(&subscribe(b"")), Change::Attached);
        assert!(subs.matches(b"anything") && subs.matches(b""));
        assert_eq!(subs.apply(&unsubscribe(b"")), Change::Detached);
        assert!(!subs.any());
    }

    #[test]
    fn a_topic_matches_only_messages_it_prefixes() {
        let mut subs = Subscriptions::default();
        assert_eq!(subs.apply(&subscribe(b"zzz")), Change::Attached);
        assert!(subs.any());
        assert!(!subs.matches(b"\x01\x00 a frame"));
        assert!(subs.matches(b"zzzz"));
        assert!(!subs.matches(b"zz"));
        assert_eq!(subs.apply(&subscribe(b"ab")), Change::Other);
        assert!(subs.matches(b"abc"));
        assert_eq!(subs.apply(&unsubscribe(b"zzz")), Change::Other);
        assert!(!subs.matches(b"zzzz"));
        assert_eq!(subs.apply(&unsubscribe(b"ab")), Change::Detached);
        // Unknown or malformed messages change nothing.
        for event in [&b""[..], b"\x07topic", &unsubscribe(b"never")] {
            assert_eq!(subs.apply(event), Change::Other);
        }
        assert!(!subs.any());
    }

    #[test]
    fn the_set_is_bounded_and_what_it_ignores_is_said() {
        let mut subs = Subscriptions::default();
        for n in 0..MAX_TOPICS {
            assert_ne!(
                subs.apply(&subscribe(n.to_string().as_bytes())),
                Change::Ignored
            );
        }
        assert_eq!(subs.apply(&subscribe(b"one too many")), Change::Ignored);
        assert!(!subs.matches(b"one too many"));
        // A topic already held is no new topic.
        assert_eq!(subs.apply(&subscribe(b"7")), Change::Other);
        assert_eq!(subs.apply(&unsubscribe(b"7")), Change::Other);
        assert_eq!(subs.apply(&subscribe(b"one too many")), Change::Other);
        assert!(subs.matches(b"one too many"));
    }
}
