//! The wire-dialect seam carries a second wire format end to end, and two formats on one
//! socket, without the loops under it knowing: a toy dialect whose commands are named by a
//! string (as pyzmqrpc3's are), served by the same registered services as native calls.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zmqrpc::transport::dialect::{Addressee, AnswerView, CallTag, Dialect, Refusal, Request, Says};
use zmqrpc::transport::{CallError, Native, Pipeline, RpcClient, RpcServer, ServiceError};
use zmqrpc::{frame, Command, DecodeError, EncodeError, ErrorCode, Header, Key, RemoteError};

/// A toy wire format with named commands:
/// - request `Q` seq(u32 LE) name-length(u8) name body; notification `N` name-length name body;
/// - reply `R` seq body; error `E` seq code(u16 LE) message;
/// - heartbeat `HB`, answered with itself.
///
/// Bodies are postcard (borrowed from the core); what matters is the command's name on the
/// wire, which the server maps to its table by `Key::of(name)`.
#[derive(Clone, Copy, Debug, Default)]
struct Named;

const NAMED_HEARTBEAT: &[u8] = b"HB";

fn postcard<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut buf = vec![0u8; 4096];
    let frame = frame::encode(&Header::notify(Key(0)), value, &mut buf)?;
    out.extend_from_slice(&frame[zmqrpc::HEADER_LEN..]);
    Ok(())
}

fn seq_at(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?))
}

impl Dialect for Named {
    type Head = u32;
    const HEARTBEAT: &'static [u8] = NAMED_HEARTBEAT;

    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]> {
        (message == NAMED_HEARTBEAT).then_some(NAMED_HEARTBEAT)
    }

    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        _scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, u32>, Refusal<u32>> {
        let refuse = |message: &str| Refusal {
            head: 0,
            code: ErrorCode::BadFrame,
            message: message.to_owned(),
        };
        let (seq, rest) = match bytes.first() {
            Some(b'Q') => (seq_at(bytes).ok_or_else(|| refuse("short"))?, &bytes[5..]),
            Some(b'N') => (0, &bytes[1..]),
            _ => return Err(refuse("not a named request")),
        };
        let (&len, rest) = rest.split_first().ok_or_else(|| refuse("no name"))?;
        let name = rest
            .get(..usize::from(len))
            .ok_or_else(|| refuse("short name"))?;
        let name = std::str::from_utf8(name).map_err(|_| refuse("name not UTF-8"))?;
        let body = &rest[usize::from(len)..];
        if body.len() > max_body {
            return Err(Refusal {
                head: seq,
                code: ErrorCode::TooLarge,
                message: "too large".to_owned(),
            });
        }
        Ok(Request {
            head: seq,
            key: Key::of(name),
            seq,
            body,
        })
    }

    fn decode_command<C: Command>(&self, request: &Request<'_, u32>) -> Result<C, DecodeError> {
        frame::decode_body(request.body)
    }

    fn encode_response<R: Serialize + ?Sized>(
        &self,
        head: &u32,
        response: &R,
        out: &mut Vec<u8>,
        _max: usize,
    ) -> Result<(), EncodeError> {
        out.clear();
        out.push(b'R');
        out.extend_from_slice(&head.to_le_bytes());
        postcard(response, out)
    }

    fn encode_error(&self, head: &u32, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'E');
        out.extend_from_slice(&head.to_le_bytes());
        out.extend_from_slice(&code.to_u16().to_le_bytes());
        out.extend_from_slice(message.as_bytes());
    }

    fn encode_accepted(&self, head: &u32, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'A');
        out.extend_from_slice(&head.to_le_bytes());
    }

    fn unreadable(&self) -> u32 {
        0
    }

    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        _max: usize,
    ) -> Result<CallTag, EncodeError> {
        out.clear();
        out.push(b'Q');
        out.extend_from_slice(&seq.to_le_bytes());
        out.push(u8::try_from(C::NAME.len()).map_err(|_| EncodeError::Body)?);
        out.extend_from_slice(C::NAME.as_bytes());
        postcard(command, out)?;
        Ok(CallTag { seq, key: C::KEY })
    }

    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        _max: usize,
    ) -> Result<(), EncodeError> {
        out.clear();
        out.push(b'N');
        out.push(u8::try_from(C::NAME.len()).map_err(|_| EncodeError::Body)?);
        out.extend_from_slice(C::NAME.as_bytes());
        postcard(command, out)
    }

    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError> {
        if seq_at(bytes).is_none() {
            return Err(DecodeError::Truncated);
        }
        // Answers name no command: a REQ socket pairs them with their call (as pyzmqrpc3's).
        let to = Addressee::Anyone;
        match bytes[0] {
            b'R' => Ok(AnswerView {
                to,
                says: Says::Response(&bytes[5..]),
            }),
            b'A' => Ok(AnswerView {
                to,
                says: Says::Accepted,
            }),
            b'E' => {
                let code = bytes.get(5..7).ok_or(DecodeError::BodyTruncated)?;
                let code = ErrorCode::from_u16(u16::from_le_bytes([code[0], code[1]]));
                let message = std::str::from_utf8(&bytes[7..]).map_err(|_| DecodeError::BadBody)?;
                Ok(AnswerView {
                    to,
                    says: Says::Error(RemoteError::new(code, message)),
                })
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }

    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError> {
        frame::decode_body(body)
    }
}

/// Native and named messages on one socket, told apart by their first byte: the dialect a
/// request came in is the dialect its answer goes out in.
#[derive(Clone, Copy, Debug, Default)]
struct NativeOrNamed;

#[derive(Clone, Copy, Debug)]
enum EitherHead {
    Native(Header),
    Named(u32),
}

fn is_named(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'Q' | b'N' | b'R' | b'E' | b'A' | b'H'))
}

