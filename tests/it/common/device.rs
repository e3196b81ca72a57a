//! A microcontroller on a pseudo-terminal: the core's `DeviceServer` in a thread, serving
//! the firmware example's commands on the master side of a pty pair, the slave side reached
//! through a symbolic link (as `/dev/serial/by-id/…` reaches a real adapter). Unplugging
//! closes the master; plugging in again makes a new pair and points the link at it, so the
//! bridge sees what it sees of a board reset with its USB adapter.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use zmqrpc::transport::{RpcClient, RpcServer, Running, ServerStats, ServiceError};
use zmqrpc_core::device::{on, DeviceServer, DeviceStats, Failure};
use zmqrpc_core::stream::{self, Deframer, Feed};
use zmqrpc_core::{frame, Command, Header};

// The firmware example's own command types (it is a workspace of its own, for a
// Cortex-M3): the host and the device share their source, as a real fleet would.
#[path = "../../../examples/firmware/src/commands.rs"]
pub mod commands;
use commands::{Ping, Sample, SetLed};

/// Whether this machine opens serial lines as the bridge does. qemu-user (which runs the
/// cross-built suites) does not implement the termios2 ioctls serialport sets a line's speed
/// with (`TCGETS2`: ENOSYS), so there the tests that need a line print `SKIPPED` and pass;
/// anywhere else a line that does not open is a failure.
pub fn lines_open() -> bool {
    let (_master, slave) = TTYPort::pair().unwrap();
    let line = slave.name().unwrap();
    drop(slave);
    match serialport::new(line, 115_200).open_native() {
        Ok(_) => true,
        Err(e) if !cfg!(target_arch = "x86_64") && e.to_string().contains("not implemented") => {
            eprintln!("SKIPPED: this machine cannot set up a serial line ({e}): emulated?");
            false
        }
        Err(e) => panic!("a pseudo-terminal's line does not open: {e}"),
    }
}

/// How the device misbehaves; changed while it runs.
#[derive(Default)]
pub struct Behaviour {
    /// Reads requests and answers none.
    pub silent: AtomicBool,
    /// Answers this many milliseconds late.
    pub delay_ms: AtomicU64,
    /// Sends a burst of line noise before every answer.
    pub noise: AtomicBool,
    /// Damages the next this-many answers on the line (their COBS is broken).
    pub damage: AtomicU32,
    /// Sends the unaddressed error (as for a frame it could not read) before the next
    /// answer.
    pub refuse_first: AtomicBool,
    /// Goes away (closes the line) when the next request arrives, without answering.
    pub vanish_on_request: AtomicBool,
    /// Stops reading the line (a wedged device): what is sent to it piles up.
    pub deaf: AtomicBool,
    /// Requests seen.
    pub requests: AtomicU32,
}

/// A plugged-in fake device; unplugged when dropped.
pub struct FakeDevice {
    pub behaviour: Arc<Behaviour>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DeviceStats>>,
}

/// A path for a device link in the temp directory (nothing there yet), removed when dropped.
pub struct LinkPath(PathBuf);

