//! The standard proxies forward frames as bytes, answer for a failed downstream, and stay
//! ready for the next request.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{
    CallError, Credentials, Proxy, ProxyKind, RpcClient, Running, ServerStats, Users,
};
use zmqrpc::ErrorCode;

/// A standard server on a free port; its endpoint and handle.
fn server() -> (String, Running<ServerStats>) {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    (endpoint, server.spawn().unwrap())
}

fn rep2req(
    downstream: &str,
    timeout: Duration,
) -> (String, Running<zmqrpc::transport::ProxyStats>) {
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(downstream)
        .timeout(timeout)
        .bind()
        .unwrap();
    let endpoint = proxy.input_endpoints()[0].clone();
    (endpoint, proxy.spawn().unwrap())
}

#[test]
fn rep2req_returns_the_servers_typed_reply_and_its_errors() {
    let (server_endpoint, _server) = server();
    let (proxy_endpoint, proxy) = rep2req(&server_endpoint, secs(5));
    let mut client = client(&proxy_endpoint);
    assert_eq!(client.call(&Add(40, 2)).unwrap(), 42);
    assert_eq!(client.call(&Echo("via proxy".into())).unwrap(), "via proxy");
    match client.call(&Unregistered) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::UnknownCommand),
        other => panic!("{other:?}"),
    }
    let counts = proxy.stats().snapshot();
    assert_eq!(
        (counts.received, counts.forwarded, counts.failed),
        (3, 3, 0)
    );
}

#[test]
fn rep2req_answers_a_dead_downstream_with_an_error_and_recovers_at_once() {
    let downstream = ipc_endpoint("rep2req-down");
    let timeout = Duration::from_millis(200) * slack();
    let (proxy_endpoint, proxy) = rep2req(&downstream, timeout);
    let mut client = client(&proxy_endpoint);
    for _ in 0..2 {
        let started = Instant::now();
        match client.call(&Add(1, 1)) {
            Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Timeout),
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(300) * slack(),
            "{took:?}"
        );
    }
    // The server comes up on the downstream endpoint: the very next request goes through.
    let server = standard_server().rep(&downstream).bind().unwrap();
    let _server = server.spawn().unwrap();
    assert_eq!(client.call(&Add(1, 1)).unwrap(), 2);
    let counts = proxy.stats().snapshot();
    assert_eq!((counts.failed, counts.forwarded), (2, 1));
}

/// Regression: the plain proxies forwarded reply and error frames that the server and the
/// buffered proxy refuse as not requests.
#[test]
fn rep2req_refuses_a_frame_that_is_not_a_request() {
    let (server_endpoint, server) = server();
    let (proxy_endpoint, _proxy) = rep2req(&server_endpoint, secs(5));
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    raw.connect(&proxy_endpoint).unwrap();
    let request = zmqrpc::Header::request(5, <Add as zmqrpc::Command>::KEY);
    let mut buf = [0u8; 64];
    for stray in [
        zmqrpc::frame::encode(&request.reply(), &7i64, &mut buf)
            .unwrap()
            .to_vec(),
        zmqrpc::frame::HEARTBEAT.to_vec(),
    ] {
        raw.send(&stray[..], 0).unwrap();
        let answer = raw.recv_bytes(0).unwrap();
        if stray[..] == zmqrpc::frame::HEARTBEAT[..] {
            assert_eq!(answer, stray, "a heartbeat is answered, not forwarded");
            continue;
        }
        let frame = zmqrpc::Frame::decode(&answer).unwrap();
        assert_eq!(frame.header, request.error());
        assert_eq!(frame.remote_error().unwrap().code, ErrorCode::BadFrame);
    }
    assert_eq!(
        server.stats().snapshot().receiver.received,
        0,
        "never forwarded"
    );
}

#[test]
fn rep2req_refuses_what_is_not_a_frame() {
    let (server_endpoint, server) = server();
    let (proxy_endpoint, _proxy) = rep2req(&server_endpoint, secs(5));
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    raw.connect(&proxy_endpoint).unwrap();
    raw.send(&b"\x01\x00garbage"[..], 0).unwrap();
    let answer = raw.recv_bytes(0).unwrap();
    let frame = zmqrpc::Frame::decode(&answer).unwrap();
    assert_eq!(frame.remote_error().unwrap().code, ErrorCode::BadFrame);
    assert_eq!(
        server.stats().snapshot().receiver.received,
        0,
        "never forwarded"
    );
}

