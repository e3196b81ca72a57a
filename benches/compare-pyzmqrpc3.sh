#!/usr/bin/env bash
# pyzmqrpc3 (from PyPI, in a throwaway virtualenv) against zmqrpc, on the cases the peer
# supports: sequential REQ/REP RPC and one-way PUB notify. Prints a table with ratios.
#   bash benches/compare-pyzmqrpc3.sh        (BENCH_SECONDS=2 per case by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q pyzmqrpc3 >/dev/null
peer_version=$("$venv/bin/pip" show pyzmqrpc3 | awk '/^Version/ {print $2}')

echo "running pyzmqrpc3 $peer_version ..." >&2
peer=$("$venv/bin/python" benches/pyzmqrpc3_bench.py)
echo "running zmqrpc-bench ..." >&2
ours=$(cargo bench -q --bench zmqrpc-bench 2>/dev/null)

field() { awk -F'\t' -v k="$1" -v n="$2" '$1 == k {print $n}' <<<"$peer"; }
# zmqrpc-bench prints `case  raw  zmqrpc  unit  ratio`; take the zmqrpc column.
ours_of() { grep -F "$1" <<<"$ours" | head -n1 | awk '{print $(NF-2)}'; }
latency_of() { grep -F "$1" <<<"$ours" -A1 | tail -n1 | awk '{print $(NF-2), $(NF-1), $NF}'; }

seq_peer=$(field sequential 2); seq_ours=$(ours_of "1. sequential call, tcp, 32 B")
pipe_ours=$(ours_of "2. pipelined, 256 in flight")
notify_peer=$(field notify 2); notify_ours=$(ours_of "3. one-way notify, tcp, HWM unlimited")

printf '\n%s, %s CPUs, %s\n' "$(uname -m)" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
printf '%-44s %14s %14s %9s\n' case "pyzmqrpc3 $peer_version" zmqrpc ratio
row() { printf '%-44s %14s %14s %8.1fx\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN {print b / a}')"; }
row "sequential RPC, tcp, 32 B (calls/s)" "$seq_peer" "$seq_ours"
printf '%-44s %14s %14s\n' "   p50 / p99 (µs)" "$(field sequential 3) / $(field sequential 4)" "$(latency_of "1. sequential call, tcp, 32 B" | awk '{print $1, $2, $3}')"
row "pipelined, 256 in flight vs peer sequential" "$seq_peer" "$pipe_ours"
row "one-way notify, delivered (msgs/s)" "$notify_peer" "$notify_ours"
# ours: the unlimited-HWM row (as the peer's), its "lost uncounted" figure.
printf '%-44s %14s %14s\n' "   lost" "$(field notify 3)" "$(grep -F '3. one-way notify, tcp, HWM unlimited' -A1 <<<"$ours" | tail -n1 | awk '{print $(NF-2)}')"
printf '%-44s %14s %14s\n' "peak RSS, KiB (peer: client+server process)" "$(field rss 2)" "$(grep -F 'zmqrpc-server (pipelined' <<<"$ours" | awk '{print $(NF-2)}')"
