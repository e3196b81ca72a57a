//! `scale`: how throughput and memory go with the number of peers, raw libzmq beside
//! zmqrpc at each size, in one run.
//!
//! - **callers**: `n` clients call one real `zmqrpc-server` (configured `--peers n`; at
//!   4,096 also without, pinging every caller every second), eight
//!   threads each calling its share of the clients in turn; raw libzmq: `n` REQ sockets and
//!   a REP echo thread. The server's RSS (VmRSS from `/proc`) with the callers connected,
//!   less its RSS before any, per caller.
//! - **publishers**: `n` publishers (`RpcClient::publish_on`) into one `RpcServer`
//!   subscribed to all, eight threads sending from their share in turn; raw libzmq: `n` PUB
//!   sockets into one SUB. Messages the server received a second. Both ends live in this
//!   process: the RSS per peer is the process's growth, both ends together.
//! - **subscribers**: one `RpcClient` publisher, `n` raw SUB sockets; raw libzmq: a PUB
//!   socket. Messages delivered a second, all subscribers together, and the process's
//!   growth per subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc::agent::Echo;
use zmqrpc::transport::{RpcClient, RpcServer, ServiceError, SocketOptions};

use crate::{binary, rss, seconds, spawn, Tick};

/// Sockets per raw context, under libzmq's 1,023.
const RAW_PER_CONTEXT: usize = 900;

/// Eight threads, each doing `work` over its share of `peers` in turn, for `time`; the sum
/// of what they return.
fn eight_threads<P: Send>(
    peers: &mut [P],
    time: Duration,
    work: impl Fn(&mut [P], Instant) -> u64 + Sync,
) -> u64 {
    let share = peers.len().div_ceil(8).max(1);
    let until = Instant::now() + time;
    std::thread::scope(|scope| {
        let work = &work;
        let threads: Vec<_> = peers
            .chunks_mut(share)
            .map(|chunk| scope.spawn(move || work(chunk, until)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    })
}

/// Raw libzmq sockets of `kind`, `n` of them, spread over contexts of [`RAW_PER_CONTEXT`].
fn raw_sockets(n: usize, kind: zmq::SocketType) -> (Vec<zmq::Context>, Vec<zmq::Socket>) {
    let contexts: Vec<zmq::Context> = (0..n.div_ceil(RAW_PER_CONTEXT).max(1))
        .map(|_| zmq::Context::new())
        .collect();
    let sockets = (0..n)
        .map(|i| {
            let socket = contexts[i / RAW_PER_CONTEXT].socket(kind).unwrap();
            socket.set_linger(0).unwrap();
            socket
        })
        .collect();
    (contexts, sockets)
}

fn process_rss_kib() -> u64 {
    rss(std::process::id()).rss
}

fn header(what: &str) {
    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>14}",
        what, "raw libzmq", "zmqrpc", "ratio", "RSS/peer KiB"
    );
}

fn scale_row(case: String, raw: f64, ours: f64, per_peer_kib: f64) {
    println!(
        "{case:<34} {raw:>12.0} {ours:>12.0} {:>6.2}x {per_peer_kib:>14.1}",
        ours / raw
    );
}

/// Raw libzmq: `n` REQ sockets calling a REP echo thread; calls a second.
fn raw_callers(n: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let endpoint = crate::raw_echo("tcp://127.0.0.1:*", Arc::clone(&stop));
    let (_contexts, mut sockets) = raw_sockets(n, zmq::REQ);
    let payload = [7u8; 32];
    for socket in &sockets {
        socket.connect(&endpoint).unwrap();
        socket.set_rcvtimeo(10_000).unwrap();
        socket.send(&payload[..], 0).unwrap();
        socket.recv_bytes(0).unwrap();
    }
    let started = Instant::now();
    let calls = eight_threads(&mut sockets, seconds(), |sockets, until| {
        let mut calls = 0;
        let mut reply = zmq::Message::new();
        while Instant::now() < until {
            for socket in sockets.iter() {
                socket.send(&payload[..], 0).unwrap();
                socket.recv(&mut reply, 0).unwrap();
                calls += 1;
            }
        }
        calls
    });
    stop.store(true, Ordering::Relaxed);
    calls as f64 / started.elapsed().as_secs_f64()
}

