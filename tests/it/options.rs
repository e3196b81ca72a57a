//! The defaults of `SocketOptions` (transport-std/src/options.rs), and options a builder is
//! given, take effect on the library's sockets. Those sockets are out of a test's reach (no
//! getsockopt), so each option is shown by what libzmq does with it: the largest message a
//! peer may send, how many messages a pipe holds, ZMTP heartbeats, linger, reconnect backoff.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde::{Deserialize, Serialize};
use zmqrpc::transport::{RpcClient, RpcServer, ServiceError, SocketOptions};
use zmqrpc::{frame, Command, Frame, Header, Kind, HEADER_LEN};

/// Bytes of any size; answered with how many there were.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Blob(Vec<u8>);
impl Command for Blob {
    const NAME: &'static str = "test.options.blob";
    type Response = u64;
}

/// A `Blob` frame of exactly `size` bytes (header, length prefix, body) and the body's
/// length.
fn blob_frame(header: Header, size: usize) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; size + 16];
    // postcard: the body's length as a varint, then the bytes.
    for prefix in 1..=4 {
        let body = size - HEADER_LEN - prefix;
        let encoded = frame::encode(&header, &Blob(vec![7; body]), &mut buf).unwrap();
        if encoded.len() == size {
            return (encoded.to_vec(), body);
        }
    }
    panic!("no Blob frame is {size} bytes long");
}

/// A server answering `Blob`s with their length, taking bodies of any size (the
/// server's own `max_body` is not what these tests are about).
fn blob_server(options: Option<SocketOptions>) -> zmqrpc::transport::ServerBuilder {
    let mut builder = RpcServer::builder()
        .register(|Blob(bytes): Blob| Ok::<_, ServiceError>(bytes.len() as u64))
        .unwrap()
        .max_body(64 << 20);
    if let Some(options) = options {
        builder = builder.options(options);
    }
    builder
}

/// A raw REQ socket to `endpoint` and a monitor of its dropped connections, every
/// blocking call bounded.
fn monitored_req(ctx: &zmq::Context, endpoint: &str) -> (zmq::Socket, zmq::Socket) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let socket = ctx.socket(zmq::REQ).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(secs(5).as_millis() as i32).unwrap();
    socket.set_sndtimeo(secs(5).as_millis() as i32).unwrap();
    let monitor_endpoint = format!(
        "inproc://options-monitor-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    socket
        .monitor(
            &monitor_endpoint,
            i32::from(zmq::SocketEvent::DISCONNECTED.to_raw()),
        )
        .unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.set_linger(0).unwrap();
    monitor.connect(&monitor_endpoint).unwrap();
    socket.connect(endpoint).unwrap();
    (socket, monitor)
}

/// Waits up to `within` for the monitor to report a dropped connection.
fn disconnected(monitor: &zmq::Socket, within: Duration) -> bool {
    monitor.set_rcvtimeo(within.as_millis() as i32).unwrap();
    match monitor.recv_multipart(0) {
        Ok(parts) => {
            let event = u16::from_le_bytes([parts[0][0], parts[0][1]]);
            event == zmq::SocketEvent::DISCONNECTED.to_raw()
        }
        Err(_) => false,
    }
}

/// Sends `request` and returns the `Blob` answer (the length the server counted).
fn blob_answer(socket: &zmq::Socket, request: &[u8]) -> u64 {
    socket.send(request, 0).unwrap();
    let answer = socket.recv_bytes(0).expect("no answer");
    let frame = Frame::decode(&answer).unwrap();
    assert_eq!(frame.header.kind, Kind::Reply, "{frame:?}");
    frame.body::<u64>().unwrap()
}

