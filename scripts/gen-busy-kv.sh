#!/usr/bin/env bash
# Busy-key kv histories for the linearizability checker: for each seed, a valid history from a
# simulated linearizable store of strings (gets, puts, appends of unique tokens; 50 clients;
# about one write in a hundred crashed) and the same run with one stale read. Prints each file
# with its expected verdict and the index of the stale read.
#
# Usage: scripts/gen-busy-kv.sh DIR [SEEDS] [KEYS] [OPS_PER_KEY] [CLIENTS] [jsonl|porcupine]
#        (defaults: 3 seeds, 2 keys, 5000 ops per key, 50 clients, jsonl; porcupine writes
#        Porcupine's kv log, so that Porcupine can check the same file: e.g. 1 1000 100 50 porcupine
#        for 100,000 ops over 1,000 keys)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo run --quiet --release --locked -p ordeal-checker --example busy_kv -- "$@"
