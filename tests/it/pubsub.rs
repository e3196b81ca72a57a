//! One-way notifications over PUB/SUB: delivery, queueing while nobody listens, liveness.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use zmqrpc::transport::{RpcClient, RpcServer};

/// A notification with a payload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Blob {
    seq: u32,
    data: Vec<u8>,
}
impl zmqrpc::Command for Blob {
    const NAME: &'static str = "test.blob";
    type Response = ();
}

fn publisher(pending_limit: usize) -> (RpcClient, String) {
    let client = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .pending_limit(pending_limit)
        .connect()
        .unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    (client, endpoint)
}

/// Waits (bounded) until a subscriber is attached, and flushes what was held for it.
fn attach(client: &mut RpcClient) {
    let publisher = client.sender().publisher().unwrap();
    assert!(publisher.wait_for_subscriber(secs(5)).unwrap());
}

#[test]
fn notify_reaches_the_service() {
    let (mut client, endpoint) = publisher(100);
    let samples = Samples::default();
    let running = samples
        .server()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    for seq in 0..10 {
        client.notify(&Sample { seq, value: 1.5 }).unwrap();
    }
    attach(&mut client);
    assert_eq!(samples.wait_for(10, secs(5)), (0..10).collect::<Vec<_>>());
    // Counted when the service returns, just after it stored the sample.
    assert!(eventually(secs(5), || running
        .stats()
        .snapshot()
        .dispatch
        .served
        == 10));
}

#[test]
fn messages_sent_before_a_subscriber_are_delivered_in_order_and_overflow_is_counted() {
    let (mut client, endpoint) = publisher(5);
    for seq in 0..8 {
        client.notify(&Sample { seq, value: 0.0 }).unwrap();
    }
    let stats = client.publisher_stats().unwrap();
    let counts = stats.snapshot();
    assert_eq!((counts.queued, counts.dropped, counts.published), (5, 3, 0));

    let samples = Samples::default();
    let _running = samples
        .server()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let publisher = client.sender().publisher().unwrap();
    assert!(publisher.wait_for_subscriber(secs(5)).unwrap());
    // The five newest, in order; the three oldest were dropped and counted.
    assert_eq!(samples.wait_for(5, secs(5)), [3, 4, 5, 6, 7]);
    let counts = stats.snapshot();
    assert_eq!((counts.queued, counts.dropped, counts.published), (0, 3, 5));
    assert_eq!(counts.attached, 1);
}

#[test]
fn a_silent_publisher_gets_its_sub_socket_recreated() {
    let (_client, endpoint) = publisher(10);
    let server = RpcServer::builder()
        .subscribe_with_silence_timeout(&endpoint, Duration::from_millis(100) * slack())
        .bind()
        .unwrap();
    let running = server.spawn().unwrap();
    let stats = running.stats().clone();
    assert!(eventually(secs(5), || stats
        .snapshot()
        .receiver
        .sub_recreated
        >= 2));
}

#[test]
fn heartbeats_keep_a_sub_socket_alive_and_never_reach_a_service() {
    let (mut client, endpoint) = publisher(10);
    let samples = Samples::default();
    let silence = Duration::from_millis(300) * slack();
    let running = samples
        .server()
        .subscribe_with_silence_timeout(&endpoint, silence)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    attach(&mut client);
    let stats = running.stats().clone();
    // Heartbeats at a third of the silence timeout, for three timeouts.
    for _ in 0..9 {
        client.heartbeat().unwrap();
        std::thread::sleep(silence / 3);
    }
    let counts = stats.snapshot().receiver;
    assert!(counts.heartbeats >= 5, "{counts:?}");
    assert_eq!(counts.sub_recreated, 0, "{counts:?}");
    assert_eq!(counts.received, 0, "a heartbeat is not a message");
    assert!(samples.seqs().is_empty());
    assert_eq!(running.stats().snapshot().dispatch.bad_frames, 0);
}

#[test]
fn one_server_listens_on_rep_and_sub_at_once() {
    let (mut publisher_client, pub_endpoint) = publisher(10);
    let samples = Samples::default();
    let server = standard_server()
        .register(samples.service())
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .subscribe(&pub_endpoint)
        .bind()
        .unwrap();
    let rep_endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    publisher_client
        .notify(&Sample { seq: 1, value: 2.0 })
        .unwrap();
    attach(&mut publisher_client);
    assert_eq!(client(&rep_endpoint).call(&Add(1, 2)).unwrap(), 3);
    assert_eq!(samples.wait_for(1, secs(5)), [1]);
}

#[test]
fn when_the_last_subscriber_leaves_messages_are_held_for_the_next() {
    let (mut client, endpoint) = publisher(10);
    let first = Samples::default();
    let running = first
        .server()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    attach(&mut client);
    client.notify(&Sample { seq: 0, value: 0.0 }).unwrap();
    assert_eq!(first.wait_for(1, secs(5)), [0]);
    running.stop_and_wait().unwrap();

    // The transport learns that the subscriber left (XPUB unsubscribe) ...
    let publisher = client.sender().publisher().unwrap();
    let stats = publisher.stats();
    assert!(eventually(secs(5), || {
        publisher.flush().unwrap();
        !publisher.has_subscriber()
    }));
    assert_eq!(stats.snapshot().detached, 1);
    // ... so what is sent meanwhile waits for the next subscriber instead of vanishing.
    for seq in 1..4 {
        client.notify(&Sample { seq, value: 0.0 }).unwrap();
    }
    assert_eq!(stats.snapshot().queued, 3);
    let second = Samples::default();
    let _running = second
        .server()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    attach(&mut client);
    assert_eq!(second.wait_for(3, secs(5)), [1, 2, 3]);
    assert_eq!(stats.snapshot().dropped, 0);
}

