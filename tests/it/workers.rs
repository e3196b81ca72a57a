//! A server with several worker threads behind one endpoint serves calls in parallel.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{
    Caller, ConfigError, Credentials, Pipeline, RegisterError, RpcClient, RpcServer, Service,
    ServiceError, TransportError, Users, WithCaller,
};
use zmqrpc::Command;

#[derive(serde::Serialize, serde::Deserialize)]
struct Slow(u32);
impl Command for Slow {
    const NAME: &'static str = "test.slow";
    type Response = u32;
}

#[test]
fn four_workers_serve_slow_calls_in_parallel() {
    let server = RpcServer::builder()
        .workers(4)
        .register_clone(|Slow(n): Slow| {
            std::thread::sleep(Duration::from_millis(200));
            Ok::<_, ServiceError>(n * 2)
        })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    assert!(endpoint.starts_with("tcp://127.0.0.1:"));
    let running = server.spawn().unwrap();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .timeout(secs(10))
        .connect::<Slow>()
        .unwrap();
    let started = Instant::now();
    for n in 0..8 {
        pipeline.send(&Slow(n)).unwrap();
    }
    let mut answers: Vec<u32> = (0..8)
        .map(|_| pipeline.recv(secs(10)).unwrap().unwrap().1.unwrap())
        .collect();
    let took = started.elapsed();
    answers.sort_unstable();
    assert_eq!(answers, [0, 2, 4, 6, 8, 10, 12, 14]);
    // One worker would take 8 × 200 ms; four take about 2 × 200 ms.
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert_eq!(running.stats().snapshot().dispatch.served, 8);
    let asked = Instant::now();
    running.stop_and_wait().unwrap();
    assert!(asked.elapsed() < Duration::from_millis(500) * slack());
}

