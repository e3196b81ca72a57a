//! Garbage, truncated, wrong-version, multipart and oversize messages: each gets an error
//! reply or is dropped and counted, and the server goes on serving.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use zmqrpc::transport::SocketOptions;
use zmqrpc::{frame, Command, ErrorCode, Frame, Header, Key, Kind};

/// A raw REQ socket to `endpoint`, every blocking call bounded.
fn raw_req(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let socket = ctx.socket(zmq::REQ).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    socket.set_sndtimeo(5_000 * slack() as i32).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

/// Sends `message` and returns the error code of the answer.
fn error_code_for(socket: &zmq::Socket, message: &[u8]) -> ErrorCode {
    socket.send(message, 0).unwrap();
    let answer = socket.recv_bytes(0).unwrap();
    let frame = Frame::decode(&answer).unwrap();
    assert_eq!(frame.header.kind, Kind::Error);
    frame.remote_error().unwrap().code
}

fn valid_request() -> Vec<u8> {
    let mut buf = [0u8; 64];
    frame::encode(&Header::request(77, Add::KEY), &Add(1, 2), &mut buf)
        .unwrap()
        .to_vec()
}

#[test]
fn every_kind_of_bad_frame_gets_an_error_reply_and_the_server_serves_on() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &endpoint);

    assert_eq!(error_code_for(&raw, b""), ErrorCode::BadFrame);
    assert_eq!(
        error_code_for(&raw, b"\x01garbage that is long enough"),
        ErrorCode::BadFrame
    );
    let request = valid_request();
    for cut in [1, 5, 13, request.len() - 1] {
        assert_eq!(
            error_code_for(&raw, &request[..cut]),
            ErrorCode::BadFrame,
            "cut {cut}"
        );
    }
    let mut wrong_version = request.clone();
    wrong_version[0] = 9;
    assert_eq!(
        error_code_for(&raw, &wrong_version),
        ErrorCode::VersionMismatch
    );
    let mut wrong_kind = request.clone();
    wrong_kind[1] = 200;
    assert_eq!(error_code_for(&raw, &wrong_kind), ErrorCode::BadFrame);
    let mut buf = [0u8; 64];
    let reply_frame =
        frame::encode(&Header::request(1, Add::KEY).reply(), &3i64, &mut buf).unwrap();
    assert_eq!(error_code_for(&raw, reply_frame), ErrorCode::BadFrame);
    let wrong_body = frame::encode(&Header::request(2, Add::KEY), "text", &mut buf).unwrap();
    assert_eq!(error_code_for(&raw, wrong_body), ErrorCode::BadFrame);
    // Multipart: refused as a whole.
    raw.send(&request[..], zmq::SNDMORE).unwrap();
    assert_eq!(error_code_for(&raw, &request), ErrorCode::BadFrame);

    // Random bytes.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..200 {
        let len = (state % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        raw.send(&bytes[..], 0).unwrap();
        raw.recv_bytes(0).unwrap(); // always an answer, never a stuck REP
    }

    // A valid request on the same socket still works, typed.
    raw.send(&request[..], 0).unwrap();
    let answer = raw.recv_bytes(0).unwrap();
    let frame = Frame::decode(&answer).unwrap();
    assert_eq!(frame.header, Header::request(77, Add::KEY).reply());
    assert_eq!(frame.body::<i64>().unwrap(), 3);
    assert_eq!(client(&endpoint).call(&Add(5, 5)).unwrap(), 10);

    let counts = running.stats().snapshot().dispatch;
    assert!(counts.bad_frames >= 11, "{counts:?}");
    assert_eq!(
        running.stats().snapshot().receiver.rejected,
        1,
        "the multipart message"
    );
}

#[test]
fn a_heartbeat_over_req_is_answered_and_never_blocks_the_rep_socket() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &endpoint);
    for _ in 0..3 {
        raw.send(&frame::HEARTBEAT[..], 0).unwrap();
        assert_eq!(raw.recv_bytes(0).unwrap(), frame::HEARTBEAT);
    }
    assert_eq!(client(&endpoint).call(&Add(1, 1)).unwrap(), 2);
    assert_eq!(running.stats().snapshot().receiver.heartbeats, 3);
    assert_eq!(running.stats().snapshot().dispatch.served, 1);
}

#[test]
fn an_oversize_message_is_refused_by_libzmq_and_the_server_serves_on() {
    let options = SocketOptions::default().with_max_message_size(Some(1024));
    let server = standard_server()
        .options(options)
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &endpoint);
    raw.set_rcvtimeo(300).unwrap();
    let mut buf = vec![0u8; 8192];
    let big = frame::encode(
        &Header::request(1, Echo::KEY),
        &Echo("x".repeat(4000)),
        &mut buf,
    )
    .unwrap();
    raw.send(big, 0).unwrap();
    assert_eq!(
        raw.recv_bytes(0),
        Err(zmq::Error::EAGAIN),
        "dropped, no reply"
    );
    assert_eq!(
        running.stats().snapshot().receiver.received,
        0,
        "never reached a service"
    );
    assert_eq!(
        client(&endpoint).call(&Echo("small".into())).unwrap(),
        "small"
    );
}

#[test]
fn a_reply_for_another_call_is_never_returned() {
    // A broken "server" that answers every request with a reply numbered 12345.
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.set_linger(0).unwrap();
    rep.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    rep.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = rep.get_last_endpoint().unwrap().unwrap();
    let liar = std::thread::spawn(move || {
        let request = rep.recv_bytes(0).unwrap();
        let header = Frame::decode(&request).unwrap().header;
        let mut buf = [0u8; 64];
        let stray = Header {
            seq: 12345,
            ..header
        }
        .reply();
        rep.send(frame::encode(&stray, &999i64, &mut buf).unwrap(), 0)
            .unwrap();
        let request = rep.recv_bytes(0).unwrap();
        let header = Frame::decode(&request).unwrap().header;
        let other_key = Header {
            key: Key::of("other"),
            ..header
        }
        .reply();
        rep.send(frame::encode(&other_key, &999i64, &mut buf).unwrap(), 0)
            .unwrap();
    });
    let mut client = client(&endpoint);
    for _ in 0..2 {
        match client.call(&Add(1, 1)) {
            Err(zmqrpc::transport::CallError::StrayReply { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    liar.join().unwrap();
}
