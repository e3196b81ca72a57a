//! `scale`: how throughput and memory go with the number of peers, raw libzmq beside
//! zmqrpc at each size, in one run.
//!
//! - **callers**: `n` clients call one real `zmqrpc-server` (configured `--peers n`; at
//!   4,096 also without, pinging every caller every second), eight
//!   threads each calling its share of the clients in turn; raw libzmq: `n` REQ sockets and
//!   a REP echo thread. The server's RSS (VmRSS from `/proc`) after the measured seconds,
//!   less its RSS before any caller connected, per caller (what the callers' calls have
//!   touched so far: the fewer calls each made, the less), and the server's CPU time (user
//!   and system, from `/proc/<pid>/stat`) per call over the measured seconds.
//! - **memory as messages pass**: 256 callers, the server's RSS per caller after 1, 100,
//!   300, 600 and 1,000 calls each: libzmq touches a connection's pipe memory as messages
//!   pass, so the figure after a few calls is not what a busy server holds. Raw libzmq: a
//!   REP echo in a process of its own (this binary, run again with `ZMQRPC_BENCH_RAW_REP`
//!   set), with the server's socket options. Both servers' RSS is taken before any caller
//!   connects. Then the same for 256 publishers a server subscribes to (`zmqrpc-server
//!   --subscribe`; raw: a SUB process, `ZMQRPC_BENCH_RAW_SUB`, reading XPUB sockets), less
//!   the RSS of the same server subscribed to none.
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

use crate::{binary, cpu_of, rss, seconds, spawn, Tick};

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

/// A section's header: its name, and the per-peer column's if it has one.
fn header(what: &str, per_peer: &str) {
    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>14}",
        what, "raw libzmq", "zmqrpc", "ratio", per_peer
    );
}

fn scale_row(case: String, raw: f64, ours: f64, per_peer_kib: f64) {
    println!(
        "{case:<34} {raw:>12.0} {ours:>12.0} {:>6.2}x {per_peer_kib:>14.1}",
        ours / raw
    );
}

/// Set in the environment of this binary run again as [`serve_raw_if_asked`]: the endpoint
/// its raw REP echo binds, and the callers it is configured for.
const RAW_REP_ENV: &str = "ZMQRPC_BENCH_RAW_REP";
const RAW_PEERS_ENV: &str = "ZMQRPC_BENCH_RAW_PEERS";

/// Serves a raw libzmq REP echo on the endpoint in [`RAW_REP_ENV`], if set, and never
/// returns: a raw server in a process of its own, as `zmqrpc-server` is. Its socket has the
/// options `zmqrpc-server --peers n` gives its own (`SocketOptions::for_peers`, `n` from
/// [`RAW_PEERS_ENV`]): heartbeats, message size limit, high-water marks.
pub fn serve_raw_if_asked() {
    subscribe_raw_if_asked();
    let Ok(endpoint) = std::env::var(RAW_REP_ENV) else {
        return;
    };
    let peers = std::env::var(RAW_PEERS_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP).unwrap();
    SocketOptions::default()
        .for_peers(peers)
        .apply(&rep)
        .unwrap();
    rep.bind(&endpoint).unwrap();
    println!("ready");
    let mut msg = zmq::Message::new();
    loop {
        if rep.recv(&mut msg, 0).is_ok() {
            rep.send(&msg[..], 0).unwrap();
        }
    }
}

/// Set in the environment of this binary run again as [`subscribe_raw_if_asked`]: the
/// publishers its raw SUB socket connects to, comma-separated (none: a process to compare
/// with).
const RAW_SUB_ENV: &str = "ZMQRPC_BENCH_RAW_SUB";

/// Reads, as a raw libzmq SUB socket subscribed to everything, what the publishers in
/// [`RAW_SUB_ENV`] publish, if set, and never returns; its socket has the options a
/// server configured for as many peers gives its own.
fn subscribe_raw_if_asked() {
    let Ok(endpoints) = std::env::var(RAW_SUB_ENV) else {
        return;
    };
    let endpoints: Vec<&str> = endpoints.split(',').filter(|e| !e.is_empty()).collect();
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    SocketOptions::default()
        .for_peers(endpoints.len())
        .apply(&sub)
        .unwrap();
    sub.set_subscribe(b"").unwrap();
    for endpoint in &endpoints {
        sub.connect(endpoint).unwrap();
    }
    println!("ready");
    let mut msg = zmq::Message::new();
    loop {
        let _ = sub.recv(&mut msg, 0);
    }
}

