//! CURVE (RFC 26) on the link kinds: encrypted and authenticated both ways, the client
//! pinning the server's key, the server holding an allow-list of client keys mapped to user
//! ids; a wrong server key, an unknown client key and a PLAIN peer fail fast and typed.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{
    CallError, Caller, Credentials, HandshakeFailure, KeyPair, Proxy, ProxyKind, RpcClient,
    RpcServer, ServiceError, Users, WithCaller,
};
use zmqrpc::Command;

#[derive(serde::Serialize, serde::Deserialize)]
struct WhoAmI;
impl Command for WhoAmI {
    const NAME: &'static str = "test.whoami";
    type Response = Option<String>;
}

struct Keys {
    server: KeyPair,
    sensor: KeyPair,
    stranger: KeyPair,
}

fn keys() -> Keys {
    Keys {
        server: KeyPair::generate().unwrap(),
        sensor: KeyPair::generate().unwrap(),
        stranger: KeyPair::generate().unwrap(),
    }
}

fn allow_list(keys: &Keys) -> Users {
    Users::curve(keys.server.clone()).with_key("sensor-1", keys.sensor.public)
}

fn curve_server(
    keys: &Keys,
) -> (
    String,
    zmqrpc::transport::Running<zmqrpc::transport::ServerStats>,
) {
    let server = standard_server()
        .register(WithCaller(|_: WhoAmI, caller: &Caller| {
            Ok::<_, ServiceError>(caller.user_id.map(str::to_owned))
        }))
        .unwrap()
        .users(allow_list(keys))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    (endpoint, server.spawn().unwrap())
}

fn client_with(endpoint: &str, credentials: Option<Credentials>) -> RpcClient {
    let mut builder = RpcClient::builder().req(endpoint).timeout(secs(10));
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.connect().unwrap()
}

#[test]
fn the_linked_libzmq_has_curve() {
    assert!(zmq::has("curve").unwrap());
    assert_eq!(zmq::version(), (4, 3, 5));
}

#[test]
fn a_curve_call_round_trips_and_the_service_sees_the_key_s_user_id() {
    let keys = keys();
    let (endpoint, _running) = curve_server(&keys);
    let mut client = client_with(
        &endpoint,
        Some(Credentials::curve(keys.sensor.clone(), keys.server.public)),
    );
    assert_eq!(client.call(&Add(2, 40)).unwrap(), 42);
    assert_eq!(client.call(&WhoAmI).unwrap().as_deref(), Some("sensor-1"));
}

/// A call that must fail with `AuthFailed` well before its 10 s timeout.
fn assert_fails_fast(mut client: RpcClient, what: &str) -> HandshakeFailure {
    let started = Instant::now();
    let reason = match client.call(&Add(1, 1)) {
        Err(CallError::AuthFailed { reason, .. }) => reason,
        other => panic!("{what}: {other:?}"),
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2) * slack(), "{what}: {took:?}");
    reason
}

#[test]
fn a_wrong_server_key_an_unknown_client_key_or_a_plain_peer_fail_fast_and_typed() {
    let keys = keys();
    let (endpoint, running) = curve_server(&keys);
    // The client pins another server's key: the server cannot read its hello.
    let impostor = KeyPair::generate().unwrap();
    assert_fails_fast(
        client_with(
            &endpoint,
            Some(Credentials::curve(keys.sensor.clone(), impostor.public)),
        ),
        "wrong server key",
    );
    // A key the allow-list does not hold: refused by the ZAP handler.
    let reason = assert_fails_fast(
        client_with(
            &endpoint,
            Some(Credentials::curve(
                keys.stranger.clone(),
                keys.server.public,
            )),
        ),
        "unknown client key",
    );
    assert_eq!(reason, HandshakeFailure::Refused);
    // PLAIN, or nothing, against CURVE: the mechanisms disagree.
    assert_fails_fast(
        client_with(&endpoint, Some(Credentials::new("sensor-1", "pw"))),
        "PLAIN peer",
    );
    assert_fails_fast(client_with(&endpoint, None), "no credentials");
    assert_eq!(running.stats().snapshot().receiver.received, 0);
}

