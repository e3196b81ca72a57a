//! pyzmqrpc3's quickstart in Rust: a `SimpleCommand` served by a `SimpleService`, typed end to end.
//!
//! One process (server on a thread, client in main):
//!     cargo run --example quickstart
//! Two processes:
//!     cargo run --example quickstart -- server tcp://127.0.0.1:30000
//!     cargo run --example quickstart -- client tcp://127.0.0.1:30000

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zmqrpc::transport::{Caller, RpcClient, RpcServer, Service, ServiceError};
use zmqrpc::Command;

/// The command: plain data both ends share; serde does the marshalling.
#[derive(Serialize, Deserialize, Debug)]
struct SimpleCommand {
    param1: String,
    param2: String,
}

impl Command for SimpleCommand {
    const NAME: &'static str = "example.simple";
    type Response = String;
}

/// The service: one per command type.
struct SimpleService;

impl Service<SimpleCommand> for SimpleService {
    fn call(&mut self, command: SimpleCommand, _: &Caller) -> Result<String, ServiceError> {
        println!(
            "SimpleCommand executed with params {:?} and {:?}",
            command.param1, command.param2
        );
        Ok(format!(
            "SimpleService response text for SimpleCommand is {{param1: {:?}, param2: {:?}}}",
            command.param1, command.param2
        ))
    }
}

fn server(endpoint: &str) -> Result<RpcServer, Box<dyn std::error::Error>> {
    Ok(RpcServer::builder()
        .rep(endpoint)
        .register(SimpleService)?
        .bind()?)
}

fn client(endpoint: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = RpcClient::builder()
        .req(endpoint)
        .timeout(Duration::from_secs(3))
        .connect()?;
    let answer = client.call(&SimpleCommand {
        param1: "value1".into(),
        param2: "value2".into(),
    })?;
    println!("client got: {answer}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args.get(1).map_or("tcp://127.0.0.1:30000", String::as_str);
    match args.first().map(String::as_str) {
        Some("server") => {
            let server = server(endpoint)?;
            println!("serving on {}; Ctrl-C to stop", server.rep_endpoints()[0]);
            server.run()?;
        }
        Some("client") => client(endpoint)?,
        None => {
            let server = server("tcp://127.0.0.1:*")?;
            let bound = server.rep_endpoints()[0].clone();
            let running = server.spawn()?;
            client(&bound)?;
            running.stop_and_wait()?;
        }
        Some(other) => return Err(format!("unknown mode {other:?}: use server or client").into()),
    }
    Ok(())
}
