//! The device binaries: they start, serve, explain themselves, stop on SIGTERM within a
//! second, and a buffered proxy killed with SIGKILL loses nothing it acknowledged.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use zmqrpc::agent::{Echo, Ping};

const PROXY: &str = env!("CARGO_BIN_EXE_zmqrpc-proxy");
const SERVER: &str = env!("CARGO_BIN_EXE_zmqrpc-server");

/// A command for one of the crate's binaries. Under qemu-user (the cross-built test suite;
/// binfmt is not available), the binary cannot be executed directly: run it through qemu.
fn command(program: &str) -> Command {
    static EMULATED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let emulated = *EMULATED.get_or_init(|| {
        // The exec fails with ENOEXEC, reported either as a spawn error or (when the guest
        // libc spawns through fork + exec) as the child's exit code 127.
        match Command::new(program).arg("--version").output() {
            Err(e) => e.raw_os_error() == Some(8),
            Ok(out) => out.status.code() == Some(127) && out.stdout.is_empty(),
        }
    });
    if !emulated {
        return Command::new(program);
    }
    let (qemu, sysroot) = if cfg!(target_arch = "aarch64") {
        ("qemu-aarch64", "/usr/aarch64-linux-gnu")
    } else {
        ("qemu-arm", "/usr/arm-linux-gnueabihf")
    };
    let mut command = Command::new(qemu);
    command.args(["-L", sysroot, program]);
    command
}

/// A running binary; killed if the test fails before it stops.
struct Process(Child);

impl Process {
    /// Starts `program` and waits (bounded) for its `ready …` line.
    fn start(program: &str, args: &[&str]) -> (Process, String) {
        let mut child = command(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let process = Process(child);
        let ready = rx.recv_timeout(secs(10)).expect("no ready line");
        assert!(ready.starts_with("ready"), "{ready}");
        (process, ready)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit; its exit code.
    fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn both_binaries_explain_themselves() {
    for program in [PROXY, SERVER] {
        let out = command(program).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("USAGE:") && help.contains("SIGTERM"),
            "{help}"
        );
        let bad = command(program).arg("--no-such-flag").output().unwrap();
        assert!(!bad.status.success());
        let complaint = String::from_utf8_lossy(&bad.stderr);
        assert!(
            complaint.contains("--help"),
            "{program}: {complaint:?} {bad:?}"
        );
    }
}

#[test]
fn the_agent_serves_through_a_proxy_and_both_stop_on_sigterm_within_a_second() {
    let agent_endpoint = ipc_endpoint("agent");
    let proxy_endpoint = ipc_endpoint("agent-proxy");
    let (mut agent, ready) = Process::start(SERVER, &["--bind", &agent_endpoint]);
    assert_eq!(ready, format!("ready bind={agent_endpoint}"));
    let (mut proxy, _) = Process::start(
        PROXY,
        &[
            "--kind",
            "rep2req",
            "--in",
            &proxy_endpoint,
            "--out",
            &agent_endpoint,
        ],
    );

    let mut client = client(&proxy_endpoint);
    assert_eq!(
        client.call(&Ping).unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(client.call(&Echo("through".into())).unwrap(), "through");
    // The client subcommand, the way an operator would use it.
    let out = command(SERVER)
        .args(["call", "echo", "hi", "there", "--connect", &proxy_endpoint])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hi there\n");

    for process in [&mut proxy, &mut agent] {
        process.signal("-TERM");
        assert_eq!(process.wait(Duration::from_secs(1) * slack()), Some(0));
    }
}

#[test]
fn a_buffered_proxy_killed_after_acknowledging_delivers_everything_when_restarted() {
    let input = ipc_endpoint("killed-in");
    let downstream = ipc_endpoint("killed-down");
    let spool = std::env::temp_dir().join(format!("zmqrpc-killed-spool-{}", std::process::id()));
    let _ = std::fs::remove_file(&spool);
    let args = [
        "--kind",
        "buffered",
        "--in",
        &input,
        "--out",
        &downstream,
        "--timeout",
        "200",
        "--spool",
        spool.to_str().unwrap(),
    ];
    const N: u32 = 25;
    {
        let (proxy, _) = Process::start(PROXY, &args);
        let mut client = client(&input);
        for seq in 0..N {
            client.call(&Sample { seq, value: 0.0 }).unwrap(); // acknowledged = on disk
        }
        proxy.signal("-KILL");
    } // (drop reaps it)

    let samples = Samples::default();
    let _server = samples
        .server()
        .rep(&downstream)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let (_proxy, _) = Process::start(PROXY, &args);
    assert_eq!(
        samples.wait_for(N as usize, secs(10)),
        (0..N).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_file(&spool);
}