#[test]
fn users_cannot_mix_passwords_and_curve_keys() {
    let keys = keys();
    let mixed = standard_server()
        .users(allow_list(&keys).with("ops", "pw"))
        .rep("tcp://127.0.0.1:*")
        .bind();
    assert!(mixed.is_err());
    let keys_without_server = standard_server()
        .users(Users::new().with_key("sensor-1", keys.sensor.public))
        .rep("tcp://127.0.0.1:*")
        .bind();
    assert!(keys_without_server.is_err());
}

#[test]
fn curve_pub_sub_and_a_pool_deliver_only_to_allowed_subscribers() {
    let keys = keys();
    let mut publisher = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .users(allow_list(&keys))
        .connect()
        .unwrap();
    let endpoint = publisher.publish_endpoints()[0].clone();
    let stats = publisher.publisher_stats().unwrap();
    let samples = Samples::default();
    // A stranger's pool subscribes with a key the publisher does not know.
    let _stranger = RpcServer::builder()
        .register_clone(|_: Sample| Ok::<_, ServiceError>(()))
        .unwrap()
        .workers(2)
        .subscribe(&endpoint)
        .credentials(Credentials::curve(
            keys.stranger.clone(),
            keys.server.public,
        ))
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(eventually(secs(5), || {
        publisher.sender().publisher().unwrap().flush().unwrap();
        stats.snapshot().refused > 0
    }));
    assert!(!publisher.sender().publisher().unwrap().has_subscriber());
    let _member = RpcServer::builder()
        .register(samples.service())
        .unwrap()
        .subscribe(&endpoint)
        .credentials(Credentials::curve(keys.sensor.clone(), keys.server.public))
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(attached(&mut publisher));
    for seq in 0..3 {
        publisher.notify(&Sample { seq, value: 1.0 }).unwrap();
    }
    assert_eq!(samples.wait_for(3, secs(5)), [0, 1, 2]);
}

#[test]
fn a_proxy_carries_curve_on_both_sides_with_keys_of_its_own() {
    let downstream = keys();
    let (server, _running) = curve_server(&downstream);
    // The proxy is the server's client "sensor-1", and a CURVE server of its own upstream.
    let proxy_keys = KeyPair::generate().unwrap();
    let caller = KeyPair::generate().unwrap();
    let proxy = Proxy::builder(ProxyKind::Rep2Req)
        .input("tcp://127.0.0.1:*")
        .output(&server)
        .input_users(Users::curve(proxy_keys.clone()).with_key("caller", caller.public))
        .output_credentials(Credentials::curve(
            downstream.sensor.clone(),
            downstream.server.public,
        ))
        .bind()
        .unwrap();
    let input = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let mut client = client_with(&input, Some(Credentials::curve(caller, proxy_keys.public)));
    assert_eq!(client.call(&Add(20, 22)).unwrap(), 42);
    // The server sees the proxy's identity, the key it presented.
    assert_eq!(client.call(&WhoAmI).unwrap().as_deref(), Some("sensor-1"));
}

