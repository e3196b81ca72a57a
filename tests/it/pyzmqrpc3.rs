//! Against the real thing: pyzmqrpc3 3.2.2 from PyPI, in the virtualenv `.ci/run` makes
//! (`target/pyzmqrpc3-venv`, or the Python named by `ZMQRPC_PYTHON`), driven by
//! `tests/py/peer.py`. Without that Python the tests say so loudly and pass, unless
//! `ZMQRPC_REQUIRE_PYTHON` is set (CI sets it): then they fail. They run on the host only: a
//! cross-built test under qemu cannot start the host's Python.
#![cfg(feature = "pyzmqrpc3")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc;

use crate::common::*;
use serde::{Deserialize, Serialize};
use zmqrpc::transport::dialect::{Mixed, Pyzmqrpc3, ACCEPTED_MESSAGE};
use zmqrpc::transport::{CallError, RpcClient, RpcServer, ServiceError};
use zmqrpc::{Command, ErrorCode};

/// The peer's `SetLed`, under a Rust name: the dialect maps it to the class name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct LedSet {
    on: bool,
    level: u8,
}
impl Command for LedSet {
    const NAME: &'static str = "sensor.led.set";
    type Response = String;
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Fail {
    why: String,
}
impl Command for Fail {
    const NAME: &'static str = "Fail";
    type Response = ();
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Nothing;
impl Command for Nothing {
    const NAME: &'static str = "Nothing";
    type Response = ();
}

/// A command the peer has no class for.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OnlyInRust {
    n: u32,
}
impl Command for OnlyInRust {
    const NAME: &'static str = "OnlyInRust";
    type Response = u32;
}

fn dialect() -> Pyzmqrpc3 {
    Pyzmqrpc3::new().class::<LedSet>("SetLed")
}

/// The Python with pyzmqrpc3 installed, or `None` (with a loud message) where there is none.
fn python() -> Option<PathBuf> {
    let required = std::env::var_os("ZMQRPC_REQUIRE_PYTHON").is_some();
    if !cfg!(target_arch = "x86_64") && !required {
        return None;
    }
    let python = std::env::var_os("ZMQRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyzmqrpc3-venv/bin/python")
        });
    if python.exists() {
        return Some(python);
    }
    let message = format!(
        "SKIPPED: no pyzmqrpc3 peer at {} (make one with `python3 -m venv target/pyzmqrpc3-venv \
         && target/pyzmqrpc3-venv/bin/pip install pyzmqrpc3==3.2.2`)",
        python.display()
    );
    assert!(!required, "{message}");
    eprintln!("{message}");
    None
}

/// A running `peer.py`; killed when dropped.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// `peer.py` with `args`.
    fn start(python: &PathBuf, args: &[&str]) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py");
        let mut command = Process::new(python);
        command.arg(script).args(args);
        Peer::spawn(command)
    }

    /// One of the crate's binaries with `args` (host only: see the file's docs).
    fn binary(program: &str, args: &[&str]) -> Peer {
        let mut command = Process::new(program);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("ZMQRPC_USER")
            .env_remove("ZMQRPC_PASSWORD");
        Peer::spawn(command)
    }

    fn spawn(mut command: Process) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
        }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(secs(30)).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing its stdin tells a serving peer to stop; the kill makes sure.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_rust_client_calls_a_python_server() {
    let Some(python) = python() else { return };
    let endpoint = ipc_endpoint("py-server");
    let server = Peer::start(&python, &["serve", &endpoint]);
    assert_eq!(server.line(), "ready");
    let mut client = RpcClient::builder_for(dialect())
        .req(&endpoint)
        .timeout(secs(10))
        .connect()
        .unwrap();
    // The typed reply; the class name differs from the Rust name.
    assert_eq!(
        client.call(&LedSet { on: true, level: 7 }).unwrap(),
        "led True 7"
    );
    // A service that returns nothing.
    client.call(&Nothing).unwrap();
    // The service raised: 463, with the peer's message.
    match client.call(&Fail { why: "boom".into() }) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::ServiceFailed);
            assert!(error.message.contains("boom"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    // pyzmqrpc3 cannot even unmarshal a class it does not know: 400.
    match client.call(&OnlyInRust { n: 1 }) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::BadFrame),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .call(&LedSet {
                on: false,
                level: 2
            })
            .unwrap(),
        "led False 2"
    );
}

