//! zmqrpc against raw libzmq, on this machine, in one run: `cargo bench --bench zmqrpc-bench`.
//!
//! Every case runs for a fixed time and prints calls (or messages) per second for raw libzmq
//! and for zmqrpc, and their ratio. The pipelined and shared-client cases run their sides in
//! turns (four each, a quarter of the time per turn), so both see the same stretches of a
//! noisy machine, and print the CPU time per call of the whole process (every thread, from
//! `/proc/self/stat`), which holds better than a rate where threads outnumber cores. The
//! payload is 32 opaque bytes, carried as serde bytes; one row carries them as a `Vec<u8>`,
//! which serde reads and writes element by element. The last section reads the peak RSS of the real
//! `zmqrpc-server` and `zmqrpc-proxy` processes. `BENCH_SECONDS` sets the time per case
//! (default 2); the whole run takes well under a minute.
//!
//! Arguments name the cases to run (`sequential`, `pipelined`, `notify`, `proxies` (with the
//! serial bridge), `security` (none, PLAIN and CURVE), `rss`, `recovery` (a buffered proxy's boot on a
//! damaged 64 MiB spool), `concurrent` (8 callers at once through `rep2req`), `shared` (the shared client
//! and the async server against what they replace), `scale` (callers 8 → 4,096, publishers
//! 1 → 2,048, subscribers 1 → 1,024, with RSS: see `scale/mod.rs`));
//! none runs them all. `ZMQRPC_BIN_DIR` points the RSS case at other builds of the binaries
//! (`scripts/footprint.sh` passes the `device` profile's).

#![allow(clippy::unwrap_used)] // a benchmark: a panic is its failure report

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use zmqrpc::agent::Echo;
use zmqrpc::transport::{
    BufferedProxy, Credentials, KeyPair, Pipeline, Proxy, ProxyKind, Requester, RpcClient,
    RpcServer, ServiceError, SharedClient, SocketOptions, Users,
};
use zmqrpc::{frame, Command as _, Header};

/// How throughput and memory go with the number of peers (`scale`).
#[path = "scale/mod.rs"]
mod scale;

/// The tests' fake microcontroller (a `DeviceServer` on a pseudo-terminal).
#[cfg(feature = "serial")]
#[path = "../tests/it/common/device.rs"]
mod device;

/// The payload every case carries: opaque bytes, as raw libzmq carries them, so they go as
/// serde bytes (`serde_bytes`): one length and one copy. The wire is the same as a
/// `Vec<u8>`'s, which serde reads and writes one `u8` at a time (see [`SeqBlob`]).
#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);

impl zmqrpc::Command for Blob {
    const NAME: &'static str = "bench.blob";
    type Response = ByteBuf;
}

/// [`Blob`]'s bytes as a plain `Vec<u8>`: the same wire, serde's element-by-element path.
#[derive(Serialize, Deserialize)]
struct SeqBlob(Vec<u8>);

impl zmqrpc::Command for SeqBlob {
    const NAME: &'static str = "bench.seq-blob";
    type Response = Vec<u8>;
}

#[derive(Serialize, Deserialize)]
struct Tick(u64);

impl zmqrpc::Command for Tick {
    const NAME: &'static str = "bench.tick";
    type Response = ();
}

/// How long each case runs: `BENCH_SECONDS`, default 2; read once (a loop asks every turn).
fn seconds() -> Duration {
    static SECONDS: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SECONDS.get_or_init(|| {
        let secs = std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0);
        Duration::from_secs_f64(secs)
    })
}

/// Calls per second and latency percentiles of a sequential loop.
struct Sequential {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn sequential(mut call: impl FnMut()) -> Sequential {
    let mut timed = Timed::warmed(&mut call);
    timed.run(seconds(), &mut call);
    timed.finish()
}

/// A sequential loop's latencies so far, over one or more turns.
struct Timed {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Timed {
    /// After 200 calls not timed.
    fn warmed(call: &mut impl FnMut()) -> Timed {
        for _ in 0..200 {
            call();
        }
        Timed {
            latencies: Vec::with_capacity(1 << 20),
            elapsed: Duration::ZERO,
        }
    }

    /// Calls `call` one after another for `time`, timing each.
    fn run(&mut self, time: Duration, call: &mut impl FnMut()) {
        let started = Instant::now();
        while started.elapsed() < time {
            let t = Instant::now();
            call();
            self.latencies.push(t.elapsed());
        }
        self.elapsed += started.elapsed();
    }