#[test]
fn a_pool_serves_ordinary_clients_and_refuses_services_it_cannot_copy() {
    let server = standard_server().workers(2).rep("tcp://127.0.0.1:*").bind();
    match server {
        Err(e) => assert!(e.to_string().contains("register_clone"), "{e}"),
        Ok(_) => panic!("non-cloneable services accepted for a pool"),
    }
    let running = RpcServer::builder()
        .workers(3)
        .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .rep(ipc_endpoint("pool"))
        .bind()
        .unwrap();
    let endpoint = running.rep_endpoints()[0].clone();
    let _running = running.spawn().unwrap();
    let mut client = client(&endpoint);
    for i in 0..20 {
        assert_eq!(client.call(&Add(i, i)).unwrap(), 2 * i);
    }
    match client.call(&Unregistered) {
        Err(zmqrpc::transport::CallError::Remote { error, .. }) => {
            assert_eq!(error.code, zmqrpc::ErrorCode::UnknownCommand)
        }
        other => panic!("{other:?}"),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sleep(u64);
impl Command for Sleep {
    const NAME: &'static str = "test.sleep";
    type Response = ();
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WhoAmI;
impl Command for WhoAmI {
    const NAME: &'static str = "test.whoami";
    type Response = Option<String>;
}

fn pool_users() -> Users {
    Users::new().with("ops", "hunter2").with("sensor", "s3cret")
}

/// A pool's SUB sockets present its credentials to a protected publisher, which refuses
/// them when they are wrong or missing (every SUB socket, the first worker's too).
#[test]
fn a_protected_publisher_refuses_a_pool_without_the_right_credentials() {
    for credentials in [None, Some(Credentials::new("sensor", "wrong"))] {
        let (mut publisher, endpoint) = publishing_client(Some(pool_users()));
        let samples = Samples::default();
        let service = samples.service();
        let mut builder = RpcServer::builder()
            .users(pool_users())
            .workers(2)
            .register_clone(Shared::new(service))
            .unwrap()
            .rep("tcp://127.0.0.1:*")
            .subscribe(&endpoint);
        if let Some(credentials) = credentials.clone() {
            builder = builder.credentials(credentials);
        }
        let running = builder.bind().unwrap().spawn().unwrap();
        assert_never_fed(&mut publisher, &samples, &format!("{credentials:?}"));
        assert_eq!(running.stats().snapshot().receiver.received, 0);
        // Counted on the pool's side too.
        assert!(
            eventually(secs(5), || running.stats().snapshot().receiver.sub_refused
                > 0),
            "{credentials:?}"
        );
    }
    // The right credentials get through the same pool.
    let (mut sensor, endpoint) = publishing_client(Some(pool_users()));
    let samples = Samples::default();
    let _running = RpcServer::builder()
        .credentials(Credentials::new("sensor", "s3cret"))
        .workers(2)
        .register_clone(Shared::new(samples.service()))
        .unwrap()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(attached(&mut sensor));
    sensor.notify(&Sample { seq: 9, value: 1.0 }).unwrap();
    assert_eq!(samples.wait_for(1, secs(5)), [9]);
}

/// A service that is not `Clone` itself, shared by the workers of a pool.
struct Shared<F>(Arc<Mutex<F>>);

impl<F> Clone for Shared<F> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<F> Shared<F> {
    fn new(f: F) -> Self {
        Shared(Arc::new(Mutex::new(f)))
    }
}

impl<F: FnMut(Sample) -> Result<(), ServiceError> + Send + 'static> Service<Sample> for Shared<F> {
    fn call(&mut self, sample: Sample, _: &Caller<'_>) -> Result<(), ServiceError> {
        (self.0.lock().unwrap())(sample)
    }
}

/// Regression: a pool's workers sat behind libzmq's proxy, which does not carry the
/// `User-Id` property, and `WithCaller` could not be registered for a pool.
#[test]
fn a_pool_tells_services_who_called_like_a_single_thread_server() {
    for workers in [1, 3] {
        let server = RpcServer::builder()
            .users(pool_users())
            .workers(workers)
            .register_clone(WithCaller(|_: WhoAmI, caller: &Caller<'_>| {
                Ok::<_, ServiceError>(caller.user_id.map(str::to_owned))
            }))
            .unwrap()
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let endpoint = server.rep_endpoints()[0].clone();
        let _running = server.spawn().unwrap();
        let mut client = RpcClient::builder()
            .req(&endpoint)
            .credentials(Credentials::new("ops", "hunter2"))
            .timeout(secs(5))
            .connect()
            .unwrap();
        for _ in 0..6 {
            assert_eq!(
                client.call(&WhoAmI).unwrap().as_deref(),
                Some("ops"),
                "{workers} workers"
            );
        }
    }
}

/// Regression: the pool dealt calls round-robin, so every fourth call of a client waited
/// behind a busy worker while three were idle.
#[test]
fn a_busy_worker_delays_no_call_while_another_is_free() {
    let server = RpcServer::builder()
        .workers(4)
        .register_clone(|Sleep(ms): Sleep| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let slow_endpoint = endpoint.clone();
    let slow = std::thread::spawn(move || {
        let mut client = client(&slow_endpoint);
        client.call(&Sleep(1500)).unwrap();
    });
    let mut quick = client(&endpoint);
    quick.call(&Sleep(0)).unwrap(); // connected
    std::thread::sleep(Duration::from_millis(100)); // the slow call is being served
    let mut took = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        quick.call(&Sleep(0)).unwrap();
        took.push(started.elapsed().as_millis());
    }
    eprintln!("quick calls beside a busy worker (ms): {took:?}");
    assert!(
        took.iter().all(|&ms| ms < 400 * u128::from(slack())),
        "{took:?} ms"
    );
    slow.join().unwrap();
}

/// Regression: a pool's workers were stopped one after another, 30-50 ms each.
#[test]
fn a_pool_of_eight_stops_and_joins_within_100_ms() {
    let server = RpcServer::builder()
        .workers(8)
        .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut client = client(&endpoint);
    for i in 0..16 {
        assert_eq!(client.call(&Add(i, 1)).unwrap(), i + 1);
    }
    let asked = Instant::now();
    running.stop_and_wait().unwrap();
    let took = asked.elapsed();
    eprintln!("workers(8): stop + join took {took:?}");
    assert!(took < Duration::from_millis(100) * slack(), "{took:?}");
}

/// `register` on a builder that already has workers fails at once, naming the command.
#[test]
fn register_after_workers_is_refused_at_once() {
    let result = RpcServer::builder()
        .workers(2)
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b));
    match result {
        Err(e @ RegisterError::NotCloneable { .. }) => {
            assert_eq!(
                e,
                RegisterError::NotCloneable {
                    name: Add::NAME,
                    workers: 2
                }
            );
            assert!(e.to_string().contains("register_clone"), "{e}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a non-cloneable service accepted for a pool"),
    }
    // `register_clone` is what a pool takes, and one worker takes either.
    assert!(RpcServer::builder()
        .workers(2)
        .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .is_ok());
    assert!(RpcServer::builder()
        .workers(1)
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .is_ok());
}

/// `workers(n)` after a `register` cannot fail, so `bind` reports the mistake.
#[test]
fn workers_after_register_fail_at_bind_as_a_configuration_error() {
    let result = RpcServer::builder()
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .workers(3)
        .rep("tcp://127.0.0.1:*")
        .bind();
    match result {
        Err(TransportError::Config(ConfigError::NotCloneable { command, workers })) => {
            assert_eq!((command, workers), (Add::NAME, 3))
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a non-cloneable service accepted for a pool"),
    }
}
