#!/usr/bin/env bash
# Every feature combination the crates claim, checked clippy-clean with warnings denied:
# the transport and the protocol layer with no feature and each alone, the facade with none, each alone and the
# binaries' sets. (The full set is what the clippy and test steps build.) The `cfg(not(..))`
# branches are compiled nowhere else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
check() { # check PACKAGE FEATURES...
    local package=$1
    shift
    echo "== $package: ${*:-no features}"
    cargo clippy -q -p "$package" --no-default-features ${1:+--features "$1"} --lib --bins \
        -- -D warnings
}
for features in "" pyzmqrpc3 serial tokio schemas json; do
    check zmqrpc-transport-std "$features"
done
# The protocol layer alone: no libzmq in its build (checked below), with and without pyzmqrpc3.
for features in "" pyzmqrpc3; do
    check zmqrpc-protocol "$features"
done
if cargo tree -q -p zmqrpc-protocol --all-features -e normal --prefix none \
    | grep -E "^(zmq|zmq-sys|zeromq-src|zmqrpc-libzmq) "; then
    echo "zmqrpc-protocol depends on libzmq" >&2
    exit 1
fi
for features in "" cli pyzmqrpc3 serial tokio systemd schemas metrics cli,pyzmqrpc3 cli,serial; do
    check zmqrpc "$features"
done
# The core alone, with and without defmt, is built for the microcontroller targets by the
# thumb step; here for the host.
check zmqrpc-core ""
check zmqrpc-core defmt
