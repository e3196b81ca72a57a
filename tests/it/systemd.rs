//! systemd's notify protocol, on a notify socket of the test's own: the real binaries say
//! `READY=1`, feed the watchdog while they serve and say `STOPPING=1` on SIGTERM; a node whose
//! loop is stuck (a service that never returns, through the library) stops feeding it.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::systemd::Notifier;
use zmqrpc::transport::{RpcClient, RpcServer, ServiceError};

use crate::common::process::{bin, in_own_process, Process, TempPath, PROXY, SERVER};
use crate::common::{ipc_endpoint, secs};

/// A datagram socket standing for systemd's `$NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: TempPath,
}

impl NotifySocket {
    fn bind(name: &str) -> NotifySocket {
        let path = TempPath::new(name);
        let socket = UnixDatagram::bind(&path.0).unwrap();
        NotifySocket { socket, path }
    }

    /// Every notification received within `time` (each datagram one string).
    fn during(&self, time: Duration) -> Vec<String> {
        let until = Instant::now() + time;
        let mut received = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Some(message) = self.next(left) {
                received.push(message);
            }
        }
        received
    }

    /// Notifications until one holds `line` (as a whole line), within `time`; all of them, or
    /// `None` if none held it in time.
    fn until(&self, line: &str, time: Duration) -> Option<Vec<String>> {
        let until = Instant::now() + time;
        let mut received = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if let Some(message) = self.next(left) {
                let found = has_line(&message, line);
                received.push(message);
                if found {
                    return Some(received);
                }
            }
        }
        None
    }

    fn next(&self, within: Duration) -> Option<String> {
        let within = within.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

fn fed(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| has_line(m, "WATCHDOG=1"))
        .count()
}

/// `program` as systemd starts a `Type=notify` unit with `WatchdogSec=1`: `$NOTIFY_SOCKET`,
/// `$WATCHDOG_USEC`, and `$WATCHDOG_PID` naming the process itself (a shell that `exec`s it
/// keeps its pid).
fn as_unit(program: &str, args: &[&str], notify: &NotifySocket) -> Command {
    let inner = bin(program, args);
    let mut unit = Command::new("sh");
    unit.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => unit.env(key, value),
            None => unit.env_remove(key),
        };
    }
    unit.env("NOTIFY_SOCKET", notify.path.as_str())
        .env("WATCHDOG_USEC", "1000000");
    unit
}

#[test]
fn the_binaries_say_ready_feed_the_watchdog_while_they_serve_and_say_stopping() {
    let server_endpoint = ipc_endpoint("unit-server");
    let proxy_endpoint = ipc_endpoint("unit-proxy");
    let kinds: [(&str, Vec<&str>); 2] = [
        (SERVER, vec!["--bind", &server_endpoint]),
        (
            PROXY,
            vec![
                "--kind",
                "rep2req",
                "--in",
                &proxy_endpoint,
                "--out",
                &server_endpoint,
            ],
        ),
    ];
    for (program, args) in kinds {
        let notify = NotifySocket::bind("notify");
        let (mut node, _ready) = Process::spawn(as_unit(program, &args, &notify));
        let start = notify
            .until("READY=1", secs(10))
            .unwrap_or_else(|| panic!("{program}: no READY=1"));
        assert!(
            start.iter().any(|m| m.contains("STATUS=")),
            "{program}: {start:?}"
        );
        // WatchdogSec=1: fed every half second while the loop turns, idle as it is (the
        // ticks are the watch's own clock, not the emulated work's: not scaled).
        let served = notify.during(Duration::from_secs(3));
        assert!(fed(&served) >= 3, "{program}: {served:?}");
        assert!(
            served.iter().all(|m| !m.contains("stuck")),
            "{program}: {served:?}"
        );
        node.signal(libc::SIGTERM);
        let end = notify
            .until("STOPPING=1", secs(5))
            .unwrap_or_else(|| panic!("{program}: no STOPPING=1"));
        assert!(!end.is_empty());
        assert_eq!(node.wait(secs(10)), Some(0), "{program}");
    }
}

