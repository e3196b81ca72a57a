//! Who may call what: permissions by user id (a PLAIN username or a CURVE key's id),
//! checked before dispatch in servers and pools and at proxy inputs; a refused call gets a
//! `Forbidden` error (403 for pyzmqrpc3), a refused notification is dropped, both counted.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use zmqrpc::transport::auth::{Action, Permissions};
use zmqrpc::transport::{
    CallError, Credentials, KeyPair, Proxy, ProxyKind, RpcClient, RpcServer, ServiceError, Users,
};
use zmqrpc::ErrorCode;

fn users() -> Users {
    Users::new().with("ops", "o-pass").with("sensor", "s-pass")
}

fn permissions() -> Permissions {
    Permissions::new()
        .allow("ops", None, "*")
        .allow("sensor", Some(Action::Call), "test.echo")
        .allow("*", Some(Action::Notify), "test.sample")
}

fn as_user(endpoint: &str, user: &str, password: &str) -> RpcClient {
    RpcClient::builder()
        .req(endpoint)
        .credentials(Credentials::new(user, password))
        .timeout(secs(5))
        .connect()
        .unwrap()
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, CallError>, said: &str) {
    match result {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::Forbidden);
            assert!(error.message.contains(said), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_and_a_pool_serve_only_what_each_user_may_call() {
    for workers in [1, 2] {
        let server = RpcServer::builder()
            .register_clone(|Echo(s): Echo| Ok::<_, ServiceError>(s))
            .unwrap()
            .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
            .unwrap()
            .workers(workers)
            .users(users())
            .permissions(permissions())
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let endpoint = server.rep_endpoints()[0].clone();
        let running = server.spawn().unwrap();
        let mut ops = as_user(&endpoint, "ops", "o-pass");
        let mut sensor = as_user(&endpoint, "sensor", "s-pass");
        assert_eq!(ops.call(&Add(1, 2)).unwrap(), 3);
        assert_eq!(ops.call(&Echo("o".into())).unwrap(), "o");
        assert_eq!(sensor.call(&Echo("s".into())).unwrap(), "s");
        assert_forbidden(sensor.call(&Add(1, 2)), "\"sensor\" may not call test.add");
        // A command nobody registered: refused as forbidden before it is looked up, so a
        // caller cannot probe which commands exist.
        assert_forbidden(sensor.call(&Unregistered), "may not call");
        // The refusal left the connection serving.
        assert_eq!(sensor.call(&Echo("again".into())).unwrap(), "again");
        let counts = running.stats().snapshot().dispatch;
        assert_eq!(
            (counts.forbidden, counts.served, counts.unknown),
            (2, 4, 0),
            "{workers}"
        );
    }
}

#[test]
fn notifications_are_checked_too_and_a_subscription_has_no_user_id() {
    let (mut publisher, endpoint) = publishing_client(None);
    let samples = Samples::default();
    let adds = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = adds.clone();
    let running = RpcServer::builder()
        .register(samples.service())
        .unwrap()
        .register(move |_: Add| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, ServiceError>(0)
        })
        .unwrap()
        .permissions(permissions())
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(attached(&mut publisher));
    publisher.notify(&Add(1, 1)).unwrap();
    publisher.notify(&Sample { seq: 1, value: 0.0 }).unwrap();
    assert_eq!(samples.wait_for(1, secs(5)), [1]);
    assert!(eventually(secs(5), || running
        .stats()
        .snapshot()
        .dispatch
        .forbidden
        == 1));
    assert_eq!(adds.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_proxy_input_forwards_only_what_its_callers_may_call() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let server = server.spawn().unwrap();
    // CURVE keys name the callers here: the permission follows the key's user id.
    let proxy_keys = KeyPair::generate().unwrap();
    let (ops_keys, sensor_keys) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(&server_endpoint)
        .input_users(
            Users::curve(proxy_keys.clone())
                .with_key("ops", ops_keys.public)
                .with_key("sensor", sensor_keys.public),
        )
        // A proxy sees keys: the wildcard "test.*" matches only the names it is taught.
        .input_permissions(
            Permissions::new()
                .allow("ops", None, "test.*")
                .allow("sensor", Some(Action::Call), "test.echo")
                .knowing(["test.add", "test.echo"]),
        )
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let stats = proxy.stats();
    let _proxy = proxy.spawn().unwrap();
    let client = |keys: &KeyPair| {
        RpcClient::builder()
            .req(&input)
            .credentials(Credentials::curve(keys.clone(), proxy_keys.public))
            .timeout(secs(5))
            .connect()
            .unwrap()
    };
    let (mut ops, mut sensor) = (client(&ops_keys), client(&sensor_keys));
    assert_eq!(ops.call(&Add(2, 2)).unwrap(), 4);
    assert_eq!(sensor.call(&Echo("e".into())).unwrap(), "e");
    assert_forbidden(sensor.call(&Add(2, 2)), "\"sensor\" may not call test.add");
    // Not taught: "test.fail" is known by key only, so "test.*" cannot match it.
    assert_forbidden(ops.call(&Fail("x".into())), "the command of key");
    assert_eq!(stats.snapshot().forbidden, 2);
    // Only what was allowed reached the server.
    assert_eq!(server.stats().snapshot().receiver.received, 2);

    // A buffered proxy refuses before it queues (or spools) anything.
    let buffered = zmqrpc::transport::BufferedProxy::builder()
        .input("tcp://127.0.0.1:*")
        .output(&server_endpoint)
        .input_users(users())
        .input_permissions(Permissions::new().allow("ops", None, "test.sample"))
        .bind()
        .unwrap();
    let buffered_input = buffered.input_endpoints()[0].clone();
    let buffered_stats = buffered.stats();
    let _buffered = buffered.spawn().unwrap();
    as_user(&buffered_input, "ops", "o-pass")
        .call(&Sample { seq: 1, value: 0.0 })
        .unwrap();
    assert_forbidden(
        as_user(&buffered_input, "sensor", "s-pass").call(&Sample { seq: 2, value: 0.0 }),
        "\"sensor\" may not call",
    );
    let counts = buffered_stats.snapshot();
    assert_eq!((counts.received, counts.forbidden), (2, 1), "{counts:?}");
    assert!(eventually(secs(5), || buffered_stats.snapshot().forwarded == 1));
}

#[cfg(feature = "pyzmqrpc3")]
#[test]
fn a_pyzmqrpc3_caller_is_refused_with_a_403_status() {
    use zmqrpc::transport::dialect::Pyzmqrpc3;
    use zmqrpc::transport::Dialect;
    let server = standard_server()
        .permissions(Permissions::new().allow("*", None, "test.echo"))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    // The raw answer is pyzmqrpc3's JSON status.
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    raw.connect(&endpoint).unwrap();
    let mut call = Vec::new();
    Pyzmqrpc3::new()
        .encode_call(0, &Add(1, 2), &mut call, 1 << 20)
        .unwrap();
    raw.send(&call[..], 0).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&raw.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(answer["status_code"], 403, "{answer}");
    // And a pyzmqrpc3-speaking Rust client reads it back as `Forbidden`.
    let mut client = RpcClient::builder_for(Pyzmqrpc3::new())
        .req(&endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert_eq!(client.call(&Echo("py".into())).unwrap(), "py");
    assert_forbidden(client.call(&Add(1, 2)), "may not call");
}
