//! The serial bridge end to end on this machine: an `RpcClient` calls through ZeroMQ, the
//! bridge carries each call over a pseudo-terminal to the core's `DeviceServer` and back,
//! and the device's notifications reach a subscriber. The line gets noise and damaged
//! frames, the device goes silent, answers late, vanishes mid-call and comes back, and is
//! missing when the bridge starts: callers get typed errors in bounded time, never a hang,
//! and the bridge keeps serving. (Skipped where serial lines cannot be set up: under
//! qemu-user, see `device::lines_open`.)
#![cfg(feature = "serial")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::device::commands::{Ping, SetLed};
use crate::common::device::{
    self, link_path, ping_until_answered, sample_subscriber, FakeDevice, LinkPath,
};
use crate::common::process::{self, ready_field, Process, PROXY};
use crate::common::{client, eventually, ipc_endpoint, ms, secs, slack};
use zmqrpc::transport::bridge::{BridgeStats, SerialBridge, LINK_FRAME_MAX};
use zmqrpc::transport::{CallError, RpcClient, Running};
use zmqrpc::{Command, ErrorCode};
use zmqrpc_core::device::DeviceStats;

/// How long the bridge waits for the device in these tests.
fn device_timeout() -> Duration {
    ms(400)
}

/// A bridge to the device behind `link`, its REP and PUB endpoints.
fn bridge(link: &Path) -> (Running<BridgeStats>, String, String) {
    let bridge = SerialBridge::builder(link)
        .input("tcp://127.0.0.1:*")
        .output("tcp://127.0.0.1:*")
        .timeout(device_timeout())
        .reopen_max(ms(100))
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let publish = bridge.output_endpoints()[0].clone();
    (bridge.spawn().unwrap(), rep, publish)
}

/// A fake device behind a fresh link, sampling every `sample_every`; `None` where serial
/// lines cannot be set up (qemu-user).
fn plugged(name: &str, sample_every: Duration) -> Option<(LinkPath, FakeDevice)> {
    if !device::lines_open() {
        return None;
    }
    let link = link_path(name);
    let device = FakeDevice::plug(&link, sample_every);
    Some((link, device))
}

/// What most tests start from: a fake device behind a bridge, and a client its first call
/// has reached the device through. `None` where serial lines cannot be set up.
struct Rig {
    client: RpcClient,
    running: Running<BridgeStats>,
    rep: String,
    publish: String,
    device: FakeDevice,
    link: LinkPath,
}

/// A device that sends no samples in a test's time.
const NO_SAMPLES: Duration = Duration::from_secs(3600);

impl Rig {
    /// A rig whose device (at a link named after `name`) sends a sample every
    /// `sample_every`.
    fn start(name: &str, sample_every: Duration) -> Option<Rig> {
        let (link, device) = plugged(name, sample_every)?;
        let (running, rep, publish) = bridge(&link);
        let mut client = client(&rep);
        ping_until_answered(&mut client, 1, secs(5));
        Some(Rig {
            client,
            running,
            rep,
            publish,
            device,
            link,
        })
    }

    /// Stops the bridge (after the client) and unplugs the device; what its server counted.
    fn stop(self) -> DeviceStats {
        drop(self.client);
        self.running.stop_and_wait().unwrap();
        self.device.unplug()
    }
}

