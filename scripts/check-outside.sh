#!/usr/bin/env bash
# An application outside the workspace (tests/outside), as a user writes one: `zmqrpc` with
# its default features and only the paths the README and docs show. It must build and run,
# compile none of the binaries' dependencies, and the compiler must name items by those
# same paths in its messages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tests/outside"
# The workspace's target and versions: what is built already is reused.
export CARGO_TARGET_DIR="$PWD/../../target"
cp ../../Cargo.lock Cargo.lock
cargo run -q
if cargo tree -e normal --prefix none | grep -E '^(lexopt|env_logger|basic-toml|signal-hook|serialport) '; then
    echo "FAIL: a library user's default build pulls in the binaries' dependencies (above)"
    exit 1
fi
if message=$(cargo check -q --example not_sync 2>&1); then
    echo "FAIL: examples/not_sync.rs compiled: an RpcClient shared behind an Arc"
    exit 1
fi
if ! grep -q 'zmqrpc::transport::' <<<"$message" || grep -q 'zmqrpc_transport_std' <<<"$message"; then
    echo "FAIL: the compiler should name zmqrpc::transport::…, and only that:"
    echo "$message"
    exit 1
fi
echo "outside: default features build no binary dependency; messages say zmqrpc::transport::"
