//! A server with several worker threads behind one endpoint serves calls in parallel.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use zmqrpc::transport::{Pipeline, RpcServer, ServiceError};
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
        .connect_to(&endpoint)
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
    assert_eq!(running.stats().dispatch.snapshot().served, 8);
    let asked = Instant::now();
    running.join().unwrap();
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
