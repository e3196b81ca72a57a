//! Calls over REQ/REP: typed replies, remote errors, timeouts, restarts, round-robin.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{CallError, RegisterError, RpcClient, RpcServer, ServiceError, SocketKind};
use zmqrpc::{Command, ErrorCode};

fn remote_code(result: Result<impl std::fmt::Debug, CallError>) -> ErrorCode {
    match result {
        Err(CallError::Remote { error, .. }) => error.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn call_returns_the_typed_reply() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    assert!(endpoint.starts_with("tcp://127.0.0.1:") && !endpoint.ends_with('*'));
    let running = server.spawn().unwrap();
    let mut client = client(&endpoint);
    assert_eq!(client.call(&Add(40, 2)).unwrap(), 42);
    assert_eq!(client.call(&Echo("héllo".into())).unwrap(), "héllo");
    assert_eq!(running.stats().snapshot().dispatch.served, 2);
    running.stop_and_wait().unwrap();
}

#[test]
fn unknown_command_is_a_remote_error() {
    let running = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = running.rep_endpoints()[0].clone();
    let running = running.spawn().unwrap();
    let mut client = client(&endpoint);
    assert_eq!(
        remote_code(client.call(&Unregistered)),
        ErrorCode::UnknownCommand
    );
    assert_eq!(running.stats().snapshot().dispatch.unknown, 1);
}

#[test]
fn service_error_and_panic_become_service_failed_and_the_server_serves_on() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut client = client(&endpoint);

    match client.call(&Fail("disk full".into())) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::ServiceFailed);
            assert_eq!(error.message.as_str(), "disk full");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.call(&Add(1, 1)).unwrap(),
        2,
        "REP not locked by an error"
    );

    match client.call(&Explode("boom".into())) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::ServiceFailed);
            assert!(error.message.contains("boom"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.call(&Add(2, 2)).unwrap(),
        4,
        "REP not locked by a panic"
    );
    assert_eq!(running.stats().snapshot().dispatch.failed, 2);
}

#[test]
fn a_timeout_returns_within_the_timeout_plus_100ms() {
    // A REP socket that reads requests and never answers.
    let ctx = zmq::Context::new();
    let silent = ctx.socket(zmq::REP).unwrap();
    silent.set_linger(0).unwrap();
    silent.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = silent.get_last_endpoint().unwrap().unwrap();
    let mut client = client(&endpoint);

    // Sub-second timeouts are honoured to the millisecond (the peer rounded up to seconds).
    let timeout = Duration::from_millis(250);
    let started = Instant::now();
    let result = client.call_timeout(&Add(1, 2), timeout);
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(CallError::Timeout { .. })),
        "{result:?}"
    );
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(100) * slack(),
        "{elapsed:?}"
    );
    assert!(result.unwrap_err().to_string().contains(&endpoint));
}

#[test]
fn after_a_timeout_the_next_call_succeeds_once_the_server_answers() {
    let endpoint = dead_endpoint();
    let mut client = client(&endpoint);
    let result = client.call_timeout(&Add(1, 2), Duration::from_millis(100));
    assert!(
        matches!(result, Err(CallError::Timeout { .. })),
        "{result:?}"
    );
    // The server appears on that endpoint; the recreated REQ socket reaches it and the
    // request that timed out is not delivered late.
    let server = standard_server().rep(endpoint.clone()).bind().unwrap();
    let running = server.spawn().unwrap();
    assert_eq!(client.call(&Add(20, 22)).unwrap(), 42);
    assert_eq!(
        running.stats().snapshot().dispatch.served,
        1,
        "the stale call never ran"
    );
}

#[test]
fn a_stopped_and_restarted_server_answers_the_next_call() {
    // ipc: a freed TCP port could be taken by a test running in parallel.
    let server = standard_server()
        .rep(ipc_endpoint("restart"))
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let mut client = client(&endpoint);
    let running = server.spawn().unwrap();
    assert_eq!(client.call(&Add(1, 1)).unwrap(), 2);
    running.stop_and_wait().unwrap();

    // Rebinding the same port can race the old listener's close for a moment.
    let mut rebound = None;
    assert!(eventually(secs(2), || {
        rebound = standard_server().rep(endpoint.clone()).bind().ok();
        rebound.is_some()
    }));
    let running = rebound.unwrap().spawn().unwrap();
    assert_eq!(client.call(&Add(2, 2)).unwrap(), 4);
    running.stop_and_wait().unwrap();
}

#[test]
fn stop_and_join_take_less_than_100ms() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let running = server.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    running.stop_and_wait().unwrap();
    let took = asked.elapsed();
    assert!(took < Duration::from_millis(100) * slack(), "{took:?}");
}

