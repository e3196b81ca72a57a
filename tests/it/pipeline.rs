//! Many calls in flight over one DEALER: every answer matched to its call, timeouts per call.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{CallError, ConfigError, Pipeline, TransportError};

#[test]
fn a_window_of_calls_gets_every_answer_matched_to_its_call() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .window(64)
        .timeout(secs(5))
        .connect::<Add>()
        .unwrap();
    let mut expected = HashMap::new();
    let mut answered = 0;
    let mut next = 0i64;
    while answered < 1000 {
        while next < 1000 && pipeline.in_flight() < 64 {
            let seq = pipeline.send(&Add(next, 1_000_000)).unwrap();
            expected.insert(seq, next + 1_000_000);
            next += 1;
        }
        let (seq, result) = pipeline.recv(secs(5)).unwrap().expect("an answer in time");
        assert_eq!(result.unwrap(), expected.remove(&seq).unwrap());
        answered += 1;
    }
    assert!(expected.is_empty());
    assert_eq!(pipeline.stray_answers(), 0);
    assert!(matches!(pipeline.recv(Duration::from_millis(10)), Ok(None)));
}

#[test]
fn a_full_window_refuses_and_each_call_times_out_on_its_own() {
    // A REP socket that never answers.
    let ctx = zmq::Context::new();
    let silent = ctx.socket(zmq::REP).unwrap();
    silent.set_linger(0).unwrap();
    silent.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = silent.get_last_endpoint().unwrap().unwrap();
    let timeout = Duration::from_millis(200) * slack();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .window(3)
        .timeout(timeout)
        .connect::<Add>()
        .unwrap();
    let started = Instant::now();
    let seqs: Vec<u32> = (0..3).map(|i| pipeline.send(&Add(i, i)).unwrap()).collect();
    assert!(matches!(
        pipeline.send(&Add(9, 9)),
        Err(CallError::WindowFull { in_flight: 3 })
    ));
    let mut timed_out = Vec::new();
    while let Some((seq, result)) = pipeline.recv(secs(2)).unwrap() {
        assert!(
            matches!(result, Err(CallError::Timeout { .. })),
            "{result:?}"
        );
        timed_out.push(seq);
    }
    let took = started.elapsed();
    timed_out.sort_unstable();
    assert_eq!(timed_out, seqs);
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(200) * slack() + secs(2),
        "{took:?}"
    );
    assert_eq!(pipeline.in_flight(), 0);
}

#[test]
fn remote_errors_come_back_for_their_own_call() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .timeout(secs(5))
        .connect::<Fail>()
        .unwrap();
    let a = pipeline.send(&Fail("first".into())).unwrap();
    let b = pipeline.send(&Fail("second".into())).unwrap();
    let mut messages = HashMap::new();
    for _ in 0..2 {
        let (seq, result) = pipeline.recv(secs(5)).unwrap().unwrap();
        match result {
            Err(CallError::Remote { error, .. }) => {
                messages.insert(seq, error.message.to_string());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(messages[&a], "first");
    assert_eq!(messages[&b], "second");
}

#[test]
fn a_pipeline_without_an_endpoint_is_a_configuration_error() {
    match Pipeline::builder().connect::<Add>() {
        Err(TransportError::Config(ConfigError::NoEndpoint { what })) => {
            assert_eq!(what, "pipeline")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a pipeline connected to nowhere"),
    }
}

#[test]
fn recv_returns_within_its_wait_while_strays_keep_arriving() {
    // A peer that answers a call with a flood of answers to nothing: all of it queued
    // before the pipeline looks, so a recv that skipped strays until none were left would
    // read every one of them first.
    const STRAYS: u64 = 400_000;
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_sndhwm(0).unwrap();
    router.set_rcvtimeo(5000).unwrap();
    router.bind("inproc://strays").unwrap();
    let mut pipeline = Pipeline::builder()
        .context(&ctx)
        .req("inproc://strays")
        .window(1 << 21)
        .timeout(secs(60))
        .connect::<Add>()
        .unwrap();
    pipeline.send(&Add(1, 2)).unwrap();
    let call = router.recv_multipart(0).unwrap();
    let caller = &call[0];
    for _ in 0..STRAYS {
        router.send(caller, zmq::SNDMORE).unwrap();
        router.send(&b""[..], zmq::SNDMORE).unwrap();
        router.send(&b"not an answer"[..], 0).unwrap();
    }
    let wait = Duration::from_millis(20);
    let start = Instant::now();
    assert!(matches!(pipeline.recv(wait), Ok(None)));
    let took = start.elapsed();
    assert!(
        took < wait + Duration::from_millis(200) * slack(),
        "{took:?}"
    );
    let strays = pipeline.stray_answers();
    assert!(strays > 0 && strays < STRAYS, "{strays} strays read");
    // The call is still in flight, and the next recv goes on skipping where it stopped.
    assert_eq!(pipeline.in_flight(), 1);
    assert!(matches!(pipeline.recv(wait), Ok(None)));
    assert!(pipeline.stray_answers() > strays);
}

/// pyzmqrpc3's answers carry no call number: a pipeline could not tell them apart.
#[test]
fn a_dialect_whose_answers_carry_no_number_is_refused_at_connect() {
    let refused = Pipeline::builder_for(zmqrpc::transport::dialect::Pyzmqrpc3::default())
        .req("tcp://127.0.0.1:9")
        .connect::<Add>();
    match refused {
        Err(TransportError::Config(error @ ConfigError::UnnumberedDialect { what, .. })) => {
            assert_eq!(what, "pipeline");
            assert!(error.to_string().contains("RpcClient"), "{error}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a pyzmqrpc3 pipeline was made"),
    }
}
