#!/usr/bin/env bash
# Failover benchmark: `ordeal run` with leader kills on local 3-node clusters at the harness's
# default fast raft settings (10 ms ticks, 50 ms heartbeats, election timeout 500 ms, randomized
# up to 1000 ms), for ordeal-broker and etcd 3.4 side by side: the systems alternate, round by
# round, so that both see the same machine. Prints every fault's write gap (fault -> first
# acknowledged write) and the medians, per system and fault.
#
# Usage: scripts/bench-failover.sh [--kills N] [--rounds R] [--systems broker,etcd]
#                                  [--faults kill-leader,pause-leader,partition-leader]
#        (defaults: 7 faults per run, 1 round, both systems, kill-leader; partitions run in
#        network namespaces, the others on loopback)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=7
rounds=1
systems=broker,etcd
faults=kill-leader
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --faults) faults="$2"; shift 2 ;;
    *) echo "usage: $0 [--kills N] [--rounds R] [--systems broker,etcd] [--faults LIST]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh etcd-server
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --workspace --bins -q
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
for round in $(seq "$rounds"); do
  for fault in ${faults//,/ }; do
    env=local
    case "$fault" in partition*) env=netns ;; esac
    for system in ${systems//,/ }; do
      # One fault every 5 s (2 s quiet, 3 s down), so N faults take about 5N s.
      "$CARGO_TARGET_DIR/release/ordeal" run --system "$system" --env "$env" --workload register \
        --nemesis "$fault" --time-limit "$((kills * 5 + 1))" --nemesis-interval 2 --fault-duration 3 \
        --rate 200 --seed "$round" --store "$store/$system" --no-progress > "$store/out.txt" || true
      cp "$store/$system/latest/results.json" "$store/$system-$fault-$round.json"
    done
  done
done
python3 - "$store" "$systems" "$faults" <<'PY'
import glob, json, os, statistics, sys
store, systems, faults = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
print("| system | fault | runs (verdicts) | faults | writes resumed | write gaps (ms) | median | max |")
print("|---|---|---|---|---|---|---|---|")
for fault in faults:
    for system in systems:
        runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(store, f"{system}-{fault}-*.json")))]
        gaps = [f["gap_ms"] for r in runs for f in r["faults"] if f["gap_ms"] is not None]
        n = sum(len(r["faults"]) for r in runs)
        verdicts = ", ".join(r["verdict"] for r in runs)
        shown = ", ".join(f"{g:.0f}" for g in gaps)
        median = f"**{statistics.median(gaps):.0f}**" if gaps else "-"
        top = f"{max(gaps):.0f}" if gaps else "-"
        print(f"| {system} | {fault} | {len(runs)} ({verdicts}) | {n} | {len(gaps)} | {shown} | {median} | {top} |")
PY
