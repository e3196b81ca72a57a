//! Every node kind answers the built-in commands (`Ping`, `GetStats`, `Describe`) for
//! itself — through the real binaries — and refuses them to a caller no permission allows.

use std::time::Duration;

use zmqrpc::agent::Echo;
use zmqrpc::transport::node::{
    Describe, GetStats, NodeStats, Ping, Shape, BUILTIN_NAMES, BUILTIN_SCHEMA,
};
use zmqrpc::transport::{CallError, Credentials, RpcClient, RpcServer, ServiceError};
use zmqrpc::{Command, ErrorCode};

use crate::common::device::{self, link_path, FakeDevice};
use crate::common::process::{ready_field, Process, TempPath, PROXY, SERVER};
use crate::common::{dead_endpoint, eventually, ipc_endpoint, secs};

fn client(endpoint: &str) -> RpcClient {
    RpcClient::builder()
        .req(endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap()
}

fn client_as(endpoint: &str, user: &str, password: &str) -> RpcClient {
    RpcClient::builder()
        .req(endpoint)
        .credentials(Credentials::new(user, password))
        .timeout(secs(5))
        .connect()
        .unwrap()
}

/// What a node of `role` must answer about itself: its role and version, its counters
/// with the built-ins it answered among them, the three built-ins described.
fn assert_answers_for_itself(client: &mut RpcClient, role: &str) -> NodeStats {
    let pong = client.call(&Ping).unwrap();
    assert_eq!(pong.role, role);
    assert_eq!(pong.version, env!("CARGO_PKG_VERSION"));
    let described = client.call(&Describe).unwrap();
    for name in BUILTIN_NAMES {
        let command = described
            .command(name)
            .unwrap_or_else(|| panic!("{role}: {name} not described: {described:?}"));
        assert_eq!(command.key, zmqrpc::Key::of(name).0);
    }
    let ping = described.command(Ping::NAME).unwrap();
    assert_eq!(ping.request, Err(BUILTIN_SCHEMA.to_owned()));
    let stats = client.call(&GetStats).unwrap();
    assert_eq!(stats.pong.role, role);
    assert!(stats.pong.uptime_ms >= pong.uptime_ms, "{stats:?}");
    let input = stats
        .section("input")
        .unwrap_or_else(|| panic!("{stats:?}"));
    assert!(!input.endpoints.is_empty(), "{role}: {stats:?}");
    assert!(stats.counter("loop", "turns").unwrap() > 0, "{stats:?}");
    assert!(
        stats.limit("process_budget_bytes").unwrap() > 0,
        "{stats:?}"
    );
    // The Ping and the Describe before this GetStats, answered by the node itself.
    let answered = match role {
        "server" => stats.counter("dispatch", "served"),
        "rep2serial" => stats.counter("bridge", "builtin"),
        _ => stats.counter("proxy", "builtin"),
    };
    assert_eq!(answered, Some(2), "{role}: {stats:?}");
    stats
}

#[test]
fn every_node_kind_answers_ping_stats_and_describe_for_itself() {
    let agent = ipc_endpoint("node-agent");
    let (_agent, _) = Process::start(SERVER, &["--bind", &agent]);
    let mut to_agent = client(&agent);
    let stats = assert_answers_for_itself(&mut to_agent, "server");
    assert_eq!(stats.limit("max_body_bytes"), Some(256 << 10));
    let described = to_agent.call(&Describe).unwrap();
    let echo = described.command(Echo::NAME).unwrap();
    let request = echo.request.as_ref().unwrap();
    assert_eq!(
        request.shapes[0],
        Shape::NewtypeStruct("Echo".into(), 1),
        "{request:?}"
    );
    assert_eq!(request.shapes[1], Shape::Str);
    assert_eq!(echo.response.as_ref().unwrap().shapes, vec![Shape::Str]);

    // Proxies in front of it: each answers for itself and forwards the rest.
    let forwarding = [("rep2req", "node-rep2req"), ("buffered", "node-buffered")];
    for (kind, name) in forwarding {
        let input = ipc_endpoint(name);
        let (_proxy, _) = Process::start(PROXY, &["--kind", kind, "--in", &input, "--out", &agent]);
        let mut caller = client(&input);
        assert_answers_for_itself(&mut caller, kind);
        if kind == "rep2req" {
            assert_eq!(caller.call(&Echo("through".into())).unwrap(), "through");
            let stats = caller.call(&GetStats).unwrap();
            assert_eq!(stats.counter("proxy", "forwarded"), Some(1), "{stats:?}");
            let output = stats.section("output").unwrap();
            assert_eq!(output.endpoints, vec![agent.clone()]);
        }
    }
    let input = ipc_endpoint("node-rep2pub");
    let (_rep2pub, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2pub",
            "--in",
            &input,
            "--out",
            "tcp://127.0.0.1:*",
        ],
    );
    let stats = assert_answers_for_itself(&mut client(&input), "rep2pub");
    let output = stats.section("output").unwrap();
    assert_eq!(output.endpoints, ready_field(&ready, "out"));
    assert!(output.counter("published").is_some(), "{stats:?}");

    // A proxy whose input is a subscription answers on its control endpoint, and only the
    // built-ins there.
    for kind in ["sub2pub", "sub2req"] {
        let control = ipc_endpoint(&format!("node-{kind}-control"));
        let out = match kind {
            "sub2pub" => "tcp://127.0.0.1:*".to_owned(),
            _ => agent.clone(),
        };
        let subscribed = dead_endpoint();
        let (_proxy, ready) = Process::start(
            PROXY,
            &[
                "--kind",
                kind,
                "--in",
                &subscribed,
                "--out",
                &out,
                "--control",
                &control,
            ],
        );
        // The ready line tells the subscription and the control endpoint apart.
        assert_eq!(
            ready_field(&ready, "in"),
            vec![subscribed.clone()],
            "{ready}"
        );
        assert_eq!(
            ready_field(&ready, "control"),
            vec![control.clone()],
            "{ready}"
        );
        let mut caller = client(&control);
        assert_answers_for_itself(&mut caller, kind);
        match caller.call(&Echo("not here".into())) {
            Err(CallError::Remote { error, .. }) => {
                assert_eq!(error.code, ErrorCode::UnknownCommand, "{error:?}");
                assert!(error.message.contains("zmqrpc.node."), "{error:?}");
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn a_serial_bridge_answers_for_itself_without_troubling_its_device() {
    if !device::lines_open() {
        return;
    }
    let link = link_path("node-bridge");
    let device = FakeDevice::plug(&link, Duration::from_secs(3600));
    let input = ipc_endpoint("node-bridge-in");
    let (_bridge, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2serial",
            "--device",
            link.to_str().unwrap(),
            "--in",
            &input,
        ],
    );
    let mut caller = client(&input);
    let stats = assert_answers_for_itself(&mut caller, "rep2serial");
    let bridge = stats.section("bridge").unwrap();
    assert_eq!(bridge.endpoints, vec![link.display().to_string()]);
    assert_eq!(bridge.counter("forwarded"), Some(0), "{stats:?}");
    assert_eq!(stats.limit("device_frame_max"), Some(1024));
    let seen = device.unplug();
    assert_eq!(seen.served + seen.unknown + seen.bad_frames, 0, "{seen:?}");
}

#[test]
fn the_builtins_are_refused_to_a_caller_no_permission_allows() {
    let users = TempPath::with("node-perm-users", "ops:o-pass\nsensor:s-pass\n");
    let rules = TempPath::with(
        "node-perm-rules",
        "ops call zmqrpc.node.*\nsensor call agent.echo\n",
    );
    let agent = ipc_endpoint("node-perm-agent");
    let protected = ["--users", users.as_str(), "--permissions", rules.as_str()];
    let (_agent, _) = Process::start(SERVER, &[&["--bind", &agent][..], &protected].concat());
    let upstream = TempPath::with("node-perm-upstream", "ops:o-pass\n");
    let proxy_in = ipc_endpoint("node-perm-proxy");
    let proxy_args = [
        &["--kind", "rep2req", "--in", &proxy_in, "--out", &agent][..],
        &protected,
        &["--credentials", upstream.as_str()],
    ]
    .concat();
    let (_proxy, _) = Process::start(PROXY, &proxy_args);
    let buffered_in = ipc_endpoint("node-perm-buffered");
    let buffered_args = [
        &["--kind", "buffered", "--in", &buffered_in, "--out", &agent][..],
        &protected,
        &["--credentials", upstream.as_str()],
    ]
    .concat();
    let (_buffered, _) = Process::start(PROXY, &buffered_args);
    for endpoint in [&agent, &proxy_in, &buffered_in] {
        let mut ops = client_as(endpoint, "ops", "o-pass");
        ops.call(&Ping).unwrap();
        ops.call(&GetStats).unwrap();
        ops.call(&Describe).unwrap();
        let mut sensor = client_as(endpoint, "sensor", "s-pass");
        for refused in [
            sensor.call(&Ping).map(drop),
            sensor.call(&GetStats).map(drop),
            sensor.call(&Describe).map(drop),
        ] {
            match refused {
                Err(CallError::Remote { error, .. }) => {
                    assert_eq!(error.code, ErrorCode::Forbidden, "{endpoint}: {error:?}");
                    assert!(
                        error.message.contains("\"sensor\" may not call"),
                        "{error:?}"
                    );
                }
                other => panic!("{endpoint}: {other:?}"),
            }
        }
    }
    // The proxy counted them as refused, not answered.
    let stats = client_as(&proxy_in, "ops", "o-pass")
        .call(&GetStats)
        .unwrap();
    assert_eq!(stats.counter("proxy", "forbidden"), Some(3), "{stats:?}");
}

#[test]
fn a_server_without_builtins_answers_them_unknown_and_one_of_yours_wins() {
    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .builtins(false)
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    match client(&endpoint).call(&Ping) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::UnknownCommand),
        other => panic!("{other:?}"),
    }
    running.stop_and_wait().unwrap();

    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .register(|_: Ping| {
            Ok::<_, ServiceError>(zmqrpc::transport::node::Pong {
                version: "mine".into(),
                role: "custom".into(),
                uptime_ms: 7,
            })
        })
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut caller = client(&endpoint);
    assert_eq!(caller.call(&Ping).unwrap().role, "custom");
    // The other built-ins are still there.
    assert!(eventually(secs(1), || caller.call(&GetStats).is_ok()));
    running.stop_and_wait().unwrap();
}

#[test]
fn a_worker_pool_and_an_async_server_answer_the_builtins_too() {
    let pool = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .workers(4)
        .register_clone(|Echo(text): Echo| Ok::<_, ServiceError>(text))
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = pool.rep_endpoints()[0].clone();
    let running = pool.spawn().unwrap();
    let mut caller = client(&endpoint);
    let stats = assert_answers_for_itself(&mut caller, "server");
    assert_eq!(stats.limit("workers"), Some(4));
    assert!(caller
        .call(&Describe)
        .unwrap()
        .command(Echo::NAME)
        .is_some());
    running.stop_and_wait().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tasks = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .runtime(runtime.handle().clone())
        .register_async(|Echo(text): Echo| async move { Ok::<_, ServiceError>(text) })
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = tasks.rep_endpoints()[0].clone();
    let running = tasks.spawn().unwrap();
    let mut caller = client(&endpoint);
    assert_answers_for_itself(&mut caller, "server");
    assert_eq!(caller.call(&Echo("async".into())).unwrap(), "async");
    running.stop_and_wait().unwrap();
}
