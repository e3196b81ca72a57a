#!/usr/bin/env bash
# Builds release artifacts of zmqrpc-proxy and zmqrpc-server for Raspberry Pi fleets, with
# zig as the C/C++ toolchain (cargo-zigbuild), the `device` size profile, and packs each
# target as a tarball (binaries, README excerpt, example configs, systemd units) plus
# SHA256SUMS, in target/dist/.
#
#   bash scripts/release.sh                  # all targets below
#   bash scripts/release.sh armv7-glibc      # some of them
#
# | name          | rust target                        | runs on                              |
# |---------------|------------------------------------|--------------------------------------|
# | armv7-glibc   | armv7-unknown-linux-gnueabihf.2.28 | Pi 2/3/4/Zero 2, 32-bit OS, Buster+  |
# | aarch64-glibc | aarch64-unknown-linux-gnu.2.28     | Pi 3/4/5, 64-bit OS, Buster+         |
# | armv6-glibc   | arm-unknown-linux-gnueabihf.2.28   | Pi Zero/Zero W/1 (ARMv6), Buster+    |
# | armv6-musl    | arm-unknown-linux-musleabihf       | Pi Zero/1 on any Linux (static)      |
# | armv7-musl    | armv7-unknown-linux-musleabihf     | any 32-bit ARMv7 Linux (static)      |
# | aarch64-musl  | aarch64-unknown-linux-musl         | any 64-bit ARM Linux (static)        |
#
# glibc builds link against glibc 2.28 symbols (Debian Buster; Bullseye and Bookworm are
# newer) and libc++ statically, so they need no GLIBCXX. ARMv6 and musl have no prebuilt
# std on this toolchain: they build std from source (-Zbuild-std, allowed on stable by
# RUSTC_BOOTSTRAP=1 for this build only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all=(armv7-glibc aarch64-glibc armv6-glibc armv6-musl armv7-musl aarch64-musl)
if [ $# -gt 0 ]; then wanted=("$@"); else wanted=("${all[@]}"); fi

rust_target() {
    case $1 in
        armv7-glibc) echo armv7-unknown-linux-gnueabihf.2.28 ;;
        aarch64-glibc) echo aarch64-unknown-linux-gnu.2.28 ;;
        armv6-glibc) echo arm-unknown-linux-gnueabihf.2.28 ;;
        armv6-musl) echo arm-unknown-linux-musleabihf ;;
        armv7-musl) echo armv7-unknown-linux-musleabihf ;;
        aarch64-musl) echo aarch64-unknown-linux-musl ;;
        *) echo "unknown target $1 (one of: ${all[*]})" >&2; return 1 ;;
    esac
}

# zig and cargo-zigbuild from PyPI, pinned, in a virtualenv under target/.
venv=target/zig-venv
if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "ziglang==0.17.1" "cargo-zigbuild==0.24.1"
fi
export PATH="$PWD/$venv/bin:$PATH"

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "zmqrpc"))')
dist=target/dist
mkdir -p "$dist"

for name in "${wanted[@]}"; do
    target=$(rust_target "$name")
    triple=${target%.2.28}
    started=$SECONDS
    build=(cargo zigbuild --profile device --features cli,serial --bins --target "$target")
    case $name in
        armv6-glibc)
            rustup component add rust-src >/dev/null
            RUSTC_BOOTSTRAP=1 "${build[@]}" -Zbuild-std=std,panic_abort ;;
        *-musl)
            # No rust-std for these: no self-contained crt objects either; zig's musl
            # provides them.
            rustup component add rust-src >/dev/null
            RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C link-self-contained=no -C target-feature=+crt-static" \
                "${build[@]}" -Zbuild-std=std,panic_abort ;;
        *)
            rustup target add "$triple" >/dev/null
            "${build[@]}" ;;
    esac
    stage=$(mktemp -d)
    package="zmqrpc-$version-$name"
    mkdir -p "$stage/$package/bin" "$stage/$package/systemd" "$stage/$package/etc"
    cp "target/$triple/device/zmqrpc-proxy" "target/$triple/device/zmqrpc-server" "$stage/$package/bin/"
    cp scripts/deploy/*.service "$stage/$package/systemd/"
    cp scripts/deploy/*.toml scripts/deploy/users.example "$stage/$package/etc/"
    sed -n '/^## Deploy to a Raspberry Pi/,/^## /p' README.md | sed '$d' > "$stage/$package/README.md"
    tar -C "$stage" -czf "$dist/$package.tar.gz" "$package"
    rm -rf "$stage"
    echo "built $dist/$package.tar.gz ($target) in $((SECONDS - started)) s"
done
(cd "$dist" && sha256sum zmqrpc-*.tar.gz > SHA256SUMS)
echo "checksums in $dist/SHA256SUMS"
