//! [`BoundedQueue`]: a fixed-capacity FIFO that says what it does when full.

use core::fmt;

use heapless::Deque;

/// What a full [`BoundedQueue`] does with a new item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OverflowPolicy {
    /// Keep what is queued; hand the new item back as [`Full`].
    RejectNew,
    /// Make room by removing the oldest item, and hand that one back as [`Pushed::Evicted`].
    DropOldest,
}

/// A successful [`BoundedQueue::push`].
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "an evicted item is lost unless the caller handles it"]
pub enum Pushed<T> {
    /// The item was queued and nothing left the queue.
    Queued,
    /// The item was queued; the queue was full, so the oldest item left it and is returned.
    Evicted(T),
}

/// A [`BoundedQueue::push`] refused under [`OverflowPolicy::RejectNew`]; holds the item.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full<T>(pub T);

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is full")
    }
}

impl<T: fmt::Debug> core::error::Error for Full<T> {}

/// A FIFO of at most `N` items (or a smaller limit set at run time) with an explicit
/// [`OverflowPolicy`] and a count of every item that overflow pushed out or turned away.
///
/// Nothing leaves silently: a rejected item comes back in [`Full`], an evicted one in
/// [`Pushed::Evicted`], and [`dropped`](BoundedQueue::dropped) counts both.
///
/// ```
/// use zmqrpc_core::{BoundedQueue, OverflowPolicy, Pushed};
/// let mut q: BoundedQueue<u32, 2> = BoundedQueue::new(OverflowPolicy::DropOldest);
/// assert_eq!(q.push(1), Ok(Pushed::Queued));
/// assert_eq!(q.push(2), Ok(Pushed::Queued));
/// assert_eq!(q.push(3), Ok(Pushed::Evicted(1)));
/// assert_eq!(q.dropped(), 1);
/// assert_eq!(q.pop(), Some(2));
/// ```
pub struct BoundedQueue<T, const N: usize> {
    items: Deque<T, N>,
    limit: usize,
    policy: OverflowPolicy,
    dropped: u64,
}

impl<T, const N: usize> BoundedQueue<T, N> {
    /// An empty queue holding up to `N` items.
    pub const fn new(policy: OverflowPolicy) -> Self {
        Self::with_limit(policy, N)
    }

    /// An empty queue holding up to `limit` items (`limit` is capped at `N`).
    pub const fn with_limit(policy: OverflowPolicy, limit: usize) -> Self {
        BoundedQueue {
            items: Deque::new(),
            limit: if limit < N { limit } else { N },
            policy,
            dropped: 0,
        }
    }

    /// Appends `item`, applying the overflow policy when the queue is full.
    pub fn push(&mut self, item: T) -> Result<Pushed<T>, Full<T>> {
        if self.items.len() < self.limit {
            return match self.items.push_back(item) {
                Ok(()) => Ok(Pushed::Queued),
                // Unreachable while `limit <= N`, but never lose the item.
                Err(item) => self.overflow(item),
            };
        }
        self.overflow(item)
    }

    fn overflow(&mut self, item: T) -> Result<Pushed<T>, Full<T>> {
        self.dropped = self.dropped.saturating_add(1);
        match self.policy {
            OverflowPolicy::RejectNew => Err(Full(item)),
            OverflowPolicy::DropOldest => match self.items.pop_front() {
                Some(oldest) => match self.items.push_back(item) {
                    Ok(()) => Ok(Pushed::Evicted(oldest)),
                    Err(item) => Err(Full(item)),
                },
                // A zero limit holds nothing: the new item is the oldest.
                None => Err(Full(item)),
            },
        }
    }

    /// Removes and returns the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// The oldest item, left in place.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Puts an item back at the front (for a consumer that could not deliver it).
    ///
    /// Refused, with the item handed back, when the queue is full.
    pub fn push_front(&mut self, item: T) -> Result<(), Full<T>> {
        if self.items.len() >= self.limit {
            return Err(Full(item));
        }
        self.items.push_front(item).map_err(Full)
    }

    /// Items in the queue, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the next push overflows.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.limit
    }

    /// How many items the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// The policy applied when full.
    pub fn policy(&self) -> OverflowPolicy {
        self.policy
    }

    /// How many items overflow has rejected or evicted since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedQueue<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedQueue")
            .field("len", &self.items.len())
            .field("limit", &self.limit)
            .field("policy", &self.policy)
            .field("dropped", &self.dropped)
            .finish()
    }
}
