//! BoundedQueue: both overflow policies, what they hand back and what they count.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

use zmqrpc_core::{BoundedQueue, Full, OverflowPolicy, Pushed};

#[test]
fn reject_new_keeps_the_queue_and_returns_the_item() {
    let mut q: BoundedQueue<u32, 3> = BoundedQueue::new(OverflowPolicy::RejectNew);
    for i in 0..3 {
        assert_eq!(q.push(i), Ok(Pushed::Queued));
    }
    assert!(q.is_full());
    assert_eq!(q.push(3), Err(Full(3)));
    assert_eq!(q.push(4), Err(Full(4)));
    assert_eq!(q.dropped(), 2);
    assert_eq!(q.iter().copied().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(q.pop(), Some(0));
    assert_eq!(q.push(5), Ok(Pushed::Queued));
    assert_eq!(q.iter().copied().collect::<Vec<_>>(), [1, 2, 5]);
}

#[test]
fn drop_oldest_evicts_in_order_and_counts() {
    let mut q: BoundedQueue<u32, 3> = BoundedQueue::new(OverflowPolicy::DropOldest);
    let mut evicted = Vec::new();
    for i in 0..10 {
        if let Ok(Pushed::Evicted(old)) = q.push(i) {
            evicted.push(old);
        }
    }
    assert_eq!(evicted, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(q.dropped(), 7);
    assert_eq!(q.iter().copied().collect::<Vec<_>>(), [7, 8, 9]);
}

#[test]
fn a_runtime_limit_below_capacity_is_honoured() {
    let mut q: BoundedQueue<u8, 16> = BoundedQueue::with_limit(OverflowPolicy::RejectNew, 2);
    assert_eq!(q.capacity(), 2);
    assert!(q.push(1).is_ok() && q.push(2).is_ok());
    assert_eq!(q.push(3), Err(Full(3)));
    let capped: BoundedQueue<u8, 4> = BoundedQueue::with_limit(OverflowPolicy::RejectNew, 99);
    assert_eq!(capped.capacity(), 4);
}

#[test]
fn a_zero_limit_holds_nothing_under_either_policy() {
    for policy in [OverflowPolicy::RejectNew, OverflowPolicy::DropOldest] {
        let mut q: BoundedQueue<u8, 4> = BoundedQueue::with_limit(policy, 0);
        assert_eq!(q.push(1), Err(Full(1)));
        assert_eq!(q.dropped(), 1);
    }
}

#[test]
fn push_front_returns_an_item_to_the_head_unless_full() {
    let mut q: BoundedQueue<u8, 2> = BoundedQueue::new(OverflowPolicy::RejectNew);
    assert!(q.push(2).is_ok());
    let head = q.pop().unwrap();
    assert!(q.push(3).is_ok());
    assert_eq!(q.push_front(head), Ok(()));
    assert_eq!(q.front(), Some(&2));
    assert_eq!(q.push_front(1), Err(Full(1)));
    assert_eq!(
        q.dropped(),
        0,
        "push_front refusals are the caller's to count"
    );
}