    fn finish(mut self) -> Sequential {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        Sequential {
            rate: n as f64 / self.elapsed.as_secs_f64(),
            p50: self.latencies[n / 2],
            p99: self.latencies[n * 99 / 100],
        }
    }
}

/// How many turns each side of a ratio takes in [`in_turns`].
const TURNS: u32 = 4;

/// Runs `a` and `b` in turn, [`TURNS`] times each for a share of [`seconds`], so both see
/// the same stretches of a shared, noisy machine: two runs one after the other see
/// different ones, and their ratio drifts by more than the differences it is meant to show.
fn in_turns(mut a: impl FnMut(Duration), mut b: impl FnMut(Duration)) {
    all_in_turns(&mut [&mut a, &mut b]);
}

/// [`in_turns`] for any number of sides.
fn all_in_turns(sides: &mut [&mut dyn FnMut(Duration)]) {
    let turn = seconds() / TURNS;
    for _ in 0..TURNS {
        for side in sides.iter_mut() {
            side(turn);
        }
    }
}

/// Calls done over time, and the CPU time the whole process spent on them, summed over turns.
#[derive(Default)]
struct Rate {
    calls: u64,
    elapsed: Duration,
    cpu: Duration,
}

impl Rate {
    /// Counts the calls `run` does in `time` (it returns how many).
    fn run(&mut self, time: Duration, run: impl FnOnce(Duration) -> u64) {
        let (started, cpu) = (Instant::now(), process_cpu());
        self.calls += run(time);
        self.elapsed += started.elapsed();
        self.cpu += process_cpu().saturating_sub(cpu);
    }

    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU time per call, all threads (the caller's, the server's, libzmq's), in µs.
    fn cpu_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }
}

/// The CPU time this process has used so far, user and system, all threads: from
/// `/proc/self/stat`, in the kernel's 10 ms ticks (a case's seconds make that fine enough).
fn process_cpu() -> Duration {
    cpu_of("self")
}

/// The CPU time process `pid` (a number, or `self`) has used so far, as [`process_cpu`].
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The CPU per call of a raw and a zmqrpc run, under their row.
fn cpu_row(raw: &Rate, ours: &Rate) {
    println!(
        "{:<46} {:>12.2} {:>12.2}",
        "   CPU per call, all threads (µs)",
        raw.cpu_per_call(),
        ours.cpu_per_call()
    );
}

/// A raw libzmq REP echo server on `endpoint`; stops when `stop` is set.
/// A raw REP echo server in a context of its own, as a zmqrpc server (and any server in
/// another process) has: the caller's context and I/O thread are not shared with it.
fn raw_echo(endpoint: &str, stop: Arc<AtomicBool>) -> String {
    let ctx = zmq::Context::new();
    let rep = ctx.socket(zmq::REP).unwrap();
    rep.set_linger(0).unwrap();
    rep.set_rcvtimeo(100).unwrap();
    rep.bind(endpoint).unwrap();
    let bound = rep.get_last_endpoint().unwrap().unwrap();
    std::thread::spawn(move || {
        let mut msg = zmq::Message::new();
        while !stop.load(Ordering::Relaxed) {
            if rep.recv(&mut msg, 0).is_ok() {
                rep.send(&msg[..], 0).unwrap();
            }
        }
    });
    bound
}

fn blob_server(
    endpoint: &str,
) -> (
    String,
    zmqrpc::transport::Running<zmqrpc::transport::ServerStats>,
) {
    blob_server_with(endpoint, None)
}

/// A blob echo server, verifying `users` if given.
fn blob_server_with(
    endpoint: &str,
    users: Option<Users>,
) -> (
    String,
    zmqrpc::transport::Running<zmqrpc::transport::ServerStats>,
) {
    let mut builder = RpcServer::builder();
    if let Some(users) = users {
        builder = builder.users(users);
    }
    let server = builder
        .rep(endpoint)
        .register(|Blob(bytes): Blob| Ok::<_, ServiceError>(ByteBuf::from(bytes)))
        .unwrap()
        .register(|SeqBlob(bytes): SeqBlob| Ok::<_, ServiceError>(bytes))
        .unwrap()
        .bind()
        .unwrap();
    let bound = server.rep_endpoints()[0].clone();
    (bound, server.spawn().unwrap())
}

/// The p50 / p99 latencies of a raw and a zmqrpc sequential loop, under their row.
fn latency_row(raw: &Sequential, ours: &Sequential) {
    let micros = |s: &Sequential| {
        format!(
            "{:.0} / {:.0}",
            s.p50.as_secs_f64() * 1e6,
            s.p99.as_secs_f64() * 1e6
        )
    };
    println!(
        "{:<46} {:>12} {:>12}",
        "   p50 / p99 (µs)",
        micros(raw),
        micros(ours)
    );
}

fn row(case: &str, raw: f64, ours: f64, unit: &str) {
    println!(
        "{case:<46} {raw:>12.0} {ours:>12.0} {unit:<8} {:>6.2}x",
        ours / raw
    );
}

fn case_sequential(transport: &str, size: usize) -> f64 {
    let payload = vec![7u8; size];
    let endpoint = |name: &str| match transport {
        "tcp" => "tcp://127.0.0.1:*".to_owned(),
        _ => format!(
            "ipc://{}",
            std::env::temp_dir()
                .join(format!("zmqrpc-bench-{name}-{}", std::process::id()))
                .display()
        ),
    };
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let raw_endpoint = raw_echo(&endpoint("raw"), stop.clone());
    let req = ctx.socket(zmq::REQ).unwrap();
    req.connect(&raw_endpoint).unwrap();
    let mut msg = zmq::Message::new();
    let raw = sequential(|| {
        req.send(&payload[..], 0).unwrap();
        req.recv(&mut msg, 0).unwrap();
    });
    stop.store(true, Ordering::Relaxed);

    let (ours_endpoint, _server) = blob_server(&endpoint("ours"));
    let mut client = RpcClient::builder().req(ours_endpoint).connect().unwrap();
    let blob = Blob(payload.clone());
    let ours = sequential(|| {
        client.call(&blob).unwrap();
    });
    row(
        &format!("1. sequential call, {transport}, {size} B (calls/s)"),
        raw.rate,
        ours.rate,
        "calls/s",
    );
    latency_row(&raw, &ours);
    ours.rate
}

/// `window` calls in flight, raw libzmq against zmqrpc; at 256, also raw libzmq carrying
/// zmqrpc's frame (the 14-byte header and the length make the 32 B a 47-byte message, over
/// libzmq's 33-byte inline limit: allocated, and shared between threads by reference count)
/// and the payload as a `Vec<u8>`.
fn case_pipelined(window: usize) {
    let payload = vec![7u8; 32];
    let framed = vec![7u8; frame::HEADER_LEN + 1 + payload.len()];
    let stop = Arc::new(AtomicBool::new(false));
    let raw_endpoint = raw_echo("tcp://127.0.0.1:*", stop.clone());
    let mut raw = RawPipeline::connect(&raw_endpoint, window);
    let mut raw_framed = RawPipeline::connect(&raw_endpoint, window);
    let (endpoint, _server) = blob_server("tcp://127.0.0.1:*");
    let connect = || Pipeline::builder().req(&endpoint).window(window);
    let mut pipeline = connect().connect::<Blob>().unwrap();
    let mut seq_pipeline = connect().connect::<SeqBlob>().unwrap();
    let (blob, seq_blob) = (Blob(payload.clone()), SeqBlob(payload.clone()));
    let mut rates: [Rate; 4] = Default::default();
    let [raw_rate, ours, framed_rate, seq_rate] = &mut rates;
    let mut raw_side = |time| raw_rate.run(time, |time| raw.run(time, &payload));
    let mut ours_side = |time| ours.run(time, |time| pipelined(&mut pipeline, window, &blob, time));
    let mut framed_side = |time| framed_rate.run(time, |time| raw_framed.run(time, &framed));
    let mut seq_side = |time| {
        seq_rate.run(time, |time| {
            pipelined(&mut seq_pipeline, window, &seq_blob, time)
        })
    };
    if window == 256 {
        all_in_turns(&mut [
            &mut raw_side,
            &mut ours_side,
            &mut framed_side,
            &mut seq_side,
        ]);
    } else {
        all_in_turns(&mut [&mut raw_side, &mut ours_side]);
    }
    let [raw_rate, ours, framed_rate, seq_rate] = &rates;
    row(
        &format!("2. pipelined, {window} in flight, tcp, 32 B"),
        raw_rate.per_second(),
        ours.per_second(),
        "calls/s",
    );
    cpu_row(raw_rate, ours);
    if window == 256 {
        for (case, rate) in [
            (
                "   raw libzmq at 47 B, zmqrpc's frame for 32 B",
                framed_rate,
            ),
            ("   zmqrpc, the 32 B as a Vec<u8>", seq_rate),
        ] {
            row(case, raw_rate.per_second(), rate.per_second(), "calls/s");
            cpu_row(raw_rate, rate);
        }
    }
    stop.store(true, Ordering::Relaxed);
}

/// Raw libzmq without security, then zmqrpc with none, PLAIN and CURVE: sequential calls
/// and 256 in flight over TCP, 32 B, in one run.
fn case_security() {
    let payload = vec![7u8; 32];
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let raw_endpoint = raw_echo("tcp://127.0.0.1:*", stop.clone());
    let req = ctx.socket(zmq::REQ).unwrap();
    req.connect(&raw_endpoint).unwrap();
    let mut msg = zmq::Message::new();
    let raw = sequential(|| {
        req.send(&payload[..], 0).unwrap();
        req.recv(&mut msg, 0).unwrap();
    });
    stop.store(true, Ordering::Relaxed);
    let raw_pipelined = raw_pipelined(256, &payload);

    let server_keys = KeyPair::generate().unwrap();
    let client_keys = KeyPair::generate().unwrap();
    let mechanisms: [(&str, Option<Users>, Option<Credentials>); 3] = [
        ("none", None, None),
        (
            "PLAIN",
            Some(Users::new().with("bench", "pass")),
            Some(Credentials::new("bench", "pass")),
        ),
        (
            "CURVE",
            Some(Users::curve(server_keys.clone()).with_key("bench", client_keys.public)),
            Some(Credentials::curve(client_keys, server_keys.public)),
        ),
    ];
    for (name, users, credentials) in mechanisms {
        let (endpoint, _server) = blob_server_with("tcp://127.0.0.1:*", users);
        let mut builder = RpcClient::builder().req(&endpoint);
        if let Some(credentials) = credentials.clone() {
            builder = builder.credentials(credentials);
        }
        let mut client = builder.connect().unwrap();
        let blob = Blob(payload.clone());
        let ours = sequential(|| {
            client.call(&blob).unwrap();
        });
        row(
            &format!("6. sequential, tcp, 32 B, {name} (vs raw none)"),
            raw.rate,
            ours.rate,
            "calls/s",
        );
        latency_row(&raw, &ours);
        let mut builder = Pipeline::builder().req(&endpoint).window(256);
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        let mut pipeline = builder.connect::<Blob>().unwrap();
        let mut ours = Rate::default();
        ours.run(seconds(), |time| pipelined(&mut pipeline, 256, &blob, time));
        let ours = ours.per_second();
        row(
            &format!("   256 in flight, {name} (vs raw none)"),
            raw_pipelined,
            ours,
            "calls/s",
        );
    }
}

/// Calls per second of raw libzmq, `window` 32-byte echoes in flight over one DEALER.
fn raw_pipelined(window: usize, payload: &[u8]) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let raw_endpoint = raw_echo("tcp://127.0.0.1:*", stop.clone());
    let mut raw = RawPipeline::connect(&raw_endpoint, window);
    let mut rate = Rate::default();
    rate.run(seconds(), |time| raw.run(time, payload));
    stop.store(true, Ordering::Relaxed);
    rate.per_second()
}

/// A raw libzmq DEALER keeping `window` echoes in flight.
struct RawPipeline {
    dealer: zmq::Socket,
    window: usize,
    in_flight: usize,
    _ctx: zmq::Context,
}

impl RawPipeline {
    fn connect(endpoint: &str, window: usize) -> RawPipeline {
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_sndhwm(0).unwrap();
        dealer.set_rcvhwm(0).unwrap();
        dealer.connect(endpoint).unwrap();
        RawPipeline {
            dealer,
            window,
            in_flight: 0,
            _ctx: ctx,
        }
    }