impl Dialect for NativeOrNamed {
    type Head = EitherHead;
    const HEARTBEAT: &'static [u8] = Native::HEARTBEAT;

    fn heartbeat_answer(message: &[u8]) -> Option<&'static [u8]> {
        Native::heartbeat_answer(message).or_else(|| Named::heartbeat_answer(message))
    }

    fn read_request<'a>(
        &self,
        bytes: &'a [u8],
        scratch: &'a mut Vec<u8>,
        max_body: usize,
    ) -> Result<Request<'a, EitherHead>, Refusal<EitherHead>> {
        fn lift<'a, H>(
            read: Result<Request<'a, H>, Refusal<H>>,
            head: fn(H) -> EitherHead,
        ) -> Result<Request<'a, EitherHead>, Refusal<EitherHead>> {
            match read {
                Ok(r) => Ok(Request {
                    head: head(r.head),
                    key: r.key,
                    seq: r.seq,
                    body: r.body,
                }),
                Err(r) => Err(Refusal {
                    head: head(r.head),
                    code: r.code,
                    message: r.message,
                }),
            }
        }
        if is_named(bytes) {
            lift(
                Named.read_request(bytes, scratch, max_body),
                EitherHead::Named,
            )
        } else {
            lift(
                Native.read_request(bytes, scratch, max_body),
                EitherHead::Native,
            )
        }
    }

    fn decode_command<C: Command>(
        &self,
        request: &Request<'_, EitherHead>,
    ) -> Result<C, DecodeError> {
        // Both carry postcard bodies here; a JSON dialect would decode by its own head.
        frame::decode_body(request.body)
    }

    fn encode_response<R: Serialize + ?Sized>(
        &self,
        head: &EitherHead,
        response: &R,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        match head {
            EitherHead::Native(h) => Native.encode_response(h, response, out, max),
            EitherHead::Named(h) => Named.encode_response(h, response, out, max),
        }
    }

    fn encode_error(&self, head: &EitherHead, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
        match head {
            EitherHead::Native(h) => Native.encode_error(h, code, message, out),
            EitherHead::Named(h) => Named.encode_error(h, code, message, out),
        }
    }

    fn encode_accepted(&self, head: &EitherHead, out: &mut Vec<u8>) {
        match head {
            EitherHead::Native(h) => Native.encode_accepted(h, out),
            EitherHead::Named(h) => Named.encode_accepted(h, out),
        }
    }

    fn unreadable(&self) -> EitherHead {
        EitherHead::Native(Native.unreadable())
    }

    fn encode_call<C: Command>(
        &self,
        seq: u32,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<CallTag, EncodeError> {
        Native.encode_call(seq, command, out, max)
    }

    fn encode_notify<C: Command>(
        &self,
        command: &C,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), EncodeError> {
        Native.encode_notify(command, out, max)
    }

    fn read_answer<'a>(&self, bytes: &'a [u8]) -> Result<AnswerView<'a>, DecodeError> {
        if is_named(bytes) {
            Named.read_answer(bytes)
        } else {
            Native.read_answer(bytes)
        }
    }

    fn decode_response<R: DeserializeOwned>(&self, body: &[u8]) -> Result<R, DecodeError> {
        frame::decode_body(body)
    }
}

