//! A node with a whole site's peers: thousands of publishers subscribed to, thousands of
//! callers answered, clients that share libzmq's threads, and the limits said by name.
//!
//! Each test runs in a process of its own (`in_own_process`): it holds thousands of files,
//! which tests sharing its process must not run short of. Under emulation (qemu-user, 5-10x
//! slower) the same tests run at an eighth of the size.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use crate::common::process::{command, in_own_process, ready_field, Process, TempPath, PROXY};
use crate::common::*;
use zmqrpc::transport::{
    LimitReached, RpcClient, RpcServer, ServiceError, SocketOptions, TransportError,
};

/// `n` at full size on the host, an eighth of it under emulation.
fn scaled(n: usize) -> usize {
    n / slack() as usize
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Raises the soft open-file limit to the hard one; fails the test, saying so, when even
/// that is below `needed`.
fn open_files_for(needed: u64) {
    let limit = zmqrpc::transport::raise_open_file_limit().unwrap();
    assert!(
        limit >= needed,
        "this test holds about {needed} files; the hard open-file limit is {limit}"
    );
}

#[test]
fn clients_built_without_a_context_share_libzmq_threads() {
    if in_own_process("scale::clients_built_without_a_context_share_libzmq_threads") {
        return;
    }
    let before = threads();
    // Nothing listens there: libzmq keeps trying in the background, which is all a
    // client's threads are for.
    let endpoint = dead_endpoint();
    let clients: Vec<RpcClient> = (0..300)
        .map(|_| RpcClient::builder().req(&endpoint).connect().unwrap())
        .collect();
    // Two libzmq threads (I/O and reaper) per shared context of 256 one-endpoint clients;
    // a context each would be 600.
    let added = threads() - before;
    assert_eq!(added, 4, "300 clients started {added} threads");
    drop(clients);
    // The last client of a context terminates it, and its threads end.
    assert!(
        eventually(secs(5), || threads() == before),
        "threads left: {} more than before",
        threads() - before
    );
}

#[test]
fn a_context_given_to_too_many_clients_says_which_limit_it_reached() {
    if in_own_process("scale::a_context_given_to_too_many_clients_says_which_limit_it_reached") {
        return;
    }
    let ctx = zmq::Context::new();
    let endpoint = dead_endpoint();
    let mut clients = Vec::new();
    let failure = loop {
        match RpcClient::builder().context(&ctx).req(&endpoint).connect() {
            Ok(client) => clients.push(client),
            Err(e) => break e,
        }
        assert!(clients.len() < 1024, "1,024 clients in one context");
    };
    // Three sockets each: the 342nd client finds no room in libzmq's 1,023.
    assert_eq!(clients.len(), 341);
    let TransportError::Limit { limit, .. } = &failure else {
        panic!("{failure:?}");
    };
    assert_eq!(*limit, LimitReached::ContextSockets { max: 1023 });
    assert!(failure.to_string().contains("ZMQ_MAX_SOCKETS"), "{failure}");
    // The clients already made still work: one more without the context does too.
    drop(clients.pop());
    RpcClient::builder().req(&endpoint).connect().unwrap();
}

#[test]
fn a_client_past_the_open_file_limit_is_refused_naming_it() {
    if in_own_process("scale::a_client_past_the_open_file_limit_is_refused_naming_it") {
        return;
    }
    // This process alone is lowered.
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, 256).unwrap();
    let endpoint = dead_endpoint();
    let take_every_file = || {
        let mut files = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            files.push(file);
            assert!(files.len() < 256, "256 files open within a limit of 256");
        }
        files
    };
    let refused_naming_the_limit = || {
        let Err(failure) = RpcClient::builder().req(&endpoint).connect() else {
            panic!("a client made with no file left");
        };
        // Not even the directory that counts the open files can be opened at the limit:
        // that too says which limit it is.
        let TransportError::Limit { limit, .. } = &failure else {
            panic!("{failure:?}");
        };
        assert!(
            matches!(limit, LimitReached::OpenFiles { soft: 256, .. }),
            "{limit:?}"
        );
        assert!(failure.to_string().contains("RLIMIT_NOFILE"), "{failure}");
    };
    // No context yet: the first client's cannot start its threads.
    let files = take_every_file();
    refused_naming_the_limit();
    drop(files);
    // A context running: the next client cannot make even its socket.
    let _first = RpcClient::builder().req(&endpoint).connect().unwrap();
    let files = take_every_file();
    refused_naming_the_limit();
    // Files given back, a client can be made again.
    drop(files);
    RpcClient::builder().req(&endpoint).connect().unwrap();
}

