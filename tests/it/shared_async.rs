//! The shared client from tokio tasks: async calls beside blocking ones on one client,
//! futures dropped mid-call, a client with no server, a server killed and restarted, the
//! last clone dropped mid-call, and a blocking call made inside a runtime.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zmqrpc::transport::{CallError, SharedClient};

use crate::common::process::*;
use crate::common::*;
use crate::shared::{pool, Nap};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// What the process has open and running now: threads and file descriptors.
fn threads_and_fds() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    (threads, fds)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn tasks_and_threads_share_one_client_every_answer_to_its_own_call() {
    const TASKS: i64 = 256;
    const THREADS: i64 = 8;
    const CALLS: i64 = 12;
    const SHORT_EVERY: i64 = 16;
    let served = Arc::new(AtomicU64::new(0));
    let server = pool(served.clone())
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(20))
        .connect()
        .unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..CALLS {
                    assert_eq!(client.call(&Add(1000 + t, i)).unwrap(), 1000 + t + i);
                    let text = format!("thread {t}/{i}");
                    assert_eq!(client.call(&Echo(text.clone())).unwrap(), text);
                }
            })
        })
        .collect();
    let timed_out = Arc::new(AtomicU64::new(0));
    runtime().block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let client = client.clone();
                let timed_out = timed_out.clone();
                tokio::spawn(async move {
                    for i in 0..CALLS {
                        match i % 4 {
                            0 => assert_eq!(client.call_async(&Add(t, i)).await.unwrap(), t + i),
                            1 => {
                                let text = format!("task {t}/{i}");
                                assert_eq!(
                                    client.call_async(&Echo(text.clone())).await.unwrap(),
                                    text
                                );
                            }
                            2 => assert_eq!(client.call_async(&Nap(1)).await.unwrap(), 1),
                            // Now and then a short deadline beside the long ones: it
                            // ends on its own, the others go on.
                            _ if t % SHORT_EVERY == 0 && i == 3 => {
                                match client.call_timeout_async(&Nap(200), ms(20)).await {
                                    Err(CallError::Timeout { .. }) => {
                                        timed_out.fetch_add(1, Ordering::SeqCst);
                                    }
                                    other => panic!("{other:?}"),
                                }
                            }
                            _ => assert_eq!(client.call_async(&Add(i, t)).await.unwrap(), i + t),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    let short = (TASKS / SHORT_EVERY) as u64;
    assert_eq!(timed_out.load(Ordering::SeqCst), short);
    let counts = client.counts();
    assert_eq!(counts.timed_out, short);
    // Every answered call was matched to its own; the short calls' answers, if they came
    // after their deadlines, are late, and nothing else is stray.
    assert!(eventually(secs(20), || client.in_flight() == 0));
    // Late answers may still be coming in: read the strays between two readings of the late.
    let late_before = client.counts().late;
    let strays = client.stray_answers();
    let late_after = client.counts().late;
    assert!(strays <= short, "{strays}");
    assert!(
        (late_before..=late_after).contains(&strays),
        "{strays} strays, {late_before}..{late_after} of them late"
    );
}

#[test]
fn futures_dropped_under_select_cancel_their_calls_at_once() {
    let served = Arc::new(AtomicU64::new(0));
    let server = pool(served.clone())
        .rep("tcp://127.0.0.1:*")
        .bind()
        .unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder()
        .req(&endpoint)
        .in_flight(4)
        .queued(2000)
        .timeout(secs(30))
        .connect()
        .unwrap();
    let lost = runtime().block_on(async {
        // Four slow calls fill what may be in flight; the 1,000 behind them wait queued.
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.call_async(&Nap(500)).await })
            })
            .collect();
        while client.in_flight() < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut lost = 0;
        for i in 0..1000 {
            let add = Add(i, 1);
            // The call first: it is submitted (queued) before the other branch ends it.
            tokio::select! {
                biased;
                answer = client.call_async(&add) => panic!("answered: {answer:?}"),
                _ = std::future::ready(()) => lost += 1,
            }
        }
        // Each dropped future freed its slot at once.
        assert_eq!(client.queued(), 0);
        for call in slow {
            assert_eq!(call.await.unwrap().unwrap(), 500);
        }
        lost
    });
    assert_eq!(lost, 1000);
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.queued(), 0);
    std::thread::sleep(ms(100));
    // Only the four slow calls reached the server: no cancelled call was ever sent.
    assert_eq!(served.load(Ordering::SeqCst), 4);
    assert_eq!(client.counts().sent, 4);
    assert_eq!(client.counts().cancelled, 1000);
    // And the client goes on: a call is answered.
    assert_eq!(client.call(&Add(2, 2)).unwrap(), 4);
}

