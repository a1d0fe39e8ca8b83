#!/usr/bin/env bash
# NFQUEUE delay accuracy: two node namespaces, node 2 delays what it receives, a TCP
# ping-pong measures the added round trip for 20, 50 and 100 ms (ORDEAL_BENCH_JITTER_MS adds
# jitter). Needs root or unprivileged user namespaces.
#
# Usage: scripts/bench-netem.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo bench --locked -p ordeal-faults --bench netem
