//! Faults that once left a socket deaf, a pipeline dead, a loss uncounted or a stop waiting
//! for a dead peer; each test failed before its fix.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{
    CallError, Caller, Credentials, HandshakeFailure, Pipeline, Proxy, ProxyKind, RpcClient,
    RpcServer, ServiceError, SocketOptions, Users, WithCaller,
};
use zmqrpc::{Command, ErrorCode};

/// A sample with a payload of any size.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Blob {
    seq: u32,
    bytes: Vec<u8>,
}
impl Command for Blob {
    const NAME: &'static str = "test.blob";
    type Response = ();
}

/// Answers with as many bytes as asked for.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
struct Bytes(usize);
impl Command for Bytes {
    const NAME: &'static str = "test.bytes";
    type Response = Vec<u8>;
}

fn small_messages() -> SocketOptions {
    SocketOptions::default().with_max_message_size(Some(1024))
}

/// A server taking `Blob`s (up to 1 KiB messages) from the publishers at `endpoints`, and
/// the sequence numbers it stored.
fn blob_subscriber(
    endpoints: &[&str],
) -> (
    zmqrpc::transport::Running<zmqrpc::transport::ServerStats>,
    Arc<Mutex<Vec<u32>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let mut server = RpcServer::builder()
        .options(small_messages())
        .register(move |blob: Blob| {
            store.lock().unwrap().push(blob.seq);
            Ok::<_, ServiceError>(())
        })
        .unwrap();
    for endpoint in endpoints {
        server = server.subscribe(*endpoint);
    }
    (server.bind().unwrap().spawn().unwrap(), seen)
}