/// This binary run again with `var` set to `value`, once it says it is ready.
fn bench_process(var: &str, value: &str, peers: usize) -> crate::Spawned {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .env(var, value)
        .env(RAW_PEERS_ENV, peers.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for its `ready` line.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    crate::Spawned(child)
}

/// A raw REP echo process ([`serve_raw_if_asked`]) on `endpoint`, configured for `peers`.
fn raw_server(endpoint: &str, peers: usize) -> crate::Spawned {
    bench_process(RAW_REP_ENV, endpoint, peers)
}

/// `n` raw REQ sockets with zmqrpc's client options (`SocketOptions::default()`),
/// connected to `endpoint`.
fn raw_callers_on(endpoint: &str, n: usize) -> (Vec<zmq::Context>, Vec<zmq::Socket>) {
    let (contexts, sockets) = raw_sockets(n, zmq::REQ);
    for socket in &sockets {
        SocketOptions::default().apply(socket).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_rcvtimeo(30_000).unwrap();
        socket.connect(endpoint).unwrap();
    }
    (contexts, sockets)
}

/// A free TCP endpoint on 127.0.0.1.
fn free_endpoint() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://127.0.0.1:{}", probe.local_addr().unwrap().port())
}

/// The messages (calls, publications) each peer has sent when [`memory_as_messages_pass`]
/// reads what the server holds.
const MESSAGE_MARKS: [u64; 5] = [1, 100, 300, 600, 1_000];

/// How [`memory_as_messages_pass`] sends.
struct Traffic {
    /// How long each sending thread waits after each round over its share: for
    /// publications, so that the server keeps up (calls wait for their answers).
    pause: Duration,
    /// How long after a mark's last message the server's memory is read: for publications,
    /// the time to take what was sent.
    settle: Duration,
    /// Messages each peer sends after the last mark without pausing, where the server may
    /// fall behind: one more reading.
    flood: Option<u64>,
}

/// What a server holds per peer after each of [`MESSAGE_MARKS`] messages (calls, or
/// publications) from every one of `peers` (eight threads, each sending from its share in
/// turn), and after the flood if `traffic` has one: `held()` (its RSS less what it held
/// without them, KiB) per peer; `send` sends one.
fn memory_as_messages_pass<P: Send>(
    held: impl Fn() -> u64,
    peers: &mut [P],
    send: impl Fn(&mut P) + Sync,
    traffic: &Traffic,
) -> Vec<f64> {
    let mut sent = 0;
    let steps = MESSAGE_MARKS.iter().map(|&mark| {
        let rounds = mark - sent;
        sent = mark;
        (rounds, traffic.pause)
    });
    let flood = traffic.flood.map(|rounds| (rounds, Duration::ZERO));
    steps
        .chain(flood)
        .map(|(rounds, pause)| {
            // Rounds, not time: `eight_threads`'s deadline is never reached first.
            eight_threads(peers, Duration::from_secs(3600), |peers, _| {
                for _ in 0..rounds {
                    peers.iter_mut().for_each(&send);
                    std::thread::sleep(pause);
                }
                0
            });
            std::thread::sleep(traffic.settle);
            held() as f64 / peers.len() as f64
        })
        .collect()
}

/// A row for each of [`MESSAGE_MARKS`], and the flood's if `traffic` has one: what raw
/// libzmq's and zmqrpc's servers held per peer.
fn mark_rows(what: &str, traffic: &Traffic, raw: Vec<f64>, ours: Vec<f64>) {
    let labels = MESSAGE_MARKS
        .iter()
        .map(|mark| format!("  after {mark} {what} each"))
        .chain(traffic.flood.map(|n| format!("  then {n} more unpaced")));
    for ((label, raw), ours) in labels.zip(raw).zip(ours) {
        println!("{label:<34} {raw:>12.1} {ours:>12.1} {:>6.2}x", ours / raw);
    }
}

