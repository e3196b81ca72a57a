//! A small tokio gateway: one request fanned out to every node of a site, their answers
//! gathered within one deadline. A node too slow for the deadline is reported as such; the
//! others' answers are not held back by it.
//!
//!     cargo run --example gateway
//!
//! ```text
//!                    ┌─> node-0 (async server)
//! [gateway task] ────┼─> node-1 (async server)
//!  one SharedClient  ├─> node-2 (async server)
//!  per node          └─> node-3 (async server, slow: misses the deadline)
//! ```
//!
//! Each node here is an in-process async server whose `ReadTemperature` service awaits a
//! simulated sensor; on a real site they are other machines, and the gateway the same.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{CallError, RpcServer, Running, ServerStats, ServiceError, SharedClient};
use zmqrpc::Command;

/// Asks a node for its temperature.
#[derive(Serialize, Deserialize, Debug)]
struct ReadTemperature;

impl Command for ReadTemperature {
    const NAME: &'static str = "gateway.read_temperature";
    type Response = f32;
}

const NODES: usize = 4;
/// How long the gateway waits for the whole site.
const DEADLINE: Duration = Duration::from_millis(300);

/// Node `index`: an async server whose sensor answers after `delay`.
fn node(
    index: usize,
    delay: Duration,
) -> Result<(String, Running<ServerStats>), Box<dyn std::error::Error>> {
    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .register_async(move |ReadTemperature| async move {
            tokio::time::sleep(delay).await; // the sensor's conversion time
            Ok::<_, ServiceError>(20.0 + index as f32 * 0.5)
        })?
        .bind()?; // inside the runtime: the node's services run on it
    let endpoint = server.rep_endpoints()[0].clone();
    Ok((endpoint, server.spawn()?))
}

/// Asks every node at once; each answer, or why there is none, by the deadline (`None`: the
/// task asking it ended without an answer).
async fn read_site(nodes: &[SharedClient]) -> Vec<Option<Result<f32, CallError>>> {
    let mut calls = tokio::task::JoinSet::new();
    for (index, node) in nodes.iter().enumerate() {
        let node = node.clone();
        calls.spawn(async move {
            let answer = node.call_timeout_async(&ReadTemperature, DEADLINE).await;
            (index, answer)
        });
    }
    let mut answers = vec![None; nodes.len()];
    while let Some(joined) = calls.join_next().await {
        if let Ok((index, answer)) = joined {
            answers[index] = Some(answer);
        }
    }
    answers
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three quick nodes and one that takes longer than the gateway's deadline.
    let mut running = Vec::new();
    let mut nodes = Vec::new();
    for index in 0..NODES {
        let delay = match index {
            3 => Duration::from_secs(1),
            _ => Duration::from_millis(20 + 30 * index as u64),
        };
        let (endpoint, handle) = node(index, delay)?;
        running.push(handle);
        nodes.push(SharedClient::builder().req(endpoint).connect()?);
    }
    for round in 1..=2 {
        let started = Instant::now();
        let answers = read_site(&nodes).await;
        println!(
            "round {round}: the site answered in {:?}",
            started.elapsed()
        );
        for (index, answer) in answers.iter().enumerate() {
            match answer {
                Some(Ok(celsius)) => println!("  node-{index}: {celsius:.1} °C"),
                Some(Err(error)) => println!("  node-{index}: no answer: {error}"),
                None => println!("  node-{index}: its task failed"),
            }
        }
        let answered = answers.iter().filter(|a| matches!(a, Some(Ok(_)))).count();
        assert_eq!(answered, NODES - 1, "the quick nodes all answer in time");
        assert!(matches!(answers[3], Some(Err(CallError::Timeout { .. }))));
        assert!(started.elapsed() < DEADLINE + Duration::from_millis(200));
    }
    for handle in running {
        handle.stop_and_wait()?;
    }
    Ok(())
}