#[derive(Serialize, Deserialize)]
struct Hold;

impl zmqrpc::Command for Hold {
    const NAME: &'static str = "test.hold";
    type Response = ();
}

#[test]
fn a_node_whose_loop_is_stuck_stops_feeding_the_watchdog_and_feeds_it_again_once_it_turns() {
    // The notifier reads the process's environment: a process of its own.
    if in_own_process(
        "systemd::a_node_whose_loop_is_stuck_stops_feeding_the_watchdog_and_feeds_it_again_once_it_turns",
    ) {
        return;
    }
    let notify = NotifySocket::bind("notify-stuck");
    std::env::set_var("NOTIFY_SOCKET", notify.path.as_str());
    std::env::set_var("WATCHDOG_USEC", "1000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    let notifier = Notifier::from_env();
    assert_eq!(notifier.watchdog(), Some(Duration::from_secs(1)));

    // A one-thread server whose `Hold` service holds its loop until released.
    let (release, released) = mpsc::channel::<()>();
    let (entered, holding) = mpsc::channel::<()>();
    let (released, entered) = (Mutex::new(released), Mutex::new(entered));
    let endpoint = ipc_endpoint("stuck");
    let server = RpcServer::builder()
        .rep(&endpoint)
        .register(move |Hold| {
            let _ = entered.lock().unwrap().send(());
            let _ = released.lock().unwrap().recv_timeout(secs(20));
            Ok::<_, ServiceError>(())
        })
        .unwrap()
        .bind()
        .unwrap();
    let liveness = server.shutdown().liveness();
    let running = server.spawn().unwrap();
    let _watch = notifier
        .watch(liveness.clone(), || "serving".into())
        .unwrap()
        .expect("a notify socket is set");

    // The watch ticks on its own clock (every 500 ms), not the emulated work's: the times
    // below are not scaled.
    let idle = notify.during(Duration::from_secs(2));
    assert!(fed(&idle) >= 2, "idle: {idle:?}");

    let caller = std::thread::spawn(move || {
        let mut client = RpcClient::builder()
            .req(&endpoint)
            .timeout(secs(30))
            .connect()
            .unwrap();
        client.call(&Hold)
    });
    // Once the call holds the loop (and a tick read before it has gone), nothing feeds
    // the watchdog.
    holding
        .recv_timeout(secs(10))
        .expect("the call reached the service");
    let _ = notify.during(Duration::from_millis(600));
    let turns = liveness.turns();
    let stuck = notify.during(Duration::from_secs(2));
    assert_eq!(fed(&stuck), 0, "stuck: {stuck:?}");
    assert!(
        stuck.iter().any(|m| m.contains("STATUS=stuck for")),
        "stuck: {stuck:?}"
    );
    assert_eq!(liveness.turns(), turns, "the loop turned while held");

    release.send(()).unwrap();
    caller.join().unwrap().unwrap();
    let again = notify.during(Duration::from_secs(2));
    assert!(fed(&again) >= 2, "released: {again:?}");
    running.stop_and_wait().unwrap();
}

#[test]
fn a_service_manager_that_never_reads_holds_up_no_stop() {
    // Its queue holds `net.unix.max_dgram_qlen` datagrams (10 by default); past that every
    // notification blocks. Six seconds of a tick every half second fill it.
    let notify = NotifySocket::bind("notify-unread");
    let endpoint = ipc_endpoint("unit-unread");
    let (mut node, _ready) = Process::spawn(as_unit(SERVER, &["--bind", &endpoint], &notify));
    std::thread::sleep(Duration::from_secs(6));
    let mut client = crate::common::client(&endpoint);
    client
        .call(&zmqrpc::agent::Echo("still serving".into()))
        .unwrap();
    let asked = Instant::now();
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait(secs(10)), Some(0));
    assert!(
        asked.elapsed() < secs(5),
        "stopped after {:?}",
        asked.elapsed()
    );
}
