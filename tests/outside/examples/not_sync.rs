//! Must not compile: an `RpcClient` is `Send`, not `Sync` (its calls take `&mut self`), so
//! it cannot be shared behind an `Arc`. CI checks that the compiler says so naming the
//! documented path, `zmqrpc::transport::…`, never `zmqrpc_transport_std::…`.
use std::sync::Arc;
use zmqrpc::transport::RpcClient;

fn main() {
    let client = Arc::new(
        RpcClient::builder()
            .req("tcp://127.0.0.1:1")
            .connect()
            .unwrap(),
    );
    let shared = Arc::clone(&client);
    std::thread::spawn(move || drop(shared));
}