/// [`memory_as_messages_pass`] for `n` raw REQ sockets on a raw REP echo process, and for `n`
/// `RpcClient`s on `zmqrpc-server --peers n`; a row for each mark.
fn memory_rows(n: usize) {
    let endpoint = free_endpoint();
    let raw_server = raw_server(&endpoint, n);
    let before = rss(raw_server.0.id()).rss;
    let (_contexts, mut sockets) = raw_callers_on(&endpoint, n);
    // Longer than libzmq's 33-byte inline messages, as zmqrpc's request is: received into
    // the connection's decoder buffer and referenced there (zero-copy), not copied out.
    let payload = [7u8; 64];
    let pid = raw_server.0.id();
    let held = || rss(pid).rss.saturating_sub(before);
    // A call waits for its answer: the server never falls behind.
    let traffic = Traffic {
        pause: Duration::ZERO,
        settle: Duration::ZERO,
        flood: None,
    };
    let raw = memory_as_messages_pass(
        held,
        &mut sockets,
        |socket| {
            socket.send(&payload[..], 0).unwrap();
            socket.recv_bytes(0).unwrap();
        },
        &traffic,
    );
    drop((sockets, raw_server));

    let endpoint = free_endpoint();
    let peers = n.to_string();
    let server = spawn(
        &binary("zmqrpc-server", env!("CARGO_BIN_EXE_zmqrpc-server")),
        &["--bind", &endpoint, "--peers", &peers],
    );
    let before = rss(server.0.id()).rss;
    let mut clients: Vec<RpcClient> = (0..n)
        .map(|_| {
            RpcClient::builder()
                .req(&endpoint)
                .timeout(Duration::from_secs(30))
                .connect()
                .unwrap()
        })
        .collect();
    let text = "x".repeat(32);
    let pid = server.0.id();
    let held = || rss(pid).rss.saturating_sub(before);
    let ours = memory_as_messages_pass(
        held,
        &mut clients,
        |client| {
            client.call(&Echo(text.clone())).unwrap();
        },
        &traffic,
    );
    mark_rows("calls", &traffic, raw, ours);
}

/// What one side of a callers row measured.
struct Callers {
    /// Calls a second, all callers together.
    rate: f64,
    /// The server's RSS per connected caller, in KiB.
    rss_per_caller_kib: f64,
    /// The server's CPU time (user and system, all its threads) per call, in µs.
    server_cpu_per_call_us: f64,
}

/// One side of a callers row: a server process, its callers, and what their turns did.
struct Served<C> {
    pid: u32,
    /// The server's RSS before any caller connected.
    before: u64,
    callers: Vec<C>,
    calls: u64,
    time: Duration,
    server_cpu: Duration,
}

impl<C: Send> Served<C> {
    /// `callers` of server `pid`, each having called once (`call`, given a reply buffer to
    /// use if it likes).
    fn new(
        pid: u32,
        before: u64,
        mut callers: Vec<C>,
        call: &(impl Fn(&mut C, &mut zmq::Message) + Sync),
    ) -> Served<C> {
        let mut reply = zmq::Message::new();
        callers.iter_mut().for_each(|c| call(c, &mut reply));
        Served {
            pid,
            before,
            callers,
            calls: 0,
            time: Duration::ZERO,
            server_cpu: Duration::ZERO,
        }
    }

    /// Eight threads calling in turn for `time`.
    fn turn(&mut self, time: Duration, call: &(impl Fn(&mut C, &mut zmq::Message) + Sync)) {
        let server = self.pid.to_string();
        let (started, cpu) = (Instant::now(), cpu_of(&server));
        self.calls += eight_threads(&mut self.callers, time, |callers, until| {
            let (mut calls, mut reply) = (0, zmq::Message::new());
            while Instant::now() < until {
                for caller in callers.iter_mut() {
                    call(caller, &mut reply);
                    calls += 1;
                }
            }
            calls
        });
        self.time += started.elapsed();
        self.server_cpu += cpu_of(&server).saturating_sub(cpu);
    }

    fn measured(&self) -> Callers {
        Callers {
            rate: self.calls as f64 / self.time.as_secs_f64(),
            rss_per_caller_kib: rss(self.pid).rss.saturating_sub(self.before) as f64
                / self.callers.len() as f64,
            server_cpu_per_call_us: self.server_cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64,
        }
    }
}

/// One call of a raw REQ socket: 32 bytes, echoed.
fn raw_call(socket: &mut zmq::Socket, reply: &mut zmq::Message) {
    socket.send(&[7u8; 32][..], 0).unwrap();
    socket.recv(reply, 0).unwrap();
}

/// One call of an `RpcClient`: an echo of 32 characters.
fn our_call(client: &mut RpcClient, _: &mut zmq::Message) {
    client.call(&Echo("x".repeat(32))).unwrap();
}

