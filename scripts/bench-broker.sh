#!/usr/bin/env bash
# Broker benchmark: 3 real nodes on loopback, fsync on, 256-byte records. One producer's
# latency, 16 and 64 producers' throughput and latency, and the write gap after kill -9 of the leader
# (median of ORDEAL_BENCH_KILLS, default 5), beside etcd 3.4 (Debian's etcd-server) measured
# in the same run. Prints a markdown table.
#
# Usage: scripts/bench-broker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh etcd-server
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo bench --locked -p ordeal-system --bench broker
