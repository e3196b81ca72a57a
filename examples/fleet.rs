//! The model pyzmqrpc3's README proposes, in one process: sensor nodes publish samples; a
//! site buffered proxy collects them and forwards them reliably over REQ to a central server,
//! which counts them. The central server goes away for a few seconds mid-run; nothing is lost.
//!
//!     cargo run --example fleet
//!
//! ```text
//! sensor-0 ─PUB─┐
//! sensor-1 ─PUB─┼─SUB─> [site buffered proxy] ─REQ─> [central server]
//! sensor-2 ─PUB─┘        (in order, retried)          (stopped 3 s mid-run)
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{BufferedProxy, RpcClient, RpcServer, Running, ServerStats, ServiceError};
use zmqrpc::Command;

#[derive(Serialize, Deserialize, Debug)]
struct Sample {
    sensor: u8,
    seq: u32,
    celsius: f32,
}

impl Command for Sample {
    const NAME: &'static str = "fleet.sample";
    type Response = ();
}

const SENSORS: u8 = 3;
const SAMPLES: u32 = 100;

/// Every (sensor, seq) the central server has seen, and how many deliveries it counted.
type Seen = Arc<Mutex<(HashSet<(u8, u32)>, u64)>>;

fn central_server(
    endpoint: &str,
    seen: &Seen,
) -> Result<Running<ServerStats>, Box<dyn std::error::Error>> {
    let seen = seen.clone();
    let server = RpcServer::builder()
        .rep(endpoint)
        .register(move |sample: Sample| {
            let mut seen = seen.lock().map_err(|_| ServiceError::new("poisoned"))?;
            seen.1 += 1;
            if seen.0.insert((sample.sensor, sample.seq)) && seen.0.len() % 50 == 0 {
                println!(
                    "central: {} samples (latest: sensor {} #{})",
                    seen.0.len(),
                    sample.sensor,
                    sample.seq
                );
            }
            Ok::<_, ServiceError>(())
        })?
        .bind()?;
    Ok(server.spawn()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("zmqrpc-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let central = format!("ipc://{}", dir.join("central").display());
    let seen: Seen = Arc::default();

    // The sensors' publishers, bound first so the site can subscribe to them.
    let mut sensors = Vec::new();
    for _ in 0..SENSORS {
        sensors.push(
            RpcClient::builder()
                .publish_on("tcp://127.0.0.1:*")
                .connect()?,
        );
    }
    let mut site = BufferedProxy::builder()
        .output(&central)
        .timeout(Duration::from_millis(500))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .spool(dir.join("site.spool"), 16 << 20);
    for sensor in &mut sensors {
        let endpoint = sensor
            .sender()
            .publisher()
            .ok_or("no publisher")?
            .endpoints()[0]
            .clone();
        site = site.subscribe(endpoint);
    }
    let site = site.bind()?;
    let site_stats = site.stats();
    let site = site.spawn()?;
    let mut server = Some(central_server(&central, &seen)?);

    // Each sensor publishes a sample every 20 ms; the central server is down from 0.6 s to 3.6 s.
    let started = Instant::now();
    let threads: Vec<_> = sensors
        .into_iter()
        .enumerate()
        .map(|(id, mut sensor)| {
            std::thread::spawn(move || -> Result<u32, String> {
                let publisher = sensor.sender().publisher().ok_or("no publisher")?;
                publisher
                    .wait_for_subscriber(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                for seq in 0..SAMPLES {
                    let celsius = 20.0 + (seq % 10) as f32 / 10.0;
                    sensor
                        .notify(&Sample {
                            sensor: id as u8,
                            seq,
                            celsius,
                        })
                        .map_err(|e| e.to_string())?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(SAMPLES)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    if let Some(running) = server.take() {
        running.stop_and_wait()?;
        println!(
            "central: stopped at {:.1} s",
            started.elapsed().as_secs_f32()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "central: restarting at {:.1} s; the site holds {} samples",
        started.elapsed().as_secs_f32(),
        site_stats.snapshot().queued
    );
    let _server = central_server(&central, &seen)?;

    let mut sent = 0;
    for thread in threads {
        sent += thread.join().map_err(|_| "sensor panicked")??;
    }
    // Wait (bounded) for the site to drain.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (site_stats.snapshot().queued > 0
        || seen.lock().map_err(|_| "poisoned")?.0.len() < sent as usize)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (unique, deliveries) = {
        let seen = seen.lock().map_err(|_| "poisoned")?;
        (seen.0.len(), seen.1)
    };
    site.stop_and_wait()?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "sent {sent}, received {unique} ({} repeated deliveries, at-least-once); site {:?}",
        deliveries - unique as u64,
        site_stats.snapshot()
    );
    if unique as u32 == sent {
        Ok(())
    } else {
        Err(format!("lost {} samples", sent - unique as u32).into())
    }
}