#[test]
fn round_robin_spreads_calls_and_a_dead_endpoint_costs_only_its_own_calls() {
    let a = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let b = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let (ea, eb) = (a.rep_endpoints()[0].clone(), b.rep_endpoints()[0].clone());
    let (ra, rb) = (a.spawn().unwrap(), b.spawn().unwrap());
    let mut client = RpcClient::builder()
        .req(&ea)
        .req(&eb)
        .timeout(secs(5))
        .connect()
        .unwrap();
    for i in 0..10 {
        assert_eq!(client.call(&Add(i, 1)).unwrap(), i + 1);
    }
    assert_eq!(ra.stats().snapshot().dispatch.served, 5);
    assert_eq!(rb.stats().snapshot().dispatch.served, 5);

    // B dies. Its calls time out; A's calls keep succeeding, each answered at once.
    rb.stop_and_wait().unwrap();
    let timeout = Duration::from_millis(200) * slack();
    let (mut ok, mut timed_out) = (0, 0);
    for i in 0..6 {
        let started = Instant::now();
        match client.call_timeout(&Add(i, 1), timeout) {
            Ok(v) => {
                assert_eq!(v, i + 1);
                assert!(
                    started.elapsed() < timeout,
                    "a live call waited on the dead one"
                );
                ok += 1;
            }
            Err(CallError::Timeout { endpoint, .. }) => {
                assert_eq!(endpoint, eb);
                timed_out += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, timed_out), (3, 3));
    assert_eq!(ra.stats().snapshot().dispatch.served, 8);
}

#[test]
fn retries_move_a_call_to_the_next_endpoint() {
    let live = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = live.rep_endpoints()[0].clone();
    let _running = live.spawn().unwrap();
    let mut client = RpcClient::builder()
        .req(dead_endpoint())
        .req(&endpoint)
        .timeout(Duration::from_millis(150) * slack())
        .retries(1)
        .connect()
        .unwrap();
    for i in 0..4 {
        assert_eq!(client.call(&Add(i, i)).unwrap(), 2 * i);
    }
}

#[test]
fn inproc_works_with_a_shared_context() {
    let ctx = zmq::Context::new();
    let server = standard_server()
        .context(&ctx)
        .rep("inproc://rpc-test")
        .bind()
        .unwrap();
    assert_eq!(server.rep_endpoints(), ["inproc://rpc-test"]);
    let running = server.spawn().unwrap();
    let mut client = RpcClient::builder()
        .context(&ctx)
        .req("inproc://rpc-test")
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert_eq!(
        client.call(&Echo("in process".into())).unwrap(),
        "in process"
    );
    running.stop_and_wait().unwrap();
}

#[test]
fn ipc_works() {
    let endpoint = ipc_endpoint("ipc-works");
    let running = standard_server()
        .rep(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(client(&endpoint).call(&Add(3, 4)).unwrap(), 7);
    running.stop_and_wait().unwrap();
}

#[test]
fn registering_a_command_twice_is_refused() {
    let result = RpcServer::builder()
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a - b));
    match result {
        Err(e @ RegisterError::DuplicateKey { .. }) => {
            assert!(e.to_string().contains(Add::NAME), "{e}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("registered twice"),
    }
}

#[test]
fn a_service_can_stop_its_own_server_only_if_registered_to() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Quit;
    impl Command for Quit {
        const NAME: &'static str = "test.quit";
        type Response = ();
    }
    // No shutdown command exists by default.
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    assert_eq!(
        remote_code(client(&endpoint).call(&Quit)),
        ErrorCode::UnknownCommand
    );
    running.stop_and_wait().unwrap();

    // A user who wants one registers it, with the handle of the server it stops.
    let builder = standard_server().rep("tcp://127.0.0.1:*");
    let stop = builder.shutdown();
    let server = builder
        .register(move |Quit| {
            stop.request();
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    client(&endpoint).call(&Quit).unwrap();
    assert!(eventually(secs(2), || running.is_finished()));
    running.stop_and_wait().unwrap();
}

#[test]
fn a_server_stopped_before_it_runs_returns_at_once() {
    let builder = standard_server().rep("tcp://127.0.0.1:*");
    builder.shutdown().request();
    let server = builder.bind().unwrap();
    server.run().unwrap();
}

/// A client missing the socket an operation needs says which one, whatever the operation.
#[test]
fn a_client_without_the_needed_socket_names_it() {
    let mut client = RpcClient::builder().connect().unwrap();
    assert_eq!(
        client.call(&Add(1, 2)).unwrap_err(),
        CallError::NoSocket(SocketKind::Req)
    );
    for result in [
        client.notify(&Add(1, 2)).map(drop),
        client.flush().map(drop),
        client.heartbeat(),
    ] {
        assert_eq!(result.unwrap_err(), CallError::NoSocket(SocketKind::Pub));
    }
    let error = client.call(&Add(1, 2)).unwrap_err();
    assert!(error.to_string().contains("REQ"), "{error}");
}

/// A server answering with several parts gets a call refused as such, not as a libzmq error.
#[test]
fn a_multipart_answer_fails_the_call_by_name() {
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = rep.get_last_endpoint().unwrap().unwrap();
    let peer = std::thread::spawn(move || {
        rep.recv_bytes(0).unwrap();
        rep.send_multipart([&b"one"[..], &b"two"[..]], 0).unwrap();
    });
    let mut client = RpcClient::builder()
        .req(&endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap();
    match client.call(&Add(1, 2)) {
        Err(CallError::MultipartReply { endpoint: from }) => assert_eq!(from, endpoint),
        other => panic!("{other:?}"),
    }
    peer.join().unwrap();
}

/// Regression: `Running::join` stopped the loop, unlike `std::thread::JoinHandle::join`.
/// `wait` waits and stops nothing; `stop` (here through a `Shutdown` handle) stops.
#[test]
fn waiting_for_a_server_does_not_stop_it() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let shutdown = running.shutdown();
    let (ended, end) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let result = running.wait();
        ended.send(()).unwrap();
        result
    });
    let mut client = client(&endpoint);
    for n in 0..3 {
        assert_eq!(
            client.call(&Add(n, 1)).unwrap(),
            n + 1,
            "served while waited for"
        );
    }
    assert!(
        end.recv_timeout(ms(200)).is_err(),
        "wait returned though nothing stopped the loop"
    );
    shutdown.request();
    end.recv_timeout(secs(5))
        .expect("wait returns once the loop is stopped");
    waiter.join().unwrap().unwrap();
}
