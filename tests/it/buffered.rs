//! The buffered proxy acknowledges once a request is safe, then delivers everything, in
//! order, through downstream outages; a full buffer refuses instead of dropping.
//!
//! Delivery is at-least-once: a delivery whose answer was lost or late (a timeout, an outage,
//! a restart) comes again. Where that can happen, the tests compare what was delivered with
//! each run of repeats cut to one ([`Samples::delivered`]): nothing missing, nothing out of
//! order, a repeat tolerated.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{BufferedProxy, CallError, Receipt, RpcServer, ServiceError, Spool};
use zmqrpc::{ErrorCode, Frame};

fn fast_retry(
    builder: zmqrpc::transport::BufferedProxyBuilder,
) -> zmqrpc::transport::BufferedProxyBuilder {
    builder
        .timeout(Duration::from_millis(300) * slack())
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

#[test]
fn everything_acknowledged_during_an_outage_is_delivered_in_order() {
    let downstream = ipc_endpoint("buffered-down");
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&downstream)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let proxy = proxy.spawn().unwrap();
    let mut client = client(&input);
    for seq in 0..20 {
        client.call(&Sample { seq, value: 0.0 }).unwrap(); // acknowledged while nobody listens
    }
    assert_eq!(proxy.stats().snapshot().queued, 20);
    assert!(eventually(secs(2), || proxy.stats().snapshot().retried >= 2));

    let samples = Samples::default();
    let server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // A first answer later than the 300 ms timeout makes a repeat: at-least-once.
    assert_eq!(
        samples.wait_for_delivered(20, secs(10)),
        (0..20).collect::<Vec<_>>(),
        "{:?}",
        samples.seqs()
    );

    // An outage in the middle: stop the server, keep sending, start it again.
    server.stop_and_wait().unwrap();
    for seq in 20..30 {
        client.call(&Sample { seq, value: 0.0 }).unwrap();
    }
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // At-least-once: a delivery whose answer was lost in the outage may repeat; nothing is
    // missing and the order holds.
    assert_eq!(
        samples.wait_for_delivered(30, secs(10)),
        (0..30).collect::<Vec<_>>(),
        "{:?}",
        samples.seqs()
    );
    // The last answer may still be on its way back to the proxy.
    assert!(eventually(secs(5), || proxy.stats().snapshot().queued == 0));
    assert_eq!(proxy.stats().snapshot().dropped, 0);
}

