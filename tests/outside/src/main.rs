//! What a user's application writes: the README's paths, default features.

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{BufferedProxy, CallError, Receipt, RpcClient, RpcServer, ServiceError};
use zmqrpc::Command;

#[derive(Serialize, Deserialize)]
struct ReadTemperature;
impl Command for ReadTemperature {
    const NAME: &'static str = "sensor.temperature";
    type Response = f32;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = RpcServer::builder()
        .rep("tcp://127.0.0.1:*")
        .register(|_: ReadTemperature| Ok::<_, ServiceError>(21.5f32))?
        .bind()?;
    let direct = server.rep_endpoints()[0].clone();
    let server = server.spawn()?;
    let proxy = BufferedProxy::builder()
        .input("tcp://127.0.0.1:*")
        .output(&direct)
        .bind()?;
    let through_proxy = proxy.input_endpoints()[0].clone();
    let proxy = proxy.spawn()?;

    let mut client = RpcClient::builder().req(&direct).connect()?;
    assert_eq!(client.call(&ReadTemperature)?, 21.5);
    let mut client = RpcClient::builder().req(&through_proxy).connect()?;
    assert!(matches!(
        client.call(&ReadTemperature),
        Err(CallError::Accepted { .. })
    ));
    assert!(matches!(
        client.submit(&ReadTemperature)?,
        Receipt::Accepted { .. }
    ));
    proxy.stop_and_wait()?;
    server.stop_and_wait()?;
    println!("outside: ok");
    Ok(())
}