#[test]
fn ten_thousand_calls_with_no_server_stay_bounded_and_none_reaches_it_later() {
    // It reads the whole process's memory: alone in a process.
    if in_own_process(
        "shared_async::ten_thousand_calls_with_no_server_stay_bounded_and_none_reaches_it_later",
    ) {
        return;
    }
    let endpoint = ipc_endpoint("async-no-server");
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(ms(50))
        .connect()
        .unwrap();
    let before = vm_rss_kib();
    let (timed_out, refused) = runtime().block_on(async {
        let calls: Vec<_> = (0..10_000)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.call_async(&Add(i, 1)).await })
            })
            .collect();
        let (mut timed_out, mut refused) = (0u64, 0u64);
        for call in calls {
            match call.await.unwrap() {
                Err(CallError::Timeout { .. }) => timed_out += 1,
                Err(CallError::WindowFull { .. }) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        (timed_out, refused)
    });
    assert_eq!(timed_out + refused, 10_000);
    // At most the bounds (256 in flight, 1,024 queued) waited at once.
    assert!(timed_out >= 1, "{timed_out}");
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 64 << 10, "VmRSS grew by {grown} KiB");
    assert_eq!(client.counts().sent, 0, "nothing was sent without a server");
    let served = Arc::new(AtomicU64::new(0));
    let _server = pool(served.clone())
        .rep(endpoint.clone())
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(client.call_timeout(&Add(20, 22), secs(5)).unwrap(), 42);
    std::thread::sleep(ms(200));
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "a stale call reached the server"
    );
}

#[test]
fn a_server_killed_mid_call_ends_its_calls_typed_and_a_restarted_one_serves() {
    let endpoint = ipc_endpoint("async-killed");
    let (server, _) = Process::start(SERVER, &["--bind", &endpoint]);
    let client = SharedClient::builder()
        .req(&endpoint)
        .timeout(secs(30))
        .connect()
        .unwrap();
    let echo = zmqrpc::agent::Echo("up".into());
    assert_eq!(client.call(&echo).unwrap(), "up");
    // Frozen, it takes calls and answers none; killed, its connection drops.
    server.signal(libc::SIGSTOP);
    let rt = runtime();
    let waiting: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            rt.spawn(async move {
                client
                    .call_async(&zmqrpc::agent::Echo(format!("{i}")))
                    .await
            })
        })
        .collect();
    assert!(eventually(secs(5), || client.in_flight() == 16));
    let killed = Instant::now();
    server.signal(libc::SIGKILL);
    rt.block_on(async {
        for call in waiting {
            match call.await.unwrap() {
                Err(CallError::Disconnected { endpoint: from }) => assert_eq!(from, endpoint),
                other => panic!("{other:?}"),
            }
        }
    });
    assert!(killed.elapsed() < secs(3), "{:?}", killed.elapsed());
    drop(server);
    // Restarted at the same endpoint: new calls are served.
    let (_server, _) = Process::start(SERVER, &["--bind", &endpoint]);
    let answer = rt.block_on(client.call_async(&echo));
    assert_eq!(answer.unwrap(), "up");
}

