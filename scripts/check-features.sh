#!/usr/bin/env bash
# Every feature combination the crates claim, checked clippy-clean with warnings denied:
# the transport with no feature and each alone, the facade with none, each alone and the
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
for features in "" pyzmqrpc3 serial; do
    check zmqrpc-transport-std "$features"
done
for features in "" cli pyzmqrpc3 serial cli,pyzmqrpc3 cli,serial; do
    check zmqrpc "$features"
done
# The core alone, with and without defmt, is built for the microcontroller targets by the
# thumb step; here for the host.
check zmqrpc-core ""
check zmqrpc-core defmt
