#!/usr/bin/env bash
# Busy-key kv histories for the linearizability checker: for each seed, a valid history from a
# simulated linearizable store of strings (gets, puts, appends of unique tokens; 50 clients;
# about one write in a hundred crashed) and the same run with one stale read. Prints each file
# with its expected verdict and the index of the stale read.
#
# Usage: scripts/gen-busy-kv.sh DIR [SEEDS] [KEYS] [OPS_PER_KEY] [CLIENTS]
#        (defaults: 3 seeds, 2 keys, 5000 ops per key, 50 clients)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo run --quiet --release --locked -p ordeal-checker --example busy_kv -- "$@"
