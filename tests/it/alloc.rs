//! The per-message path allocates nothing on the Rust heap in steady state: client call,
//! pipelined calls, shared calls (blocking and awaited), server dispatch and proxy forward.
//! A counting global allocator sees every Rust allocation of every thread in the test binary
//! (libzmq's own C allocations are not on the Rust heap), and keeps the sizes of the last
//! few for a failure's message. Each test runs itself in a process of its own, so no other
//! test's allocations are counted; the count costs the other tests two relaxed atomic
//! operations per allocation.
// A global allocator needs `unsafe impl GlobalAlloc`; it only counts and delegates to System.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::common::process::in_own_process;
use crate::common::*;
use zmqrpc::transport::{Pipeline, Proxy, ProxyKind, RpcClient};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The sizes of the last allocations, a ring indexed by their count: what a failure names, so
/// an allocation that shows up only now and then can be told by its size.
static LAST_SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn count(size: usize) {
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    LAST_SIZES[(n % 8) as usize].store(size, Ordering::Relaxed);
}

/// The sizes of the last (up to 8) allocations, oldest first, for a failure's message.
fn last_sizes() -> Vec<usize> {
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    (n.saturating_sub(8)..n)
        .map(|i| LAST_SIZES[(i % 8) as usize].load(Ordering::Relaxed))
        .collect()
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `calls` calls of `Add`, after `warm_up` calls.
fn allocations_per_run(client: &mut RpcClient, warm_up: i64, calls: i64) -> u64 {
    for i in 0..warm_up {
        assert_eq!(client.call(&Add(i, 1)).unwrap(), i + 1);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for i in 0..calls {
        // Inline comparison only: a failing assert would allocate its message.
        if client.call(&Add(i, 1)).ok() != Some(i + 1) {
            panic!("call {i} failed");
        }
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn calls_dispatch_and_forwarding_allocate_nothing_in_steady_state() {
    if in_own_process("alloc::calls_dispatch_and_forwarding_allocate_nothing_in_steady_state") {
        return;
    }
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(&server_endpoint)
        .bind()
        .unwrap();
    let proxy_endpoint = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();

    // Client call + server dispatch.
    let mut direct = client(&server_endpoint);
    let allocations = allocations_per_run(&mut direct, 1_000, 10_000);
    assert_eq!(
        allocations,
        0,
        "direct: {allocations} allocations in 10,000 calls, the last of sizes {:?}",
        last_sizes()
    );

    // Client call + proxy forward + server dispatch.
    let mut forwarded = client(&proxy_endpoint);
    let allocations = allocations_per_run(&mut forwarded, 1_000, 10_000);
    assert_eq!(
        allocations,
        0,
        "via Rep2Req: {allocations} allocations in 10,000 calls, the last of sizes {:?}",
        last_sizes()
    );
}

/// Allocations made by `rounds` rounds of `window` pipelined calls, after one round to warm up.
fn pipelined_allocations(pipeline: &mut Pipeline<Add>, window: i64, rounds: i64) -> u64 {
    let mut before = 0;
    for round in 0..=rounds {
        if round == 1 {
            before = ALLOCATIONS.load(Ordering::SeqCst);
        }
        for i in 0..window {
            if pipeline.send(&Add(i, 1)).is_err() {
                panic!("send {i} failed");
            }
        }
        while pipeline.in_flight() > 0 {
            match pipeline.recv(secs(5)) {
                Ok(Some((_, Ok(_)))) => {}
                _ => panic!("a pipelined call failed"),
            }
        }
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn pipelined_calls_allocate_nothing_in_steady_state() {
    if in_own_process("alloc::pipelined_calls_allocate_nothing_in_steady_state") {
        return;
    }
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .window(64)
        .connect::<Add>()
        .unwrap();
    let allocations = pipelined_allocations(&mut pipeline, 64, 100);
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations in 6,400 pipelined calls, the last of sizes {:?}",
        last_sizes()
    );
}

/// Allocations made by `calls` calls of `Add` on a shared client, blocking and then awaited
/// (on a current-thread runtime, one task), each after `warm_up` calls.
fn shared_allocations(
    client: &zmqrpc::transport::SharedClient,
    warm_up: i64,
    calls: i64,
) -> (u64, u64) {
    for i in 0..warm_up {
        assert_eq!(client.call(&Add(i, 1)).unwrap(), i + 1);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for i in 0..calls {
        if client.call(&Add(i, 1)).ok() != Some(i + 1) {
            panic!("call {i} failed");
        }
    }
    let blocking = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let awaited = runtime.block_on(async {
        for i in 0..warm_up {
            assert_eq!(client.call_async(&Add(i, 1)).await.unwrap(), i + 1);
        }
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for i in 0..calls {
            if client.call_async(&Add(i, 1)).await.ok() != Some(i + 1) {
                panic!("call {i} failed");
            }
        }
        ALLOCATIONS.load(Ordering::SeqCst) - before
    });
    (blocking, awaited)
}

#[test]
fn a_shared_call_allocates_at_most_once() {
    if in_own_process("alloc::a_shared_call_allocates_at_most_once") {
        return;
    }
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = zmqrpc::transport::SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap();
    let (blocking, awaited) = shared_allocations(&client, 1_000, 10_000);
    assert!(
        blocking <= 10_000,
        "blocking: {blocking} allocations in 10,000 calls, the last of sizes {:?}",
        last_sizes()
    );
    assert!(
        awaited <= 10_000,
        "awaited: {awaited} allocations in 10,000 calls, the last of sizes {:?}",
        last_sizes()
    );
}