#[test]
fn by_default_a_request_over_1_mib_drops_its_connection_and_one_of_1_mib_is_served() {
    let server = blob_server(None).rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();

    // Exactly 1 MiB: libzmq refuses only what is larger.
    let (at_limit, body) = blob_frame(Header::request(1, Blob::KEY), 1 << 20);
    let (first, first_monitor) = monitored_req(&ctx, &endpoint);
    assert_eq!(blob_answer(&first, &at_limit), body as u64);

    // One byte more: libzmq drops the connection; nothing reaches the server.
    let (over, _) = blob_frame(Header::request(2, Blob::KEY), (1 << 20) + 1);
    let (second, second_monitor) = monitored_req(&ctx, &endpoint);
    second.send(&over[..], 0).unwrap();
    assert!(
        disconnected(&second_monitor, secs(5)),
        "the connection of an oversize request was not dropped"
    );
    assert_eq!(second.recv_bytes(zmq::DONTWAIT), Err(zmq::Error::EAGAIN));
    assert_eq!(running.stats().snapshot().receiver.received, 1);

    // The server serves on: the first raw client, and a new library client.
    assert!(!disconnected(&first_monitor, Duration::ZERO));
    let (small, small_body) = blob_frame(Header::request(3, Blob::KEY), 100);
    assert_eq!(blob_answer(&first, &small), small_body as u64);
    assert_eq!(client(&endpoint).call(&Blob(vec![1; 10])).unwrap(), 10);
    assert_eq!(running.stats().snapshot().receiver.received, 3);
}

