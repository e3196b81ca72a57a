//! Commands, services and helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod device;
pub mod process;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{RpcClient, RpcServer, ServerBuilder, ServiceError};
use zmqrpc::Command;

/// Time margins grow under emulation (qemu-user runs the cross-built tests 5-10x slower).
pub fn slack() -> u32 {
    if cfg!(target_arch = "x86_64") {
        1
    } else {
        8
    }
}

/// `n` milliseconds, scaled for emulation.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n) * slack()
}

/// `n` seconds, scaled for emulation.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n) * slack()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Echo(pub String);
impl Command for Echo {
    const NAME: &'static str = "test.echo";
    type Response = String;
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Add(pub i64, pub i64);
impl Command for Add {
    const NAME: &'static str = "test.add";
    type Response = i64;
}

/// Fails with its message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Fail(pub String);
impl Command for Fail {
    const NAME: &'static str = "test.fail";
    type Response = ();
}

/// Panics with its message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Explode(pub String);
impl Command for Explode {
    const NAME: &'static str = "test.explode";
    type Response = ();
}

/// A command no test server registers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Unregistered;
impl Command for Unregistered {
    const NAME: &'static str = "test.unregistered";
    type Response = ();
}

/// A sensor sample, published one way.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Sample {
    pub seq: u32,
    pub value: f32,
}
impl Command for Sample {
    const NAME: &'static str = "test.sample";
    type Response = ();
}

/// A builder with the standard test services registered.
pub fn standard_server() -> ServerBuilder {
    RpcServer::builder()
        .register(|Echo(s): Echo| Ok::<_, ServiceError>(s))
        .unwrap()
        .register(|Add(a, b): Add| Ok::<_, ServiceError>(a + b))
        .unwrap()
        .register(|Fail(msg): Fail| Err::<(), _>(ServiceError::new(msg)))
        .unwrap()
        .register(|Explode(msg): Explode| -> Result<(), ServiceError> { panic!("{msg}") })
        .unwrap()
}

/// Collects the samples a server receives.
#[derive(Clone, Default)]
pub struct Samples(pub Arc<Mutex<Vec<Sample>>>);

impl Samples {
    pub fn service(&self) -> impl FnMut(Sample) -> Result<(), ServiceError> + Send + 'static {
        let store = self.0.clone();
        move |sample| {
            store.lock().unwrap().push(sample);
            Ok(())
        }
    }

    /// A server builder with this collector registered for `Sample`.
    pub fn server(&self) -> ServerBuilder {
        RpcServer::builder().register(self.service()).unwrap()
    }

    pub fn seqs(&self) -> Vec<u32> {
        self.0.lock().unwrap().iter().map(|s| s.seq).collect()
    }

    /// Waits (bounded) until `n` samples arrived; returns their sequence numbers.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<u32> {
        let deadline = Instant::now() + within;
        while self.0.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.seqs()
    }

    /// The sequence numbers with each run of repeats cut to one: what an at-least-once
    /// delivery (a buffered proxy's) delivered, in order, whatever it had to deliver again.
    pub fn delivered(&self) -> Vec<u32> {
        let mut seqs = self.seqs();
        seqs.dedup();
        seqs
    }

    /// Waits (bounded) until [`delivered`](Samples::delivered) holds `n`; returns it. For
    /// a buffered proxy, where a delivery whose answer was lost comes again: a repeat must
    /// not count as one more, nor may it hide one missing.
    pub fn wait_for_delivered(&self, n: usize, within: Duration) -> Vec<u32> {
        eventually(within, || self.delivered().len() >= n);
        self.delivered()
    }
}

/// A client with a short timeout for tests.
pub fn client(endpoint: &str) -> RpcClient {
    RpcClient::builder()
        .req(endpoint)
        .timeout(secs(5))
        .connect()
        .unwrap()
}

/// A publisher whose subscriber it refuses (wrong or no credentials): it counts the
/// refusal, never sees a subscriber, and nothing it sends reaches `samples`.
pub fn assert_never_fed(publisher: &mut RpcClient, samples: &Samples, label: &str) {
    let stats = publisher.publisher_stats().unwrap();
    assert!(
        eventually(secs(5), || {
            publisher.flush().unwrap();
            stats.snapshot().refused > 0
        }),
        "{label}: {:?}",
        stats.snapshot()
    );
    for seq in 0..5 {
        publisher.notify(&Sample { seq, value: 0.0 }).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !publisher.sender().publisher().unwrap().has_subscriber(),
        "{label}"
    );
    assert!(samples.seqs().is_empty(), "{label}");
}

/// A unique `ipc://` endpoint in the temp directory. Unlike a freed TCP port, no other
/// test running in parallel can be handed the same one.
pub fn ipc_endpoint(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("zmqrpc-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    format!("ipc://{}", path.display())
}

/// An endpoint nobody listens on.
pub fn dead_endpoint() -> String {
    ipc_endpoint("dead")
}

/// Polls `condition` every 5 ms until it holds or `within` passes; whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A client publishing on a fresh TCP port (letting only `users` subscribe, if given), and
/// that port's endpoint for servers to subscribe to.
pub fn publishing_client(users: Option<zmqrpc::transport::Users>) -> (RpcClient, String) {
    let mut builder = RpcClient::builder().publish_on("tcp://127.0.0.1:*");
    if let Some(users) = users {
        builder = builder.users(users);
    }
    let client = builder.connect().unwrap();
    let endpoint = client.publish_endpoints()[0].clone();
    (client, endpoint)
}

/// Waits (bounded) until a subscriber attaches to `client`'s publisher; whether one did.
pub fn attached(client: &mut RpcClient) -> bool {
    client
        .sender()
        .publisher()
        .unwrap()
        .wait_for_subscriber(secs(5))
        .unwrap()
}
