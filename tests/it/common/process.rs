//! Running the crate's binaries from a test: under qemu-user too, each with its log, its
//! `ready` line and a bounded wait for everything.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::secs;

/// The proxy binary.
pub const PROXY: &str = env!("CARGO_BIN_EXE_zmqrpc-proxy");
/// The server binary.
pub const SERVER: &str = env!("CARGO_BIN_EXE_zmqrpc-server");

/// A command for one of the crate's binaries. Under qemu-user (the cross-built test suite;
/// binfmt is not available), the binary cannot be executed directly: run it through qemu.
pub fn command(program: &str) -> Command {
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

/// For a test that changes what a whole process shares (its memory budget): runs the calling
/// test `name` again in a child process of its own, and waits (bounded) for it to pass.
/// Returns `true` in the parent, whose test is then done, and `false` in the child, which
/// runs the test's body. So the test holds under `cargo test`, where the tests of a binary
/// share one process, as under nextest.
pub fn in_own_process(name: &str) -> bool {
    const CHILD: &str = "ZMQRPC_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = command(exe.to_str().unwrap());
    child
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = child.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(secs(60)) else {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGKILL);
        }
        panic!("{name} in its own process: still running after 60 s");
    };
    let output = output.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{name} in its own process: {}\n{text}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// `program` with `args`, logging at info (whatever `RUST_LOG` the tests run with) and with
/// no credentials in its environment unless a test puts them there.
pub fn bin(program: &str, args: &[&str]) -> Command {
    let mut command = command(program);
    command
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("ZMQRPC_USER")
        .env_remove("ZMQRPC_PASSWORD");
    command
}

/// A running binary; killed if the test fails before it stops.
pub struct Process {
    pub child: Child,
    /// Its stderr (the log), line by line.
    pub log: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `program` and waits (bounded) for its `ready …` line.
    pub fn start(program: &str, args: &[&str]) -> (Process, String) {
        Process::spawn(bin(program, args))
    }

    /// Starts `command` and waits (bounded) for its `ready …` line.
    pub fn spawn(mut command: Command) -> (Process, String) {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let log = lines(Box::new(child.stderr.take().unwrap()));
        let mut process = Process { child, log };
        // (A test binary run as a child prints libtest's banner first: skip it.)
        let deadline = Instant::now() + secs(10);
        let first = std::iter::from_fn(|| {
            stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        })
        .find(|line| !line.is_empty() && !line.starts_with("running "));
        match first.ok_or(()) {
            Ok(ready) => {
                assert!(ready.starts_with("ready"), "{ready}");
                (process, ready)
            }
            Err(_) => {
                let code = process.wait(secs(1));
                let log: Vec<String> = process.log.try_iter().collect();
                panic!("no ready line; exit code {code:?}, log {log:#?}");
            }
        }
    }

    /// Sends it `signal` (`libc::SIGTERM`, ...). Straight through `kill(2)`, not by running
    /// `kill(1)`: forking a test process whose libzmq threads are running is what qemu-user
    /// can deadlock on, and a child that never execs would hold the test forever.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "{}", std::io::Error::last_os_error());
    }

    /// Its peak resident memory so far (`VmHWM`), in KiB. Under qemu-user, the emulator's,
    /// the guest's included.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Its resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `within` for a log line containing `text`; whether one came.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The endpoints after `key=` in a ready line (`ready in=A,B out=C`).
pub fn ready_field(ready: &str, key: &str) -> Vec<String> {
    let value = ready
        .split(' ')
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {ready:?}"));
    value
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A path in the temp directory, removed when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    /// A fresh path; nothing there yet.
    pub fn new(name: &str) -> TempPath {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zmqrpc-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    /// A file holding `contents`, readable by its owner only (as files of secrets must be).
    pub fn with(name: &str, contents: &str) -> TempPath {
        TempPath::with_mode(name, contents, 0o600)
    }

    /// A file holding `contents`, with permission bits `mode`.
    pub fn with_mode(name: &str, contents: &str, mode: u32) -> TempPath {
        use std::os::unix::fs::PermissionsExt;
        let path = TempPath::new(name);
        std::fs::write(&path.0, contents).unwrap();
        std::fs::set_permissions(&path.0, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if std::fs::remove_file(&self.0).is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
