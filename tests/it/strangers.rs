//! What a stranger on the network gets from every bound socket of the library and the
//! binaries: a raw TCP peer that sends a ZMTP 3.0 greeting claiming the PLAIN server's part
//! (as an attacker would, to make a PLAIN *client* send its HELLO) receives no username and
//! no password, whatever credentials the process holds. And a protected publisher delivers
//! nothing to a subscriber that does not present the right credentials.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::process::{bin, ready_field, Process, TempPath, PROXY, SERVER};
use crate::common::*;
use zmqrpc::transport::{
    BufferedProxy, ConfigError, Credentials, Proxy, ProxyKind, RpcClient, RpcServer,
    TransportError, Users,
};

const USER: &str = "fleet-operator";
const PASSWORD: &str = "pa55-never-on-the-wire";

/// A ZMTP 3.0 greeting for mechanism PLAIN with the as-server flag set.
fn plain_server_greeting() -> [u8; 64] {
    let mut greeting = [0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3; // version 3.0
    greeting[12..17].copy_from_slice(b"PLAIN");
    greeting[32] = 1; // as-server
    greeting
}

/// Everything the socket bound at `endpoint` (`tcp://host:port`) sends a stranger that
/// connects and greets as a PLAIN server, until it closes or `within` passes. The greeting
/// goes as a ZMTP peer sends it: the signature, then (once the other side's signature came)
/// the rest, so a socket that drops the stranger at once has sent its signature first.
fn what_a_stranger_receives(endpoint: &str, within: Duration) -> Vec<u8> {
    let address = endpoint.strip_prefix("tcp://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    let greeting = plain_server_greeting();
    stream.write_all(&greeting[..10]).unwrap();
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut greeted = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if !greeted && received.len() >= 10 {
            greeted = true;
            if stream.write_all(&greeting[10..]).is_err() {
                break;
            }
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(_) => break,
        }
    }
    received
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that a stranger at `endpoint` learns no secret and gets no HELLO.
fn assert_no_secret(what: &str, endpoint: &str) {
    let received = what_a_stranger_receives(endpoint, Duration::from_millis(300) * slack());
    // The peer's own greeting came back: the test spoke to a live ZMTP socket.
    assert!(
        received.first() == Some(&0xff),
        "{what} at {endpoint}: no greeting ({received:?})"
    );
    for secret in [PASSWORD, USER, "HELLO"] {
        assert!(
            !contains(&received, secret.as_bytes()),
            "{what} at {endpoint} sent {secret:?} to a stranger: {:?}",
            String::from_utf8_lossy(&received)
        );
    }
}

fn credentials() -> Credentials {
    Credentials::new(USER, PASSWORD)
}

fn users() -> Users {
    Users::new().with(USER, PASSWORD)
}

const ANY_PORT: &str = "tcp://127.0.0.1:*";

#[test]
fn the_probe_sees_the_leak_a_bound_plain_client_would_have() {
    // The probe is honest: a bound socket made a PLAIN client (what zmqrpc never does any
    // more) sends the stranger its HELLO with the password.
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::PUB).unwrap();
    socket.set_plain_username(Some(USER)).unwrap();
    socket.set_plain_password(Some(PASSWORD)).unwrap();
    socket.bind(ANY_PORT).unwrap();
    let endpoint = socket.get_last_endpoint().unwrap().unwrap();
    let received = what_a_stranger_receives(&endpoint, Duration::from_millis(300) * slack());
    assert!(contains(&received, PASSWORD.as_bytes()), "{received:?}");
}

#[test]
fn no_bound_socket_of_the_library_gives_a_stranger_a_secret() {
    // A server and a worker pool, protected.
    let server = standard_server()
        .users(users())
        .rep(ANY_PORT)
        .bind()
        .unwrap();
    assert_no_secret("server REP", &server.rep_endpoints()[0]);
    let pool = RpcServer::builder()
        .register_clone(|Add(a, b): Add| Ok::<_, zmqrpc::transport::ServiceError>(a + b))
        .unwrap()
        .users(users())
        .workers(2)
        .rep(ANY_PORT)
        .bind()
        .unwrap();
    assert_no_secret("pool ROUTER", &pool.rep_endpoints()[0]);

    // A client's publisher: protected, and open beside REQ credentials (which go to the
    // REQ socket only).
    let protected = RpcClient::builder()
        .publish_on(ANY_PORT)
        .users(users())
        .connect()
        .unwrap();
    let endpoint = protected.publish_endpoints()[0].clone();
    assert_no_secret("client PUB with users", &endpoint);
    let calling = RpcClient::builder()
        .req(dead_endpoint())
        .publish_on(ANY_PORT)
        .credentials(credentials())
        .connect()
        .unwrap();
    let endpoint = calling.publish_endpoints()[0].clone();
    assert_no_secret("client PUB beside REQ credentials", &endpoint);

    // Every proxy kind's bound sides, with credentials for its connecting sides.
    let rep2pub = Proxy::builder(ProxyKind::Rep2Pub)
        .input(ANY_PORT)
        .output(ANY_PORT)
        .input_users(users())
        .output_users(users())
        .bind()
        .unwrap();
    assert_no_secret("rep2pub input", &rep2pub.input_endpoints()[0]);
    assert_no_secret("rep2pub output", &rep2pub.output_endpoints()[0]);
    let sub2pub = Proxy::builder(ProxyKind::Sub2Pub)
        .input(dead_endpoint())
        .output(ANY_PORT)
        .input_credentials(credentials())
        .bind()
        .unwrap();
    assert_no_secret("sub2pub output", &sub2pub.output_endpoints()[0]);
    let rep2req = Proxy::builder(ProxyKind::Rep2Req)
        .input(ANY_PORT)
        .output(dead_endpoint())
        .output_credentials(credentials())
        .bind()
        .unwrap();
    assert_no_secret("rep2req input", &rep2req.input_endpoints()[0]);
    let buffered = BufferedProxy::builder()
        .input(ANY_PORT)
        .output(dead_endpoint())
        .input_users(users())
        .output_credentials(credentials())
        .bind()
        .unwrap();
    assert_no_secret("buffered input", &buffered.input_endpoints()[0]);
    #[cfg(feature = "serial")]
    {
        let bridge = zmqrpc::transport::bridge::SerialBridge::builder("/nonexistent/tty")
            .input(ANY_PORT)
            .output(ANY_PORT)
            .input_users(users())
            .output_users(users())
            .bind()
            .unwrap();
        assert_no_secret("bridge input", &bridge.input_endpoints()[0]);
        assert_no_secret("bridge output", &bridge.output_endpoints()[0]);
    }
}

fn is_config(error: &TransportError, expected: ConfigError) -> bool {
    matches!(error, TransportError::Config(e) if *e == expected)
}

#[test]
fn credentials_for_a_socket_that_only_binds_are_refused_before_anything_binds() {
    let publisher_only = RpcClient::builder()
        .publish_on(ANY_PORT)
        .credentials(credentials())
        .connect();
    let error = publisher_only.err().unwrap();
    assert!(
        is_config(
            &error,
            ConfigError::CredentialsWithoutConnect { what: "client" }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("never presents credentials"),
        "{error}"
    );
    assert!(!error.to_string().contains(PASSWORD));

    let server = standard_server()
        .rep(ANY_PORT)
        .credentials(credentials())
        .bind();
    assert!(is_config(
        &server.err().unwrap(),
        ConfigError::CredentialsWithoutConnect { what: "server" }
    ));
    for (kind, output) in [
        (ProxyKind::Rep2Pub, ANY_PORT.to_owned()),
        (ProxyKind::Sub2Pub, ANY_PORT.to_owned()),
    ] {
        let proxy = Proxy::builder(kind)
            .input(dead_endpoint())
            .output(output)
            .output_credentials(credentials())
            .bind();
        assert!(
            is_config(
                &proxy.err().unwrap(),
                ConfigError::CredentialsWithoutConnect {
                    what: "proxy output"
                }
            ),
            "{kind}"
        );
    }
    let rep_input = Proxy::builder(ProxyKind::Rep2Req)
        .input(ANY_PORT)
        .output(dead_endpoint())
        .input_credentials(credentials())
        .bind();
    assert!(is_config(
        &rep_input.err().unwrap(),
        ConfigError::CredentialsWithoutConnect {
            what: "proxy input"
        }
    ));
}

#[test]
fn users_for_a_socket_that_only_connects_are_refused() {
    let subscriber_only = RpcServer::builder()
        .subscribe(dead_endpoint())
        .users(users())
        .bind();
    assert!(is_config(
        &subscriber_only.err().unwrap(),
        ConfigError::UsersWithoutBind { what: "server" }
    ));
    let caller_only = RpcClient::builder()
        .req(dead_endpoint())
        .users(users())
        .connect();
    assert!(is_config(
        &caller_only.err().unwrap(),
        ConfigError::UsersWithoutBind { what: "client" }
    ));
    let sub2req = Proxy::builder(ProxyKind::Sub2Req)
        .input(dead_endpoint())
        .output(dead_endpoint())
        .output_users(users())
        .bind();
    assert!(is_config(
        &sub2req.err().unwrap(),
        ConfigError::UsersWithoutBind {
            what: "proxy output"
        }
    ));
}

/// A raw SUB socket on `endpoint`, presenting `credentials` if given.
fn raw_subscriber(
    ctx: &zmq::Context,
    endpoint: &str,
    credentials: Option<(&str, &str)>,
) -> zmq::Socket {
    let socket = ctx.socket(zmq::SUB).unwrap();
    socket.set_linger(0).unwrap();
    if let Some((user, password)) = credentials {
        socket.set_plain_username(Some(user)).unwrap();
        socket.set_plain_password(Some(password)).unwrap();
    }
    socket.set_subscribe(b"").unwrap();
    socket.set_rcvtimeo(50).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

#[test]
fn a_protected_publisher_delivers_nothing_to_a_subscriber_without_the_right_credentials() {
    let mut client = RpcClient::builder()
        .publish_on(ANY_PORT)
        .users(users())
        .connect()
        .unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    let stats = client.publisher_stats().unwrap();
    let ctx = zmq::Context::new();
    let strangers = [
        raw_subscriber(&ctx, &endpoint, None),
        raw_subscriber(&ctx, &endpoint, Some((USER, "wrong"))),
        raw_subscriber(&ctx, &endpoint, Some(("nobody", PASSWORD))),
    ];
    // Every stranger is refused, and none counts as a subscriber.
    assert!(
        eventually(secs(5), || {
            client.sender().publisher().unwrap().flush().unwrap();
            stats.snapshot().refused >= 3
        }),
        "{:?}",
        stats.snapshot()
    );
    assert!(!client.sender().publisher().unwrap().has_subscriber());
    let auth = client
        .sender()
        .publisher()
        .unwrap()
        .auth_stats()
        .unwrap()
        .snapshot();
    assert_eq!(auth.allowed, 0);
    assert!(auth.denied >= 2, "{auth:?}");
    // The right credentials attach, and only that subscriber hears the notifications.
    let member = raw_subscriber(&ctx, &endpoint, Some((USER, PASSWORD)));
    assert!(attached(&mut client));
    let mut heard = 0;
    let deadline = Instant::now() + secs(5);
    while heard < 5 && Instant::now() < deadline {
        client
            .notify(&Sample {
                seq: heard,
                value: 0.0,
            })
            .unwrap();
        if member.recv_bytes(0).is_ok() {
            heard += 1;
        }
    }
    assert_eq!(heard, 5);
    for stranger in &strangers {
        assert!(stranger.recv_bytes(zmq::DONTWAIT).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// The binaries, with credentials in their environment as the shipped units may have.

fn with_credentials_in_env(program: &str, args: &[&str]) -> (Process, String) {
    let mut command = bin(program, args);
    command
        .env("ZMQRPC_USER", USER)
        .env("ZMQRPC_PASSWORD", PASSWORD);
    Process::spawn(command)
}

#[test]
fn no_bound_socket_of_the_binaries_gives_a_stranger_a_secret() {
    let users = TempPath::with("strangers-users", &format!("{USER}:{PASSWORD}\n"));
    let (_server, ready) =
        with_credentials_in_env(SERVER, &["--bind", ANY_PORT, "--users", users.as_str()]);
    assert_no_secret("zmqrpc-server", &ready_field(&ready, "bind")[0]);
    let (_open, ready) = with_credentials_in_env(SERVER, &["--bind", ANY_PORT]);
    assert_no_secret(
        "zmqrpc-server without users",
        &ready_field(&ready, "bind")[0],
    );

    let dead = dead_endpoint();
    for (kind, input, output) in [
        ("rep2pub", ANY_PORT, ANY_PORT),
        ("rep2req", ANY_PORT, dead.as_str()),
        ("buffered", ANY_PORT, dead.as_str()),
        ("sub2pub", dead.as_str(), ANY_PORT),
    ] {
        for protected in [true, false] {
            let mut args = vec!["--kind", kind, "--in", input, "--out", output];
            if protected {
                args.extend(["--users", users.as_str()]);
            }
            let (_proxy, ready) = with_credentials_in_env(PROXY, &args);
            for side in ["in", "out"] {
                for endpoint in ready_field(&ready, side) {
                    if endpoint.starts_with("tcp://") {
                        assert_no_secret(&format!("{kind} {side} ({protected})"), &endpoint);
                    }
                }
            }
        }
    }
    #[cfg(feature = "serial")]
    {
        let (_bridge, ready) = with_credentials_in_env(
            PROXY,
            &[
                "--kind",
                "rep2serial",
                "--device",
                "/nonexistent/tty",
                "--in",
                ANY_PORT,
                "--out",
                ANY_PORT,
            ],
        );
        assert_no_secret("bridge in", &ready_field(&ready, "in")[0]);
        assert_no_secret("bridge out", &ready_field(&ready, "out")[0]);
    }
}

#[test]
fn the_binaries_refuse_credentials_no_socket_would_present() {
    let file = TempPath::with("strangers-credentials", &format!("{USER}:{PASSWORD}\n"));
    let users = TempPath::with("strangers-users-2", &format!("{USER}:{PASSWORD}\n"));
    for args in [
        vec![
            "--kind",
            "rep2pub",
            "--in",
            ANY_PORT,
            "--out",
            ANY_PORT,
            "--credentials",
            file.as_str(),
        ],
        vec![
            "--kind",
            "sub2req",
            "--in",
            "tcp://127.0.0.1:1",
            "--out",
            "tcp://127.0.0.1:1",
            "--users",
            users.as_str(),
        ],
    ] {
        let out = bin(PROXY, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[args.len() - 2]), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
    let out = bin(
        SERVER,
        &["--bind", ANY_PORT, "--credentials", file.as_str()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--credentials: no socket here connects"),
        "{stderr}"
    );
}