/// A `zmqrpc-proxy` (the real binary, configured from a file as a site's collector would
/// be) subscribed to two thousand publishers forwards what each publishes.
#[test]
fn a_proxy_subscribed_to_two_thousand_publishers_forwards_each() {
    if in_own_process("scale::a_proxy_subscribed_to_two_thousand_publishers_forwards_each") {
        return;
    }
    let n = scaled(2_000);
    // A publisher holds its socket, its monitor's two, a listening port and a connection.
    open_files_for(5 * n as u64 + 200);
    let started = Instant::now();
    let mut publishers: Vec<(RpcClient, String)> =
        (0..n).map(|_| publishing_client(None)).collect();
    let samples = Samples::default();
    let server = samples.server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let server_endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let inputs: Vec<String> = publishers
        .iter()
        .map(|(_, endpoint)| format!("\"{endpoint}\""))
        .collect();
    let config = TempPath::with(
        "collector.toml",
        &format!(
            "kind = \"sub2req\"\nin = [{}]\nout = [\"{server_endpoint}\"]\n",
            inputs.join(", ")
        ),
    );
    let (_proxy, ready) = Process::start(PROXY, &["--config", config.as_str()]);
    assert_eq!(ready_field(&ready, "in").len(), n, "{ready:.200}");
    // A publisher sends to the subscribers attached when it sends: each sends again until
    // the server heard it through the proxy.
    let heard = || samples.seqs().into_iter().collect::<BTreeSet<u32>>();
    let heard_all = eventually(secs(60), || {
        let by_server = heard();
        for (seq, (client, _)) in publishers.iter_mut().enumerate() {
            let seq = seq as u32;
            if !by_server.contains(&seq) {
                client.notify(&Sample { seq, value: 0.0 }).unwrap();
            }
        }
        std::thread::sleep(ms(50));
        by_server.len() == n
    });
    assert!(
        heard_all,
        "heard {} of {n} publishers through the proxy",
        heard().len()
    );
    eprintln!(
        "{n} publishers heard through the proxy in {:?}",
        started.elapsed()
    );
}

/// Publishers enough that a SUB socket and a monitor each would pass libzmq's socket
/// limit twice over: a server and a worker pool subscribe to all of them and hear each.
#[test]
fn a_server_and_a_pool_subscribe_to_two_thousand_publishers_and_hear_each() {
    if in_own_process(
        "scale::a_server_and_a_pool_subscribe_to_two_thousand_publishers_and_hear_each",
    ) {
        return;
    }
    let n = scaled(2_000);
    // A publisher holds its socket, its monitor's two, a listening port and a connection
    // per server; each server a connection per publisher.
    open_files_for(8 * n as u64 + 200);
    let started = Instant::now();
    let mut publishers: Vec<(RpcClient, String)> =
        (0..n).map(|_| publishing_client(None)).collect();
    let samples = Samples::default();
    let mut single = samples.server();
    let pooled = Samples::default();
    let mut pool = RpcServer::builder()
        .workers(2)
        .register_clone({
            let store = pooled.0.clone();
            move |sample: Sample| {
                store.lock().unwrap().push(sample);
                Ok::<_, ServiceError>(())
            }
        })
        .unwrap();
    for (_, endpoint) in &publishers {
        single = single.subscribe(endpoint);
        pool = pool.subscribe(endpoint);
    }
    let _single = single.bind().unwrap().spawn().unwrap();
    let _pool = pool.bind().unwrap().spawn().unwrap();
    // A publisher sends to the subscribers attached when it sends: each sends again until
    // both servers heard it.
    let heard = |samples: &Samples| samples.seqs().into_iter().collect::<BTreeSet<u32>>();
    let heard_all = eventually(secs(60), || {
        let (by_single, by_pool) = (heard(&samples), heard(&pooled));
        for (seq, (client, _)) in publishers.iter_mut().enumerate() {
            let seq = seq as u32;
            if !(by_single.contains(&seq) && by_pool.contains(&seq)) {
                client.notify(&Sample { seq, value: 0.0 }).unwrap();
            }
        }
        std::thread::sleep(ms(50));
        by_single.len() == n && by_pool.len() == n
    });
    assert!(
        heard_all,
        "heard {} of {n} publishers (single thread) and {} (pool)",
        heard(&samples).len(),
        heard(&pooled).len()
    );
    eprintln!(
        "{n} publishers heard by both servers in {:?}",
        started.elapsed()
    );
}