/// zmqrpc: `n` clients calling the real `zmqrpc-server` (`--peers n` if `configured`, else
/// its default 1 s pings); calls a second and the server's RSS per connected caller, in KiB.
fn zmqrpc_callers(n: usize, configured: bool) -> (f64, f64) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let peers = n.to_string();
    let mut args = vec!["--bind", &endpoint];
    if configured {
        args.extend(["--peers", &peers]);
    }
    let server = spawn(
        &binary("zmqrpc-server", env!("CARGO_BIN_EXE_zmqrpc-server")),
        &args,
    );
    let pid = server.0.id();
    let mut clients: Vec<RpcClient> = (0..n)
        .map(|_| {
            RpcClient::builder()
                .req(&endpoint)
                .timeout(Duration::from_secs(30))
                .connect()
                .unwrap()
        })
        .collect();
    // Before any caller: one call, so the server has served and its buffers exist.
    clients[0].call(&Echo("x".repeat(32))).unwrap();
    let alone = rss(pid).rss;
    for client in &mut clients {
        client.call(&Echo("x".repeat(32))).unwrap();
    }
    let started = Instant::now();
    let calls = eight_threads(&mut clients, seconds(), |clients, until| {
        let mut calls = 0;
        let text = "x".repeat(32);
        while Instant::now() < until {
            for client in clients.iter_mut() {
                client.call(&Echo(text.clone())).unwrap();
                calls += 1;
            }
        }
        calls
    });
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    let with_callers = rss(pid).rss;
    let per_caller = with_callers.saturating_sub(alone) as f64 / n as f64;
    (rate, per_caller)
}

/// Raw libzmq: `n` PUB sockets into one SUB; messages received a second.
fn raw_publishers(n: usize) -> f64 {
    let (_contexts, mut publishers) = raw_sockets(n, zmq::PUB);
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(100).unwrap();
    for publisher in &publishers {
        publisher.bind("tcp://127.0.0.1:*").unwrap();
        sub.connect(&publisher.get_last_endpoint().unwrap().unwrap())
            .unwrap();
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut msg = zmq::Message::new();
            while !stop.load(Ordering::Relaxed) {
                if sub.recv(&mut msg, 0).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200) + Duration::from_micros(200 * n as u64));
    let payload = [7u8; 32];
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    eight_threads(&mut publishers, seconds(), |publishers, until| {
        while Instant::now() < until {
            for publisher in publishers.iter() {
                let _ = publisher.send(&payload[..], zmq::DONTWAIT);
            }
        }
        0
    });
    std::thread::sleep(Duration::from_millis(100));
    let rate = (received.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    rate
}

/// zmqrpc: `n` publishers into one `RpcServer`; messages it received a second, and the
/// process's growth per publisher (both ends), in KiB.
fn zmqrpc_publishers(n: usize) -> (f64, f64) {
    let before = process_rss_kib();
    let mut publishers: Vec<RpcClient> = (0..n)
        .map(|_| {
            RpcClient::builder()
                .publish_on("tcp://127.0.0.1:*")
                .connect()
                .unwrap()
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&received);
    let mut server = RpcServer::builder()
        .options(SocketOptions::default().for_peers(n))
        .register(move |_: Tick| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ServiceError>(())
        })
        .unwrap();
    for publisher in &publishers {
        server = server.subscribe(&publisher.publish_endpoints()[0]);
    }
    let running = server.bind().unwrap().spawn().unwrap();
    for publisher in &mut publishers {
        let side = publisher.sender().publisher().unwrap();
        side.wait_for_subscriber(Duration::from_secs(30)).unwrap();
    }
    let from = received.load(Ordering::Relaxed);
    let started = Instant::now();
    eight_threads(&mut publishers, seconds(), |publishers, until| {
        let mut seq = 0;
        while Instant::now() < until {
            for publisher in publishers.iter_mut() {
                let _ = publisher.notify(&Tick(seq));
                seq += 1;
            }
        }
        0
    });
    std::thread::sleep(Duration::from_millis(100));
    let rate = (received.load(Ordering::Relaxed) - from) as f64 / started.elapsed().as_secs_f64();
    let grown = process_rss_kib().saturating_sub(before) as f64 / n as f64;
    running.stop_and_wait().unwrap();
    (rate, grown)
}

/// Reads every SUB socket of `subs` for `time` from eight threads; messages read.
fn read_all(subs: &mut [zmq::Socket], time: Duration) -> u64 {
    eight_threads(subs, time, |subs, until| {
        let mut read = 0;
        let mut msg = zmq::Message::new();
        while Instant::now() < until {
            let mut items: Vec<_> = subs.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
            if zmq::poll(&mut items, 10).unwrap_or(0) == 0 {
                continue;
            }
            for sub in subs.iter() {
                while sub.recv(&mut msg, zmq::DONTWAIT).is_ok() {
                    read += 1;
                }
            }
        }
        read
    })
}

/// `n` raw SUB sockets connected to `endpoint`, each subscribed to everything.
fn subscribers(n: usize, endpoint: &str) -> (Vec<zmq::Context>, Vec<zmq::Socket>) {
    let (contexts, subs) = raw_sockets(n, zmq::SUB);
    for sub in &subs {
        sub.set_subscribe(b"").unwrap();
        sub.connect(endpoint).unwrap();
    }
    (contexts, subs)
}

/// Runs `send` on a thread for [`seconds`] while `subs` are read; deliveries a second.
fn deliveries(subs: &mut [zmq::Socket], send: impl FnMut() + Send) -> f64 {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let read = std::thread::scope(|scope| {
        let stop = &stop;
        let mut send = send;
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                send();
            }
        });
        let read = read_all(subs, seconds());
        stop.store(true, Ordering::Relaxed);
        read
    });
    read as f64 / started.elapsed().as_secs_f64()
}

