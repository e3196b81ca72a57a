//! Receiver and Sender alone, with raw byte messages (pyzmqrpc3's ZmqReceiver/ZmqSender).
#![allow(clippy::unwrap_used)]

use std::sync::mpsc;

use crate::common::*;
use zmqrpc::transport::{
    Incoming, Origin, Receiver, RequestError, Sender, SocketKind, TransportError,
};

#[test]
fn a_raw_receiver_answers_requests_and_hears_publications() {
    let mut sender = Sender::builder()
        .publish_on("tcp://127.0.0.1:*")
        .connect()
        .unwrap();
    let pub_endpoint = sender.publisher().unwrap().endpoints()[0].clone();

    let (heard_tx, heard) = mpsc::channel();
    let receiver = Receiver::builder()
        .rep("tcp://127.0.0.1:*")
        .subscribe(&pub_endpoint)
        .bind()
        .unwrap();
    let rep_endpoint = receiver.rep_endpoints()[0].clone();
    let running = receiver
        .spawn(
            move |message: Incoming, reply: &mut Vec<u8>| match message.origin {
                Origin::Rep => {
                    reply.extend_from_slice(b"echo:");
                    reply.extend_from_slice(message.bytes);
                }
                Origin::Sub(index) => heard_tx.send((index, message.bytes.to_vec())).unwrap(),
            },
        )
        .unwrap();

    let mut requester = Sender::builder().req(&rep_endpoint).connect().unwrap();
    let reply = requester.request(b"hello", secs(5)).unwrap();
    assert_eq!(reply.bytes, b"echo:hello");
    assert_eq!(reply.endpoint, rep_endpoint);

    sender.publish(b"raw bytes, any format").unwrap();
    assert!(sender
        .publisher()
        .unwrap()
        .wait_for_subscriber(secs(5))
        .unwrap());
    assert_eq!(
        heard.recv_timeout(secs(5)).unwrap(),
        (0, b"raw bytes, any format".to_vec())
    );
    // `replied` is counted once the reply is sent, which may be just after it arrived here.
    assert!(eventually(secs(5), || {
        let counts = running.stats().snapshot();
        (counts.received, counts.replied) == (2, 1)
    }));
}

#[test]
fn a_sender_without_the_needed_side_says_so() {
    let mut sender = Sender::builder().connect().unwrap();
    assert!(matches!(
        sender.request(b"x", secs(1)),
        Err(RequestError::NoEndpoint)
    ));
    let error = sender.publish(b"x").unwrap_err();
    assert_eq!(error, TransportError::NoSocket(SocketKind::Pub));
}

#[test]
fn a_sender_without_a_pub_socket_names_it_for_heartbeats_too() {
    let mut sender = Sender::builder().connect().unwrap();
    let error = sender.heartbeat().unwrap_err();
    assert_eq!(error, TransportError::NoSocket(SocketKind::Pub));
    assert_eq!(error.zmq_error(), None);
    assert!(error.to_string().contains("publish_on"), "{error}");
}

/// A handler that panics ends its loop; `join` says so with the panic's message.
#[test]
fn a_panicking_handler_is_reported_by_join_with_its_message() {
    let receiver = Receiver::builder().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = receiver.rep_endpoints()[0].clone();
    let running = receiver
        .spawn(|_: Incoming, _: &mut Vec<u8>| panic!("boom"))
        .unwrap();
    let mut sender = Sender::builder().req(&endpoint).connect().unwrap();
    // The handler panics on this request: no reply comes.
    let _ = sender.request(b"x", std::time::Duration::from_millis(200));
    assert!(eventually(secs(5), || running.is_finished()));
    match running.stop_and_wait() {
        Err(TransportError::Panicked { thread, message }) => {
            assert_eq!(message, "boom");
            assert_eq!(thread, "zmqrpc-receiver");
        }
        other => panic!("{other:?}"),
    }
}

/// A peer answering with several parts is refused by name, not as a libzmq failure.
#[test]
fn a_multipart_reply_is_refused_as_such() {
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = rep.get_last_endpoint().unwrap().unwrap();
    let peer = std::thread::spawn(move || {
        rep.recv_bytes(0).unwrap();
        rep.send_multipart([&b"one"[..], &b"two"[..]], 0).unwrap();
    });
    let mut sender = Sender::builder().req(&endpoint).connect().unwrap();
    match sender.request(b"x", secs(5)) {
        Err(RequestError::MultipartReply { endpoint: from }) => assert_eq!(from, endpoint),
        other => panic!("{other:?}"),
    }
    peer.join().unwrap();
}

/// A second receiver on the `ipc://` path of a live one is refused by name, with the path.
#[test]
fn a_live_ipc_path_is_reported_as_in_use() {
    let endpoint = ipc_endpoint("raw-in-use");
    let first = Receiver::builder().rep(&endpoint).bind().unwrap();
    match Receiver::builder().rep(&endpoint).bind() {
        Err(TransportError::EndpointInUse { endpoint: refused }) => assert_eq!(refused, endpoint),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a second receiver bound a live ipc path"),
    }
    drop(first);
}