/// Regression: libzmq 4.3.4 drops a connection that carried a message over
/// `max_message_size` and never reconnects it; the SUB stayed deaf for good.
#[test]
fn a_subscriber_hears_again_after_an_oversized_publication() {
    let (mut publisher, endpoint) = publishing_client(None);
    let (running, seen) = blob_subscriber(&[&endpoint]);
    assert!(attached(&mut publisher));
    let blob = |seq, size| Blob {
        seq,
        bytes: vec![7; size],
    };
    publisher.notify(&blob(1, 10)).unwrap();
    assert!(eventually(secs(5), || seen.lock().unwrap().len() == 1));
    publisher.notify(&blob(2, 4096)).unwrap(); // too large: the connection is dropped
                                               // The subscriber comes back by itself; what it publishes next arrives.
    let mut next = 3;
    let heard = eventually(secs(10), || {
        publisher.sender().publisher().unwrap().flush().unwrap();
        if publisher.sender().publisher().unwrap().has_subscriber() {
            publisher.notify(&blob(next, 10)).unwrap();
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        seen.lock().unwrap().len() > 1
    });
    assert!(
        heard,
        "deaf after an oversized message: {:?}",
        seen.lock().unwrap()
    );
    assert!(!seen.lock().unwrap().contains(&2));
    assert!(running.stats().snapshot().receiver.sub_recreated >= 1);
}

/// The publishers a server subscribes to share one SUB socket: the one libzmq cuts for an
/// oversized message (and never reconnects) is taken out onto a socket of its own, and both
/// it and the one beside it are heard again.
#[test]
fn a_shared_subscriber_hears_both_publishers_after_one_oversized_publication() {
    let (mut cut, cut_endpoint) = publishing_client(None);
    let (mut beside, beside_endpoint) = publishing_client(None);
    let (running, seen) = blob_subscriber(&[&cut_endpoint, &beside_endpoint]);
    assert!(attached(&mut cut) && attached(&mut beside));
    let blob = |seq, size| Blob {
        seq,
        bytes: vec![7; size],
    };
    cut.notify(&blob(1, 10)).unwrap();
    beside.notify(&blob(1_001, 10)).unwrap();
    assert!(eventually(secs(5), || seen.lock().unwrap().len() == 2));
    cut.notify(&blob(2, 4096)).unwrap(); // too large: libzmq cuts this publisher for good
    let (mut next, mut next_beside) = (3, 1_002);
    let heard_both = eventually(secs(15), || {
        for (publisher, seq) in [(&mut cut, &mut next), (&mut beside, &mut next_beside)] {
            let sender = publisher.sender().publisher().unwrap();
            sender.flush().unwrap();
            if sender.has_subscriber() {
                publisher.notify(&blob(*seq, 10)).unwrap();
                *seq += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        let seen = seen.lock().unwrap();
        seen.iter().any(|&s| (3..1_000).contains(&s)) && seen.iter().any(|&s| s > 1_001)
    });
    assert!(
        heard_both,
        "not both heard after an oversized message: {:?}",
        seen.lock().unwrap()
    );
    assert!(!seen.lock().unwrap().contains(&2));
    assert!(running.stats().snapshot().receiver.sub_recreated >= 1);
}

/// A "publisher" on raw TCP that treats every connection as `serve` says, until the test
/// ends; its `tcp://` endpoint.
fn hostile_publisher(serve: fn(std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    endpoint
}

/// Beside a real publisher, a shared SUB socket is subscribed to three that are not: one
/// that accepts and never says a byte, one that answers the greeting with garbage, one
/// that closes at once. The real one is heard throughout, nothing it sent lost.
#[test]
fn hostile_publishers_beside_a_real_one_do_not_hold_it_back() {
    let silent = hostile_publisher(|stream| {
        std::thread::sleep(secs(60));
        drop(stream);
    });
    let garbage = hostile_publisher(|mut stream| {
        use std::io::Write;
        let _ = stream.write_all(&[0x01; 256]);
        std::thread::sleep(secs(1));
    });
    let closer = hostile_publisher(drop);
    let (mut real, real_endpoint) = publishing_client(None);
    let (running, seen) = blob_subscriber(&[&silent, &garbage, &closer, &real_endpoint]);
    assert!(attached(&mut real));
    let blob = |seq| Blob {
        seq,
        bytes: vec![7; 10],
    };
    // Four seconds of the hostile ones connecting, failing and reconnecting (past the 2 s a
    // dropped publisher has to be connected again), the real one publishing throughout.
    let until = Instant::now() + secs(4);
    let mut sent = 0;
    while Instant::now() < until {
        real.notify(&blob(sent)).unwrap();
        sent += 1;
        std::thread::sleep(ms(20));
    }
    let all_heard = eventually(secs(10), || seen.lock().unwrap().len() as u32 >= sent);
    let seen = seen.lock().unwrap().clone();
    assert!(all_heard, "heard {} of {sent}", seen.len());
    assert_eq!(seen, (0..sent).collect::<Vec<u32>>());
    // The server still serves: its loop turns and reports.
    let stats = running.stats().snapshot();
    assert_eq!(stats.dispatch.served, u64::from(sent), "{stats:?}");
    // The failed handshakes are counted; none made the shared socket anew (which would
    // have cut the real publisher's connection too).
    assert!(stats.receiver.sub_refused >= 1, "{stats:?}");
    assert_eq!(stats.receiver.sub_recreated, 0, "{stats:?}");
}

/// Regression: after one oversized reply a pipeline's DEALER lost its connection for good
/// and every later `send` failed with EAGAIN.
#[test]
fn a_pipeline_recovers_after_an_oversized_reply() {
    let server = RpcServer::builder()
        .register(|Bytes(n): Bytes| Ok::<_, ServiceError>(vec![1u8; n]))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let timeout = Duration::from_millis(500) * slack();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .options(small_messages())
        .timeout(timeout)
        .connect::<Bytes>()
        .unwrap();
    pipeline.send(&Bytes(10)).unwrap();
    assert_eq!(
        pipeline.recv(secs(5)).unwrap().unwrap().1.unwrap().len(),
        10
    );
    pipeline.send(&Bytes(4096)).unwrap();
    match pipeline.recv(secs(5)).unwrap().unwrap().1 {
        Err(CallError::Timeout { .. } | CallError::Disconnected { .. }) => {}
        other => panic!("{other:?}"),
    }
    // Calls work again within a few seconds.
    let recovered = eventually(secs(10), || {
        if pipeline.send(&Bytes(10)).is_err() {
            return false;
        }
        matches!(pipeline.recv(secs(2)), Ok(Some((_, Ok(bytes)))) if bytes.len() == 10)
    });
    assert!(recovered, "the pipeline never recovered");
}

/// Regression: a pipeline with a wrong password only ever timed out.
#[test]
fn a_pipeline_with_a_wrong_password_fails_with_auth_failed() {
    let server = RpcServer::builder()
        .users(Users::new().with("ops", "hunter2"))
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let mut right = Pipeline::builder()
        .req(&endpoint)
        .credentials(Credentials::new("ops", "hunter2"))
        .timeout(secs(5))
        .connect::<Add>()
        .unwrap();
    right.send(&Add(1, 2)).unwrap();
    assert_eq!(right.recv(secs(5)).unwrap().unwrap().1.unwrap(), 3);

    let mut wrong = Pipeline::builder()
        .req(&endpoint)
        .credentials(Credentials::new("ops", "wrong"))
        .timeout(secs(30))
        .connect::<Add>()
        .unwrap();
    let started = Instant::now();
    let reason = match wrong.send(&Add(1, 2)) {
        // The refusal may be known before the call goes out (the handshake is quick): then
        // `send` itself says so.
        Err(CallError::AuthFailed { reason, .. }) => reason,
        Ok(seq) => match wrong.recv(secs(10)).unwrap() {
            Some((s, Err(CallError::AuthFailed { reason, .. }))) => {
                assert_eq!(s, seq);
                reason
            }
            other => panic!("{other:?}"),
        },
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(reason, HandshakeFailure::Refused);
    assert!(started.elapsed() < Duration::from_secs(2) * slack());
    assert_eq!(wrong.in_flight(), 0);
}

/// Regression: a burst faster than the subscriber lost thousands of notifications while
/// the publisher's counters said nothing was dropped.
#[test]
fn a_burst_of_notifications_is_received_or_counted_as_dropped() {
    const SENT: u32 = 10_000;
    let (mut publisher, endpoint) = publishing_client(None);
    // A subscriber slower than the publisher: it falls behind at once.
    let (running, seen) = slow_collector(&endpoint, Duration::from_micros(50));
    assert!(attached(&mut publisher));
    // 10 MB in all: more than libzmq's pipes and the kernel's socket buffers hold.
    let bytes = vec![5u8; 1000];
    for seq in 0..SENT {
        let blob = Blob {
            seq,
            bytes: bytes.clone(),
        };
        publisher.notify(&blob).unwrap();
    }
    let stats = publisher.publisher_stats().unwrap();
    // Whatever is still held goes out as the subscriber catches up.
    assert!(eventually(secs(30), || publisher
        .sender()
        .publisher()
        .unwrap()
        .flush()
        .unwrap()
        == 0));
    let counts = stats.snapshot();
    let expected = u64::from(SENT) - counts.dropped;
    assert_eq!(counts.published, expected, "{counts:?}");
    let received = || running.stats().snapshot().dispatch.served;
    eventually(secs(30), || received() >= expected);
    // Nothing more trickles in.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(received(), expected, "{counts:?}");
    let seqs = seen.lock().unwrap().clone();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    eprintln!("sent {SENT}: {counts:?}, received {}", seqs.len());
}

/// Regression: a Rep2Req proxy waiting for a dead downstream made `join` (and the binary's
/// SIGTERM) wait out the whole timeout.
#[test]
fn a_proxy_waiting_for_a_dead_downstream_stops_at_once() {
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(dead_endpoint())
        .timeout(Duration::from_secs(30))
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let running = proxy.spawn().unwrap();
    let caller = std::thread::spawn(move || {
        let mut client = RpcClient::builder()
            .req(&input)
            .timeout(Duration::from_secs(60))
            .connect()
            .unwrap();
        client.call(&Add(1, 2))
    });
    assert!(eventually(secs(5), || running.stats().snapshot().received == 1));
    let asked = Instant::now();
    running.stop_and_wait().unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_millis(300) * slack(), "{took:?}");
    // The caller was told, not left waiting for its own timeout.
    match caller.join().unwrap() {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Unavailable),
        other => panic!("{other:?}"),
    }
}

/// Regression: binding a second server to the `ipc://` path of a live one took the path
/// over silently and orphaned the first.
#[test]
fn a_second_server_on_a_live_ipc_path_is_refused() {
    let endpoint = ipc_endpoint("twice");
    let first = standard_server().rep(&endpoint).bind().unwrap();
    let _first = first.spawn().unwrap();
    match standard_server().rep(&endpoint).bind() {
        Err(e) => assert!(e.to_string().contains("in use"), "{e}"),
        Ok(_) => panic!("a second server bound a live ipc path"),
    }
    // The first still serves.
    assert_eq!(client(&endpoint).call(&Add(2, 2)).unwrap(), 4);
    // A stale socket file (nobody listening) does not stand in the way.
    drop(_first);
    let again = standard_server().rep(&endpoint).bind().unwrap();
    let _again = again.spawn().unwrap();
    assert_eq!(client(&endpoint).call(&Add(3, 3)).unwrap(), 6);
}

/// The README's promise: a server can spot a repeated delivery by the caller's sequence
/// number, so a service must see it.
#[test]
fn a_service_sees_the_callers_sequence_number() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let server = RpcServer::builder()
        .register(WithCaller(move |Add(a, b): Add, caller: &Caller<'_>| {
            store.lock().unwrap().push(caller.seq);
            Ok::<_, ServiceError>(a + b)
        }))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let mut client = client(&endpoint);
    for i in 0..3 {
        client.call(&Add(i, i)).unwrap();
    }
    let seqs = seen.lock().unwrap().clone();
    assert_eq!(seqs.len(), 3);
    assert_eq!(seqs[1], seqs[0].wrapping_add(1));
    assert_eq!(seqs[2], seqs[1].wrapping_add(1));
}

/// Regression: a Sub2Pub proxy held what its slow subscriber could not take yet and sent it
/// only when the next message came in; after the last one, the rest waited for ever.
#[test]
fn a_relay_delivers_what_it_held_for_a_slow_subscriber_after_the_last_message() {
    const SENT: u32 = 8000;
    // The sensor waits for the relay rather than drop (under emulation the relay can be
    // slower than the sensor): everything sent reaches the relay.
    let mut sensor = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .backpressure(secs(30))
        .connect()
        .unwrap();
    let sensor_endpoint = sensor.publish_endpoints()[0].clone();
    let proxy = Proxy::builder(ProxyKind::Sub2Pub)
        .input(&sensor_endpoint)
        .output("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let relay = proxy.output_endpoints()[0].clone();
    let relay_running = proxy.spawn().unwrap();
    let (_server, seen) = slow_collector(&relay, Duration::from_micros(100));
    // The relay's subscriber attached, and the relay subscribed to the sensor.
    let mut warmups = 0u64;
    assert!(eventually(secs(5), || {
        let probe = Blob {
            seq: u32::MAX,
            bytes: Vec::new(),
        };
        sensor.notify(&probe).unwrap();
        warmups += 1;
        std::thread::sleep(Duration::from_millis(20));
        !seen.lock().unwrap().is_empty()
    }));
    // 32 MB: more than the pipes (3000 messages) and socket buffers between relay and
    // subscriber hold.
    let bytes = vec![3u8; 4000];
    for seq in 0..SENT {
        let blob = Blob {
            seq,
            bytes: bytes.clone(),
        };
        sensor.notify(&blob).unwrap();
    }
    assert!(eventually(secs(30), || sensor
        .sender()
        .publisher()
        .unwrap()
        .flush()
        .unwrap()
        == 0));
    // Everything the relay took is delivered or counted, without another message to push it:
    // dropped from its queue, or missed by its subscriber full past the grace (it is alone,
    // so what it missed is lost).
    let settled = eventually(secs(30), || {
        let counts = relay_running.stats().snapshot();
        let delivered = seen.lock().unwrap().iter().filter(|&&s| s < SENT).count() as u64;
        // Probes the relay took before the server attached were held, not lost.
        let taken = counts.received.saturating_sub(warmups);
        taken == u64::from(SENT) && delivered + counts.dropped + counts.missed_by_slow == taken
    });
    let counts = relay_running.stats().snapshot();
    assert!(
        settled,
        "{counts:?}, delivered {}",
        seen.lock().unwrap().len()
    );
    assert_eq!(counts.queued, 0, "{counts:?}");
}

/// A server subscribed to `endpoint` that takes `delay` over each `Blob` (slower than a
/// publisher sending as fast as it can), and the sequence numbers it saw, in order.
fn slow_collector(
    endpoint: &str,
    delay: Duration,
) -> (
    zmqrpc::transport::Running<zmqrpc::transport::ServerStats>,
    Arc<Mutex<Vec<u32>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let running = RpcServer::builder()
        .register(move |blob: Blob| {
            store.lock().unwrap().push(blob.seq);
            std::thread::sleep(delay);
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .subscribe(endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    (running, seen)
}