#[test]
fn every_link_kind_carries_curve() {
    let keys = keys();
    let sensor = || Credentials::curve(keys.sensor.clone(), keys.server.public);

    // A worker pool behind CURVE, and a pipeline calling it with many calls in flight.
    let pool = RpcServer::builder()
        .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .register_clone(|_: Sample| Ok::<_, ServiceError>(()))
        .unwrap()
        .workers(2)
        .users(allow_list(&keys))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let pool_endpoint = pool.rep_endpoints()[0].clone();
    let _pool = pool.spawn().unwrap();
    let mut pipeline = zmqrpc::transport::Pipeline::builder()
        .req(&pool_endpoint)
        .credentials(sensor())
        .window(16)
        .timeout(secs(5))
        .connect::<Add>()
        .unwrap();
    for i in 0..16 {
        pipeline.send(&Add(i, 100)).unwrap();
    }
    let mut sum = 0;
    for _ in 0..16 {
        let (_, answer) = pipeline.recv(secs(5)).unwrap().expect("an answer in time");
        sum += answer.unwrap();
    }
    assert_eq!(sum, (0..16).sum::<i64>() + 1600);

    // A buffered proxy: CURVE from its callers, CURVE to the pool.
    let buffered = zmqrpc::transport::BufferedProxy::builder()
        .input("tcp://127.0.0.1:*")
        .output(&pool_endpoint)
        .input_users(allow_list(&keys))
        .output_credentials(sensor())
        .bind()
        .unwrap();
    let buffered_input = buffered.input_endpoints()[0].clone();
    let buffered_stats = buffered.stats();
    let _buffered = buffered.spawn().unwrap();
    let mut caller = client_with(&buffered_input, Some(sensor()));
    caller.call(&Sample { seq: 1, value: 0.0 }).unwrap();
    assert!(eventually(secs(5), || buffered_stats.snapshot().forwarded == 1));

    // rep2pub -> sub2pub -> sub2req -> the pool, every hop CURVE, the same keys for brevity.
    let rep2pub = Proxy::builder(ProxyKind::Rep2Pub)
        .input("tcp://127.0.0.1:*")
        .output("tcp://127.0.0.1:*")
        .input_users(allow_list(&keys))
        .output_users(allow_list(&keys))
        .bind()
        .unwrap();
    let (rep2pub_in, rep2pub_out) = (
        rep2pub.input_endpoints()[0].clone(),
        rep2pub.output_endpoints()[0].clone(),
    );
    let _rep2pub = rep2pub.spawn().unwrap();
    let sub2pub = Proxy::builder(ProxyKind::Sub2Pub)
        .input(&rep2pub_out)
        .output("tcp://127.0.0.1:*")
        .input_credentials(sensor())
        .output_users(allow_list(&keys))
        .bind()
        .unwrap();
    let sub2pub_out = sub2pub.output_endpoints()[0].clone();
    let _sub2pub = sub2pub.spawn().unwrap();
    let samples = Samples::default();
    let collector = RpcServer::builder()
        .register(samples.service())
        .unwrap()
        .users(allow_list(&keys))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let collector_endpoint = collector.rep_endpoints()[0].clone();
    let _collector = collector.spawn().unwrap();
    let sub2req = Proxy::builder(ProxyKind::Sub2Req)
        .input(&sub2pub_out)
        .output(&collector_endpoint)
        .input_credentials(sensor())
        .output_credentials(sensor())
        .bind()
        .unwrap();
    let _sub2req = sub2req.spawn().unwrap();
    let mut sender = client_with(&rep2pub_in, Some(sensor()));
    // Published until the whole chain is attached (a publication before that waits in
    // rep2pub's queue, or is the sub2pub's to hold).
    // rep2pub answers `Busy` once it holds all it may for a chain not yet attached.
    let mut seq = 0;
    assert!(eventually(secs(10), || {
        match sender.call(&Sample { seq, value: 0.0 }) {
            Ok(()) => {}
            Err(CallError::Remote { error, .. }) if error.code == zmqrpc::ErrorCode::Busy => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
        seq += 1;
        !samples.seqs().is_empty()
    }));

    // The serial bridge's network side: its REP input (a missing device answers
    // `Unavailable`, over CURVE) and its PUB output.
    #[cfg(feature = "serial")]
    {
        let bridge = zmqrpc::transport::bridge::SerialBridge::builder("/nonexistent/tty")
            .input("tcp://127.0.0.1:*")
            .output("tcp://127.0.0.1:*")
            .input_users(allow_list(&keys))
            .output_users(allow_list(&keys))
            .bind()
            .unwrap();
        let (bridge_in, bridge_out) = (
            bridge.input_endpoints()[0].clone(),
            bridge.output_endpoints()[0].clone(),
        );
        let _bridge = bridge.spawn().unwrap();
        match client_with(&bridge_in, Some(sensor())).call(&Add(1, 1)) {
            Err(CallError::Remote { error, .. }) => {
                assert_eq!(error.code, zmqrpc::ErrorCode::Unavailable)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            subscribe_over_curve(&bridge_out, &keys.sensor, &keys),
            Some(true)
        );
        assert_eq!(
            subscribe_over_curve(&bridge_out, &keys.stranger, &keys),
            Some(false)
        );
    }
}

/// Whether a raw SUB socket with `client`'s keys, pinning the server's key, completes its
/// CURVE handshake with the publisher at `endpoint` (`None`: no verdict in time).
fn subscribe_over_curve(endpoint: &str, client: &KeyPair, keys: &Keys) -> Option<bool> {
    let ctx = zmq::Context::new();
    let subscriber = ctx.socket(zmq::SUB).unwrap();
    subscriber.set_linger(0).unwrap();
    subscriber
        .set_curve_serverkey(keys.server.public.as_bytes())
        .unwrap();
    subscriber
        .set_curve_publickey(client.public.as_bytes())
        .unwrap();
    subscriber
        .set_curve_secretkey(client.secret.as_bytes())
        .unwrap();
    subscriber.set_subscribe(b"").unwrap();
    subscriber
        .monitor("inproc://curve-monitor", zmq::SocketEvent::ALL as i32)
        .unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.connect("inproc://curve-monitor").unwrap();
    monitor.set_rcvtimeo(100).unwrap();
    subscriber.connect(endpoint).unwrap();
    let deadline = Instant::now() + secs(5);
    while Instant::now() < deadline {
        let Ok(event) = monitor.recv_multipart(0) else {
            continue;
        };
        let code = u16::from_le_bytes([event[0][0], event[0][1]]);
        if code == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
            return Some(true);
        }
        if code == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as u16 {
            return Some(false);
        }
    }
    None
}

/// A TCP relay from a fresh port to `target`, keeping every byte that crosses it.
fn tapped(target: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let target = target.strip_prefix("tcp://").unwrap().to_owned();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tap = seen.clone();
    std::thread::spawn(move || {
        let Ok((inbound, _)) = listener.accept() else {
            return;
        };
        let Ok(outbound) = TcpStream::connect(target) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream, tap: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Kept before it is passed on: once an answer is back, every byte that
                // led to it is in the tap.
                while let Ok(n) = from.read(&mut buf) {
                    tap.lock().unwrap().extend_from_slice(&buf[..n]);
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            });
        };
        pipe(
            inbound.try_clone().unwrap(),
            outbound.try_clone().unwrap(),
            tap.clone(),
        );
        pipe(outbound, inbound, tap);
    });
    (endpoint, seen)
}

