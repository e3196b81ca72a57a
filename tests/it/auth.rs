//! Username/password on every link, and a protected server that bad input cannot hurt.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use zmqrpc::transport::{
    CallError, Caller, Credentials, HandshakeFailure, RpcClient, RpcServer, ServerBuilder,
    ServiceError, Users, WithCaller,
};
use zmqrpc::{frame, Command, ErrorCode, Frame, Header, Kind};

#[derive(serde::Serialize, serde::Deserialize)]
struct WhoAmI;
impl Command for WhoAmI {
    const NAME: &'static str = "test.whoami";
    type Response = Option<String>;
}

fn users() -> Users {
    Users::new().with("sensor", "s3cret").with("ops", "hunter2")
}

fn protected_server() -> ServerBuilder {
    standard_server()
        .users(users())
        .register(WithCaller(|_: WhoAmI, caller: &Caller| {
            Ok::<_, ServiceError>(caller.user_id.map(str::to_owned))
        }))
        .unwrap()
}

fn client_as(endpoint: &str, credentials: Option<Credentials>) -> RpcClient {
    let mut builder = RpcClient::builder()
        .req(endpoint)
        .timeout(Duration::from_secs(10));
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.connect().unwrap()
}

#[test]
fn right_credentials_work_on_req_rep_and_the_service_sees_the_user() {
    let server = protected_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut sensor = client_as(&endpoint, Some(Credentials::new("sensor", "s3cret")));
    assert_eq!(sensor.call(&Add(2, 3)).unwrap(), 5);
    assert_eq!(sensor.call(&WhoAmI).unwrap().as_deref(), Some("sensor"));
    let mut ops = client_as(&endpoint, Some(Credentials::new("ops", "hunter2")));
    assert_eq!(ops.call(&WhoAmI).unwrap().as_deref(), Some("ops"));
    running.stop_and_wait().unwrap();
}

#[test]
fn wrong_or_missing_credentials_fail_fast_with_auth_failed() {
    let server = protected_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let cases = [
        (
            Some(Credentials::new("sensor", "wrong")),
            HandshakeFailure::Refused,
        ),
        (
            Some(Credentials::new("nobody", "s3cret")),
            HandshakeFailure::Refused,
        ),
    ];
    for (credentials, expected) in cases {
        let mut client = client_as(&endpoint, credentials);
        let started = Instant::now();
        match client.call(&Add(1, 1)) {
            Err(CallError::AuthFailed {
                reason,
                endpoint: e,
            }) => {
                assert_eq!(reason, expected);
                assert_eq!(e, endpoint);
            }
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1) * slack(),
            "{took:?} with a 10 s timeout"
        );
        // And again: the recreated socket fails the same way, just as fast.
        assert!(matches!(
            client.call(&Add(1, 1)),
            Err(CallError::AuthFailed { .. })
        ));
    }
    // No credentials at all: the mechanisms disagree.
    let mut anonymous = client_as(&endpoint, None);
    let started = Instant::now();
    match anonymous.call(&Add(1, 1)) {
        Err(CallError::AuthFailed {
            reason: HandshakeFailure::Protocol(_) | HandshakeFailure::NoDetail,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1) * slack());
}

#[test]
fn right_credentials_work_on_pub_sub() {
    // The bound publisher verifies; the server's SUB socket, which connects, presents.
    let (mut publisher, endpoint) = publishing_client(Some(users()));
    let samples = Samples::default();
    let _running = RpcServer::builder()
        .credentials(Credentials::new("sensor", "s3cret"))
        .register(samples.service())
        .unwrap()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    publisher.notify(&Sample { seq: 7, value: 1.0 }).unwrap();
    assert!(attached(&mut publisher));
    assert_eq!(samples.wait_for(1, secs(5)), [7]);
}

#[test]
fn a_protected_publisher_never_feeds_a_subscriber_without_the_right_credentials() {
    for credentials in [None, Some(Credentials::new("sensor", "wrong"))] {
        let (mut intruder, endpoint) = publishing_client(Some(users()));
        let samples = Samples::default();
        let mut builder = RpcServer::builder()
            .register(samples.service())
            .unwrap()
            .subscribe(&endpoint);
        if let Some(credentials) = credentials.clone() {
            builder = builder.credentials(credentials);
        }
        let running = builder.bind().unwrap().spawn().unwrap();
        assert_never_fed(&mut intruder, &samples, &format!("{credentials:?}"));
        let receiver = running.stats().snapshot().receiver;
        assert_eq!(receiver.received, 0);
        // The subscribing side knows too (regression: it counted nothing, said nothing).
        assert!(
            eventually(secs(5), || running.stats().snapshot().receiver.sub_refused
                > 0),
            "{credentials:?}: {receiver:?}"
        );
    }
}

