//! One `SharedClient` for many threads: calls of several command types in flight at once,
//! each with its own deadline, every answer to its own call.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{
    CallError, ConfigError, RpcServer, ServerBuilder, ServiceError, SharedClient, TransportError,
};
use zmqrpc::Command;

use crate::common::*;

/// Sleeps for its milliseconds, then answers them.
#[derive(Serialize, Deserialize)]
pub(crate) struct Nap(pub(crate) u64);
impl Command for Nap {
    const NAME: &'static str = "test.shared.nap";
    type Response = u64;
}

/// A pool of four workers serving `Add`, `Echo` and `Nap`, counting what it served.
pub(crate) fn pool(served: Arc<AtomicU64>) -> ServerBuilder {
    let (adds, echoes, naps) = (served.clone(), served.clone(), served);
    RpcServer::builder()
        .register_clone(move |Add(a, b): Add| {
            adds.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(a + b)
        })
        .unwrap()
        .register_clone(move |Echo(s): Echo| {
            echoes.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(s)
        })
        .unwrap()
        .register_clone(move |Nap(ms): Nap| {
            std::thread::sleep(Duration::from_millis(ms));
            naps.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(ms)
        })
        .unwrap()
        .workers(4)
}

#[test]
fn eight_threads_share_one_client_and_every_answer_reaches_its_own_call() {
    let served = Arc::new(AtomicU64::new(0));
    let server = pool(served.clone())
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(10))
        .connect()
        .unwrap();
    let threads: Vec<_> = (0..8i64)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    match i % 3 {
                        0 => assert_eq!(client.call(&Add(t, i)).unwrap(), t + i),
                        1 => {
                            let text = format!("{t}/{i}");
                            assert_eq!(client.call(&Echo(text.clone())).unwrap(), text);
                        }
                        _ => assert_eq!(client.call(&Nap(0)).unwrap(), 0),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 1600);
    assert_eq!(client.stray_answers(), 0);
    assert_eq!((client.in_flight(), client.queued()), (0, 0));
    let counts = client.counts();
    assert_eq!((counts.answered, counts.late), (1600, 0));
}

#[test]
fn a_short_deadline_ends_on_time_beside_a_long_call_on_the_same_connection() {
    let served = Arc::new(AtomicU64::new(0));
    let server = pool(served).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder().req(&endpoint).connect().unwrap();
    assert_eq!(client.call(&Add(1, 1)).unwrap(), 2);
    // Scaled for emulation (`ms`): the short call's deadline is well before its answer.
    let deadline = ms(100);
    let nap = move |times: u32| u64::try_from((deadline * times).as_millis()).unwrap();
    let long = {
        let client = client.clone();
        std::thread::spawn(move || client.call_timeout(&Nap(nap(4)), secs(10)))
    };
    std::thread::sleep(deadline / 2);
    let started = Instant::now();
    let short = client.call_timeout(&Nap(nap(3)), deadline);
    let took = started.elapsed();
    assert!(matches!(short, Err(CallError::Timeout { .. })), "{short:?}");
    assert!(took >= deadline && took < deadline + ms(200), "{took:?}");
    // The timeout ended one call, not the connection: the long one is answered.
    assert_eq!(long.join().unwrap().unwrap(), nap(4));
    // The short call's answer comes late, and is dropped and counted.
    assert!(eventually(secs(10), || client.stray_answers() == 1));
    assert_eq!(client.call(&Add(2, 2)).unwrap(), 4);
}

#[test]
fn calls_made_with_no_server_time_out_unsent_and_never_reach_it_later() {
    let endpoint = dead_endpoint();
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(ms(50))
        .queued(2000)
        .connect()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    match client.call(&Add(i, 1)) {
                        Err(CallError::Timeout { .. }) => {}
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(
        client.counts().sent,
        0,
        "nothing was sent without a connection"
    );
    let served = Arc::new(AtomicU64::new(0));
    let server = pool(served.clone()).rep(endpoint.clone()).bind().unwrap();
    let _server = server.spawn().unwrap();
    assert_eq!(client.call_timeout(&Add(20, 22), secs(5)).unwrap(), 42);
    std::thread::sleep(ms(200));
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "no stale call reached the server"
    );
}

