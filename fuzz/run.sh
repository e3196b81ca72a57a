#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 60) with cargo-fuzz on nightly, growing
# fuzz/corpus/<target>. Crashes land in fuzz/artifacts/<target>; copy each into
# fuzz/regressions/<target> once fixed, so `cargo test` replays it forever.
#   cargo install cargo-fuzz && rustup toolchain install nightly
#   bash fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds=${1:-60}
for target in frame_decode stream_deframe device_serve; do
    echo "== $target, ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=1024 -print_final_stats=1 2>&1 |
        grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done|==[0-9]+==|SUMMARY)" || true
    cargo +nightly fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
done