/// The code of the remote error a call ended with.
#[track_caller]
fn remote_code<T: std::fmt::Debug>(result: Result<T, CallError>) -> ErrorCode {
    match result {
        Err(CallError::Remote { error, .. }) => error.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn typed_calls_cross_the_serial_line_and_come_back() {
    let Some(mut rig) = Rig::start("typed", NO_SAMPLES) else {
        return;
    };

    assert_eq!(ping_until_answered(&mut rig.client, 7, secs(5)), 7);
    assert_eq!(
        rig.client.call(&SetLed { led: 3, on: true }).unwrap(),
        0b1000
    );
    assert_eq!(
        rig.client.call(&SetLed { led: 0, on: true }).unwrap(),
        0b1001
    );
    // The device's own errors come back typed: a handler's failure, an unknown command.
    match rig.client.call(&SetLed { led: 9, on: true }) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::ServiceFailed);
            assert_eq!(error.message.as_str(), "no such LED");
        }
        other => panic!("expected the device's failure, got {other:?}"),
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    struct NotOnTheDevice;
    impl Command for NotOnTheDevice {
        const NAME: &'static str = "device.self_destruct";
        type Response = ();
    }
    assert_eq!(
        remote_code(rig.client.call(&NotOnTheDevice)),
        ErrorCode::UnknownCommand
    );
    // Many calls in a row, each matched to its own answer.
    for n in 0..200 {
        assert_eq!(rig.client.call(&Ping { n }).unwrap(), n);
    }

    let counts = rig.running.stats().snapshot();
    assert_eq!(counts.opened, 1);
    assert_eq!(counts.answered, counts.received);
    assert_eq!(
        (counts.timeouts, counts.unavailable, counts.lost),
        (0, 0, 0)
    );
    let device = rig.stop();
    assert_eq!(device.unknown, 1);
    assert_eq!(device.failed, 1);
}

#[test]
fn line_noise_and_damaged_answers_cost_only_the_calls_they_hit() {
    let Some(mut rig) = Rig::start("noise", NO_SAMPLES) else {
        return;
    };

    // Noise before every answer: each burst is one lost frame, and no call is lost.
    rig.device.behaviour.noise.store(true, Ordering::SeqCst);
    for n in 0..20 {
        assert_eq!(rig.client.call(&Ping { n }).unwrap(), n);
    }
    assert_eq!(rig.running.stats().snapshot().link_errors, 20);
    rig.device.behaviour.noise.store(false, Ordering::SeqCst);

    // An answer damaged on the line is lost: its call times out, the next one is answered.
    rig.device.behaviour.damage.store(1, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(
        remote_code(rig.client.call(&Ping { n: 100 })),
        ErrorCode::Timeout
    );
    assert!(
        started.elapsed() < device_timeout() + secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rig.client.call(&Ping { n: 101 }).unwrap(), 101);

    let counts = rig.running.stats().snapshot();
    assert_eq!(counts.link_errors, 21);
    assert_eq!(counts.timeouts, 1);
    rig.stop();
}

/// A request frame for `Ping { n }` with the caller's sequence number `seq`.
fn ping_frame(seq: u32, n: u32) -> Vec<u8> {
    let mut buf = [0u8; 64];
    zmqrpc::frame::encode(
        &zmqrpc::Header::request(seq, Ping::KEY),
        &Ping { n },
        &mut buf,
    )
    .unwrap()
    .to_vec()
}

/// A REQ socket connected to `endpoint`, its receive bounded.
fn raw_req(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let raw = ctx.socket(zmq::REQ).unwrap();
    raw.set_rcvtimeo(5000 * slack() as i32).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(endpoint).unwrap();
    raw
}

/// Sends `request` and reads the answer's header and outcome.
fn exchange(raw: &zmq::Socket, request: &[u8]) -> (zmqrpc::Header, Result<u32, ErrorCode>) {
    raw.send(request, 0).unwrap();
    let bytes = raw.recv_bytes(0).unwrap();
    let frame = zmqrpc::Frame::decode(&bytes).unwrap();
    let outcome = frame.outcome::<u32>().unwrap().map_err(|e| e.code);
    (frame.header, outcome)
}

#[test]
fn an_answer_that_comes_after_its_call_gave_up_is_never_taken_for_the_next_call() {
    let Some(rig) = Rig::start("late", NO_SAMPLES) else {
        return;
    };
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &rig.rep);

    // The rig.device answers 1.5 timeouts late: the caller gets a Timeout error …
    let late = (device_timeout().as_millis() * 3 / 2) as u64;
    rig.device.behaviour.delay_ms.store(late, Ordering::SeqCst);
    let (header, outcome) = exchange(&raw, &ping_frame(7, 10));
    assert_eq!((header.seq, outcome), (7, Err(ErrorCode::Timeout)));
    // … and the next call, with the very same sequence number and command, made while that
    // late answer is on its way, gets its own answer, not the late one.
    rig.device.behaviour.delay_ms.store(0, Ordering::SeqCst);
    let (header, outcome) = exchange(&raw, &ping_frame(7, 11));
    assert_eq!((header.seq, outcome), (7, Ok(11)));
    let (header, outcome) = exchange(&raw, &ping_frame(7, 12));
    assert_eq!((header.seq, outcome), (7, Ok(12)));
    assert!(eventually(secs(2), || rig.running.stats().snapshot().stray >= 1));
    rig.stop();
}