fn named_client(endpoint: &str) -> RpcClient<Named> {
    RpcClient::builder_for(Named)
        .req(endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap()
}

#[test]
fn a_second_dialect_calls_the_same_services_by_name() {
    let server = RpcServer::builder_for(Named)
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .register(|Fail(why): Fail| Err::<(), _>(ServiceError::new(why)))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let mut client = named_client(&endpoint);
    assert_eq!(client.call(&Add(40, 2)).unwrap(), 42);
    match client.call(&Fail("no".into())) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(
                (error.code, error.message.as_str()),
                (ErrorCode::ServiceFailed, "no")
            )
        }
        other => panic!("{other:?}"),
    }
    match client.call(&Unregistered) {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::UnknownCommand),
        other => panic!("{other:?}"),
    }
    // The dialect's heartbeat is answered by the loop and never reaches a service.
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_rcvtimeo(5_000 * slack() as i32).unwrap();
    req.connect(&endpoint).unwrap();
    req.send(NAMED_HEARTBEAT, 0).unwrap();
    assert_eq!(req.recv_bytes(0).unwrap(), NAMED_HEARTBEAT);
    let counts = running.stats().snapshot().dispatch;
    assert_eq!((counts.served, counts.failed, counts.unknown), (1, 1, 1));
    running.stop_and_wait().unwrap();
}

#[test]
fn one_server_answers_each_caller_in_its_own_dialect_on_one_socket() {
    // Workers too: the pool's broker tells heartbeats apart by the same dialect.
    for workers in [1, 2] {
        let server = RpcServer::builder_for(NativeOrNamed)
            .workers(workers)
            .register_clone(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
            .unwrap()
            .rep("tcp://127.0.0.1:*")
            .bind()
            .unwrap();
        let endpoint = server.rep_endpoints()[0].clone();
        let _running = server.spawn().unwrap();
        let mut native = client(&endpoint);
        let mut named = named_client(&endpoint);
        let mut pipeline = Pipeline::builder().req(&endpoint).connect::<Add>().unwrap();
        for i in 0..20 {
            assert_eq!(native.call(&Add(i, 1)).unwrap(), i + 1);
            assert_eq!(named.call(&Add(i, 2)).unwrap(), i + 2);
            let seq = pipeline.send(&Add(i, 3)).unwrap();
            let (answered, result) = pipeline.recv(secs(5)).unwrap().unwrap();
            assert_eq!((answered, result.unwrap()), (seq, i + 3));
        }
        // Garbage gets the native unaddressed error, and both callers still work.
        let ctx = zmq::Context::new();
        let req = ctx.socket(zmq::REQ).unwrap();
        req.set_linger(0).unwrap();
        req.set_rcvtimeo(5_000 * slack() as i32).unwrap();
        req.connect(&endpoint).unwrap();
        req.send(&b"\x07garbage"[..], 0).unwrap();
        let bytes = req.recv_bytes(0).unwrap();
        let answer = Native.read_answer(&bytes).unwrap();
        assert_eq!(answer.to, Addressee::Anyone);
        match answer.says {
            Says::Error(error) => assert_eq!(error.code, ErrorCode::VersionMismatch),
            other => panic!("{other:?}"),
        }
        assert_eq!(named.call(&Add(1, 1)).unwrap(), 2);
        assert_eq!(native.call(&Add(1, 1)).unwrap(), 2);
    }
}

#[test]
fn a_proxy_forwards_either_dialect_and_answers_a_failure_in_the_callers() {
    let server = RpcServer::builder_for(NativeOrNamed)
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let server = server.spawn().unwrap();
    let proxy =
        zmqrpc::transport::Proxy::builder_for(zmqrpc::transport::ProxyKind::Rep2Req, NativeOrNamed)
            .input("tcp://127.0.0.1:*")
            .output(&server_endpoint)
            .timeout(secs(1))
            .bind()
            .unwrap();
    let proxy_endpoint = proxy.input_endpoints()[0].clone();
    let _proxy = proxy.spawn().unwrap();
    let mut named = named_client(&proxy_endpoint);
    let mut native = client(&proxy_endpoint);
    assert_eq!(named.call(&Add(2, 3)).unwrap(), 5);
    assert_eq!(native.call(&Add(2, 4)).unwrap(), 6);
    // With the server gone, each caller hears of it in its own dialect.
    server.stop_and_wait().unwrap();
    for result in [named.call(&Add(1, 1)), native.call(&Add(1, 1))] {
        match result {
            Err(CallError::Remote { error, .. }) => assert_eq!(error.code, ErrorCode::Timeout),
            other => panic!("{other:?}"),
        }
    }
}