#[test]
fn on_the_wire_curve_hides_what_plain_shows() {
    let secret_text = "the-launch-code-is-0000";
    let keys = keys();
    let (curve_endpoint, _curve) = curve_server(&keys);
    let (tap, seen) = tapped(&curve_endpoint);
    let mut client = client_with(
        &tap,
        Some(Credentials::curve(keys.sensor.clone(), keys.server.public)),
    );
    assert_eq!(client.call(&Echo(secret_text.into())).unwrap(), secret_text);
    let wire = seen.lock().unwrap().clone();
    assert!(!wire
        .windows(secret_text.len())
        .any(|w| w == secret_text.as_bytes()));

    // The same over PLAIN: the tap reads the text and the password.
    let plain = standard_server()
        .users(Users::new().with("ops", "plain-password"))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let plain_endpoint = plain.rep_endpoints()[0].clone();
    let _plain = plain.spawn().unwrap();
    let (tap, seen) = tapped(&plain_endpoint);
    let mut client = client_with(&tap, Some(Credentials::new("ops", "plain-password")));
    assert_eq!(client.call(&Echo(secret_text.into())).unwrap(), secret_text);
    let wire = seen.lock().unwrap().clone();
    for visible in [secret_text, "plain-password"] {
        assert!(wire.windows(visible.len()).any(|w| w == visible.as_bytes()));
    }
}

// ---------------------------------------------------------------------------------------
// The binaries: keygen, a CURVE agent, a call, a proxy between them.

use crate::common::process::{bin, ready_field, Process, TempPath, PROXY, SERVER};

