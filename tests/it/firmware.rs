//! From host to microcontroller: the firmware example (`examples/firmware`, a Cortex-M3
//! `no_std` binary serving with the core's `DeviceServer`) runs under `qemu-system-arm` with
//! its UART on a pseudo-terminal; the real `zmqrpc-proxy --kind rep2serial` bridges that
//! line to ZeroMQ; a Rust client's typed calls are answered by the emulated
//! microcontroller, and its sensor samples reach a subscriber. The board is then reset
//! mid-run, and the bridge carries calls to it again once it is back.
//!
//! Needs `qemu-system-arm` and the firmware built (`cd examples/firmware && cargo build
//! --release`, or `ZMQRPC_FIRMWARE=<elf>`). Without them the tests print `SKIPPED` and pass,
//! unless `ZMQRPC_REQUIRE_QEMU` is set (as CI sets it): then they fail. Host only: under
//! qemu-user (the cross-built suites) they are skipped.
#![cfg(feature = "serial")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::common::device::commands::{Ping, ReadStats, SetLed};
use crate::common::device::{link_path, ping_until_answered, sample_subscriber};
use crate::common::process::{ready_field, Process, PROXY};
use crate::common::{eventually, ipc_endpoint, secs};
use zmqrpc::transport::{CallError, RpcClient};
use zmqrpc::ErrorCode;
use zmqrpc_core::device::DeviceStats;

/// The firmware's ELF, if it has been built.
fn firmware() -> Option<PathBuf> {
    let elf = std::env::var_os("ZMQRPC_FIRMWARE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/firmware/target/thumbv7m-none-eabi/release/zmqrpc-firmware")
        });
    elf.is_file().then_some(elf)
}

/// What the test needs, or why it cannot run (a failure where CI requires it).
fn prerequisites() -> Option<PathBuf> {
    let missing = if !cfg!(target_arch = "x86_64") {
        "not on the build host (qemu-user runs this suite)"
    } else if Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_err()
    {
        "qemu-system-arm is not installed"
    } else {
        match firmware() {
            Some(elf) => return Some(elf),
            None => "the firmware is not built (cd examples/firmware && cargo build --release)",
        }
    };
    assert!(
        std::env::var_os("ZMQRPC_REQUIRE_QEMU").is_none() || !cfg!(target_arch = "x86_64"),
        "ZMQRPC_REQUIRE_QEMU is set but {missing}"
    );
    eprintln!("SKIPPED: {missing}");
    None
}

/// The emulated board; killed when dropped.
struct Board {
    qemu: Child,
    /// The pseudo-terminal UART0 is on.
    line: PathBuf,
    /// Where qemu takes monitor commands (QMP), to reset the board.
    qmp: PathBuf,
}

impl Board {
    /// Boots `elf` on an mps2-an385 with UART0 on a new pty (`qmp` names the monitor's
    /// socket).
    fn boot(elf: &Path, qmp: PathBuf) -> Board {
        let _ = std::fs::remove_file(&qmp);
        let qemu = Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an385", "-nographic", "-monitor", "none"])
            .args(["-serial", "pty"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Owned at once, so that qemu is killed whatever fails next.
        let mut board = Board {
            qemu,
            line: PathBuf::new(),
            qmp,
        };
        // qemu 7.2 names the pty on stdout: `char device redirected to /dev/pts/N (label
        // serial0)`; nothing else comes there while it runs well.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = board.qemu.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let announced = rx.recv_timeout(secs(10));
        board.line = announced
            .as_deref()
            .ok()
            .and_then(|l| l.strip_prefix("char device redirected to "))
            .and_then(|l| l.split(' ').next())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("qemu named no pty: {announced:?}"));
        assert!(eventually(secs(10), || board.qmp.exists()), "no QMP socket");
        board
    }

    /// Resets the board (its RAM, its firmware's state), as its reset button would; the
    /// UART's line stays.
    fn reset(&self) {
        let stream = UnixStream::connect(&self.qmp).unwrap();
        stream.set_read_timeout(Some(secs(5))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // the greeting
        for command in ["qmp_capabilities", "system_reset"] {
            writeln!(writer, "{{\"execute\": \"{command}\"}}").unwrap();
            // Skip events until the command's answer.
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line.contains("\"return\"") {
                    break;
                }
                assert!(!line.contains("\"error\""), "{line}");
            }
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        let _ = std::fs::remove_file(&self.qmp);
    }
}

#[test]
fn an_emulated_microcontroller_answers_typed_calls_through_the_proxy_binary() {
    let Some(elf) = prerequisites() else { return };
    let board = Board::boot(&elf, link_path("mps2").with_extension("qmp"));
    let (input, output) = (ipc_endpoint("board-in"), ipc_endpoint("board-out"));
    let (_proxy, ready) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2serial",
            "--device",
            board.line.to_str().unwrap(),
            "--in",
            &input,
            "--out",
            &output,
            "--timeout",
            "1000",
        ],
    );
    let (sub, samples) = sample_subscriber(ready_field(&ready, "out")[0].clone());
    let mut client = RpcClient::builder()
        .req(ready_field(&ready, "in")[0].clone())
        .timeout(secs(5))
        .connect()
        .unwrap();

    // Typed calls, answered by the firmware's DeviceServer.
    assert_eq!(ping_until_answered(&mut client, 7, secs(20)), 7);
    assert_eq!(client.call(&SetLed { led: 2, on: true }).unwrap(), 0b100);
    assert_eq!(
        client.call(&SetLed { led: 5, on: true }).unwrap(),
        0b10_0100
    );
    match client.call(&SetLed { led: 8, on: true }) {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code, ErrorCode::ServiceFailed);
            assert_eq!(error.message.as_str(), "no such LED");
        }
        other => panic!("expected the firmware's failure, got {other:?}"),
    }
    for n in 0..50 {
        assert_eq!(client.call(&Ping { n }).unwrap(), n);
    }
    let stats: DeviceStats = client.call(&ReadStats).unwrap();
    assert!(stats.served >= 53 && stats.failed == 1, "{stats:?}");

    // The board's own samples reach the subscriber, in order.
    assert!(eventually(secs(10), || samples.lock().unwrap().len() >= 3));
    let seqs: Vec<u32> = samples.lock().unwrap().iter().map(|s| s.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // Reset mid-run: the firmware starts over (its LEDs dark, its samples from 0); calls
    // made meanwhile get an answer or an error, never another call's answer; then the
    // board serves again through the same bridge.
    board.reset();
    let deadline = Instant::now() + secs(20);
    let lit = loop {
        match client.call(&SetLed { led: 0, on: true }) {
            Ok(lit) => break lit,
            Err(CallError::Remote { error, .. }) => {
                assert!(
                    matches!(error.code, ErrorCode::Timeout | ErrorCode::Unavailable),
                    "{error:?}"
                );
                assert!(Instant::now() < deadline, "the board never came back");
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(lit, 0b1, "the LEDs lit before the reset are dark after it");
    assert!(eventually(secs(10), || {
        let samples = samples.lock().unwrap();
        samples.windows(2).any(|w| w[1].seq < w[0].seq)
    }));
    let stats: DeviceStats = client.call(&ReadStats).unwrap();
    assert!(stats.served < 10, "counters start over: {stats:?}");

    drop(client);
    sub.stop_and_wait().unwrap();
    drop(board);
}