/// A server for Python callers (and Rust ones, in the same dialect): `LedSet`, `Fail` and
/// `Nothing`, endpoints still to give.
fn led_server() -> zmqrpc::transport::ServerBuilder<Mixed> {
    RpcServer::builder_for(Mixed::new(dialect()))
        .register(|led: LedSet| Ok::<_, ServiceError>(format!("led {} {}", led.on, led.level)))
        .unwrap()
        .register(|fail: Fail| Err::<(), _>(ServiceError::new(fail.why)))
        .unwrap()
        .register(|Nothing| Ok::<_, ServiceError>(()))
        .unwrap()
}

#[test]
fn a_python_client_calls_a_rust_server_beside_a_rust_client() {
    let Some(python) = python() else { return };
    let server = led_server()
        .rep(ipc_endpoint("rust-server"))
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut native = RpcClient::builder()
        .req(&endpoint)
        .timeout(secs(10))
        .connect()
        .unwrap();
    let caller = Peer::start(&python, &["call", &endpoint]);
    let answers: Vec<serde_json::Value> = (0..7)
        .map(|_| serde_json::from_str(&caller.line()).unwrap())
        .collect();
    let codes: Vec<_> = answers.iter().map(|a| a["status_code"].clone()).collect();
    // SetLed, Unknown, Fail, garbage, the heartbeat over REQ, Nothing, SetLed again.
    assert_eq!(codes, [200, 451, 463, 400, 200, 200, 200]);
    assert_eq!(answers[0]["response_message"], "led true 7");
    assert_eq!(answers[2]["status_message"], "boom");
    assert!(
        answers[5].get("response_message").is_none(),
        "{}",
        answers[5]
    );
    assert_eq!(answers[6]["response_message"], "led false 1");
    // The native client on the same socket, before and after.
    assert_eq!(
        native.call(&LedSet { on: true, level: 1 }).unwrap(),
        "led true 1"
    );
    let counts = running.stats().snapshot().dispatch;
    assert_eq!(
        (
            counts.served,
            counts.failed,
            counts.unknown,
            counts.bad_frames
        ),
        (4, 1, 1, 1)
    );
}

#[test]
fn a_python_caller_gets_403_for_what_its_user_may_not_call() {
    let Some(python) = python() else { return };
    let server = led_server()
        .users(zmqrpc::transport::Users::new().with("site", "s3rver"))
        .permissions(zmqrpc::transport::auth::Permissions::parse("site call sensor.*\n").unwrap())
        .rep(ipc_endpoint("py-permissions"))
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let caller = Peer::start(&python, &["call", &endpoint, "site", "s3rver"]);
    let answers: Vec<serde_json::Value> = (0..7)
        .map(|_| serde_json::from_str(&caller.line()).unwrap())
        .collect();
    let codes: Vec<_> = answers.iter().map(|a| a["status_code"].clone()).collect();
    // SetLed (sensor.led.set: allowed), Unknown, Fail, garbage (refused before any
    // permission is asked), the heartbeat, Nothing, SetLed again.
    assert_eq!(codes, [200, 403, 403, 400, 200, 403, 200]);
    assert_eq!(
        answers[2]["status_message"], "\"site\" may not call Fail",
        "{}",
        answers[2]
    );
    let counts = running.stats().snapshot().dispatch;
    assert_eq!((counts.served, counts.forbidden, counts.failed), (2, 3, 0));
}