#[test]
fn a_request_with_no_connection_is_never_sent_and_never_runs_later() {
    let endpoint = dead_endpoint();
    let mut sender = Sender::builder().req(&endpoint).connect().unwrap();
    // With the server down, each request waits for a connection, then gives up unsent.
    for _ in 0..5 {
        match sender.request(b"stale", ms(30)) {
            Err(RequestError::NotConnected {
                endpoint: to,
                waited,
            }) => {
                assert_eq!((to.as_str(), waited), (endpoint.as_str(), ms(30)));
            }
            other => panic!("{other:?}"),
        }
    }
    let error = sender.request(b"stale", ms(30)).unwrap_err();
    assert!(error.to_string().contains("not sent"), "{error}");

    let (heard_tx, heard) = mpsc::channel();
    let receiver = Receiver::builder().rep(endpoint.clone()).bind().unwrap();
    let running = receiver
        .spawn(move |message: Incoming, reply: &mut Vec<u8>| {
            heard_tx.send(message.bytes.to_vec()).unwrap();
            reply.extend_from_slice(b"ok");
        })
        .unwrap();
    // The next request is the only one to arrive.
    assert_eq!(sender.request(b"fresh", secs(5)).unwrap().bytes, b"ok");
    assert_eq!(heard.recv_timeout(secs(5)).unwrap(), b"fresh");
    assert_eq!(
        heard.recv_timeout(ms(300)),
        Err(mpsc::RecvTimeoutError::Timeout),
        "a request its caller gave up on reached the server"
    );
    assert_eq!(running.stats().snapshot().received, 1);
}

/// A handler that answers calls later, on a ROUTER input holding at most two: both held
/// callers get their own answers (given in the reverse order), and a third caller meanwhile
/// is refused at once with `Busy`, not left waiting.
#[test]
fn a_router_input_holds_calls_for_later_answers_and_refuses_past_its_bound() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use zmqrpc::transport::{Answering, HeldCall, MessageHandler, Rejection};

    struct Later {
        held: Vec<(HeldCall, Vec<u8>)>,
        holding: Arc<AtomicUsize>,
        release: bool,
    }
    impl MessageHandler for Later {
        fn handle(&mut self, _: Incoming<'_>, reply: &mut Vec<u8>) {
            reply.extend_from_slice(b"not held");
        }
        fn call(&mut self, message: Incoming<'_>, caller: HeldCall, _: &mut Vec<u8>) -> Answering {
            self.held.push((caller, message.bytes.to_vec()));
            self.holding.store(self.held.len(), Ordering::SeqCst);
            Answering::Later
        }
        fn answers(&mut self, answer: &mut dyn FnMut(HeldCall, &[u8])) {
            if !std::mem::take(&mut self.release) {
                return;
            }
            while let Some((caller, bytes)) = self.held.pop() {
                answer(caller, &[b"later:", &bytes[..]].concat());
                // Answering twice is ignored.
                answer(caller, b"twice");
            }
        }
        fn reject(&mut self, reason: Rejection, _: Origin, reply: &mut Vec<u8>) {
            // The first refusal lets the held calls go.
            self.release = matches!(reason, Rejection::Busy { held: 2 });
            reply.extend_from_slice(reason.to_string().as_bytes());
        }
    }

    let holding = Arc::new(AtomicUsize::new(0));
    let receiver = Receiver::builder()
        .rep("tcp://127.0.0.1:*")
        .calls_at_once(2)
        .bind()
        .unwrap();
    let endpoint = receiver.rep_endpoints()[0].clone();
    let handler = Later {
        held: Vec::new(),
        holding: Arc::clone(&holding),
        release: false,
    };
    let stats = receiver.stats();
    let running = receiver.spawn(handler).unwrap();
    let callers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let mut sender = Sender::builder().req(&endpoint).connect().unwrap();
                let reply = sender.request(name.as_bytes(), secs(10)).unwrap();
                reply.bytes.to_vec()
            })
        })
        .collect();
    assert!(eventually(secs(10), || holding.load(Ordering::SeqCst) == 2));
    let mut third = Sender::builder().req(&endpoint).connect().unwrap();
    let refused = third.request(b"c", secs(10)).unwrap();
    assert_eq!(refused.bytes, b"2 calls in hand: no room for another");
    let mut answers: Vec<Vec<u8>> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    answers.sort();
    assert_eq!(answers, [b"later:a".to_vec(), b"later:b".to_vec()]);
    running.stop_and_wait().unwrap();
    let counts = stats.snapshot();
    assert_eq!((counts.replied, counts.rejected), (3, 1), "{counts:?}");
}

#[test]
fn calls_at_once_outside_its_range_is_refused_at_bind() {
    use zmqrpc::transport::{ConfigError, MAX_CALLS_AT_ONCE};
    for calls in [0, MAX_CALLS_AT_ONCE + 1] {
        let bound = Receiver::builder()
            .rep("tcp://127.0.0.1:*")
            .calls_at_once(calls)
            .bind();
        match bound {
            Err(TransportError::Config(ConfigError::OutOfRange { setting, value, .. })) => {
                assert_eq!((setting, value), ("calls_at_once", calls as u64));
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("{calls} calls at once accepted"),
        }
    }
}