impl std::ops::Deref for LinkPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for LinkPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for LinkPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh [`LinkPath`].
pub fn link_path(name: &str) -> LinkPath {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("zmqrpc-tty-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    LinkPath(path)
}

/// Points `link` at `target`, atomically.
fn point(link: &Path, target: &Path) {
    let staged = link.with_extension("new");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(target, &staged).unwrap();
    std::fs::rename(&staged, link).unwrap();
}

/// Where an unplugged device's link points: nowhere. (Left at its old pty, the link could
/// reach another test's device once the kernel hands that pty's number out again.)
const NOWHERE: &str = "/nonexistent/zmqrpc-unplugged";

impl FakeDevice {
    /// A device on a new pty pair, `link` pointing at its line; sends a `Sample` every
    /// `sample_every`.
    pub fn plug(link: &Path, sample_every: Duration) -> FakeDevice {
        let (master, slave) = TTYPort::pair().unwrap();
        // A copy closed on exec: a child process (a binary under test) must not keep the
        // line open after the device lets go of it.
        let master = master.try_clone_native().unwrap();
        let line = slave.name().unwrap();
        // The bridge opens the line by its path, exclusively: this end lets go of it.
        drop(slave);
        point(link, Path::new(&line));
        let behaviour = Arc::new(Behaviour::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (behaviour, stop, link) = (behaviour.clone(), stop.clone(), link.to_owned());
            std::thread::spawn(move || {
                let mut master = master;
                let stats = serve(&mut master, &behaviour, &stop, sample_every);
                // Unplugged: the link goes nowhere before the line closes.
                point(&link, Path::new(NOWHERE));
                drop(master);
                stats
            })
        };
        FakeDevice {
            behaviour,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the device's end of the line; what its server counted.
    pub fn unplug(mut self) -> DeviceStats {
        self.stop_thread().unwrap_or_default()
    }

    /// Whether the device has gone away by itself (`vanish_on_request`).
    pub fn vanished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn stop_thread(&mut self) -> Option<DeviceStats> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|thread| thread.join().unwrap())
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Calls `Ping` until the device answers (a bridge opens it within its backoff, a board
/// boots); the answer's number.
pub fn ping_until_answered(client: &mut RpcClient, n: u32, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        match client.call(&Ping { n }) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() >= deadline => panic!("the device never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A server subscribed to `endpoint`, collecting the device's samples.
pub fn sample_subscriber(endpoint: String) -> (Running<ServerStats>, Arc<Mutex<Vec<Sample>>>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let store = samples.clone();
    let running = RpcServer::builder()
        .subscribe(endpoint)
        .register(move |sample: Sample| {
            store.lock().unwrap().push(sample);
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    (running, samples)
}

/// The device's loop: what a firmware's main loop does, on the pty master.
fn serve(
    line: &mut TTYPort,
    behaviour: &Behaviour,
    stop: &AtomicBool,
    sample_every: Duration,
) -> DeviceStats {
    line.set_timeout(Duration::from_millis(10)).unwrap();
    let mut lit = 0u8;
    let mut ping = on(|Ping { n }: Ping| Ok(n));
    let mut set_led = on(|SetLed { led, on }: SetLed| {
        let bit = 1u8
            .checked_shl(u32::from(led))
            .ok_or(Failure("no such LED"))?;
        lit = if on { lit | bit } else { lit & !bit };
        Ok(lit)
    });
    let mut server: DeviceServer<'_, 2> = DeviceServer::new();
    server.register(&mut ping).unwrap();
    server.register(&mut set_led).unwrap();

    let mut deframer: Deframer<256> = Deframer::new();
    let mut chunk = [0u8; 256];
    let mut answer = [0u8; 200];
    let mut next_sample = Instant::now() + sample_every;
    let mut samples = 0u32;
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next_sample {
            next_sample += sample_every;
            let sample = Sample {
                seq: samples,
                millivolts: 3300 - (samples % 100) as u16,
            };
            samples += 1;
            let mut buf = [0u8; 64];
            if let Ok(frame) = frame::encode(&Header::notify(Sample::KEY), &sample, &mut buf) {
                send(line, frame, false);
            }
        }
        if behaviour.deaf.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = match line.read(&mut chunk) {
            Ok(n) => n,
            Err(_) => {
                // Timed out, or no one has the line open (the master reads as hung up).
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let mut input = &chunk[..n];
        loop {
            let (frame, rest) = match deframer.feed(input) {
                Feed::NeedMore => break,
                Feed::Error { rest, .. } => {
                    input = rest;
                    continue;
                }
                Feed::Frame { frame, rest } => (frame, rest),
            };
            input = rest;
            behaviour.requests.fetch_add(1, Ordering::SeqCst);
            if behaviour.vanish_on_request.load(Ordering::SeqCst) {
                return server.stats();
            }
            if behaviour.silent.load(Ordering::SeqCst) {
                continue;
            }
            std::thread::sleep(Duration::from_millis(
                behaviour.delay_ms.load(Ordering::SeqCst),
            ));
            let Some(reply) = server.dispatch(frame, &mut answer) else {
                continue;
            };
            if behaviour.refuse_first.swap(false, Ordering::SeqCst) {
                let mut buf = [0u8; 64];
                if let Some(refusal) = server.dispatch(&[9, 9, 9], &mut buf) {
                    send(line, refusal, false);
                }
            }
            if behaviour.noise.load(Ordering::SeqCst) {
                // Bytes that are no COBS frame, then their delimiter: one lost frame.
                let _ = line.write_all(&[0x13, 0x37, 0xfe, 0x00]);
            }
            let damage = behaviour
                .damage
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            send(line, reply, damage);
        }
    }
    server.stats()
}

/// Writes `frame` COBS-encoded; `damage` breaks its encoding (the receiver loses it).
fn send(line: &mut TTYPort, frame: &[u8], damage: bool) {
    let mut encoded = [0u8; 300];
    let Ok(encoded) = stream::encode(frame, &mut encoded) else {
        return;
    };
    let mut encoded = encoded.to_vec();
    if damage {
        // A code byte pointing past the delimiter: not valid COBS.
        encoded[0] = 0xff;
    }
    // A line nobody has open, or one that is full, loses the frame: as a UART would.
    let _ = line.write_all(&encoded);
}
