pub use zmqrpc_core::*;
