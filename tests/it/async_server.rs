//! The async server: `async fn` services as tasks on a tokio runtime, many at once up to a
//! bound, with the blocking server's dispatch, errors, auth, permissions, counters and stop.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zmqrpc::transport::auth::{Action, Permissions};
use zmqrpc::transport::{
    CallError, ConfigError, Credentials, RpcClient, RpcServer, ServiceError, SharedClient,
    TransportError, Users,
};
use zmqrpc::{Command, ErrorCode};

use crate::common::*;

/// Waits (asynchronously) until its first field's number of calls are in the service
/// together, or its second field's milliseconds; answers how many were in at most.
#[derive(Serialize, Deserialize)]
struct Gather(usize, u64);
impl Command for Gather {
    const NAME: &'static str = "test.async.gather";
    type Response = usize;
}

/// Panics: while starting its future (`true`) or while it is polled (`false`).
#[derive(Serialize, Deserialize)]
struct Crash(bool);
impl Command for Crash {
    const NAME: &'static str = "test.async.crash";
    type Response = ();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// A server of async `Gather`, `Crash` and `Echo` services (and the blocking `Add`) on
/// `runtime`, serving at most `concurrency` at once.
fn server(
    runtime: &tokio::runtime::Runtime,
    concurrency: usize,
) -> zmqrpc::transport::ServerBuilder {
    let inside = Arc::new(AtomicUsize::new(0));
    RpcServer::builder()
        .runtime(runtime.handle().clone())
        .concurrency(concurrency)
        .register_async(move |Gather(together, wait_ms): Gather| {
            let inside = inside.clone();
            async move {
                inside.fetch_add(1, SeqCst);
                let give_up = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
                let mut most = 0;
                while tokio::time::Instant::now() < give_up {
                    most = most.max(inside.load(SeqCst));
                    if most >= together {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                inside.fetch_sub(1, SeqCst);
                Ok::<_, ServiceError>(most)
            }
        })
        .unwrap()
        .register_async(|Crash(at_start): Crash| {
            if at_start {
                panic!("crashed starting");
            }
            async move {
                tokio::task::yield_now().await;
                panic!("crashed while polled");
            }
        })
        .unwrap()
        .register_async(|Echo(s): Echo| async move {
            if s == "fail" {
                return Err(ServiceError::new("asked to fail"));
            }
            Ok(s)
        })
        .unwrap()
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
}

fn remote_code<T: std::fmt::Debug>(result: Result<T, CallError>) -> (ErrorCode, String) {
    match result {
        Err(CallError::Remote { error, .. }) => (error.code, error.message.to_string()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn async_services_are_served_at_once_up_to_the_bound() {
    let rt = runtime();
    let server = server(&rt, 8).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(10))
        .connect()
        .unwrap();
    // Eight at once: each sees all eight in the service together.
    let together = rt.block_on(async {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call_async(&Gather(8, 5_000)).await })
            })
            .collect();
        let mut together = Vec::new();
        for call in calls {
            together.push(call.await.unwrap().unwrap());
        }
        together
    });
    assert_eq!(together, vec![8; 8]);
    // Past the bound, calls wait their turn: with 8 served at once, 12 never meet.
    let most = rt.block_on(async {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call_async(&Gather(12, 300)).await })
            })
            .collect();
        let mut most = 0;
        for call in calls {
            most = most.max(call.await.unwrap().unwrap());
        }
        most
    });
    assert_eq!(most, 8);
    assert_eq!(running.stats().snapshot().dispatch.served, 20);
}

#[test]
fn failures_panics_and_refusals_are_answered_as_by_the_blocking_server() {
    let rt = runtime();
    let server = server(&rt, 4).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut client = client(&endpoint);
    assert_eq!(client.call(&Echo("hi".into())).unwrap(), "hi");
    assert_eq!(client.call(&Add(2, 3)).unwrap(), 5);
    let (code, message) = remote_code(client.call(&Echo("fail".into())));
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::ServiceFailed, "asked to fail")
    );
    for at_start in [true, false] {
        let (code, message) = remote_code(client.call(&Crash(at_start)));
        assert_eq!(code, ErrorCode::ServiceFailed);
        assert!(
            message.contains("panicked") && message.contains("crashed"),
            "{message}"
        );
    }
    let (code, _) = remote_code(client.call(&Unregistered));
    assert_eq!(code, ErrorCode::UnknownCommand);
    // A body that is not the command's: a bad frame, answered at once.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_rcvtimeo(5_000).unwrap();
    raw.connect(&endpoint).unwrap();
    let mut frame = [0u8; zmqrpc::HEADER_LEN];
    zmqrpc::Header::request(9, Gather::KEY)
        .write(&mut frame)
        .unwrap();
    raw.send(&frame[..], 0).unwrap();
    let answer = raw.recv_bytes(0).unwrap();
    let answer = zmqrpc::Frame::decode(&answer).unwrap();
    assert_eq!(answer.header.kind, zmqrpc::Kind::Error);
    assert_eq!(answer.header.seq, 9);
    // Still serving, and the counters add up.
    assert_eq!(client.call(&Echo("on".into())).unwrap(), "on");
    let counts = running.stats().snapshot().dispatch;
    assert_eq!(
        (
            counts.served,
            counts.failed,
            counts.unknown,
            counts.bad_frames
        ),
        (3, 3, 1, 1)
    );
}