#[test]
fn the_last_clone_dropped_mid_call_stops_everything_it_started() {
    // It counts the whole process's threads and descriptors: alone in a process.
    if in_own_process("shared_async::the_last_clone_dropped_mid_call_stops_everything_it_started") {
        return;
    }
    // A server in another process, frozen once the client is connected: the call stays in
    // flight, and what this process holds is the client's alone.
    let endpoint = ipc_endpoint("async-last-clone");
    let (server, _) = Process::start(SERVER, &["--bind", &endpoint]);
    let rt = runtime();
    // The runtime's own threads and descriptors are there before and after.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    let baseline = threads_and_fds();
    let client = SharedClient::builder().req(&endpoint).connect().unwrap();
    let echo = zmqrpc::agent::Echo("up".into());
    assert_eq!(client.call(&echo).unwrap(), "up");
    server.signal(libc::SIGSTOP);
    // The one clone goes into a task, which is aborted in the middle of its call.
    let task = rt.spawn(async move {
        let answer = client.call_timeout_async(&echo, secs(30)).await;
        (answer, client)
    });
    std::thread::sleep(ms(100));
    let aborted = Instant::now();
    task.abort();
    let ended = rt.block_on(task);
    assert!(ended.unwrap_err().is_cancelled());
    assert!(aborted.elapsed() < secs(1), "{:?}", aborted.elapsed());
    assert!(
        eventually(secs(5), || threads_and_fds() == baseline),
        "{:?} now, {baseline:?} before",
        threads_and_fds()
    );
    assert!(aborted.elapsed() < secs(1), "{:?}", aborted.elapsed());
    server.signal(libc::SIGCONT);
}

#[test]
fn a_blocking_call_inside_a_runtime_moves_off_it_or_is_refused() {
    let server = standard_server().rep("tcp://127.0.0.1:*").bind().unwrap();
    let endpoint = server.rep_endpoints()[0].clone();
    let _server = server.spawn().unwrap();
    let client = SharedClient::builder().req(&endpoint).connect().unwrap();
    // A multi-thread runtime hands its tasks on and lets the call block.
    let answered = runtime().block_on({
        let client = client.clone();
        async move { client.call(&Add(2, 3)) }
    });
    assert_eq!(answered.unwrap(), 5);
    // A current-thread runtime would stall: the call is refused, nothing sent.
    let sent = client.counts().sent;
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let refused = current.block_on(async { client.call(&Add(2, 3)) });
    assert_eq!(refused, Err(CallError::BlockingInRuntime));
    assert!(refused.unwrap_err().to_string().contains("_async"));
    assert_eq!(client.counts().sent, sent);
    // The async form works there.
    assert_eq!(current.block_on(client.call_async(&Add(2, 3))).unwrap(), 5);
}

#[test]
fn notifications_go_out_from_any_thread_or_task() {
    let client = SharedClient::builder()
        .req(dead_endpoint())
        .publish_on("tcp://127.0.0.1:*")
        .connect()
        .unwrap();
    let publish = client.publish_endpoints()[0].clone();
    let samples = Samples::default();
    let _server = samples
        .server()
        .subscribe(&publish)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    // Once the server's subscription is in, nothing more is held back.
    let count = || samples.0.lock().unwrap().len();
    assert!(eventually(secs(5), || {
        client.notify(&Sample { seq: 0, value: 0.0 }).unwrap();
        client.flush().unwrap();
        count() > 0
    }));
    std::thread::sleep(ms(100));
    let before = count();
    let threads: Vec<_> = (1..=4u32)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let sample = Sample {
                        seq: t * 1000 + i,
                        value: 1.0,
                    };
                    client.notify(&sample).unwrap();
                }
            })
        })
        .collect();
    runtime().block_on(async {
        for i in 0..50 {
            client.notify(&Sample { seq: i, value: 2.0 }).unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        eventually(secs(5), || count() == before + 250),
        "{} of {}",
        count(),
        before + 250
    );
    // Without a PUB endpoint, a typed refusal.
    let no_pub = SharedClient::builder()
        .req(dead_endpoint())
        .connect()
        .unwrap();
    assert!(matches!(
        no_pub.notify(&Sample { seq: 1, value: 1.0 }),
        Err(CallError::NoSocket(_))
    ));
}
