#!/usr/bin/env bash
# Linearizability checker benchmark: the external corpus's etcd and kv histories, and generated
# histories of 100k and 1M operations. Prints a markdown table of medians (ORDEAL_BENCH_RUNS,
# default 5). Needs ../shared/corpus beside the repository.
#
# Usage: scripts/bench-checker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo bench --locked -p ordeal-checker --bench checker