/// Raw libzmq: one PUB socket, `n` SUBs; deliveries a second.
fn raw_subscribers(n: usize) -> f64 {
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::PUB).unwrap();
    publisher.set_linger(0).unwrap();
    publisher.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = publisher.get_last_endpoint().unwrap().unwrap();
    let (_contexts, mut subs) = subscribers(n, &endpoint);
    std::thread::sleep(Duration::from_millis(200) + Duration::from_micros(500 * n as u64));
    let payload = [7u8; 32];
    deliveries(&mut subs, move || {
        let _ = publisher.send(&payload[..], zmq::DONTWAIT);
    })
}

/// zmqrpc: one `RpcClient` publisher, `n` SUBs; deliveries a second and the process's
/// growth per subscriber (both ends), in KiB.
fn zmqrpc_subscribers(n: usize) -> (f64, f64) {
    let before = process_rss_kib();
    let mut client = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .connect()
        .unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    let (_contexts, mut subs) = subscribers(n, &endpoint);
    std::thread::sleep(Duration::from_millis(200) + Duration::from_micros(500 * n as u64));
    let mut seq = 0;
    let rate = deliveries(&mut subs, || {
        let _ = client.notify(&Tick(seq));
        seq += 1;
    });
    let grown = process_rss_kib().saturating_sub(before) as f64 / n as f64;
    (rate, grown)
}

/// The three curves, printed as one table.
pub fn case_scale() {
    if let Err(e) = zmqrpc::transport::raise_open_file_limit() {
        println!("open-file limit not raised: {e}");
    }
    header("scale: callers (calls/s)");
    for n in [8, 64, 512, 1_000, 4_096] {
        let raw = raw_callers(n);
        let (ours, per_caller) = zmqrpc_callers(n, true);
        scale_row(format!("  {n} callers, server RSS"), raw, ours, per_caller);
    }
    // What `--peers` saves: the same 4,096 callers on a server pinging each every second.
    let raw = raw_callers(4_096);
    let (ours, per_caller) = zmqrpc_callers(4_096, false);
    scale_row("  4096 callers, 1 s pings".into(), raw, ours, per_caller);
    header("scale: publishers (msgs/s received)");
    for n in [1, 16, 128, 512, 2_048] {
        let raw = raw_publishers(n);
        let (ours, grown) = zmqrpc_publishers(n);
        scale_row(format!("  {n} publishers, process RSS"), raw, ours, grown);
    }
    header("scale: subscribers (msgs/s delivered)");
    for n in [1, 16, 128, 1_024] {
        let raw = raw_subscribers(n);
        let (ours, grown) = zmqrpc_subscribers(n);
        scale_row(format!("  {n} subscribers, process RSS"), raw, ours, grown);
    }
}
