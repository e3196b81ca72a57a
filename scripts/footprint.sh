#!/usr/bin/env bash
# The README's footprint figures, from one command: the size of each binary per target
# (`device` profile: stripped, size-optimised, libzmq inside, libstdc++ dynamic) and the
# resident memory of the real processes on this host, idle and under load.
#
#   bash scripts/footprint.sh            # host, armv7, aarch64 (those whose cross gcc exists)
#   bash scripts/footprint.sh host       # some of them
#
# Cross targets need Debian's cross gcc (g++-arm-linux-gnueabihf, g++-aarch64-linux-gnu)
# and their rustup targets; .cargo/config.toml names the linkers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all=(host armv7 aarch64)
if [ $# -gt 0 ]; then wanted=("$@"); else wanted=("${all[@]}"); fi
host=$(rustc -vV | sed -n 's/^host: //p')

triple() {
    case $1 in
        host) echo "$host" ;;
        armv7) echo armv7-unknown-linux-gnueabihf ;;
        aarch64) echo aarch64-unknown-linux-gnu ;;
        *) echo "unknown target $1 (one of: ${all[*]})" >&2; return 1 ;;
    esac
}

linker() {
    case $1 in
        armv7) echo arm-linux-gnueabihf-g++ ;;
        aarch64) echo aarch64-linux-gnu-g++ ;;
        *) echo c++ ;;
    esac
}

printf '%-32s %14s %14s\n' target zmqrpc-proxy zmqrpc-server
for name in "${wanted[@]}"; do
    target=$(triple "$name")
    if ! command -v "$(linker "$name")" >/dev/null; then
        printf '%-32s %14s %14s\n' "$target" "(no $(linker "$name"))" ""
        continue
    fi
    cargo build -q --profile device --features cli,serial --bins --target "$target"
    dir=target/$target/device
    printf '%-32s %14s %14s\n' "$target" \
        "$(stat -c %s "$dir/zmqrpc-proxy") B" "$(stat -c %s "$dir/zmqrpc-server") B"
done

# Memory: the bench's RSS case against the host's device builds (idle: 1.5 s after start;
# peak: after pipelined calls to the server and sequential calls through the proxy).
cargo build -q --profile device --features cli,serial --bins --target "$host"
echo
ZMQRPC_BIN_DIR="$PWD/target/$host/device" cargo bench -q --bench zmqrpc-bench -- rss |
    sed -n '/^5\./,$p'