#[test]
fn an_async_server_checks_users_and_permissions() {
    let rt = runtime();
    let server = server(&rt, 4)
        .users(Users::new().with("ops", "o-pass").with("sensor", "s-pass"))
        .permissions(Permissions::new().allow("ops", None, "*").allow(
            "sensor",
            Some(Action::Call),
            "test.echo",
        ))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let as_user = |user: &str, password: &str| {
        RpcClient::builder()
            .req(&endpoint)
            .credentials(Credentials::new(user, password))
            .timeout(secs(5))
            .connect()
            .unwrap()
    };
    let mut ops = as_user("ops", "o-pass");
    let mut sensor = as_user("sensor", "s-pass");
    assert_eq!(ops.call(&Gather(1, 10)).unwrap(), 1);
    assert_eq!(sensor.call(&Echo("e".into())).unwrap(), "e");
    let (code, _) = remote_code(sensor.call(&Gather(1, 10)));
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(matches!(
        as_user("ops", "wrong").call(&Echo("x".into())),
        Err(CallError::AuthFailed { .. })
    ));
    assert_eq!(running.stats().snapshot().dispatch.forbidden, 1);
}

#[test]
fn a_stop_lets_the_calls_in_flight_answer_and_then_ends() {
    let rt = runtime();
    let server = server(&rt, 4).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let waiting = std::thread::spawn({
        let endpoint = endpoint.clone();
        move || client(&endpoint).call(&Gather(2, 400))
    });
    assert!(eventually(secs(5), || running
        .stats()
        .snapshot()
        .receiver
        .received
        == 1));
    running.stop_and_wait().unwrap();
    assert_eq!(waiting.join().unwrap().unwrap(), 1);
}

#[test]
fn async_services_without_a_runtime_or_with_workers_are_refused_at_bind() {
    let no_runtime = RpcServer::builder()
        .register_async(|Echo(s): Echo| async move { Ok::<_, ServiceError>(s) })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind();
    match no_runtime.err().unwrap() {
        TransportError::Config(ConfigError::NoRuntime { command }) => {
            assert_eq!(command, "test.echo");
        }
        other => panic!("{other:?}"),
    }
    // Bound inside a runtime, it takes that one.
    let rt = runtime();
    let _guard = rt.enter();
    let inside = RpcServer::builder()
        .register_async(|Echo(s): Echo| async move { Ok::<_, ServiceError>(s) })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind();
    assert!(inside.is_ok());
    let with_workers = RpcServer::builder()
        .workers(2)
        .register_async(|Echo(s): Echo| async move { Ok::<_, ServiceError>(s) })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind();
    assert!(matches!(
        with_workers.err().unwrap(),
        TransportError::Config(ConfigError::AsyncWithWorkers { workers: 2 })
    ));
}

#[test]
fn notifications_are_served_as_tasks_too() {
    let rt = runtime();
    let mut publisher = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .connect()
        .unwrap();
    let publish = publisher.publish_endpoints()[0].clone();
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let counted = seen.clone();
    let server = RpcServer::builder()
        .runtime(rt.handle().clone())
        .register_async(move |sample: Sample| {
            let counted = counted.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                counted.lock().unwrap().insert(sample.seq);
                Ok::<_, ServiceError>(())
            }
        })
        .unwrap()
        .subscribe(&publish)
        .bind()
        .unwrap();
    let running = server.spawn().unwrap();
    assert!(eventually(secs(5), || {
        publisher.notify(&Sample { seq: 0, value: 0.0 }).unwrap();
        publisher.flush().unwrap();
        !seen.lock().unwrap().is_empty()
    }));
    for seq in 1..=100 {
        publisher.notify(&Sample { seq, value: 1.0 }).unwrap();
    }
    assert!(eventually(secs(5), || seen.lock().unwrap().len() == 101));
    // A notification is counted once its task has ended and the server has read its outcome:
    // a moment after the service did its work.
    assert!(eventually(secs(5), || {
        running.stats().snapshot().dispatch.served >= 101
    }));
}

#[test]
fn a_runtime_gone_mid_call_frees_the_call_counted_and_the_server_stops() {
    let rt = runtime();
    let server = server(&rt, 4).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut caller = RpcClient::builder()
        .req(&endpoint)
        .timeout(ms(500))
        .connect()
        .unwrap();
    let waiting = std::thread::spawn(move || caller.call(&Gather(2, 10_000)));
    assert!(eventually(secs(5), || running
        .stats()
        .snapshot()
        .receiver
        .received
        == 1));
    // The runtime goes, and the task with it: the call ends unanswered, counted as failed.
    rt.shutdown_background();
    assert!(eventually(secs(5), || running
        .stats()
        .snapshot()
        .dispatch
        .failed
        == 1));
    assert!(matches!(
        waiting.join().unwrap(),
        Err(CallError::Timeout { .. })
    ));
    let stopping = std::time::Instant::now();
    running.stop_and_wait().unwrap();
    assert!(stopping.elapsed() < secs(2), "{:?}", stopping.elapsed());
}

/// Never answers: a service stuck on something that never comes.
#[derive(Serialize, Deserialize)]
struct Stuck;
impl Command for Stuck {
    const NAME: &'static str = "test.async.stuck";
    type Response = ();
}

/// Regression: a stop waited for every async call in flight, so a service that never ended
/// held the stop for ever.
#[test]
fn a_stop_cancels_what_still_runs_after_its_grace() {
    let rt = runtime();
    let server = RpcServer::builder()
        .runtime(rt.handle().clone())
        .stop_grace(ms(200))
        .register_async(|Stuck| async {
            std::future::pending::<()>().await;
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut caller = RpcClient::builder()
        .req(&endpoint)
        .timeout(ms(300))
        .connect()
        .unwrap();
    assert!(matches!(
        caller.call(&Stuck),
        Err(CallError::Timeout { .. })
    ));
    let stopping = std::time::Instant::now();
    let stats = running.stats().clone();
    running.stop_and_wait().unwrap();
    let took = stopping.elapsed();
    assert!(took >= ms(200) && took < secs(2), "{took:?}");
    assert_eq!(stats.snapshot().dispatch.failed, 1);
}