/// A raw libzmq server process ([`raw_server`]) and `n` REQ sockets connected to it, each
/// having called once.
struct RawSide {
    served: Served<zmq::Socket>,
    _contexts: Vec<zmq::Context>,
    _server: crate::Spawned,
}

impl RawSide {
    fn new(n: usize, peers: usize) -> RawSide {
        let endpoint = free_endpoint();
        let server = raw_server(&endpoint, peers);
        let before = rss(server.0.id()).rss;
        let (contexts, sockets) = raw_callers_on(&endpoint, n);
        RawSide {
            served: Served::new(server.0.id(), before, sockets, &raw_call),
            _contexts: contexts,
            _server: server,
        }
    }
}

/// The real `zmqrpc-server` (`--peers n` if `configured`) and `n` `RpcClient`s calling it,
/// each having called once.
fn our_side(n: usize, configured: bool) -> (Served<RpcClient>, crate::Spawned) {
    let endpoint = free_endpoint();
    let peers = n.to_string();
    let mut args = vec!["--bind", &endpoint];
    if configured {
        args.extend(["--peers", &peers]);
    }
    let server = spawn(
        &binary("zmqrpc-server", env!("CARGO_BIN_EXE_zmqrpc-server")),
        &args,
    );
    let before = rss(server.0.id()).rss;
    let clients: Vec<RpcClient> = (0..n)
        .map(|_| {
            RpcClient::builder()
                .req(&endpoint)
                .timeout(Duration::from_secs(30))
                .connect()
                .unwrap()
        })
        .collect();
    (
        Served::new(server.0.id(), before, clients, &our_call),
        server,
    )
}

/// The files this process holds for `n` callers on each side at once: a raw REQ socket
/// holds its event descriptor and its connection; an `RpcClient` those and its monitor's
/// two ends.
fn files_for_both(n: usize) -> u64 {
    6 * n as u64 + 512
}

/// `n` callers on raw libzmq (REQ sockets on a raw REP echo process, [`raw_server`]) and on
/// zmqrpc (`RpcClient`s on the real `zmqrpc-server`), both servers configured for `n` peers
/// if `configured` (`--peers n`), else pinging every caller every second. The two sides
/// take four turns each, a quarter of the measured seconds per turn, so that both see the
/// same stretches of a noisy machine; where this process may not hold the files of both
/// at once (`open_files`), raw libzmq's side runs first, then zmqrpc's.
fn callers(n: usize, configured: bool, open_files: u64) -> (Callers, Callers) {
    let peers = if configured { n } else { 1 };
    let mut raw = RawSide::new(n, peers);
    if files_for_both(n) > open_files {
        println!(
            "  ({n} callers: raw libzmq's side, then zmqrpc's; both at once would hold {} \
             files, the limit is {open_files})",
            files_for_both(n)
        );
        raw.served.turn(seconds(), &raw_call);
        let measured = raw.served.measured();
        drop(raw);
        let (mut ours, _server) = our_side(n, configured);
        ours.turn(seconds(), &our_call);
        return (measured, ours.measured());
    }
    let (mut ours, _server) = our_side(n, configured);
    for _ in 0..4 {
        raw.served.turn(seconds() / 4, &raw_call);
        ours.turn(seconds() / 4, &our_call);
    }
    (raw.served.measured(), ours.measured())
}

/// A callers row: calls a second, and under it the server's RSS per caller and CPU per
/// call.
fn callers_row(case: String, raw: &Callers, ours: &Callers) {
    let line = |what: &str, raw: f64, ours: f64| {
        println!("{what:<34} {raw:>12.1} {ours:>12.1} {:>6.2}x", ours / raw);
    };
    line(&case, raw.rate, ours.rate);
    line(
        "    server RSS per caller (KiB)",
        raw.rss_per_caller_kib,
        ours.rss_per_caller_kib,
    );
    line(
        "    server CPU per call (µs)",
        raw.server_cpu_per_call_us,
        ours.server_cpu_per_call_us,
    );
}