    /// Echoes answered in `time`; the ones still in flight carry over to the next turn.
    fn run(&mut self, time: Duration, payload: &[u8]) -> u64 {
        let mut msg = zmq::Message::new();
        let mut done = 0;
        let started = Instant::now();
        while started.elapsed() < time {
            while self.in_flight < self.window {
                self.dealer.send(&b""[..], zmq::SNDMORE).unwrap();
                self.dealer.send(payload, 0).unwrap();
                self.in_flight += 1;
            }
            self.dealer.recv(&mut msg, 0).unwrap();
            self.dealer.recv(&mut msg, 0).unwrap();
            self.in_flight -= 1;
            done += 1;
        }
        done
    }
}

/// Calls `pipeline` answers in `time`, `window` kept in flight (the ones still in flight
/// carry over to the next turn).
fn pipelined<C: zmqrpc::Command>(
    pipeline: &mut Pipeline<C>,
    window: usize,
    blob: &C,
    time: Duration,
) -> u64 {
    let mut done = 0;
    let started = Instant::now();
    while started.elapsed() < time {
        while pipeline.in_flight() < window {
            pipeline.send(blob).unwrap();
        }
        let (_, answer) = pipeline.recv(Duration::from_secs(5)).unwrap().unwrap();
        answer.unwrap();
        done += 1;
    }
    done
}

fn case_notify() {
    let unlimited = SocketOptions::default().with_send_hwm(0).with_recv_hwm(0);
    // Raw: PUB -> SUB, counting every message.
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::PUB).unwrap();
    publisher.set_sndhwm(0).unwrap();
    publisher.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = publisher.get_last_endpoint().unwrap().unwrap();
    let subscriber = ctx.socket(zmq::SUB).unwrap();
    subscriber.set_rcvhwm(0).unwrap();
    subscriber.set_subscribe(b"").unwrap();
    subscriber.connect(&endpoint).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // slow joiner
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let reader = std::thread::spawn(move || {
        subscriber.set_rcvtimeo(1000).unwrap();
        let mut msg = zmq::Message::new();
        while subscriber.recv(&mut msg, 0).is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut buf = [0u8; 64];
    let tick = frame::encode(&Header::notify(Tick::KEY), &Tick(1), &mut buf)
        .unwrap()
        .to_vec();
    let (raw, raw_loss) = blast(seconds(), &received, |_| {
        publisher.send(&tick[..], 0).unwrap()
    });
    drop(reader);

    let loss = |uncounted: u64, dropped: u64| format!("{uncounted} / {dropped}");
    let unlimited = notify_through_zmqrpc(unlimited, None);
    row(
        "3. one-way notify, tcp, HWM unlimited",
        raw,
        unlimited.rate,
        "msgs/s",
    );
    println!(
        "{:<46} {:>12} {:>12}",
        "   lost uncounted / counted as dropped",
        loss(raw_loss, 0),
        loss(unlimited.uncounted, unlimited.dropped)
    );
    // The defaults: HWM 1000 and a publisher that does not let libzmq drop (XPUB_NODROP):
    // what does not fit waits in its pending queue (1000), and overflow is counted.
    let defaults = notify_through_zmqrpc(SocketOptions::default(), None);
    row(
        "3. one-way notify, tcp, zmqrpc default HWMs",
        raw,
        defaults.rate,
        "msgs/s",
    );
    println!(
        "{:<46} {:>12} {:>12}",
        "   lost uncounted / counted as dropped",
        "(raw: HWM 0)",
        loss(defaults.uncounted, defaults.dropped)
    );
    // The defaults with back-pressure: `notify` waits for room instead of dropping.
    let waiting = notify_through_zmqrpc(SocketOptions::default(), Some(Duration::from_secs(5)));
    row(
        "3. one-way notify, tcp, defaults + back-pressure",
        raw,
        waiting.rate,
        "msgs/s",
    );
    println!(
        "{:<46} {:>12} {:>12}",
        "   lost uncounted / counted as dropped",
        "(raw: HWM 0)",
        loss(waiting.uncounted, waiting.dropped)
    );
    println!(
        "{:<46} {:>12} {:>12.2}",
        "   back-pressure / HWM unlimited",
        "",
        waiting.rate / unlimited.rate
    );
}

/// One notify run: the delivered rate, messages lost without being counted, messages the
/// publisher counted as dropped.
struct NotifyRun {
    rate: f64,
    uncounted: u64,
    dropped: u64,
}

/// `RpcClient::notify` into an `RpcServer` over SUB with `options` on both ends, as fast as
/// the publisher goes for the bench's time, with `backpressure` if given.
fn notify_through_zmqrpc(options: SocketOptions, backpressure: Option<Duration>) -> NotifyRun {
    let mut builder = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .options(options.clone());
    if let Some(wait) = backpressure {
        builder = builder.backpressure(wait);
    }
    let mut client = builder.connect().unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    let _server = RpcServer::builder()
        .options(options)
        .subscribe(endpoint)
        .register(move |_: Tick| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert!(client
        .sender()
        .publisher()
        .unwrap()
        .wait_for_subscriber(Duration::from_secs(5))
        .unwrap());
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < seconds() && sent < 4_000_000 {
        for _ in 0..1000 {
            client.notify(&Tick(sent)).unwrap();
            sent += 1;
        }
    }
    // What the publisher still holds goes out as the subscriber catches up.
    let publisher = client.sender().publisher().unwrap();
    let flushed_by = Instant::now() + Duration::from_secs(10);
    while publisher.flush().unwrap() > 0 && Instant::now() < flushed_by {
        std::thread::sleep(Duration::from_millis(1));
    }
    let dropped = publisher.stats().snapshot().dropped;
    let expected = sent - dropped;
    let mut last = received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while received.load(Ordering::Relaxed) < expected
        && last_change.elapsed() < Duration::from_secs(1)
    {
        std::thread::sleep(Duration::from_millis(1));
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    let got = received.load(Ordering::Relaxed);
    NotifyRun {
        rate: got as f64 / started.elapsed().as_secs_f64(),
        uncounted: expected.saturating_sub(got),
        dropped,
    }
}

/// Sends for `time`, then waits for the receiver to catch up; delivered per second and loss.
fn blast(time: Duration, received: &AtomicU64, mut send: impl FnMut(u64)) -> (f64, u64) {
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < time && sent < 4_000_000 {
        for _ in 0..1000 {
            send(sent);
            sent += 1;
        }
    }
    // Delivered once the count stops moving (bounded).
    let mut last = received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while received.load(Ordering::Relaxed) < sent && last_change.elapsed() < Duration::from_secs(1)
    {
        std::thread::sleep(Duration::from_millis(1));
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    let got = received.load(Ordering::Relaxed);
    (
        got as f64 / started.elapsed().as_secs_f64(),
        sent - got.min(sent),
    )
}

fn case_proxies(direct: f64) {
    let (server_endpoint, _server) = blob_server("tcp://127.0.0.1:*");
    let blob = Blob(vec![7u8; 32]);
    // One forwarder on the input's thread, and the default pool behind a ROUTER.
    for (concurrency, label) in [
        (1, "4. sequential via Rep2Req (concurrency 1), 32 B"),
        (
            zmqrpc::transport::DEFAULT_PROXY_CONCURRENCY,
            "4. sequential via Rep2Req (default pool), 32 B",
        ),
    ] {
        let proxy = Proxy::builder(ProxyKind::Rep2Req)
            .input("tcp://127.0.0.1:*")
            .output(&server_endpoint)
            .concurrency(concurrency)
            .bind()
            .unwrap();
        let proxy_endpoint = proxy.input_endpoints()[0].clone();
        let _proxy = proxy.spawn().unwrap();
        let mut client = RpcClient::builder().req(proxy_endpoint).connect().unwrap();
        let via = sequential(|| {
            client.call(&blob).unwrap();
        });
        row(label, direct, via.rate, "calls/s");
    }

    let buffered = BufferedProxy::builder()
        .input("tcp://127.0.0.1:*")
        .output(&server_endpoint)
        .bind()
        .unwrap();
    let buffered_endpoint = buffered.input_endpoints()[0].clone();
    let _buffered = buffered.spawn().unwrap();
    let ctx = zmq::Context::new();
    let mut requester =
        Requester::connect(&ctx, &[buffered_endpoint], &SocketOptions::default(), None).unwrap();
    let mut buf = vec![0u8; 128];
    let request = frame::encode(&Header::request(1, Blob::KEY), &blob, &mut buf)
        .unwrap()
        .to_vec();
    let acked = sequential(|| {
        requester.request(&request, Duration::from_secs(5)).unwrap();
    });
    row(
        "4. acknowledged by the buffered proxy vs direct",
        direct,
        acked.rate,
        "calls/s",
    );
    #[cfg(feature = "serial")]
    case_serial_bridge(direct);
}

/// A call through the serial bridge to the core's `DeviceServer` on a pseudo-terminal (the
/// tests' fake device: the bridge's cost and a pty's, not a UART's line rate).
#[cfg(feature = "serial")]
fn case_serial_bridge(direct: f64) {
    use device::commands::Ping;
    use zmqrpc::transport::bridge::SerialBridge;

    if !device::lines_open() {
        return;
    }
    let link = device::link_path("bench");
    let _device = device::FakeDevice::plug(&link, Duration::from_secs(3600));
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = bridge.input_endpoints()[0].clone();
    let _bridge = bridge.spawn().unwrap();
    let mut client = RpcClient::builder().req(endpoint).connect().unwrap();
    device::ping_until_answered(&mut client, 0, Duration::from_secs(5));
    let mut n = 0;
    let via = sequential(|| {
        n += 1;
        assert_eq!(client.call(&Ping { n }).unwrap(), n);
    });
    row(
        "4. call via the serial bridge (pty) vs direct",
        direct,
        via.rate,
        "calls/s",
    );
    println!(
        "{:<46} {:>12} {:>12}",
        "   p50 / p99 (µs)",
        "",
        format!(
            "{:.0} / {:.0}",
            via.p50.as_secs_f64() * 1e6,
            via.p99.as_secs_f64() * 1e6
        )
    );
}

/// A process's memory, KiB: peak and current resident set, and its private part (anonymous
/// pages: heap and stacks; the rest is file-backed text and libraries, shared).
#[derive(Clone, Copy)]
struct Rss {
    peak: u64,
    rss: u64,
    private: u64,
}

fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    Rss {
        peak: field("VmHWM:"),
        rss: field("VmRSS:"),
        private: field("RssAnon:"),
    }
}

struct Spawned(Child);
impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[&str]) -> Spawned {
    let mut child = Command::new(program)
        .args(args)
        .arg("-q")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for its `ready` line.
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Spawned(child)
}

/// The path of binary `name`: in `ZMQRPC_BIN_DIR` if set, else this build's (`built`).
fn binary(name: &str, built: &str) -> String {
    match std::env::var_os("ZMQRPC_BIN_DIR") {
        Some(dir) => std::path::Path::new(&dir).join(name).display().to_string(),
        None => built.to_owned(),
    }
}

/// An `ipc://` endpoint in the temporary directory, unique to this run and `name`.
fn ipc_endpoint(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("zmqrpc-bench-{name}-{}", std::process::id()));
    format!("ipc://{}", path.display())
}

fn case_rss() {
    let dir = std::env::temp_dir();
    let server_endpoint = format!(
        "ipc://{}",
        dir.join(format!("zmqrpc-bench-srv-{}", std::process::id()))
            .display()
    );
    let proxy_endpoint = format!(
        "ipc://{}",
        dir.join(format!("zmqrpc-bench-prx-{}", std::process::id()))
            .display()
    );
    let server_bin = binary("zmqrpc-server", env!("CARGO_BIN_EXE_zmqrpc-server"));
    let proxy_bin = binary("zmqrpc-proxy", env!("CARGO_BIN_EXE_zmqrpc-proxy"));
    let server = spawn(&server_bin, &["--bind", &server_endpoint]);
    let proxy = spawn(
        &proxy_bin,
        &[
            "--kind",
            "rep2req",
            "--in",
            &proxy_endpoint,
            "--out",
            &server_endpoint,
        ],
    );
    // Idle: settled after start (the README's figures use the same 1.5 s).
    std::thread::sleep(Duration::from_millis(1500));
    let server_idle = rss(server.0.id());
    let proxy_idle = rss(proxy.0.id());
    // Load: pipelined calls straight to the server, sequential ones through the proxy.
    let mut pipeline = Pipeline::builder()
        .req(&server_endpoint)
        .window(256)
        .connect::<Echo>()
        .unwrap();
    let text = Echo("x".repeat(32));
    let started = Instant::now();
    while started.elapsed() < seconds() {
        while pipeline.in_flight() < 256 {
            pipeline.send(&text).unwrap();
        }
        pipeline
            .recv(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .1
            .unwrap();
    }
    let mut client = RpcClient::builder().req(&proxy_endpoint).connect().unwrap();
    let until = Instant::now() + seconds() / 2;
    while Instant::now() < until {
        client.call(&text).unwrap();
    }
    let server_peak = rss(server.0.id());
    let proxy_peak = rss(proxy.0.id());
    println!("5. RSS of the real processes (KiB)      idle VmRSS / private   peak VmHWM / private");
    let line = |name: &str, idle: Rss, peak: Rss| {
        println!(
            "   {name:<36} {:>9} / {:<9} {:>9} / {}",
            idle.rss, idle.private, peak.peak, peak.private
        );
    };
    line("zmqrpc-server (pipelined load)", server_idle, server_peak);
    line(
        "zmqrpc-proxy rep2req (sequential load)",
        proxy_idle,
        proxy_peak,
    );
}

/// A payload full of forged records: version-1 headers claiming 32 MiB, version-2 record
/// ends, zeros (as the limits test's, at 64 MiB).
fn forged_payload(len: usize, first: u8) -> Vec<u8> {
    let pattern = b"M\x00\x00\x00\x02\x4d\x00\x0bforged\x00";
    let mut payload: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
    payload[0] = first;
    payload
}

/// Boot time of a buffered proxy on a 64 MiB spool of forged payloads whose first record is
/// damaged, in the current format and in the one before (what a spool written before the
/// format change holds). `ZMQRPC_BIN_DIR` points it at another build; `BENCH_RECOVERY_LIMIT`
/// (seconds, default 120) is how long a boot may take before it is reported as more.
fn case_recovery() {
    const MIB: usize = 1 << 20;
    const RECORDS: usize = 64;
    let limit = Duration::from_secs_f64(
        std::env::var("BENCH_RECOVERY_LIMIT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120.0),
    );
    let dir = std::env::temp_dir();
    let path = dir.join(format!("zmqrpc-bench-spool-{}", std::process::id()));
    let proxy_bin = match std::env::var_os("ZMQRPC_BIN_DIR") {
        Some(dir) => std::path::Path::new(&dir).join("zmqrpc-proxy"),
        None => env!("CARGO_BIN_EXE_zmqrpc-proxy").into(),
    };
    let boot = |format: &str| {
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let input = format!("ipc://{}.in", path.display());
        let mut child = Command::new(&proxy_bin)
            .args([
                "--kind",
                "buffered",
                "--in",
                &input,
                "--out",
                "ipc:///nonexistent/zmqrpc",
            ])
            .args(["--spool".as_ref(), path.as_os_str()])
            .args(["--spool-max", &(128 * MIB).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let stdout = child.stdout.take().unwrap();
        let (ready, readied) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = ready.send(line);
        });
        let took = match readied.recv_timeout(limit) {
            Ok(line) if line.starts_with("ready") => {
                format!("{:.2} s", started.elapsed().as_secs_f64())
            }
            Ok(line) => format!("failed: {line:?}"),
            Err(_) => format!("> {} s (stopped)", limit.as_secs()),
        };
        let peak = rss(child.id()).peak;
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "   {format:<24} {:>5.1} MiB file: ready after {took}, peak VmHWM {peak} KiB",
            len as f64 / MIB as f64
        );
    };
    let clean = || {
        for suffix in [
            "",
            ".lock",
            ".damaged.1",
            ".damaged.2",
            ".damaged.3",
            ".tmp",
        ] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    println!("6. A buffered proxy's boot on a damaged spool of forged payloads");
    // The current format, written through the library.
    clean();
    {
        let (mut spool, _) = zmqrpc::transport::Spool::open(&path, (128 * MIB) as u64).unwrap();
        let mut pending = Vec::new();
        for i in 0..RECORDS {
            let payload = forged_payload(MIB - 64, b'A' + (i % 26) as u8);
            spool
                .append(&payload, pending.iter().map(Vec::as_slice))
                .unwrap();
            pending.push(payload);
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let first = bytes.iter().position(|&b| b == b'A').unwrap();
    bytes[first + 100] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    boot("format 2 (current)");
    // The format before: a tag, a 4-byte length, an unsalted FNV-1a 64 check, the payload.
    clean();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..RECORDS {
            let payload = forged_payload(MIB - 64, b'A' + (i % 26) as u8);
            let mut len = (payload.len() as u32).to_le_bytes();
            if i == 0 {
                // Damage the first record's length: no record follows where it says.
                len[0] ^= 0x01;
            }
            use std::io::Write;
            file.write_all(b"M").unwrap();
            file.write_all(&len).unwrap();
            file.write_all(&zmqrpc::key::fnv1a64(&payload).to_le_bytes())
                .unwrap();
            file.write_all(&payload).unwrap();
        }
    }
    boot("format 1 (before)");
    clean();
}

#[derive(Serialize, Deserialize)]
struct Nap(u64);

impl zmqrpc::Command for Nap {
    const NAME: &'static str = "bench.nap";
    type Response = u64;
}

/// The wall time of `callers` threads each making one `Nap(200 ms)` call to `endpoint` at
/// once, the best of three rounds (each caller connected before the round starts).
fn concurrent_round(endpoint: &str, callers: usize) -> Duration {
    let mut clients: Vec<RpcClient> = (0..callers)
        .map(|_| {
            RpcClient::builder()
                .req(endpoint)
                .timeout(Duration::from_secs(10))
                .connect()
                .unwrap()
        })
        .collect();
    for client in &mut clients {
        client.call(&Nap(0)).unwrap();
    }
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        std::thread::scope(|scope| {
            for client in &mut clients {
                scope.spawn(move || client.call(&Nap(200)).unwrap());
            }
        });
        best = best.min(started.elapsed());
    }
    best
}

/// 8 callers each making one 200 ms call at once, straight to a `workers(8)` server and
/// through the real `zmqrpc-proxy --kind rep2req` (`ZMQRPC_BIN_DIR` picks another build).
fn case_concurrent_proxy() {
    const CALLERS: usize = 8;
    let server = RpcServer::builder()
        .rep(ipc_endpoint("nap-server"))
        .workers(CALLERS)
        .register_clone(|Nap(ms): Nap| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, ServiceError>(ms)
        })
        .unwrap()
        .bind()
        .unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let proxy_endpoint = ipc_endpoint("nap-proxy");
    let _proxy = spawn(
        &binary("zmqrpc-proxy", env!("CARGO_BIN_EXE_zmqrpc-proxy")),
        &[
            "--kind",
            "rep2req",
            "--in",
            &proxy_endpoint,
            "--out",
            &server_endpoint,
        ],
    );
    let direct = concurrent_round(&server_endpoint, CALLERS);
    let via = concurrent_round(&proxy_endpoint, CALLERS);
    println!(
        "{:<46} {:>10.3} s {:>10.3} s {:<8} {:>5.2}x",
        format!("7. {CALLERS} callers × one 200 ms call: direct, via rep2req"),
        direct.as_secs_f64(),
        via.as_secs_f64(),
        "wall",
        via.as_secs_f64() / direct.as_secs_f64()
    );
}

/// The shared client against what it replaces, in one run against one blob server: 256
/// tokio tasks on one client against a `Pipeline` with 256 in flight; 16 threads on one
/// client against 16 `RpcClient`s; one caller's latency against an `RpcClient`'s.
fn case_shared() {
    const TASKS: usize = 256;
    const THREADS: usize = 16;
    let (endpoint, _server) = blob_server("tcp://127.0.0.1:*");
    let blob = Blob(vec![7u8; 32]);
    let mut pipeline = Pipeline::builder()
        .req(&endpoint)
        .window(TASKS)
        .connect::<Blob>()
        .unwrap();
    let shared = SharedClient::builder().req(&endpoint).connect().unwrap();
    shared.call(&blob).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // 256 tasks making one call after another for `time`.
    let tasks = |time: Duration| {
        runtime.block_on(async {
            let done = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let (client, done) = (shared.clone(), done.clone());
                    tokio::spawn(async move {
                        let blob = Blob(vec![7u8; 32]);
                        while started.elapsed() < time {
                            client.call_async(&blob).await.unwrap();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            done.load(Ordering::Relaxed)
        })
    };
    let (mut piped, mut on_tasks) = (Rate::default(), Rate::default());
    in_turns(
        |time| piped.run(time, |time| pipelined(&mut pipeline, TASKS, &blob, time)),
        |time| on_tasks.run(time, tasks),
    );
    drop(pipeline);
    row(
        "8. 256 tokio tasks, one SharedClient (vs Pipeline)",
        piped.per_second(),
        on_tasks.per_second(),
        "calls/s",
    );
    cpu_row(&piped, &on_tasks);
    // THREADS threads, each calling `call(thread)` one call after another for `time`.
    let threads = |time: Duration, call: &(dyn Fn(usize) + Sync)| {
        let done = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let done = &done;
                scope.spawn(move || {
                    while started.elapsed() < time {
                        call(t);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        done.load(Ordering::Relaxed)
    };
    let clients: Vec<_> = (0..THREADS)
        .map(|_| std::sync::Mutex::new(RpcClient::builder().req(&endpoint).connect().unwrap()))
        .collect();
    let (mut separate, mut one) = (Rate::default(), Rate::default());
    in_turns(
        |time| {
            separate.run(time, |time| {
                threads(time, &|t| {
                    clients[t].lock().unwrap().call(&blob).unwrap();
                })
            })
        },
        |time| {
            one.run(time, |time| {
                threads(time, &|_| {
                    shared.call(&blob).unwrap();
                })
            })
        },
    );
    row(
        "8. 16 threads, one SharedClient (vs 16 RpcClients)",
        separate.per_second(),
        one.per_second(),
        "calls/s",
    );
    let mut client = RpcClient::builder().req(&endpoint).connect().unwrap();
    let mut call_alone = || {
        client.call(&blob).unwrap();
    };
    let mut call_shared = || {
        shared.call(&blob).unwrap();
    };
    let mut alone = Timed::warmed(&mut call_alone);
    let mut through_shared = Timed::warmed(&mut call_shared);
    in_turns(
        |time| alone.run(time, &mut call_alone),
        |time| through_shared.run(time, &mut call_shared),
    );
    let (alone, through_shared) = (alone.finish(), through_shared.finish());
    row(
        "8. one caller, SharedClient (vs RpcClient)",
        alone.rate,
        through_shared.rate,
        "calls/s",
    );
    latency_row(&alone, &through_shared);
}

#[derive(Serialize, Deserialize)]
struct Work(u64);

impl zmqrpc::Command for Work {
    const NAME: &'static str = "bench.work";
    type Response = u64;
}

/// A 1 ms service behind `workers(4)` (a thread asleep per call) and behind the async server
/// (a task asleep per call, 64 at once), 64 calls kept in flight by a `Pipeline`.
fn case_async_server() {
    const IN_FLIGHT: usize = 64;
    let load = |endpoint: &str| {
        let mut pipeline = Pipeline::builder()
            .req(endpoint)
            .window(IN_FLIGHT)
            .connect::<Work>()
            .unwrap();
        let mut done = 0u64;
        let started = Instant::now();
        while started.elapsed() < seconds() {
            while pipeline.in_flight() < IN_FLIGHT {
                pipeline.send(&Work(1)).unwrap();
            }
            let (_, answer) = pipeline.recv(Duration::from_secs(5)).unwrap().unwrap();
            answer.unwrap();
            done += 1;
        }
        done as f64 / started.elapsed().as_secs_f64()
    };
    let pool = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .workers(4)
        .register_clone(|Work(ms): Work| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok::<_, ServiceError>(ms)
        })
        .unwrap()
        .bind()
        .unwrap();
    let pool_endpoint = pool.rep_endpoints()[0].clone();
    let pool = pool.spawn().unwrap();
    let threads = load(&pool_endpoint);
    drop(pool);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .runtime(runtime.handle().clone())
        .concurrency(IN_FLIGHT)
        .register_async(|Work(ms): Work| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, ServiceError>(ms)
        })
        .unwrap()
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let tasks = load(&endpoint);
    println!(
        "{:<46} {:>12.0} {:>12.0} {:<8} {:>6.2}x",
        "8. 1 ms service: async server (vs workers(4))",
        threads,
        tasks,
        "calls/s",
        tasks / threads
    );
}

fn main() {
    // The scale case's raw echo server, run as a process of its own (this binary again).
    scale::serve_raw_if_asked();
    // `cargo bench` passes `--bench`; nothing else is expected.
    println!(
        "zmqrpc-bench: {} s per case, {} CPUs, libzmq {:?}",
        seconds().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        zmq::version()
    );
    println!(
        "{:<46} {:>12} {:>12} {:<8} {:>7}",
        "case", "raw libzmq", "zmqrpc", "unit", "ratio"
    );
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |case: &str| named.is_empty() || named.iter().any(|n| n == case);
    let mut direct = None;
    if wants("sequential") {
        direct = Some(case_sequential("tcp", 32));
        case_sequential("tcp", 1024);
        case_sequential("ipc", 32);
        case_sequential("ipc", 1024);
    }
    if wants("pipelined") {
        case_pipelined(64);
        case_pipelined(256);
    }
    if wants("notify") {
        case_notify();
    }
    if wants("proxies") {
        let direct = direct.unwrap_or_else(|| case_sequential("tcp", 32));
        case_proxies(direct);
    }
    if wants("security") {
        case_security();
    }
    if wants("rss") {
        case_rss();
    }
    if wants("recovery") {
        case_recovery();
    }
    if wants("concurrent") {
        case_concurrent_proxy();
    }
    if wants("shared") {
        case_shared();
        case_async_server();
    }
    if wants("scale") {
        scale::case_scale();
    }
}