#[test]
fn a_server_gone_mid_call_ends_the_calls_it_had_and_the_next_server_serves_the_next() {
    let endpoint = ipc_endpoint("shared-restart");
    // A server that takes a call and dies: a ROUTER that reads the request and closes.
    let ctx = zmq::Context::new();
    let doomed = ctx.socket(zmq::ROUTER).unwrap();
    doomed.set_linger(0).unwrap();
    doomed.set_rcvtimeo(5_000).unwrap();
    doomed.bind(&endpoint).unwrap();
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(10))
        .connect()
        .unwrap();
    let waiting = {
        let client = client.clone();
        std::thread::spawn(move || client.call(&Add(1, 2)))
    };
    let request = doomed.recv_multipart(0).unwrap();
    assert_eq!(request.len(), 3, "[identity][empty][frame]");
    let died = Instant::now();
    drop(doomed);
    match waiting.join().unwrap() {
        Err(CallError::Disconnected { endpoint: from }) => assert_eq!(from, endpoint),
        other => panic!("{other:?}"),
    }
    assert!(died.elapsed() < secs(2) * slack(), "{:?}", died.elapsed());
    // A server comes up at the same endpoint: the next call is served.
    let served = Arc::new(AtomicU64::new(0));
    let _server = pool(served)
        .rep(endpoint.clone())
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(client.call(&Add(2, 3)).unwrap(), 5);
}

#[test]
fn calls_past_the_bounds_are_refused_at_once() {
    let client = SharedClient::builder()
        .req(dead_endpoint())
        .in_flight(1)
        .queued(2)
        .timeout(secs(1))
        .connect()
        .unwrap();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || client.call(&Add(1, 1)))
        })
        .collect();
    assert!(eventually(secs(5), || client.queued() == 3));
    let started = Instant::now();
    match client.call(&Add(1, 1)) {
        Err(CallError::WindowFull { in_flight }) => assert_eq!(in_flight, 3),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < ms(100) * slack());
    for thread in waiting {
        assert!(matches!(
            thread.join().unwrap(),
            Err(CallError::Timeout { .. })
        ));
    }
    assert_eq!(client.counts().refused, 1);
}

#[test]
fn the_last_clone_dropped_stops_the_io_thread_and_a_clone_outliving_it_is_refused() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder().req(&endpoint).connect().unwrap();
    let other = client.clone();
    assert_eq!(other.call(&Add(1, 2)).unwrap(), 3);
    drop(client);
    // One clone left: still served.
    assert_eq!(other.call(&Add(3, 4)).unwrap(), 7);
    let started = Instant::now();
    drop(other);
    assert!(
        started.elapsed() < ms(500) * slack(),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_dialect_whose_answers_carry_no_number_is_refused_at_connect() {
    let refused = SharedClient::builder_for(zmqrpc::transport::dialect::Pyzmqrpc3::default())
        .req("tcp://127.0.0.1:9")
        .connect();
    match refused {
        Err(TransportError::Config(error @ ConfigError::UnnumberedDialect { what, .. })) => {
            assert_eq!(what, "shared client");
            assert!(error.to_string().contains("RpcClient"), "{error}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a pyzmqrpc3 shared client was made"),
    }
    assert!(matches!(
        SharedClient::builder().connect(),
        Err(TransportError::Config(ConfigError::NoEndpoint { .. }))
    ));
}

#[test]
fn a_shared_client_is_send_sync_and_cheap_to_clone() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<SharedClient>();
    assert_eq!(
        std::mem::size_of::<SharedClient>(),
        std::mem::size_of::<usize>()
    );
}