#[test]
fn a_delivery_answered_too_late_is_delivered_again_and_the_order_holds() {
    let timeout = Duration::from_millis(300) * slack();
    let downstream = ipc_endpoint("buffered-late");
    let samples = Samples::default();
    let mut store = samples.service();
    let mut slow = true;
    let _server = RpcServer::builder()
        .register(move |sample: Sample| {
            store(sample)?;
            if std::mem::take(&mut slow) {
                // The first answer comes long after the proxy gave up waiting for it.
                std::thread::sleep(timeout * 3);
            }
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&downstream)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let proxy = proxy.spawn().unwrap();
    let mut client = client(&input);
    for seq in 0..5 {
        client.call(&Sample { seq, value: 0.0 }).unwrap();
    }
    assert_eq!(
        samples.wait_for_delivered(5, secs(10)),
        [0, 1, 2, 3, 4],
        "{:?}",
        samples.seqs()
    );
    // Delivered again: at-least-once, not exactly-once.
    let seqs = samples.seqs();
    assert!(seqs.starts_with(&[0, 0]), "{seqs:?}");
    assert!(eventually(secs(5), || proxy.stats().snapshot().queued == 0));
    let counts = proxy.stats().snapshot();
    assert!(counts.retried >= 1, "{counts:?}");
    assert_eq!(counts.dropped, 0, "{counts:?}");
}

#[test]
fn a_full_buffer_refuses_with_busy() {
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(ipc_endpoint("buffered-nobody"))
        .capacity(3)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let proxy = proxy.spawn().unwrap();
    let mut client = client(&input);
    for seq in 0..3 {
        client.call(&Sample { seq, value: 0.0 }).unwrap();
    }
    match client.call(&Sample { seq: 3, value: 0.0 }) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
    let counts = proxy.stats().snapshot();
    assert_eq!((counts.queued, counts.dropped), (3, 1));
}

#[test]
fn a_spooled_proxy_restarted_delivers_what_it_acknowledged() {
    let dir = std::env::temp_dir().join(format!("zmqrpc-spool-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let _ = std::fs::remove_file(&spool);
    let downstream = ipc_endpoint("spool-down");
    {
        let proxy = fast_retry(BufferedProxy::builder())
            .input("tcp://127.0.0.1:*")
            .output(&downstream)
            .spool(&spool, 1 << 20)
            .bind()
            .unwrap();
        let input = proxy.input_endpoints()[0].clone();
        let _proxy = proxy.spawn().unwrap();
        let mut client = client(&input);
        for seq in 0..10 {
            client.call(&Sample { seq, value: 0.0 }).unwrap();
        }
    } // stopped with nothing delivered
    let (_, pending) = Spool::open(&spool, 1 << 20).unwrap();
    assert_eq!(pending.len(), 10);

    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&downstream)
        .spool(&spool, 1 << 20)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(
        samples.wait_for_delivered(10, secs(10)),
        (0..10).collect::<Vec<_>>(),
        "{:?}",
        samples.seqs()
    );
    assert!(eventually(secs(5), || proxy.stats().snapshot().queued == 0));
    drop(proxy);
    assert_eq!(
        std::fs::metadata(&spool).unwrap().len(),
        0,
        "all delivered: file emptied"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_busy_downstream_is_retried_and_nothing_is_dropped() {
    // client -> [A] -> [B, holds 2] -> server (absent at first)
    let server_endpoint = ipc_endpoint("busy-server");
    let b = fast_retry(BufferedProxy::builder())
        .input(ipc_endpoint("busy-b"))
        .output(&server_endpoint)
        .capacity(2)
        .bind()
        .unwrap();
    let b_endpoint = b.input_endpoints()[0].clone();
    let b = b.spawn().unwrap();
    let a = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&b_endpoint)
        .bind()
        .unwrap();
    let a_endpoint = a.input_endpoints()[0].clone();
    let a = a.spawn().unwrap();
    let mut client = client(&a_endpoint);
    for seq in 0..6 {
        client.call(&Sample { seq, value: 0.0 }).unwrap();
    }
    // B fills up and answers Busy; A keeps the rest and retries.
    assert!(eventually(secs(5), || {
        b.stats().snapshot().dropped >= 1 && a.stats().snapshot().retried >= 1
    }));

    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&server_endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // Waiting for six deliveries, not six samples: a repeat (B's timeouts make some) would
    // end the wait before the last arrived.
    assert_eq!(
        samples.wait_for_delivered(6, secs(15)),
        [0, 1, 2, 3, 4, 5],
        "{:?}",
        samples.seqs()
    );
    assert_eq!(a.stats().snapshot().dropped, 0);
}

#[test]
fn the_memory_budget_in_bytes_refuses_with_busy() {
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(ipc_endpoint("bytes-nobody"))
        .max_bytes(300)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let mut client = client(&input);
    let big = "x".repeat(200);
    // The acknowledgement is an empty reply, which an Echo client cannot decode as a String:
    // what matters is that the first is accepted and the second refused.
    assert!(!matches!(
        client.call(&Echo(big.clone())),
        Err(CallError::Remote { .. })
    ));
    match client.call(&Echo(big)) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_subscribed_publisher_is_buffered_and_delivered_to_a_server() {
    let (mut sensor, sensor_endpoint) = publishing_client(None);
    let downstream = ipc_endpoint("buffered-sub-down");
    let proxy = fast_retry(BufferedProxy::builder())
        .subscribe(&sensor_endpoint)
        .output(&downstream)
        .bind()
        .unwrap();
    assert!(
        proxy.input_endpoints().is_empty(),
        "a SUB input binds nothing"
    );
    let proxy = proxy.spawn().unwrap();
    assert!(attached(&mut sensor));

    // Published while the server is away: the proxy holds them.
    for seq in 0..5 {
        sensor.notify(&Sample { seq, value: 0.5 }).unwrap();
    }
    assert!(
        eventually(secs(5), || proxy.stats().snapshot().queued == 5),
        "{:?}",
        proxy.stats().snapshot()
    );
    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    for seq in 5..10 {
        sensor.notify(&Sample { seq, value: 0.5 }).unwrap();
    }
    assert_eq!(
        samples.wait_for_delivered(10, secs(10)),
        (0..10).collect::<Vec<_>>(),
        "{:?}",
        samples.seqs()
    );
    assert!(eventually(secs(5), || proxy.stats().snapshot().queued == 0));
    let counts = proxy.stats().snapshot();
    assert_eq!((counts.received, counts.dropped, counts.failed), (10, 0, 0));
}

#[test]
fn new_requests_are_acknowledged_at_once_while_a_delivery_waits_for_a_silent_downstream() {
    // A downstream that takes a request and never answers: a raw REP socket.
    let ctx = zmq::Context::new();
    let silent = ctx.socket(zmq::REP).unwrap();
    silent.set_linger(0).unwrap();
    silent.set_rcvtimeo(secs(5).as_millis() as i32).unwrap();
    let downstream = ipc_endpoint("buffered-silent");
    silent.bind(&downstream).unwrap();

    let timeout = secs(4);
    let proxy = BufferedProxy::builder()
        .input("tcp://127.0.0.1:*")
        .output(&downstream)
        .timeout(timeout)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let proxy = proxy.spawn().unwrap();
    let mut client = client(&input);
    let started = Instant::now();
    client.call(&Sample { seq: 0, value: 0.0 }).unwrap();
    // The delivery is under way: the downstream has it, and will not answer.
    let delivered = silent.recv_bytes(0).expect("no delivery downstream");
    let frame = Frame::decode(&delivered).unwrap();
    assert_eq!(frame.body::<Sample>().unwrap().seq, 0);

    let mut slowest = Duration::ZERO;
    for seq in 1..=20 {
        let asked = Instant::now();
        client.call(&Sample { seq, value: 0.0 }).unwrap();
        slowest = slowest.max(asked.elapsed());
    }
    // All of it happened while the first delivery was still waiting for its answer.
    let counts = proxy.stats().snapshot();
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    assert_eq!((counts.retried, counts.forwarded), (0, 0), "{counts:?}");
    assert_eq!(counts.queued, 21, "{counts:?}");
    // Each acknowledgement took a moment, not a share of the delivery's 4 s timeout.
    assert!(
        slowest < Duration::from_millis(250) * slack(),
        "slowest acknowledgement {slowest:?}"
    );
}

/// A command with a value for an answer: what the buffered proxy cannot give back.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct ReadTemperature {
    sensor: u8,
}
impl zmqrpc::Command for ReadTemperature {
    const NAME: &'static str = "test.temperature";
    type Response = f32;
}

/// A server of `ReadTemperature` (21.5 °C) and samples, counting the temperature calls it
/// ran.
fn thermometer(samples: &Samples, runs: &Arc<AtomicUsize>) -> zmqrpc::transport::ServerBuilder {
    let runs = Arc::clone(runs);
    samples
        .server()
        .register(move |_: ReadTemperature| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(21.5f32)
        })
        .unwrap()
}

#[test]
fn a_call_through_a_buffered_proxy_is_accepted_never_a_failure_nor_a_made_up_value() {
    let (samples, runs) = (Samples::default(), Arc::new(AtomicUsize::new(0)));
    let server = thermometer(&samples, &runs)
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let direct = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&direct)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let mut client = client(&input);

    // A value-returning call: accepted, named as such, and it still runs downstream.
    match client.call(&ReadTemperature { sensor: 1 }) {
        Err(CallError::Accepted { endpoint }) => assert_eq!(endpoint, input),
        other => panic!("a value-returning call through the proxy: {other:?}"),
    }
    assert!(eventually(secs(5), || runs.load(Ordering::SeqCst) == 1));
    // `submit` says the same without an error; a `()` command is a success either way.
    assert_eq!(
        client.submit(&ReadTemperature { sensor: 2 }).unwrap(),
        Receipt::Accepted {
            endpoint: input.clone()
        }
    );
    client.call(&Sample { seq: 7, value: 1.0 }).unwrap();
    assert!(matches!(
        client.submit(&Sample { seq: 8, value: 1.0 }).unwrap(),
        Receipt::Accepted { .. }
    ));
    assert_eq!(samples.wait_for_delivered(2, secs(5)), vec![7, 8]);
    assert!(eventually(secs(5), || runs.load(Ordering::SeqCst) == 2));

    // Straight to the server, the same calls are answered.
    let mut straight = zmqrpc::transport::RpcClient::builder()
        .req(&direct)
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert_eq!(straight.call(&ReadTemperature { sensor: 1 }).unwrap(), 21.5);
    assert_eq!(
        straight.submit(&ReadTemperature { sensor: 1 }).unwrap(),
        Receipt::Answered(21.5)
    );
    assert_eq!(
        straight.submit(&Sample { seq: 9, value: 1.0 }).unwrap(),
        Receipt::Answered(())
    );
}

#[cfg(feature = "pyzmqrpc3")]
#[test]
fn a_pyzmqrpc3_dialect_caller_through_a_buffered_proxy_is_told_its_call_was_accepted() {
    use zmqrpc::transport::dialect::Pyzmqrpc3;
    // Nothing downstream: the acceptance is the proxy's own answer.
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(dead_endpoint())
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let mut client = zmqrpc::transport::RpcClient::builder_for(Pyzmqrpc3::new())
        .req(&input)
        .timeout(secs(5))
        .connect()
        .unwrap();
    match client.call(&ReadTemperature { sensor: 1 }) {
        Err(CallError::Accepted { endpoint }) => assert_eq!(endpoint, input),
        other => panic!("a value-returning call through the proxy: {other:?}"),
    }
    client.call(&Sample { seq: 1, value: 0.5 }).unwrap();
}

/// Calls from many callers at once are taken together: the batch is written to the spool,
/// synced once, and every caller acknowledged after that one sync (a REP input took one
/// call at a time, a sync each, the others waiting). Everything is delivered afterwards.
#[test]
fn calls_from_many_callers_at_once_share_one_spool_sync_and_all_are_delivered() {
    const CALLERS: u32 = 16;
    let dir = std::env::temp_dir().join(format!("zmqrpc-group-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("spool");
    let _ = std::fs::remove_file(&spool);
    let downstream = ipc_endpoint("group-sync-down");
    let proxy = fast_retry(BufferedProxy::builder())
        .input("tcp://127.0.0.1:*")
        .output(&downstream)
        .spool(&spool, 1 << 20)
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let stats = proxy.stats();
    // Every caller's call is waiting at the proxy before it reads any.
    let callers: Vec<_> = (0..CALLERS)
        .map(|seq| {
            let input = input.clone();
            std::thread::spawn(move || client(&input).call(&Sample { seq, value: 0.0 }))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300) * slack());
    let proxy = proxy.spawn().unwrap();
    for caller in callers {
        caller.join().unwrap().unwrap();
    }
    let counts = stats.snapshot();
    let all = u64::from(CALLERS);
    assert_eq!((counts.received, counts.queued), (all, all), "{counts:?}");
    assert!(
        (1..all).contains(&counts.synced),
        "{} callers at once took {} syncs",
        CALLERS,
        counts.synced
    );

    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let mut delivered = samples.wait_for_delivered(CALLERS as usize, secs(10));
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered, (0..CALLERS).collect::<Vec<_>>());
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
