#!/usr/bin/env bash
# Linearizability checker benchmark. Two parts:
# 1. `cargo bench -p ordeal-checker --bench checker`: in-process medians (ORDEAL_BENCH_RUNS,
#    default 5) of the corpus's etcd and kv histories, generated histories of 100k and 1M
#    operations over 1,000 keys, and generated busy-key kv histories, by the version order and by
#    the search alone, with peak memory;
# 2. whole processes of `ordeal check` (start-up, parsing, check; many files in one process):
#    wall time and peak resident memory from /usr/bin/time, by both methods.
# Prints markdown tables. Needs ../shared/corpus beside the repository.
#
# Usage: scripts/bench-checker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo bench --locked -p ordeal-checker --bench checker
cargo build --locked --release --bin ordeal --example busy_kv -p ordeal -p ordeal-checker
ordeal="$CARGO_TARGET_DIR/release/ordeal"
corpus=../shared/corpus
busy=$(mktemp -d)
trap 'rm -rf "$busy"' EXIT
"$CARGO_TARGET_DIR/release/examples/busy_kv" "$busy" 3 >/dev/null

# One `ordeal check` process: "wall s | peak MiB | exit code".
whole() {
  local out code
  out=$(mktemp)
  code=0
  /usr/bin/time -f '%e %M' -o "$out" "$ordeal" check "$@" >/dev/null 2>&1 || code=$?
  read -r wall kb < <(tail -n 1 "$out")
  rm -f "$out"
  echo "$wall s | $((kb / 1024)) MiB | $code"
}

echo
echo "| ordeal check, one process | method | wall | peak RSS | exit |"
echo "|---|---|---|---|---|"
for method in "version order" "search only"; do
  flag=()
  [ "$method" = "search only" ] && flag=(--search-only)
  echo "| etcd set: 102 files (51 Porcupine + 51 raw) | $method | $(whole --model cas-register "${flag[@]}" "$corpus"/porcupine/jepsen/*.log "$corpus"/ahorn-lc/jepsen-raw/*) |"
  echo "| Porcupine kv: 4 files | $method | $(whole --model kv "${flag[@]}" "$corpus"/porcupine/kv/*.txt) |"
  for f in "$busy"/*.jsonl; do
    echo "| $(basename "$f") (2 keys x 5,000 ops, 50 clients) | $method | $(whole --model kv --init '""' --timeout 60 "${flag[@]}" "$f") |"
    [ "$method" = "search only" ] && break # one is enough to show the search's limits
  done
done