#[test]
fn a_protected_server_survives_garbage_from_an_authenticated_peer() {
    let server = protected_server()
        .max_body(512)
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_linger(0).unwrap();
    raw.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    raw.set_sndtimeo(5_000 * slack() as i32).unwrap();
    raw.set_plain_username(Some("ops")).unwrap();
    raw.set_plain_password(Some("hunter2")).unwrap();
    raw.connect(&endpoint).unwrap();

    let mut buf = vec![0u8; 4096];
    let valid = frame::encode(&Header::request(1, Add::KEY), &Add(2, 2), &mut buf)
        .unwrap()
        .to_vec();
    let mut wrong_version = valid.clone();
    wrong_version[0] = 7;
    let oversize = frame::encode(
        &Header::request(2, Echo::KEY),
        &Echo("x".repeat(2000)),
        &mut buf,
    )
    .unwrap()
    .to_vec();
    let mut stream: Vec<(Vec<u8>, ErrorCode)> = vec![
        (b"\xde\xad\xbe\xef".to_vec(), ErrorCode::VersionMismatch),
        (b"\x01\xad\xbe\xef".to_vec(), ErrorCode::BadFrame),
        (valid[..9].to_vec(), ErrorCode::BadFrame),
        (valid[..valid.len() - 1].to_vec(), ErrorCode::BadFrame),
        (wrong_version, ErrorCode::VersionMismatch),
        (oversize, ErrorCode::TooLarge),
    ];
    stream.extend((0..50u8).map(|i| {
        (
            vec![1, 0, i, i, i, 0, 0, 0, 0, 0, 0, 0, 0, 0, i],
            ErrorCode::UnknownCommand,
        )
    }));
    for (message, expected) in &stream {
        raw.send(&message[..], 0).unwrap();
        let answer = raw.recv_bytes(0).unwrap();
        let frame = Frame::decode(&answer).unwrap();
        assert_eq!(frame.header.kind, Kind::Error);
        assert_eq!(frame.remote_error().unwrap().code, *expected, "{message:?}");
    }
    raw.send(&valid[..], 0).unwrap();
    let answer = raw.recv_bytes(0).unwrap();
    assert_eq!(Frame::decode(&answer).unwrap().body::<i64>().unwrap(), 4);
    let mut client = client_as(&endpoint, Some(Credentials::new("sensor", "s3cret")));
    assert_eq!(client.call(&Add(20, 22)).unwrap(), 42);
    let counts = running.stats().snapshot().dispatch;
    assert_eq!(counts.too_large, 1);
    assert_eq!(counts.unknown, 50);
}

/// Writes a private (0600) file of secrets.
fn private_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn users_load_from_a_file_and_bad_lines_are_named() {
    let path = std::env::temp_dir().join(format!("zmqrpc-users-{}", std::process::id()));
    private_file(&path, "# site A\n\nsensor:s3cret\nops:pass:with:colons\r\n");
    let users = Users::from_file(&path).unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.verify("ops", "pass:with:colons"));
    assert!(!users.verify("ops", "pass"));
    private_file(&path, "sensor:s3cret\nno-colon-here\n");
    let error = Users::from_file(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        "users file line 2 is not `user:password`"
    );
    let _ = std::fs::remove_file(&path);
    assert!(Users::from_file("/nonexistent/zmqrpc-users").is_err());
    assert!(!format!("{:?}", Credentials::new("a", "topsecret")).contains("topsecret"));
}

#[test]
fn the_zap_handler_stops_with_its_server() {
    let server = protected_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut client = client_as(&endpoint, Some(Credentials::new("ops", "hunter2")));
    assert_eq!(client.call(&Add(1, 1)).unwrap(), 2);
    running.stop_and_wait().unwrap();
    // Its thread is gone: a second protected server can take the same context's ZAP slot.
    let ctx = zmq::Context::new();
    for _ in 0..2 {
        let server = protected_server()
            .context(&ctx)
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let running = server.spawn().unwrap();
        running.stop_and_wait().unwrap();
    }
}

#[test]
fn files_of_secrets_open_to_others_or_naming_a_user_twice_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    use zmqrpc::transport::UsersError;
    let path = std::env::temp_dir().join(format!("zmqrpc-secrets-{}", std::process::id()));
    let content = "ops:do-not-show-me\n";
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        for error in [
            Users::from_file(&path).unwrap_err(),
            Credentials::from_file(&path).unwrap_err(),
        ] {
            assert_eq!(
                error,
                UsersError::Exposed {
                    path: path.display().to_string(),
                    mode
                }
            );
            let said = error.to_string();
            assert!(said.contains(&path.display().to_string()), "{said}");
            assert!(said.contains(&format!("{mode:04o}")), "{said}");
            assert!(!said.contains("do-not-show-me"), "{said}");
        }
    }
    for mode in [0o600, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert!(Users::from_file(&path)
            .unwrap()
            .verify("ops", "do-not-show-me"));
        assert_eq!(Credentials::from_file(&path).unwrap().username(), "ops");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "# site\nops:first\nsensor:s\n\nops:second\n").unwrap();
    let error = Users::from_file(&path).unwrap_err();
    assert_eq!(
        error,
        UsersError::Duplicate {
            user: "ops".into(),
            line: 5,
            first: 2
        }
    );
    assert_eq!(
        error.to_string(),
        "users file line 5 names user \"ops\" again (first on line 2)"
    );
    let _ = std::fs::remove_file(&path);
}