#[test]
fn sub2req_and_sub2pub_forward_notifications() {
    // sensor --PUB--> [sub2pub] --PUB--> [sub2req] --REQ--> server
    let (mut sensor, sensor_endpoint) = publishing_client(None);
    let samples = Samples::default();
    let server = samples.server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();

    let relay = Proxy::builder(ProxyKind::Sub2Pub)
        .input(&sensor_endpoint)
        .output("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let relay_endpoint = relay.output_endpoints()[0].clone();
    let relay = relay.spawn().unwrap();
    let hop = Proxy::builder(ProxyKind::Sub2Req)
        .input(&relay_endpoint)
        .output(&server_endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();

    for seq in 0..5 {
        sensor.notify(&Sample { seq, value: 0.5 }).unwrap();
    }
    assert!(attached(&mut sensor));
    // The relay's own publisher holds what arrives before the second hop subscribes.
    assert_eq!(samples.wait_for(5, secs(10)), [0, 1, 2, 3, 4]);
    // The hop counts a forward once the server's answer is back, just after the sample.
    assert!(eventually(secs(5), || {
        relay.stats().snapshot().forwarded == 5 && hop.stats().snapshot().forwarded == 5
    }));
}

#[test]
fn rep2pub_acknowledges_calls_and_publishes_them() {
    let proxy = Proxy::builder(ProxyKind::Rep2Pub)
        .input("tcp://127.0.0.1:*")
        .output("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let (input, output) = (
        proxy.input_endpoints()[0].clone(),
        proxy.output_endpoints()[0].clone(),
    );
    let _proxy = proxy.spawn().unwrap();
    let samples = Samples::default();
    let _server = samples
        .server()
        .subscribe(&output)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let mut client = client(&input);
    for seq in 0..3 {
        client.call(&Sample { seq, value: 1.0 }).unwrap(); // Response = (): the ack decodes
    }
    assert_eq!(samples.wait_for(3, secs(5)), [0, 1, 2]);
}

#[test]
fn a_two_hop_chain_with_different_credentials_per_hop_works() {
    // client --(alice)--> [proxy A] --(bob)--> [proxy B] --(carol)--> server
    let server = standard_server()
        .users(Users::new().with("carol", "c-pass"))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let hop_b = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .input_users(Users::new().with("bob", "b-pass"))
        .output(&server_endpoint)
        .output_credentials(Credentials::new("carol", "c-pass"))
        .timeout(secs(5))
        .bind()
        .unwrap();
    let hop_b_endpoint = hop_b.input_endpoints()[0].clone();
    let _hop_b = hop_b.spawn().unwrap();
    let hop_a = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .input_users(Users::new().with("alice", "a-pass"))
        .output(&hop_b_endpoint)
        .output_credentials(Credentials::new("bob", "b-pass"))
        .timeout(secs(5))
        .bind()
        .unwrap();
    let hop_a_endpoint = hop_a.input_endpoints()[0].clone();
    let _hop_a = hop_a.spawn().unwrap();

    let mut alice = RpcClient::builder()
        .req(&hop_a_endpoint)
        .credentials(Credentials::new("alice", "a-pass"))
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert_eq!(alice.call(&Add(20, 22)).unwrap(), 42);
    // Bob's credentials are for the second hop only.
    let mut bob = RpcClient::builder()
        .req(&hop_a_endpoint)
        .credentials(Credentials::new("bob", "b-pass"))
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert!(matches!(
        bob.call(&Add(1, 1)),
        Err(CallError::AuthFailed { .. })
    ));
}

/// The proxies speak as the servers do: `input` binds a REP, `subscribe` connects a SUB. A
/// kind with a REP input has no SUB to subscribe with, and says so at `bind`.
#[test]
fn a_sub_kind_subscribes_and_a_rep_kind_refuses_a_subscription() {
    use zmqrpc::transport::{ConfigError, TransportError};
    let (server_endpoint, _server) = server();
    let (mut publisher, publisher_endpoint) = publishing_client(None);
    let sub2req = Proxy::builder(ProxyKind::Sub2Req)
        .subscribe(&publisher_endpoint)
        .output(&server_endpoint)
        .bind()
        .unwrap();
    assert!(
        sub2req.input_endpoints().is_empty(),
        "nothing bound: it subscribes"
    );
    let stats = sub2req.stats();
    let _sub2req = sub2req.spawn().unwrap();
    assert!(attached(&mut publisher));
    publisher.notify(&Add(1, 2)).unwrap();
    assert!(eventually(secs(5), || stats.snapshot().forwarded == 1));

    let refused = Proxy::builder(ProxyKind::Rep2Req)
        .subscribe(&publisher_endpoint)
        .output(&server_endpoint)
        .bind();
    match refused {
        Err(TransportError::Config(ConfigError::NotForKind { setting, kind })) => {
            assert_eq!((setting, kind), ("subscribe", "rep2req"))
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// A call that returns its caller's tag once `Gather::AT_ONCE` calls are in the service
/// together (or after waiting the second field's milliseconds for them): proof, without
/// timing, that calls overlap.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Gather(u32, u64);

impl Gather {
    const AT_ONCE: usize = 8;
}

impl zmqrpc::Command for Gather {
    const NAME: &'static str = "test.gather";
    /// The caller's tag and how many calls were in the service together at most.
    type Response = (u32, usize);
}

/// A `workers(8)` server of `Gather` on a free port; its endpoint and handle.
fn gathering_server() -> (String, Running<ServerStats>) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    let inside = Arc::new(AtomicUsize::new(0));
    let server = zmqrpc::transport::RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .workers(Gather::AT_ONCE)
        .register_clone(move |Gather(tag, wait_ms): Gather| {
            inside.fetch_add(1, SeqCst);
            let give_up = Instant::now() + Duration::from_millis(wait_ms);
            let mut most = 0;
            while Instant::now() < give_up {
                most = most.max(inside.load(SeqCst));
                if most >= Gather::AT_ONCE {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // Stay until the last has seen everyone.
            std::thread::sleep(Duration::from_millis(50));
            inside.fetch_sub(1, SeqCst);
            Ok::<_, zmqrpc::transport::ServiceError>((tag, most))
        })
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    (endpoint, server.spawn().unwrap())
}

/// Regression: `Rep2Req` forwarded one call at a time, so 8 callers of a `workers(8)`
/// server through it took 8 times as long as direct. Now 8 calls are in the server at
/// once, from callers of both dialects, each answer back to its own caller.
#[cfg(feature = "pyzmqrpc3")]
#[test]
fn rep2req_forwards_calls_from_many_callers_at_once_in_either_dialect() {
    use zmqrpc::transport::dialect::Pyzmqrpc3;
    let (server_endpoint, _server) = gathering_server();
    let (proxy_endpoint, proxy) = rep2req(&server_endpoint, secs(10));
    let callers: Vec<_> = (0..Gather::AT_ONCE as u32)
        .map(|tag| {
            let endpoint = proxy_endpoint.clone();
            std::thread::spawn(move || {
                let answer = if tag % 2 == 0 {
                    client(&endpoint).call(&Gather(tag, 5000))
                } else {
                    RpcClient::builder_for(Pyzmqrpc3::new())
                        .req(&endpoint)
                        .timeout(secs(10))
                        .connect()
                        .unwrap()
                        .call(&Gather(tag, 5000))
                };
                (tag, answer)
            })
        })
        .collect();
    for caller in callers {
        let (tag, answer) = caller.join().unwrap();
        let (answered_tag, together) = answer.unwrap();
        assert_eq!(answered_tag, tag, "an answer went to another caller");
        assert_eq!(
            together,
            Gather::AT_ONCE,
            "caller {tag}: calls did not overlap"
        );
    }
    let counts = proxy.stats().snapshot();
    assert_eq!((counts.forwarded, counts.failed), (8, 0));
}

/// With `concurrency(1)`, calls go one at a time, in order; a kind without a REQ input and
/// REQ output refuses the setting.
#[test]
fn rep2req_concurrency_one_serialises_and_other_kinds_refuse_the_setting() {
    let (server_endpoint, _server) = gathering_server();
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(&server_endpoint)
        .concurrency(1)
        .timeout(secs(10))
        .bind()
        .unwrap();
    let endpoint = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let callers: Vec<_> = (0..2)
        .map(|tag| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || client(&endpoint).call(&Gather(tag, 200)).unwrap())
        })
        .collect();
    for caller in callers {
        let (_, together) = caller.join().unwrap();
        assert_eq!(together, 1);
    }
    for kind in [ProxyKind::Rep2Pub, ProxyKind::Sub2Req, ProxyKind::Sub2Pub] {
        let refused = Proxy::builder(kind)
            .input("tcp://127.0.0.1:*")
            .output("tcp://127.0.0.1:*")
            .concurrency(4)
            .bind();
        let error = refused.err().unwrap().to_string();
        assert!(error.contains("concurrency"), "{kind}: {error}");
    }
}