#[test]
fn the_devices_refusal_of_an_unreadable_frame_is_no_answer_to_the_waiting_call() {
    let Some(mut rig) = Rig::start("refusal", NO_SAMPLES) else {
        return;
    };
    // The rig.device answers a frame it could not read (seq 0, key 0) just before the real
    // answer: the call gets its own answer.
    rig.device
        .behaviour
        .refuse_first
        .store(true, Ordering::SeqCst);
    assert_eq!(rig.client.call(&Ping { n: 77 }).unwrap(), 77);
    assert_eq!(rig.running.stats().snapshot().stray, 1);
    rig.stop();
}

#[test]
fn a_device_that_takes_no_more_bytes_is_closed_instead_of_blocking_the_bridge() {
    let Some((link, device)) = plugged("wedged", Duration::from_secs(3600)) else {
        return;
    };
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .timeout(ms(10))
        .write_timeout(ms(200))
        .reopen_max(ms(100))
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let running = bridge.spawn().unwrap();
    let mut client = client(&rep);
    ping_until_answered(&mut client, 1, secs(5));

    // The device stops reading: requests (of 1000 bytes each) pile up in the line until it
    // takes no more. Each call ends in bounded time, the first ones with Timeout, then one
    // with Unavailable once a write finds no room for the write timeout.
    device.behaviour.deaf.store(true, Ordering::SeqCst);
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &rep);
    let mut big = vec![0; zmqrpc::HEADER_LEN];
    zmqrpc::Header::request(3, zmqrpc::Key::of("device.unknown"))
        .write(&mut big)
        .unwrap();
    big.resize(1000, 0x55);
    let deadline = Instant::now() + secs(60);
    let code = loop {
        let started = Instant::now();
        let (_, outcome) = exchange(&raw, &big);
        assert!(
            started.elapsed() < secs(2),
            "a call took {:?}",
            started.elapsed()
        );
        match outcome {
            Err(ErrorCode::Timeout) if Instant::now() < deadline => continue,
            Err(code) => break code,
            Ok(n) => panic!("a deaf device answered {n}"),
        }
    };
    assert_eq!(code, ErrorCode::Unavailable);
    assert!(running.stats().snapshot().lost >= 1);

    // It reads again: the bridge has opened it anew, and calls are answered.
    device.behaviour.deaf.store(false, Ordering::SeqCst);
    assert_eq!(ping_until_answered(&mut client, 5, secs(10)), 5);
    drop(client);
    running.stop_and_wait().unwrap();
    drop(device);
}

#[test]
fn a_bridge_stopped_during_a_call_answers_it_and_stops_in_bounded_time() {
    let Some((link, device)) = plugged("stopping", Duration::from_secs(3600)) else {
        return;
    };
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .timeout(secs(30))
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let running = bridge.spawn().unwrap();
    let mut client = client(&rep);
    ping_until_answered(&mut client, 1, secs(5));
    device.behaviour.silent.store(true, Ordering::SeqCst);
    let caller = std::thread::spawn(move || client.call(&Ping { n: 2 }));
    assert!(eventually(secs(5), || device
        .behaviour
        .requests
        .load(Ordering::SeqCst)
        >= 2));
    let started = Instant::now();
    running.stop();
    running.stop_and_wait().unwrap();
    assert!(started.elapsed() < secs(2), "took {:?}", started.elapsed());
    assert_eq!(remote_code(caller.join().unwrap()), ErrorCode::Unavailable);
    drop(device);
}