/// [`memory_as_messages_pass`] for a raw SUB process ([`subscribe_raw_if_asked`]) reading
/// `n` raw XPUB sockets, and for `zmqrpc-server --subscribe` reading `n` `RpcClient`
/// publishers; a row for each mark.
fn publisher_memory_rows(n: usize) {
    let (_contexts, mut sockets) = raw_sockets(n, zmq::XPUB);
    let endpoints: Vec<String> = sockets
        .iter()
        .map(|socket| {
            socket.bind("tcp://127.0.0.1:*").unwrap();
            socket.get_last_endpoint().unwrap().unwrap()
        })
        .collect();
    let raw_twin = bench_process(RAW_SUB_ENV, "", n);
    let raw_sub = bench_process(RAW_SUB_ENV, &endpoints.join(","), n);
    // Each publisher has its subscriber once the subscription arrives.
    for socket in &sockets {
        socket.set_rcvtimeo(30_000).unwrap();
        socket.recv_bytes(0).unwrap();
    }
    let payload = [7u8; 64];
    let (pid, twin) = (raw_sub.0.id(), raw_twin.0.id());
    // Paced to about 100,000 messages a second in all (eight threads, 32 publishers each,
    // 2 ms between rounds), which both servers keep up with; then a flood, which zmqrpc's
    // (decoding and dispatching each) does not.
    let traffic = Traffic {
        pause: Duration::from_millis(2),
        settle: Duration::from_millis(500),
        flood: Some(2_000),
    };
    let held = || rss(pid).rss.saturating_sub(rss(twin).rss);
    let raw = memory_as_messages_pass(
        held,
        &mut sockets,
        |socket| {
            socket.send(&payload[..], 0).unwrap();
        },
        &traffic,
    );
    drop((sockets, raw_sub, raw_twin));

    let mut publishers: Vec<RpcClient> = (0..n)
        .map(|_| {
            RpcClient::builder()
                .publish_on("tcp://127.0.0.1:*")
                .connect()
                .unwrap()
        })
        .collect();
    let peers = n.to_string();
    let server_binary = binary("zmqrpc-server", env!("CARGO_BIN_EXE_zmqrpc-server"));
    let twin_endpoint = free_endpoint();
    let twin = spawn(
        &server_binary,
        &["--bind", &twin_endpoint, "--peers", &peers],
    );
    let endpoint = free_endpoint();
    let subscribed: Vec<String> = publishers
        .iter()
        .map(|publisher| publisher.publish_endpoints()[0].clone())
        .collect();
    let mut args = vec!["--bind", endpoint.as_str(), "--peers", peers.as_str()];
    for publisher in &subscribed {
        args.extend(["--subscribe", publisher.as_str()]);
    }
    let server = spawn(&server_binary, &args);
    for publisher in &mut publishers {
        let side = publisher.sender().publisher().unwrap();
        side.wait_for_subscriber(Duration::from_secs(30)).unwrap();
    }
    let text = "x".repeat(32);
    let (pid, twin) = (server.0.id(), twin.0.id());
    let held = || rss(pid).rss.saturating_sub(rss(twin).rss);
    let ours = memory_as_messages_pass(
        held,
        &mut publishers,
        |publisher| {
            publisher.notify(&Echo(text.clone())).unwrap();
        },
        &traffic,
    );
    mark_rows("messages", &traffic, raw, ours);
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
    let open_files = zmqrpc::transport::raise_open_file_limit().unwrap_or_else(|e| {
        println!("open-file limit not raised: {e}");
        1024
    });
    header("scale: callers", "");
    for n in [8, 64, 512, 1_000, 4_096] {
        let (raw, ours) = callers(n, true, open_files);
        callers_row(format!("  {n} callers (calls/s)"), &raw, &ours);
    }
    // What `--peers` saves: the same 4,096 callers on a server pinging each every second.
    let (raw, ours) = callers(4_096, false, open_files);
    callers_row("  4096 callers, 1 s pings".into(), &raw, &ours);
    header("scale: server RSS per caller (KiB), 256 callers", "");
    memory_rows(256);
    header("scale: server RSS per publisher (KiB), 256 publishers", "");
    publisher_memory_rows(256);
    header("scale: publishers (msgs/s received)", "RSS/peer KiB");
    for n in [1, 16, 128, 512, 2_048] {
        let raw = raw_publishers(n);
        let (ours, grown) = zmqrpc_publishers(n);
        scale_row(format!("  {n} publishers, process RSS"), raw, ours, grown);
    }
    header("scale: subscribers (msgs/s delivered)", "RSS/peer KiB");
    for n in [1, 16, 128, 1_024] {
        let raw = raw_subscribers(n);
        let (ours, grown) = zmqrpc_subscribers(n);
        scale_row(format!("  {n} subscribers, process RSS"), raw, ours, grown);
    }
}