/// A `user:password` file in the temp directory, readable by its owner only (as files of
/// secrets must be).
fn users_file(name: &str, line: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("zmqrpc-py-{name}-{}", std::process::id()));
    std::fs::write(&path, format!("{line}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn a_python_client_calls_the_node_agent() {
    let Some(python) = python() else { return };
    let endpoint = ipc_endpoint("py-agent");
    let agent = Peer::binary(env!("CARGO_BIN_EXE_zmqrpc-server"), &["--bind", &endpoint]);
    assert!(agent.line().starts_with("ready"));
    let caller = Peer::start(&python, &["agent", &endpoint]);
    let pong: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
    assert_eq!(pong["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(caller.line(), r#""hello from Python""#);
    let info: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
    assert!(info.get("uptime_secs").is_some(), "{info}");
}

#[test]
fn a_python_client_asks_a_server_and_a_proxy_what_they_say_about_themselves() {
    let Some(python) = python() else { return };
    let endpoint = ipc_endpoint("py-node-agent");
    let agent = Peer::binary(env!("CARGO_BIN_EXE_zmqrpc-server"), &["--bind", &endpoint]);
    assert!(agent.line().starts_with("ready"));
    let input = ipc_endpoint("py-node-proxy");
    let proxy = Peer::binary(
        env!("CARGO_BIN_EXE_zmqrpc-proxy"),
        &["--kind", "rep2req", "--in", &input, "--out", &endpoint],
    );
    assert!(proxy.line().starts_with("ready"));
    for (at, role) in [(&endpoint, "server"), (&input, "rep2req")] {
        let caller = Peer::start(&python, &["node", at]);
        let pong: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
        assert_eq!(pong["role"], role, "{pong}");
        let stats: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
        let sections = stats["sections"].as_array().unwrap();
        assert!(sections.iter().any(|s| s["name"] == "input"), "{stats}");
        let described: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
        let names: Vec<&str> = described["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"zmqrpc.node.describe"), "{described}");
        assert_eq!(
            names.contains(&"agent.echo"),
            role == "server",
            "{described}"
        );
    }
}

#[test]
fn a_python_client_reaches_a_python_server_through_a_protected_rust_proxy() {
    let Some(python) = python() else { return };
    let server_endpoint = ipc_endpoint("py-behind-proxy");
    let server = Peer::start(&python, &["serve", &server_endpoint, "site", "s3rver"]);
    assert_eq!(server.line(), "ready");
    let proxy_endpoint = ipc_endpoint("rust-proxy");
    let users = users_file("proxy-users", "sensor:s3nsor");
    let credentials = users_file("proxy-credentials", "site:s3rver");
    let proxy = Peer::binary(
        env!("CARGO_BIN_EXE_zmqrpc-proxy"),
        &[
            "--kind",
            "rep2req",
            "--in",
            &proxy_endpoint,
            "--out",
            &server_endpoint,
            "--users",
            users.to_str().unwrap(),
            "--credentials",
            credentials.to_str().unwrap(),
        ],
    );
    assert!(proxy.line().starts_with("ready"));
    let caller = Peer::start(&python, &["call", &proxy_endpoint, "sensor", "s3nsor"]);
    let answers: Vec<serde_json::Value> = (0..7)
        .map(|_| serde_json::from_str(&caller.line()).unwrap())
        .collect();
    let codes: Vec<_> = answers.iter().map(|a| a["status_code"].clone()).collect();
    // SetLed, Unknown (a class without service), Fail, garbage, the heartbeat (answered by
    // the proxy itself), Nothing, SetLed again: the Python server's own answers.
    assert_eq!(codes, [200, 451, 463, 400, 200, 200, 200]);
    assert_eq!(answers[0]["response_message"], "led True 7");
    assert_eq!(answers[6]["response_message"], "led False 1");
    // A wrong password gets nothing through.
    let mut refused = Process::new(&python);
    refused
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py"))
        .args(["call", &proxy_endpoint, "sensor", "wrong", "1"])
        .env("PEER_TIMEOUT_MS", "1500");
    let refused = Peer::spawn(refused);
    assert_eq!(refused.line(), r#"{"timeout": true}"#);
    for file in [users, credentials] {
        let _ = std::fs::remove_file(file);
    }
}

/// Waits for `peer` to print `line`, skipping others; whether it did within `within`.
fn saw(peer: &Peer, line: &str, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match peer.lines.recv_timeout(left) {
            Ok(got) if got == line => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn rust_notifications_reach_a_python_subscriber() {
    let Some(python) = python() else { return };
    let endpoint = ipc_endpoint("rust-pub");
    let mut client = RpcClient::builder_for(dialect())
        .publish_on(&endpoint)
        .connect()
        .unwrap();
    let subscriber = Peer::start(&python, &["subscribe", &endpoint]);
    assert_eq!(subscriber.line(), "ready");
    // Held while nobody listens, then sent: the first one is served once it has attached.
    client.heartbeat().unwrap();
    client.notify(&LedSet { on: true, level: 1 }).unwrap();
    let deadline = std::time::Instant::now() + secs(10);
    while client.flush().unwrap() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(saw(&subscriber, "served led True 1", secs(10)));
    client
        .notify(&LedSet {
            on: false,
            level: 2,
        })
        .unwrap();
    assert!(saw(&subscriber, "served led False 2", secs(10)));
}

#[test]
fn python_publications_reach_a_rust_subscriber() {
    let Some(python) = python() else { return };
    let endpoint = ipc_endpoint("py-pub");
    let (tx, served) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = RpcServer::builder_for(Mixed::new(dialect()))
        .register(move |led: LedSet| {
            let _ = tx.lock().unwrap().send(led.level);
            Ok::<_, ServiceError>(String::new())
        })
        .unwrap()
        .subscribe(&endpoint)
        .bind()
        .unwrap();
    let _running = server.spawn().unwrap();
    let publisher = Peer::start(&python, &["publish", &endpoint, "40"]);
    // A subscriber may miss the first publications while it connects; the rest arrive in order.
    let levels: Vec<u8> = std::iter::from_fn(|| served.recv_timeout(secs(5)).ok())
        .take_while(|&level| level < 39)
        .collect();
    assert!(!levels.is_empty());
    assert!(levels.windows(2).all(|w| w[1] == w[0] + 1), "{levels:?}");
    assert_eq!(publisher.line(), "published");
}

#[test]
fn python_traffic_crosses_every_other_proxy_kind() {
    let Some(python) = python() else { return };
    let proxy = |kind: &str, input: &str, output: &str| {
        let peer = Peer::binary(
            env!("CARGO_BIN_EXE_zmqrpc-proxy"),
            &["--kind", kind, "--in", input, "--out", output],
        );
        assert!(peer.line().starts_with("ready"), "{kind}");
        peer
    };

    // sub2pub and sub2req: a Python publisher, through the proxy, to Python servers.
    let published = ipc_endpoint("py-pub-in");
    let relayed = ipc_endpoint("sub2pub-out");
    let rep_server = ipc_endpoint("py-rep-behind-sub2req");
    let _sub2pub = proxy("sub2pub", &published, &relayed);
    let _sub2req = proxy("sub2req", &published, &rep_server);
    let subscriber = Peer::start(&python, &["subscribe", &relayed]);
    assert_eq!(subscriber.line(), "ready");
    let server = Peer::start(&python, &["serve", &rep_server]);
    assert_eq!(server.line(), "ready");
    let _publisher = Peer::start(&python, &["publish", &published, "60"]);
    assert!(saw(&subscriber, "served led True 59", secs(20)), "sub2pub");
    assert!(saw(&server, "served led True 59", secs(20)), "sub2req");

    // rep2pub and buffered: a Python caller, acknowledged in its own dialect.
    for kind in ["rep2pub", "buffered"] {
        let input = ipc_endpoint(&format!("{kind}-in"));
        let output = ipc_endpoint(&format!("{kind}-out"));
        let (_proxy, server) = if kind == "rep2pub" {
            let proxy = proxy(kind, &input, &output);
            (proxy, Peer::start(&python, &["subscribe", &output]))
        } else {
            let server = Peer::start(&python, &["serve", &output]);
            (proxy(kind, &input, &output), server)
        };
        assert_eq!(server.line(), "ready");
        let mut acknowledged = false;
        // A subscriber attaches a moment after it says ready: call until it hears one.
        for _ in 0..20 {
            let caller = Peer::start(&python, &["call", &input, "-", "-", "1"]);
            let answer: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
            assert_eq!(answer["status_code"], 200, "{kind}: {answer}");
            assert_eq!(answer["status_message"], ACCEPTED_MESSAGE, "{kind}");
            acknowledged = true;
            if saw(
                &server,
                "served led True 7",
                std::time::Duration::from_millis(500),
            ) {
                break;
            }
            acknowledged = false;
        }
        assert!(acknowledged, "{kind}: acknowledged, then served");
    }
}

#[test]
fn a_buffered_proxy_killed_and_restarted_delivers_every_acknowledged_python_command() {
    let Some(python) = python() else { return };
    let input = ipc_endpoint("py-buffered-in");
    let downstream = ipc_endpoint("py-buffered-down");
    let spool = std::env::temp_dir().join(format!("zmqrpc-py-spool-{}", std::process::id()));
    let _ = std::fs::remove_file(&spool);
    let users = users_file("buffered-users", "sensor:s3nsor");
    let credentials = users_file("buffered-credentials", "site:s3rver");
    let args = [
        "--kind",
        "buffered",
        "--in",
        &input,
        "--out",
        &downstream,
        "--timeout",
        "500",
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--credentials",
        credentials.to_str().unwrap(),
    ];
    const N: usize = 20;
    {
        // The server is down: every command is acknowledged (on disk), none delivered.
        let proxy = Peer::binary(env!("CARGO_BIN_EXE_zmqrpc-proxy"), &args);
        assert!(proxy.line().starts_with("ready"));
        let caller = Peer::start(
            &python,
            &["calls", &input, "sensor", "s3nsor", &N.to_string()],
        );
        for _ in 0..N {
            assert_eq!(caller.line(), "200");
        }
        // A wrong password gets nothing in, so nothing of it is acknowledged or spooled.
        let mut refused = Process::new(&python);
        refused
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/peer.py"))
            .args(["call", &input, "sensor", "wrong", "1"])
            .env("PEER_TIMEOUT_MS", "1500");
        assert_eq!(Peer::spawn(refused).line(), r#"{"timeout": true}"#);
        let killed = Process::new("kill")
            .args(["-KILL", &proxy.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }
    let server = Peer::start(&python, &["serve", &downstream, "site", "s3rver"]);
    assert_eq!(server.line(), "ready");
    let _proxy = Peer::binary(env!("CARGO_BIN_EXE_zmqrpc-proxy"), &args);
    // At-least-once, in order: each command is served, a late answer may repeat one.
    let mut served = Vec::new();
    let deadline = std::time::Instant::now() + secs(30);
    while served.last() != Some(&(N - 1)) && std::time::Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(secs(1)) {
            if let Some(level) = line.strip_prefix("served led True ") {
                served.push(level.parse::<usize>().unwrap());
            }
        }
    }
    served.dedup();
    assert_eq!(served, (0..N).collect::<Vec<_>>());
    for file in [spool, users, credentials] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn a_python_caller_through_a_buffered_proxy_gets_none_with_a_status_that_says_accepted() {
    let Some(python) = python() else { return };
    let input = ipc_endpoint("py-accepted-in");
    let downstream = ipc_endpoint("py-accepted-down");
    let server = Peer::start(&python, &["serve", &downstream]);
    assert_eq!(server.line(), "ready");
    let args = ["--kind", "buffered", "--in", &input, "--out", &downstream];
    let proxy = Peer::binary(env!("CARGO_BIN_EXE_zmqrpc-proxy"), &args);
    assert!(proxy.line().starts_with("ready"));

    // pyzmqrpc3's own client has nothing but `None` for a 200 without a response (as from
    // pyzmqrpc3's own buffered proxy); the status message, on the wire, says why.
    let caller = Peer::start(&python, &["execute", &input, "-", "-"]);
    assert_eq!(caller.line(), "(None,)");
    let raw = Peer::start(&python, &["call", &input, "-", "-", "1"]);
    let answer: serde_json::Value = serde_json::from_str(&raw.line()).unwrap();
    assert_eq!(answer["status_code"], 200);
    assert_eq!(answer["status_message"], ACCEPTED_MESSAGE);
    assert!(answer.get("response_message").is_none(), "{answer}");
    // And the commands ran, later, downstream.
    let mut served = Vec::new();
    let deadline = std::time::Instant::now() + secs(20);
    while served.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(line) = server.lines.recv_timeout(secs(1)) {
            served.extend(line.strip_prefix("served ").map(str::to_owned));
        }
    }
    assert_eq!(served, ["led True 3", "led True 7"]);
}

/// The peer's `SetLed` under its own class name: no class map needed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct SetLed {
    on: bool,
    level: u8,
}
impl Command for SetLed {
    const NAME: &'static str = "SetLed";
    type Response = String;
}

#[test]
fn a_default_server_and_proxy_take_python_callers_as_they_come() {
    let Some(python) = python() else { return };
    let server = RpcServer::builder()
        .register(|led: SetLed| Ok::<_, ServiceError>(format!("led {} {}", led.on, led.level)))
        .unwrap()
        .rep(ipc_endpoint("default-server"))
        .bind()
        .unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let proxy = zmqrpc::transport::Proxy::builder(zmqrpc::transport::ProxyKind::Rep2Req)
        .input(ipc_endpoint("default-proxy"))
        .output(&server_endpoint)
        .bind()
        .unwrap();
    let proxy_endpoint = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    for endpoint in [&server_endpoint, &proxy_endpoint] {
        let caller = Peer::start(&python, &["call", endpoint, "-", "-", "1"]);
        let answer: serde_json::Value = serde_json::from_str(&caller.line()).unwrap();
        assert_eq!(answer["status_code"], 200, "{answer}");
        assert_eq!(answer["response_message"], "led true 7");
    }
    // Native callers, as ever.
    let mut native = client(&proxy_endpoint);
    assert_eq!(
        native
            .call(&SetLed {
                on: false,
                level: 1
            })
            .unwrap(),
        "led false 1"
    );
}