/// `zmqrpc-server keygen` into `dir/name`: the public key it printed, and the two files.
fn keygen(dir: &std::path::Path, name: &str) -> (String, std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let base = dir.join(name);
    let out = bin(SERVER, &["keygen", base.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (secret_file, public_file) = (base.with_extension("key"), base.with_extension("pub"));
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key pair file is private");
    assert_eq!(
        zmqrpc::transport::PublicKey::from_file(&public_file)
            .unwrap()
            .to_z85(),
        public
    );
    (public, secret_file, public_file)
}

#[test]
fn the_binaries_speak_curve_with_keys_from_keygen() {
    let dir = TempPath::new("curve-keys");
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (_, agent_key, agent_pub) = keygen(&dir.0, "agent");
    let (ops_public, ops_key, _) = keygen(&dir.0, "ops");
    let (proxy_public, proxy_key, proxy_pub) = keygen(&dir.0, "proxy");
    // Keygen never overwrites a key.
    let again = bin(SERVER, &["keygen", dir.0.join("agent").to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(again.status.code(), Some(0));
    let clients = dir.0.join("clients");
    std::fs::write(
        &clients,
        format!("ops:{ops_public}\nproxy:{proxy_public}\n"),
    )
    .unwrap();
    let proxy_clients = dir.0.join("proxy-clients");
    std::fs::write(&proxy_clients, format!("ops:{ops_public}\n")).unwrap();

    let (_agent, ready) = Process::start(
        SERVER,
        &[
            "--bind",
            "tcp://127.0.0.1:*",
            "--curve-key",
            &path(&agent_key),
            "--clients",
            &path(&clients),
        ],
    );
    let agent = ready_field(&ready, "bind")[0].clone();
    let call = |endpoint: &str, key: &std::path::Path, server: &std::path::Path| {
        bin(
            SERVER,
            &[
                "call",
                "echo",
                "over-curve",
                "--connect",
                endpoint,
                "--timeout",
                "10000",
                "--curve-key",
                &path(key),
                "--server-key",
                &path(server),
            ],
        )
        .output()
        .unwrap()
    };
    let out = call(&agent, &ops_key, &agent_pub);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-curve\n");
    // The wrong server key: refused at once, not after the 10 s timeout.
    let started = Instant::now();
    let out = call(&agent, &ops_key, &proxy_pub);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(5) * slack());

    // A proxy: a CURVE server to its callers, a CURVE client ("proxy") of the agent.
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            "tcp://127.0.0.1:*",
            "--out",
            &agent,
            "--curve-key",
            &path(&proxy_key),
            "--clients",
            &path(&proxy_clients),
            "--server-key",
            &path(&agent_pub),
        ],
    );
    let input = ready_field(&ready, "in")[0].clone();
    let out = call(&input, &ops_key, &proxy_pub);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-curve\n");

    // Half a CURVE configuration is refused, saying what is missing.
    let (clients, agent_key) = (path(&clients), path(&agent_key));
    for (args, said) in [
        (
            ["--bind", "tcp://127.0.0.1:*", "--clients", &clients],
            "need --curve-key",
        ),
        (
            ["--bind", "tcp://127.0.0.1:*", "--curve-key", &agent_key],
            "--curve-key needs",
        ),
    ] {
        let out = bin(SERVER, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
    }
}

#[test]
fn a_keys_file_names_its_bad_and_repeated_lines_without_showing_them() {
    use zmqrpc::transport::UsersError;
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let dir = TempPath::new("keys-files");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("clients");
    let read = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Users::curve(keys().server).with_keys_file(&file)
    };
    let good = read(&format!(
        "# sensors\nsensor-1:{}\n\nsensor-2:{}\n",
        a.public, b.public
    ));
    let good = good.unwrap();
    assert_eq!(good.user_of_key(a.public.as_bytes()), Some("sensor-1"));
    assert_eq!(good.user_of_key(b.public.as_bytes()), Some("sensor-2"));
    assert_eq!(good.user_of_key(&[0; 32]), None);
    let typo = format!("sensor-1:{}", &b.public.to_z85()[..39]);
    let error = read(&format!("sensor-0:{}\n{typo}\n", a.public)).unwrap_err();
    assert_eq!(error, UsersError::BadKeyLine { line: 2 });
    assert!(!error.to_string().contains(&typo[9..]), "{error}");
    assert_eq!(
        read(&format!("x:{}\nx:{}\n", a.public, b.public)).unwrap_err(),
        UsersError::Duplicate {
            user: "x".into(),
            line: 2,
            first: 1
        }
    );
    assert_eq!(
        read(&format!("x:{}\ny:{}\n", a.public, a.public)).unwrap_err(),
        UsersError::Duplicate {
            user: "y".into(),
            line: 2,
            first: 1
        }
    );
}
