//! One-way notifications: a sensor publishes samples, a server subscribes and counts them.
//!
//! Samples published before the server subscribes are held (up to the pending limit) and
//! delivered in order once it attaches; heartbeats keep the server's silence timeout quiet.
//!
//!     cargo run --example pubsub

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{RpcClient, RpcServer, ServiceError};
use zmqrpc::Command;

#[derive(Serialize, Deserialize, Debug)]
struct Sample {
    sensor: String,
    seq: u32,
    celsius: f32,
}

impl Command for Sample {
    const NAME: &'static str = "sensor.sample";
    type Response = ();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sensor = RpcClient::builder()
        .publish_on("tcp://127.0.0.1:*")
        .pending_limit(100)
        .connect()?;
    let publisher = sensor.sender().publisher().ok_or("no publisher")?;
    let endpoint = publisher.endpoints()[0].clone();
    let stats = publisher.stats();

    // Published before anyone listens: held, not lost.
    for seq in 0..5 {
        sensor.notify(&Sample {
            sensor: "greenhouse-1".into(),
            seq,
            celsius: 20.0 + seq as f32 / 10.0,
        })?;
    }
    println!("before the server subscribed: {:?}", stats.snapshot());

    let received = Arc::new(AtomicU32::new(0));
    let counter = received.clone();
    let running = RpcServer::builder()
        .subscribe_with_silence_timeout(&endpoint, Duration::from_secs(2))
        .register(move |sample: Sample| {
            println!("server got {sample:?}");
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ServiceError>(())
        })?
        .bind()?
        .spawn()?;

    let publisher = sensor.sender().publisher().ok_or("no publisher")?;
    publisher.wait_for_subscriber(Duration::from_secs(5))?;
    for seq in 5..10 {
        sensor.notify(&Sample {
            sensor: "greenhouse-1".into(),
            seq,
            celsius: 20.0 + seq as f32 / 10.0,
        })?;
        sensor.heartbeat()?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "sent 10, received {}; publisher {:?}",
        received.load(Ordering::SeqCst),
        stats.snapshot()
    );
    running.stop_and_wait()?;
    Ok(())
}