/// Where the callers of the child process call (set by the test for its child).
const CALLERS_OF: &str = "ZMQRPC_CALLERS_OF";

/// Calls `Add(i, 1)` on each client `i` of `clients`, eight threads each calling its share
/// in turn; how many were answered rightly.
fn call_each(clients: &mut [RpcClient]) -> usize {
    let share = clients.len().div_ceil(8).max(1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .chunks_mut(share)
            .enumerate()
            .map(|(chunk, clients)| {
                scope.spawn(move || {
                    let first = (chunk * share) as i64;
                    let mut answered = 0;
                    for (client, i) in clients.iter_mut().zip(first..) {
                        answered +=
                            usize::from(matches!(client.call(&Add(i, 1)), Ok(sum) if sum == i + 1));
                    }
                    answered
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    })
}

/// `n` clients of the server at `endpoint`, each connected.
fn callers(endpoint: &str, n: usize) -> Vec<RpcClient> {
    (0..n)
        .map(|_| {
            RpcClient::builder()
                .req(endpoint)
                .timeout(secs(20))
                .connect()
                .unwrap()
        })
        .collect()
}

/// The child's half of the callers: each calls once, says so, waits for the word, then
/// each calls again while all of both halves are connected.
fn callers_in_child(endpoint: &str, n: usize) {
    open_files_for(4 * n as u64 + 200);
    let mut clients = callers(endpoint, n);
    println!("callers: ready {}", call_each(&mut clients));
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    println!("callers: answered {}", call_each(&mut clients));
}

/// More callers than a process's default open-file limit lets it hold, all connected at
/// once: each of them is answered. They are two processes (a client holds four files: its
/// socket, its monitor's two ends and its connection), the server in this one.
#[test]
fn a_server_answers_five_thousand_connected_callers() {
    const NAME: &str = "scale::a_server_answers_five_thousand_connected_callers";
    let half = scaled(5_000) / 2;
    if let Ok(endpoint) = std::env::var(CALLERS_OF) {
        return callers_in_child(&endpoint, half);
    }
    if in_own_process(NAME) {
        return;
    }
    // The server's connection to each caller, and this half's callers.
    open_files_for(half as u64 * (1 + 4) + half as u64 + 200);
    let started = Instant::now();
    // Pings slowed to 250 a second, all callers together (1 s pings would cost the I/O
    // thread most of a core at this size).
    let server = standard_server()
        .options(SocketOptions::default().for_peers(2 * half))
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let running = server.spawn().unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = command(exe.to_str().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CALLERS_OF, &endpoint)
        .env("ZMQRPC_OWN_PROCESS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed however this test ends, so that a failure here leaves no caller behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let (said, heard) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may have begun the line with the test's name.
            if let Some((_, word)) = line.split_once("callers: ") {
                let _ = said.send(word.to_owned());
            }
        }
    });
    let mut clients = callers(&endpoint, half);
    assert_eq!(call_each(&mut clients), half);
    let ready = heard.recv_timeout(secs(60));
    assert_eq!(ready.as_deref(), Ok(format!("ready {half}").as_str()));
    // Both halves are connected: every one of them calls again.
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    assert_eq!(call_each(&mut clients), half);
    let answered = heard.recv_timeout(secs(60));
    assert_eq!(answered.as_deref(), Ok(format!("answered {half}").as_str()));
    assert!(child.wait().unwrap().success());
    let served = running.stats().snapshot().dispatch.served;
    assert_eq!(served, 4 * half as u64);
    eprintln!(
        "{} callers answered twice in {:?}",
        2 * half,
        started.elapsed()
    );
}