#[test]
fn a_silent_device_gets_its_callers_a_timeout_in_bounded_time() {
    let Some(mut rig) = Rig::start("silent", NO_SAMPLES) else {
        return;
    };

    rig.device.behaviour.silent.store(true, Ordering::SeqCst);
    for n in 0..3 {
        let started = Instant::now();
        assert_eq!(
            remote_code(rig.client.call(&Ping { n })),
            ErrorCode::Timeout
        );
        let took = started.elapsed();
        assert!(
            took >= device_timeout() && took < device_timeout() + secs(2),
            "{took:?}"
        );
    }
    rig.device.behaviour.silent.store(false, Ordering::SeqCst);
    assert_eq!(rig.client.call(&Ping { n: 5 }).unwrap(), 5);
    assert_eq!(rig.running.stats().snapshot().timeouts, 3);
    rig.stop();
}

#[test]
fn a_device_that_goes_away_mid_call_fails_that_call_at_once_and_is_reopened_when_back() {
    let Some((link, device)) = plugged("reset", Duration::from_secs(3600)) else {
        return;
    };
    let (running, rep, _) = bridge(&link);
    let mut client = client(&rep);
    ping_until_answered(&mut client, 1, secs(5));

    // The board resets with its USB adapter while a call is on the line.
    device
        .behaviour
        .vanish_on_request
        .store(true, Ordering::SeqCst);
    let started = Instant::now();
    assert_eq!(
        remote_code(client.call(&Ping { n: 2 })),
        ErrorCode::Unavailable
    );
    assert!(
        started.elapsed() < device_timeout(),
        "took {:?}",
        started.elapsed()
    );
    assert!(eventually(secs(2), || device.vanished()));
    drop(device);

    // While it is away, every caller is told at once.
    for n in 0..3 {
        let started = Instant::now();
        match client.call(&Ping { n }) {
            Err(CallError::Remote { error, .. }) => {
                assert_eq!(error.code, ErrorCode::Unavailable);
                assert!(
                    error.message.as_str().contains("not open"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(
            started.elapsed() < device_timeout(),
            "took {:?}",
            started.elapsed()
        );
    }

    // It comes back (a new line behind the same link): the bridge opens it again.
    let device = FakeDevice::plug(&link, Duration::from_secs(3600));
    assert_eq!(ping_until_answered(&mut client, 3, secs(5)), 3);
    assert_eq!(client.call(&SetLed { led: 1, on: true }).unwrap(), 0b10);
    let counts = running.stats().snapshot();
    assert_eq!(counts.opened, 2);
    assert!(counts.lost >= 1, "{counts:?}");
    drop(client);
    running.stop_and_wait().unwrap();
    drop(device);
}

#[test]
fn a_device_unplugged_while_idle_fails_the_next_call_at_once() {
    let Some((link, device)) = plugged("idle", Duration::from_millis(20)) else {
        return;
    };
    let (running, rep, _) = bridge(&link);
    let mut client = client(&rep);
    ping_until_answered(&mut client, 1, secs(5));
    drop(device);
    let started = Instant::now();
    assert_eq!(
        remote_code(client.call(&Ping { n: 2 })),
        ErrorCode::Unavailable
    );
    assert!(
        started.elapsed() < device_timeout(),
        "took {:?}",
        started.elapsed()
    );
    drop(client);
    running.stop_and_wait().unwrap();
}

#[test]
fn the_bridge_keeps_its_device_from_the_processes_it_starts() {
    let Some(rig) = Rig::start("cloexec", NO_SAMPLES) else {
        return;
    };
    // The descriptors this process holds on the device's line, and their open flags.
    let line = std::fs::canonicalize(&rig.link).unwrap();
    let flags: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            (std::fs::read_link(entry.path()).ok()? == line).then_some(())?;
            let fd = entry.file_name().into_string().ok()?;
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            u32::from_str_radix(flags.trim(), 8).ok()
        })
        .collect();
    const O_CLOEXEC: u32 = 0o2000000;
    assert_eq!(flags.len(), 1, "the bridge holds the line once: {flags:?}");
    assert_ne!(flags[0] & O_CLOEXEC, 0, "flags {:o}", flags[0]);
    rig.stop();
}

#[test]
fn a_device_missing_when_the_bridge_starts_is_opened_when_it_appears() {
    if !device::lines_open() {
        return;
    }
    let link = link_path("missing");
    let (running, rep, _) = bridge(&link);
    let mut client = client(&rep);
    let started = Instant::now();
    assert_eq!(
        remote_code(client.call(&Ping { n: 1 })),
        ErrorCode::Unavailable
    );
    assert!(
        started.elapsed() < device_timeout(),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(running.stats().snapshot().opened, 0);

    let device = FakeDevice::plug(&link, Duration::from_secs(3600));
    assert_eq!(ping_until_answered(&mut client, 4, secs(5)), 4);
    assert_eq!(running.stats().snapshot().opened, 1);
    drop(client);
    running.stop_and_wait().unwrap();
    drop(device);
}

#[test]
fn the_devices_notifications_reach_a_subscriber_while_calls_go_on() {
    let Some(mut rig) = Rig::start("notify", Duration::from_millis(20)) else {
        return;
    };
    let (subscriber, samples) = sample_subscriber(rig.publish.clone());
    for n in 0..20 {
        assert_eq!(rig.client.call(&Ping { n }).unwrap(), n);
    }
    assert!(eventually(secs(5), || samples.lock().unwrap().len() >= 10));
    // In order, and none missing between the first and the last that arrived.
    let seqs: Vec<u32> = samples.lock().unwrap().iter().map(|s| s.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(rig.running.stats().snapshot().published >= 10);
    subscriber.stop_and_wait().unwrap();
    rig.stop();
}

#[test]
fn garbage_from_the_network_is_refused_and_the_bridge_keeps_serving() {
    let Some((link, device)) = plugged("garbage", Duration::from_secs(3600)) else {
        return;
    };
    let (running, rep, _) = bridge(&link);
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &rep);
    for garbage in [
        &b"not a frame"[..],
        &[],
        &[1u8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        raw.send(garbage, 0).unwrap();
        let answer = raw.recv_bytes(0).unwrap();
        let frame = zmqrpc::Frame::decode(&answer).unwrap();
        let error = frame.remote_error().unwrap();
        assert!(
            matches!(error.code, ErrorCode::BadFrame | ErrorCode::VersionMismatch),
            "{error:?}"
        );
    }
    // A frame too large for the link is refused before it reaches the line.
    let mut huge = vec![0; zmqrpc::HEADER_LEN];
    zmqrpc::Header::request(5, Ping::KEY)
        .write(&mut huge)
        .unwrap();
    huge.resize(4000, 7);
    raw.send(&huge, 0).unwrap();
    let answer = raw.recv_bytes(0).unwrap();
    let error = zmqrpc::Frame::decode(&answer)
        .unwrap()
        .remote_error()
        .unwrap();
    assert_eq!(error.code, ErrorCode::TooLarge);

    let mut client = client(&rep);
    assert_eq!(ping_until_answered(&mut client, 9, secs(5)), 9);
    assert_eq!(running.stats().snapshot().refused, 3);
    drop(client);
    running.stop_and_wait().unwrap();
    drop(device);
}

#[test]
fn the_proxy_binary_bridges_a_serial_device_and_publishes_its_notifications() {
    let Some((link, device)) = plugged("binary", Duration::from_millis(20)) else {
        return;
    };
    let timeout = device_timeout().as_millis().to_string();
    let (input, output) = (ipc_endpoint("bridge-in"), ipc_endpoint("bridge-out"));
    let (proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2serial",
            "--device",
            link.to_str().unwrap(),
            "--baud",
            "115200",
            "--in",
            &input,
            "--out",
            &output,
            "--timeout",
            &timeout,
        ],
    );
    let rep = ready_field(&ready, "in")[0].clone();
    let publish = ready_field(&ready, "out")[0].clone();
    let (subscriber, samples) = sample_subscriber(publish);
    let mut client = client(&rep);
    assert_eq!(ping_until_answered(&mut client, 42, secs(10)), 42);
    assert_eq!(client.call(&SetLed { led: 7, on: true }).unwrap(), 0x80);
    assert!(eventually(secs(5), || samples.lock().unwrap().len() >= 3));

    // Unplugged: callers are told, and the log says so.
    drop(device);
    assert_eq!(
        remote_code(client.call(&Ping { n: 1 })),
        ErrorCode::Unavailable
    );
    let said = format!("serial device {} failed", link.display());
    assert!(proxy.wait_for_log(&said, secs(5)));
    drop(client);
    subscriber.stop_and_wait().unwrap();
    drop(proxy);
}

#[test]
fn the_shipped_bridge_config_runs_once_its_device_and_paths_are_given_by_flags() {
    let Some((link, device)) = plugged("deployed", Duration::from_secs(3600)) else {
        return;
    };
    let users = process::TempPath::with("bridge-users", "ops:s3cret\n");
    let input = ipc_endpoint("deployed-in");
    let output = ipc_endpoint("deployed-out");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/deploy/bridge.toml");
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--config",
            config,
            "--device",
            link.to_str().unwrap(),
            "--in",
            &input,
            "--out",
            &output,
            "--users",
            users.as_str(),
        ],
    );
    assert_eq!(ready, format!("ready in={input} out={output}"));
    let mut client = RpcClient::builder()
        .req(&input)
        .credentials(zmqrpc::transport::Credentials::new("ops", "s3cret"))
        .timeout(secs(5))
        .connect()
        .unwrap();
    assert_eq!(ping_until_answered(&mut client, 8, secs(10)), 8);
    drop(client);
    drop(device);
}

#[test]
fn the_proxy_binary_refuses_a_serial_bridge_without_a_device() {
    let out = process::bin(
        PROXY,
        &["--kind", "rep2serial", "--in", "tcp://127.0.0.1:0"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--device"), "{stderr}");
    let out = process::bin(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            "tcp://127.0.0.1:0",
            "--out",
            "tcp://127.0.0.1:1",
            "--device",
            "/dev/null",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rep2serial only"));
    // The device's frame limit: beyond what the link takes, refused by name.
    let out = process::bin(
        PROXY,
        &[
            "--kind",
            "rep2serial",
            "--in",
            "tcp://127.0.0.1:0",
            "--device",
            "/nonexistent/tty",
            "--device-frame-max",
            "5000",
        ],
    )
    .output()
    .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("device_frame_max 5000 is out of range"),
        "{stderr}"
    );
}

/// A frame of `len` bytes: a `Ping` header and a body of junk.
fn frame_of(len: usize) -> Vec<u8> {
    let mut frame = ping_frame(7, 1);
    frame.resize(len, 0x33);
    frame
}

/// Regression: a request larger than the device's buffer went to the device, which
/// dropped it, and held the single-threaded bridge for its whole timeout.
#[test]
fn a_request_over_the_devices_frame_limit_gets_too_large_at_once() {
    let Some((link, device)) = plugged("frame-max", NO_SAMPLES) else {
        return;
    };
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .timeout(secs(5))
        .device_frame_max(128)
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let running = bridge.spawn().unwrap();
    let mut client = client(&rep);
    ping_until_answered(&mut client, 1, secs(5));
    let seen = device.behaviour.requests.load(Ordering::SeqCst);
    let ctx = zmq::Context::new();
    let raw = raw_req(&ctx, &rep);
    let started = Instant::now();
    let (_, result) = exchange(&raw, &frame_of(129));
    assert_eq!(result, Err(ErrorCode::TooLarge));
    assert!(started.elapsed() < ms(500), "took {:?}", started.elapsed());
    // A frame of exactly the limit goes through.
    let (_, result) = exchange(&raw, &frame_of(128));
    assert!(result != Err(ErrorCode::TooLarge), "{result:?}");
    assert_eq!(running.stats().snapshot().too_large, 1);
    assert!(device.behaviour.requests.load(Ordering::SeqCst) <= seen + 1);
    // Out of range, the builder says so.
    let out_of_range = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .device_frame_max(LINK_FRAME_MAX + 1)
        .bind();
    let error = out_of_range.err().unwrap().to_string();
    assert!(
        error.contains("device_frame_max 1025 is out of range"),
        "{error}"
    );
    running.stop_and_wait().unwrap();
    drop(device);
}

/// A device streaming bytes without a delimiter (47 MB/s here) holds no call past its
/// deadline and the bridge past a stop: its passes are bounded in reads and time. (On this
/// machine's pseudo-terminals the reader finds the line empty often enough that an
/// unbounded pass ends too; a slower host on a faster line may not.)
#[test]
fn a_device_streaming_without_delimiters_holds_no_call_past_its_deadline_nor_a_stop() {
    use std::io::Write as _;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    if !device::lines_open() {
        return;
    }
    let link = link_path("stream");
    let (master, slave) = serialport::TTYPort::pair().unwrap();
    let line = serialport::SerialPort::name(&slave).unwrap();
    drop(slave);
    std::os::unix::fs::symlink(line, &*link).unwrap();
    // Three writers, so the device outpaces a reader that reads until it finds nothing.
    // Not joined: once the bridge has let go of the line, a write blocks for good; the
    // threads end with the test's process.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..3 {
        let (stop, written) = (stop.clone(), written.clone());
        let mut master = master.try_clone_native().unwrap();
        std::thread::spawn(move || {
            let junk = [0x55u8; 16 << 10];
            while !stop.load(Ordering::SeqCst) {
                match master.write(&junk) {
                    Ok(n) => {
                        written.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
    }
    drop(master);
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .timeout(ms(300))
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let running = bridge.spawn().unwrap();
    let mut client = client(&rep);
    for n in 0..3 {
        let started = Instant::now();
        assert_eq!(remote_code(client.call(&Ping { n })), ErrorCode::Timeout);
        let took = started.elapsed();
        assert!(took < ms(300) + ms(200), "call {n} took {took:?}");
    }
    let started = Instant::now();
    running.stop();
    running.stop_and_wait().unwrap();
    let took = started.elapsed();
    assert!(took < ms(50) + ms(100), "the stop took {took:?}");
    stop.store(true, Ordering::SeqCst);
    let written = written.load(Ordering::SeqCst);
    assert!(
        written > 1 << 20,
        "the device streamed only {written} bytes"
    );
}

/// Many callers at once wait their turn for the device, each within the bridge's timeout
/// from its arrival: a call that could no longer come back in time is answered `Timeout`
/// without reaching the device (behind a REP input, each waited in libzmq's queue with no
/// deadline, and the device ran calls whose callers had long given up).
#[test]
fn calls_from_many_callers_wait_their_turn_within_their_own_timeout() {
    let Some((link, device)) = plugged("many-callers", NO_SAMPLES) else {
        return;
    };
    let timeout = ms(700);
    let bridge = SerialBridge::builder(&*link)
        .input("tcp://127.0.0.1:*")
        .timeout(timeout)
        .bind()
        .unwrap();
    let rep = bridge.input_endpoints()[0].clone();
    let running = bridge.spawn().unwrap();
    let mut warm = client(&rep);
    ping_until_answered(&mut warm, 1, secs(5));
    let before = device.behaviour.requests.load(Ordering::SeqCst);
    device.behaviour.delay_ms.store(200, Ordering::SeqCst);
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let callers: Vec<_> = (0..8u32)
        .map(|n| {
            let (rep, start) = (rep.clone(), start.clone());
            std::thread::spawn(move || {
                let mut client = RpcClient::builder()
                    .req(&rep)
                    .timeout(secs(10))
                    .connect()
                    .unwrap();
                start.wait();
                let began = Instant::now();
                let answer = client.call(&Ping { n: 100 + n });
                (n, answer, began.elapsed())
            })
        })
        .collect();
    let mut answered = 0;
    for caller in callers {
        let (n, answer, took) = caller.join().unwrap();
        assert!(
            took < timeout + ms(300) * slack(),
            "caller {n} waited {took:?}"
        );
        match answer {
            Ok(value) => {
                assert_eq!(value, 100 + n, "caller {n} got another's answer");
                answered += 1;
            }
            other => assert_eq!(remote_code(other), ErrorCode::Timeout, "caller {n}"),
        }
    }
    let reached = device.behaviour.requests.load(Ordering::SeqCst) - before;
    assert!(answered >= 2, "only {answered} of 8 answered");
    assert!(
        reached < 8,
        "all 8 calls reached the device, {answered} in their callers' time"
    );
    let counts = running.stats().snapshot();
    assert_eq!(counts.answered as usize, answered + 1, "{counts:?}");
    running.stop_and_wait().unwrap();
    drop(device);
}
