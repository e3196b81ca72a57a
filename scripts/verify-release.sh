#!/usr/bin/env bash
# Verifies release tarballs (default: all in target/dist) under qemu-user: for each one the
# agent serves, a rep2req proxy forwards, and `zmqrpc-server call ping` through the proxy
# answers, over CURVE on both hops with keys the artifact's own `keygen` made — all run from
# the artifact, on an emulated CPU of the target's class, with the C library the oldest
# supported OS ships:
#   glibc builds: Debian Bullseye's libc6 (2.31) as the qemu sysroot, fetched by apt from the
#                 archive this machine's apt already uses;
#   ARMv6:        the ELF must say ARMv6 (readelf -A). Run under qemu-arm -cpu arm1176 (the
#                 Pi Zero/1 core, which rejects ARMv7 code) when the sysroot's libc is ARMv6
#                 code (Raspberry Pi OS's is; set ARMV6_SYSROOT to one); Debian's armhf libc
#                 is ARMv7 code, so by default the ARMv6 build runs on a Cortex-A7 instead;
#   musl builds:  static, no sysroot; the ARMv6 one under qemu-arm -cpu arm1176.
# Prints, per artifact: result, binary sizes, the highest GLIBC symbol version each needs.
#   bash scripts/verify-release.sh [target/dist/zmqrpc-*.tar.gz ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
artifacts=("$@")
[ ${#artifacts[@]} -gt 0 ] || artifacts=(target/dist/zmqrpc-*.tar.gz)

# Bullseye's libc6 for armhf and arm64, from the same archive as this machine's sources.
sysroots=target/bullseye-sysroots
if [ ! -e "$sysroots/armhf/lib/ld-linux-armhf.so.3" ] || [ ! -e "$sysroots/arm64/lib/ld-linux-aarch64.so.1" ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    apt_dir="$work/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
    printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" > "$apt_dir/etc/bullseye.sources"
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/etc"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o APT::Architectures::=armhf -o APT::Architectures::=arm64 -o APT::Sandbox::User=root)
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work" && apt-get "${apt_opts[@]}" download -qq libc6:armhf libc6:arm64)
    for arch in armhf arm64; do
        rm -rf "$sysroots/$arch" && mkdir -p "$sysroots/$arch"
        dpkg-deb -x "$work"/libc6_*_"$arch".deb "$sysroots/$arch"
    done
fi

max_glibc() {
    local v
    v=$(readelf -V "$1" 2>/dev/null | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -n1)
    echo "${v:-none (static)}"
}

failed=0
printf '%-28s %-6s %10s %10s %-12s %s\n' artifact CURVE proxy server "max GLIBC" "qemu"
for tarball in "${artifacts[@]}"; do
    name=$(basename "$tarball" .tar.gz)
    dir="$work/$name"
    mkdir -p "$dir" && tar -C "$dir" -xzf "$tarball"
    bin="$dir/$name/bin"
    case $name in
        *-armv6-glibc)
            if ! readelf -A "$bin/zmqrpc-server" | grep -q 'Tag_CPU_arch: v6$'; then
                echo "$name: not ARMv6 code" >&2
                failed=1
            fi
            if [ -n "${ARMV6_SYSROOT:-}" ]; then
                qemu=(qemu-arm -cpu arm1176 -L "$ARMV6_SYSROOT")
            else
                qemu=(qemu-arm -cpu cortex-a7 -L "$PWD/$sysroots/armhf")
            fi ;;
        *-armv7-glibc) qemu=(qemu-arm -cpu cortex-a7 -L "$PWD/$sysroots/armhf") ;;
        *-aarch64-glibc) qemu=(qemu-aarch64 -cpu cortex-a53 -L "$PWD/$sysroots/arm64") ;;
        *-armv6-musl) qemu=(qemu-arm -cpu arm1176) ;;
        *-armv7-musl) qemu=(qemu-arm -cpu cortex-a7) ;;
        *-aarch64-musl) qemu=(qemu-aarch64 -cpu cortex-a53) ;;
        *) echo "unknown artifact $name" >&2; failed=1; continue ;;
    esac
    agent="ipc://$work/$name-agent"
    front="ipc://$work/$name-proxy"
    keys="$work/$name-keys"
    mkdir -p "$keys"
    for who in agent proxy caller; do
        "${qemu[@]}" "$bin/zmqrpc-server" keygen "$keys/$who" > "$keys/$who.z85" 2>> "$keys/keygen.log"
    done
    echo "proxy:$(cat "$keys/proxy.z85")" > "$keys/agent-clients"
    echo "caller:$(cat "$keys/caller.z85")" > "$keys/proxy-clients"
    "${qemu[@]}" "$bin/zmqrpc-server" -q --bind "$agent" \
        --curve-key "$keys/agent.key" --clients "$keys/agent-clients" > "$work/$name-agent.out" &
    agent_pid=$!
    "${qemu[@]}" "$bin/zmqrpc-proxy" -q --kind rep2req --in "$front" --out "$agent" \
        --curve-key "$keys/proxy.key" --clients "$keys/proxy-clients" \
        --server-key "$keys/agent.pub" > "$work/$name-proxy.out" &
    proxy_pid=$!
    result=FAIL
    for _ in $(seq 50); do
        if timeout 20 "${qemu[@]}" "$bin/zmqrpc-server" call ping --connect "$front" --timeout 5000 \
            --curve-key "$keys/caller.key" --server-key "$keys/proxy.pub" > "$work/$name-ping.out" 2>&1; then
            grep -q '^pong' "$work/$name-ping.out" && result=ok
            break
        fi
        sleep 0.2
    done
    kill -TERM "$agent_pid" "$proxy_pid" 2>/dev/null || true
    wait "$agent_pid" "$proxy_pid" 2>/dev/null || true
    [ "$result" = ok ] || { failed=1; cat "$work/$name-ping.out" >&2; }
    printf '%-28s %-6s %10s %10s %-12s %s\n' "${name#zmqrpc-*-}" "$result" \
        "$(stat -c %s "$bin/zmqrpc-proxy")" "$(stat -c %s "$bin/zmqrpc-server")" \
        "$(max_glibc "$bin/zmqrpc-server")" "${qemu[*]:0:3}"
done
exit $failed