#[test]
fn a_servers_own_max_message_size_applies_to_its_rep_and_sub_sockets() {
    let options = SocketOptions::default().with_max_message_size(Some(1024));
    let (mut sensor, sensor_endpoint) = publishing_client(None);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let store = heard.clone();
    let server = blob_server(Some(options))
        .register(move |sample: Sample| {
            store.lock().unwrap().push(sample.seq);
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .rep("tcp://127.0.0.1:*")
        .subscribe(&sensor_endpoint)
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let ctx = zmq::Context::new();

    // REP: 1024 bytes served, 1025 cut off.
    let (at_limit, body) = blob_frame(Header::request(1, Blob::KEY), 1024);
    let (raw, raw_monitor) = monitored_req(&ctx, &endpoint);
    assert_eq!(blob_answer(&raw, &at_limit), body as u64);
    let (over, _) = blob_frame(Header::request(2, Blob::KEY), 1025);
    let (oversize, oversize_monitor) = monitored_req(&ctx, &endpoint);
    oversize.send(&over[..], 0).unwrap();
    assert!(disconnected(&oversize_monitor, secs(5)));
    assert!(!disconnected(&raw_monitor, Duration::ZERO));
    assert_eq!(running.stats().snapshot().receiver.received, 1);

    // SUB: a 1024-byte publication arrives, a 1025-byte one never does (the connection it
    // came on is dropped, and the subscriber comes back for the next).
    assert!(attached(&mut sensor));
    let publish = |sensor: &mut RpcClient, size: usize| {
        let (message, _) = blob_frame(Header::notify(Blob::KEY), size);
        sensor.sender().publish(&message).unwrap();
    };
    publish(&mut sensor, 1024);
    assert!(eventually(secs(5), || {
        running.stats().snapshot().dispatch.served == 2
    }));
    publish(&mut sensor, 1025);
    // Samples after it, until one arrives: it proves the oversize one had its chance.
    let mut seq = 0;
    assert!(eventually(secs(10), || {
        let publisher = sensor.sender().publisher().unwrap();
        publisher.flush().unwrap();
        if publisher.has_subscriber() {
            seq += 1;
            sensor.notify(&Sample { seq, value: 0.0 }).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        !heard.lock().unwrap().is_empty()
    }));
    // Served: the two of 1024 bytes and the samples, not the one of 1025 (a count bumped
    // just after its service ran, hence the wait).
    let served = || running.stats().snapshot().dispatch.served;
    let samples = || heard.lock().unwrap().len() as u64;
    assert!(
        eventually(secs(5), || served() == 2 + samples()),
        "served {}, samples {:?}",
        served(),
        heard.lock().unwrap()
    );
}

/// Messages that reach a service stuck on the first one: sent by a raw XPUB (high-water
/// mark 1, dropping what does not fit) over `inproc://`, to a server's SUB socket with
/// `options`. Over inproc a pipe holds exactly the sender's `SNDHWM` plus the receiver's
/// `RCVHWM` messages (no kernel buffers in between).
fn delivered_past_a_stuck_service(options: Option<SocketOptions>) -> Vec<u32> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ctx = zmq::Context::new();
    let endpoint = format!(
        "inproc://options-hwm-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let publisher = ctx.socket(zmq::XPUB).unwrap();
    publisher.set_linger(0).unwrap();
    publisher.set_sndhwm(1).unwrap();
    publisher.set_rcvtimeo(secs(5).as_millis() as i32).unwrap();
    publisher.bind(&endpoint).unwrap();

    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let samples = Samples::default();
    let mut store = samples.service();
    let mut builder = RpcServer::builder().context(&ctx);
    if let Some(options) = options {
        builder = builder.options(options);
    }
    let _server = builder
        .register(move |sample: Sample| {
            let first = sample.seq == 0;
            store(sample)?;
            if first {
                // Stuck until the test lets go (bounded, like every wait here).
                let _ = gate.lock().unwrap().recv_timeout(secs(10));
            }
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // The subscription shows the SUB socket is attached.
    assert_eq!(publisher.recv_bytes(0).unwrap(), [1]);

    let mut buf = [0u8; 64];
    let mut send = |seq| {
        let sample = Sample { seq, value: 0.0 };
        let message = frame::encode(&Header::notify(Sample::KEY), &sample, &mut buf).unwrap();
        publisher.send(message, zmq::DONTWAIT).unwrap();
    };
    send(0);
    assert!(eventually(secs(5), || samples.seqs() == [0]));
    // The service is stuck: everything now stays in the pipe, or is dropped by the XPUB.
    for seq in 1..=3000 {
        send(seq);
    }
    drop(release);
    // A last one, after the pipe drained: once it is served, so is everything before it.
    let wait = Instant::now() + secs(10);
    let last = u32::MAX;
    while !samples.seqs().contains(&last) && Instant::now() < wait {
        send(last);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut seqs = samples.seqs();
    assert_eq!(seqs.pop(), Some(last), "{seqs:?}");
    seqs.retain(|&seq| seq != last);
    seqs
}

#[test]
fn a_server_subscriber_holds_its_receive_high_water_mark_default_1000() {
    // The one the service took, and what the pipe held: RCVHWM 1000 + the XPUB's 1.
    assert_eq!(
        delivered_past_a_stuck_service(None),
        (0..=1000).collect::<Vec<u32>>()
    );
    let options = SocketOptions::default().with_recv_hwm(10);
    assert_eq!(
        delivered_past_a_stuck_service(Some(options)),
        (0..=10).collect::<Vec<u32>>()
    );
}

/// How many of `n` notifications a publisher hands to libzmq before a subscriber that never
/// reads (`RCVHWM` 1, over `inproc://`) fills its pipe, and its counts then.
fn published_to_a_stuck_subscriber(
    options: Option<SocketOptions>,
    pending_limit: usize,
    n: u32,
) -> zmqrpc::transport::PublisherCounts {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ctx = zmq::Context::new();
    let endpoint = format!(
        "inproc://options-send-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut builder = RpcClient::builder()
        .context(&ctx)
        .publish_on(&endpoint)
        .pending_limit(pending_limit);
    if let Some(options) = options {
        builder = builder.options(options);
    }
    let mut sensor = builder.connect().unwrap();
    let subscriber = ctx.socket(zmq::SUB).unwrap();
    subscriber.set_linger(0).unwrap();
    subscriber.set_rcvhwm(1).unwrap();
    subscriber.set_subscribe(b"").unwrap();
    subscriber.connect(&endpoint).unwrap();
    let publisher = sensor.sender().publisher().unwrap();
    assert!(publisher.wait_for_subscriber(secs(5)).unwrap());
    for seq in 0..n {
        sensor.notify(&Sample { seq, value: 0.0 }).unwrap();
    }
    sensor.publisher_stats().unwrap().snapshot()
}

#[test]
fn a_publisher_holds_its_send_high_water_mark_default_1000() {
    // The XPUB's SNDHWM is `send_hwm` plus the pending limit (room for the burst of what
    // was held for a subscriber; see `Publisher::bind`), and the subscriber's pipe adds its
    // RCVHWM of 1: 1000 + 1000 + 1 go to libzmq, the rest wait in the pending queue.
    let counts = published_to_a_stuck_subscriber(None, 1000, 2100);
    assert_eq!(
        (counts.published, counts.queued, counts.dropped),
        (2001, 99, 0),
        "{counts:?}"
    );
    let options = SocketOptions::default().with_send_hwm(10);
    let counts = published_to_a_stuck_subscriber(Some(options), 5, 30);
    assert_eq!(
        (counts.published, counts.queued, counts.dropped),
        (16, 5, 9),
        "{counts:?}"
    );
}

// ---------------------------------------------------------------------------------------
// ZMTP heartbeats, seen from a peer that speaks ZMTP 3.0 by hand and then goes silent.

/// Reads one ZMTP frame: (flags, body).
fn read_frame(stream: &mut std::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut flags = [0u8; 1];
    stream.read_exact(&mut flags)?;
    let size = if flags[0] & 0x02 != 0 {
        let mut size = [0u8; 8];
        stream.read_exact(&mut size)?;
        u64::from_be_bytes(size) as usize
    } else {
        let mut size = [0u8; 1];
        stream.read_exact(&mut size)?;
        usize::from(size[0])
    };
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body)?;
    Ok((flags[0], body))
}

/// Connects to a ZMTP 3.0 socket at `address` as a `REQ` with the NULL mechanism and
/// completes the handshake.
fn zmtp_req_peer(address: &str) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(secs(15))).unwrap();
    let mut greeting = [0u8; 64];
    greeting[0] = 0xFF;
    greeting[9] = 0x7F;
    greeting[10] = 3; // version 3.0
    greeting[12..16].copy_from_slice(b"NULL");
    stream.write_all(&greeting).unwrap();
    let mut theirs = [0u8; 64];
    stream.read_exact(&mut theirs).unwrap();
    assert_eq!((theirs[0], theirs[9], theirs[10]), (0xFF, 0x7F, 3));
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&3u32.to_be_bytes());
    ready.extend_from_slice(b"REQ");
    let mut command = vec![0x04, ready.len() as u8];
    command.extend_from_slice(&ready);
    stream.write_all(&command).unwrap();
    let (flags, body) = read_frame(&mut stream).unwrap();
    assert!(
        flags & 0x04 != 0 && body.starts_with(b"\x05READY"),
        "{body:?}"
    );
    stream
}

#[test]
fn a_server_pings_every_second_and_drops_a_peer_silent_for_5_s() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _running = server.spawn().unwrap();
    let mut peer = zmtp_req_peer(endpoint.trim_start_matches("tcp://"));
    let connected = Instant::now();
    let mut pings = Vec::new();
    // Never answered: the server's timeout (5 s after its first ping) ends the connection.
    let dropped = loop {
        match read_frame(&mut peer) {
            Ok((flags, body)) if flags & 0x04 != 0 && body.starts_with(b"\x04PING") => {
                pings.push(connected.elapsed());
            }
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(e) => {
                let waited_out = matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
                assert!(!waited_out, "never dropped; pings {pings:?}");
                break connected.elapsed();
            }
        }
    };
    // ZMQ_HEARTBEAT_IVL 1 s: the first ping after a second, then one a second.
    assert!(pings.len() >= 4, "{pings:?} then dropped at {dropped:?}");
    assert!(pings[0] >= Duration::from_millis(900), "{pings:?}");
    assert!(
        pings[0] < Duration::from_millis(1500) * slack(),
        "{pings:?}"
    );
    // ZMQ_HEARTBEAT_TIMEOUT 5 s, counted from the first unanswered ping.
    assert!(
        dropped >= pings[0] + Duration::from_millis(4900),
        "{dropped:?} {pings:?}"
    );
    assert!(dropped < secs(8), "{dropped:?} {pings:?}");
    // And the server serves on.
    assert_eq!(client(&endpoint).call(&Add(1, 2)).unwrap(), 3);
}

#[test]
fn zmqrpc_server_configured_for_750_peers_pings_each_every_3_s() {
    use crate::common::process::{ready_field, Process, SERVER};
    // 250 pings a second in all: one every 3 s to each of 750 peers (timeout 15 s).
    let (_server, ready) =
        Process::start(SERVER, &["--bind", "tcp://127.0.0.1:*", "--peers", "750"]);
    let endpoint = ready_field(&ready, "bind")[0].clone();
    let mut peer = zmtp_req_peer(endpoint.trim_start_matches("tcp://"));
    let connected = Instant::now();
    let (flags, body) = read_frame(&mut peer).unwrap();
    let first = connected.elapsed();
    assert!(
        flags & 0x04 != 0 && body.starts_with(b"\x04PING"),
        "{body:?}"
    );
    assert!(
        first >= Duration::from_millis(2900),
        "first ping at {first:?}"
    );
    assert!(
        first < Duration::from_millis(4500) * slack(),
        "first ping at {first:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Linger: how long closing waits for messages a peer is not taking.

/// How long the context of a publisher takes to end, after it published more than a
/// subscriber that never reads (and the kernel between them) can hold.
fn time_to_close_a_stuck_publisher(options: Option<SocketOptions>) -> Duration {
    let ctx = zmq::Context::new();
    let mut builder = RpcClient::builder()
        .context(&ctx)
        .publish_on("tcp://127.0.0.1:*");
    if let Some(options) = options {
        builder = builder.options(options);
    }
    let mut sensor = builder.connect().unwrap();
    let endpoint = sensor.publish_endpoints()[0].clone();
    // In a context of its own, so only the publisher's sockets hold `ctx` open.
    let other = zmq::Context::new();
    let subscriber = other.socket(zmq::SUB).unwrap();
    subscriber.set_linger(0).unwrap();
    subscriber.set_rcvhwm(1).unwrap();
    subscriber.set_rcvbuf(4096).unwrap();
    subscriber.set_subscribe(b"").unwrap();
    subscriber.connect(&endpoint).unwrap();
    assert!(attached(&mut sensor));
    let big = vec![0u8; 900 << 10];
    for _ in 0..24 {
        sensor.sender().publish(&big).unwrap(); // ~21 MB: far more than the kernel buffers
    }
    let (done, ended) = mpsc::channel();
    let closing = std::thread::spawn(move || {
        let started = Instant::now();
        drop(sensor);
        drop(ctx); // zmq_ctx_term: waits for the linger of what is still queued
        let _ = done.send(started.elapsed());
    });
    let took = ended
        .recv_timeout(secs(20))
        .expect("closing the publisher never ended");
    closing.join().unwrap();
    took
}

#[test]
fn closing_a_socket_lingers_200_ms_by_default_and_as_long_as_asked() {
    // libzmq's own default is to wait forever.
    let took = time_to_close_a_stuck_publisher(None);
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(1000) * slack(), "{took:?}");
    let options = SocketOptions::default().with_linger(Duration::from_millis(1500));
    let took = time_to_close_a_stuck_publisher(Some(options));
    assert!(took >= Duration::from_millis(1490), "{took:?}");
    assert!(took < Duration::from_millis(2500) * slack(), "{took:?}");
}

// ---------------------------------------------------------------------------------------
// Reconnecting: from 100 ms, doubling (plus up to 100 ms of libzmq's jitter) up to 5 s.

/// How long after a publisher appears at an endpoint a server's SUB socket, connecting to
/// it since `after` before, attaches.
fn time_to_attach(options: Option<SocketOptions>, after: Duration) -> Duration {
    let endpoint = ipc_endpoint("options-reconnect");
    let mut builder = RpcServer::builder()
        .register(Samples::default().service())
        .unwrap();
    if let Some(options) = options {
        builder = builder.options(options);
    }
    let _server = builder
        .subscribe(&endpoint)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    std::thread::sleep(after); // the time to fail: what the backoff is about
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::XPUB).unwrap();
    publisher.set_linger(0).unwrap();
    publisher.set_rcvtimeo(secs(10).as_millis() as i32).unwrap();
    publisher.bind(&endpoint).unwrap();
    let appeared = Instant::now();
    assert_eq!(publisher.recv_bytes(0).expect("never attached"), [1]);
    appeared.elapsed()
}

#[test]
fn a_subscriber_backs_off_reconnecting_to_an_absent_publisher() {
    // Tries at about 0.1-0.2, 0.3-0.5, 0.7-1.0, 1.5-1.9, 3.1-3.6 s: a publisher appearing at
    // 2.5 s waits for the 3.1-3.6 s try. (libzmq's defaults retry every 0.1-0.2 s.)
    let took = time_to_attach(None, Duration::from_millis(2500));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500) * slack(), "{took:?}");
    // No backoff asked for: at most one interval (plus jitter).
    let options = SocketOptions::default()
        .with_reconnect(Duration::from_millis(100), Duration::from_millis(100));
    let took = time_to_attach(Some(options), Duration::from_millis(2500));
    assert!(took < Duration::from_millis(400) * slack(), "{took:?}");
}