/// A raw SUB socket on `endpoint` holding `topic`, that never reads: as a subscriber that
/// stopped reading, or one whose topic matches nothing zmqrpc publishes.
fn raw_subscriber(ctx: &zmq::Context, endpoint: &str, topic: &[u8]) -> zmq::Socket {
    let socket = ctx.socket(zmq::SUB).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvhwm(10).unwrap();
    socket.set_rcvbuf(4096).unwrap();
    socket.set_subscribe(topic).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

#[test]
fn a_subscriber_that_stops_reading_holds_the_others_back_only_for_its_grace() {
    let grace = Duration::from_millis(100);
    // No ZMTP heartbeats: the slow subscriber is not cut off for silence, only its grace
    // decides. Small buffers, so it falls behind after a few messages.
    let options = zmqrpc::transport::SocketOptions::default()
        .with_heartbeat(None)
        .with_send_hwm(16);
    let mut client = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .options(options)
        .pending_limit(1000)
        .slow_subscriber_grace(grace)
        .connect()
        .unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    let stats = client.publisher_stats().unwrap();
    let ctx = zmq::Context::new();
    let _stuck = raw_subscriber(&ctx, &endpoint, b"");
    let got = Arc::new(AtomicU32::new(0));
    let counted = got.clone();
    let _reader = RpcServer::builder()
        .register(move |_: Blob| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, zmqrpc::transport::ServiceError>(())
        })
        .unwrap()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // Both attached (the XPUB reports the empty topic once: wait for the reader's own
    // connection by its first message).
    attach(&mut client);
    let blob = |seq| Blob {
        seq,
        data: vec![7; 4096],
    };
    assert!(eventually(secs(5), || {
        client.notify(&blob(u32::MAX)).unwrap();
        got.load(Ordering::Relaxed) > 0
    }));
    let before = got.load(Ordering::Relaxed);
    // 12 MiB: enough to fill the stuck subscriber's pipe and TCP buffers many times over.
    let total = 3000u32;
    let started = std::time::Instant::now();
    for seq in 0..total {
        client.notify(&blob(seq)).unwrap();
        // Paced so the pending queue never overflows while the grace runs.
        while client.sender().publisher().unwrap().queued() > 500 {
            assert!(
                started.elapsed() < secs(10),
                "held back at {seq}: {:?}",
                stats.snapshot()
            );
            client.sender().publisher().unwrap().flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(
        eventually(secs(10), || {
            client.sender().publisher().unwrap().flush().unwrap();
            got.load(Ordering::Relaxed) >= before + total
        }),
        "the reader got {} of {total}; {:?}",
        got.load(Ordering::Relaxed) - before,
        stats.snapshot()
    );
    let counts = stats.snapshot();
    assert_eq!(counts.dropped, 0, "{counts:?}");
    assert!(
        counts.missed_by_slow > 0,
        "the stuck subscriber missed them: {counts:?}"
    );
    assert!(started.elapsed() < secs(10));
}

#[test]
fn a_subscription_that_matches_nothing_attaches_nothing() {
    let (mut client, endpoint) = publisher(100);
    let stats = client.publisher_stats().unwrap();
    let ctx = zmq::Context::new();
    let _odd = raw_subscriber(&ctx, &endpoint, b"no zmqrpc message starts like this");
    assert!(eventually(secs(5), || {
        client.sender().publisher().unwrap().flush().unwrap();
        client.sender().publisher().unwrap().has_subscriber()
    }));
    for seq in 0..5 {
        client.notify(&Sample { seq, value: 0.0 }).unwrap();
    }
    // Held, not handed to libzmq for nobody and counted as published.
    let counts = stats.snapshot();
    assert_eq!((counts.published, counts.queued), (0, 5), "{counts:?}");
    // A subscriber to everything gets them all, in order.
    let samples = Samples::default();
    let _server = samples
        .server()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(eventually(secs(5), || {
        client.sender().publisher().unwrap().flush().unwrap();
        samples.seqs().len() == 5
    }));
    assert_eq!(samples.seqs(), [0, 1, 2, 3, 4]);
}

#[test]
fn distinct_subscriptions_are_bounded_and_counted() {
    let (mut client, endpoint) = publisher(100);
    let stats = client.publisher_stats().unwrap();
    let ctx = zmq::Context::new();
    let flood = ctx.socket(zmq::SUB).unwrap();
    flood.set_linger(0).unwrap();
    // A SUB socket drops subscriptions beyond its send high-water mark: none here.
    flood.set_sndhwm(0).unwrap();
    let topics = 2000;
    for n in 0..topics {
        flood
            .set_subscribe(format!("topic-{n}").as_bytes())
            .unwrap();
    }
    flood.connect(&endpoint).unwrap();
    let limit = zmqrpc::transport::MAX_TOPICS as u64;
    assert!(
        eventually(secs(10), || {
            client.sender().publisher().unwrap().flush().unwrap();
            stats.snapshot().topics_ignored == topics - limit
        }),
        "{:?}",
        stats.snapshot()
    );
}
