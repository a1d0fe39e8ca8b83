#!/usr/bin/env bash
# Failover benchmark: `ordeal run` with leader kills on local 3-node clusters at the harness's
# default fast raft settings (10 ms ticks, 50 ms heartbeats, election timeout 500 ms, randomized
# up to 1000 ms), for ordeal-broker and etcd 3.4 side by side: the systems alternate, round by
# round, so that both see the same machine. Prints every fault's write gap (fault -> first
# acknowledged write) and the medians.
#
# Usage: scripts/bench-failover.sh [--kills N] [--rounds R] [--systems broker,etcd]
#        (defaults: 7 kills per run, 1 round, both systems)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=7
rounds=1
systems=broker,etcd
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    *) echo "usage: $0 [--kills N] [--rounds R] [--systems broker,etcd]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh etcd-server
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --workspace --bins -q
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
for round in $(seq "$rounds"); do
  for system in ${systems//,/ }; do
    # One fault every 5 s (2 s quiet, 3 s down), so N kills take about 5N s.
    "$CARGO_TARGET_DIR/release/ordeal" run --system "$system" --env local --workload register \
      --nemesis kill-leader --time-limit "$((kills * 5 + 1))" --nemesis-interval 2 --fault-duration 3 \
      --rate 200 --seed "$round" --store "$store/$system" --no-progress > "$store/out.txt" || true
    cp "$store/$system/latest/results.json" "$store/$system-$round.json"
  done
done
python3 - "$store" "$systems" <<'PY'
import glob, json, os, statistics, sys
store, systems = sys.argv[1], sys.argv[2].split(",")
print("| system | runs (verdicts) | leader kills | writes resumed | write gaps (ms) | median | max |")
print("|---|---|---|---|---|---|---|")
for system in systems:
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(store, f"{system}-*.json")))]
    gaps = [f["gap_ms"] for r in runs for f in r["faults"] if f["gap_ms"] is not None]
    faults = sum(len(r["faults"]) for r in runs)
    verdicts = ", ".join(r["verdict"] for r in runs)
    shown = ", ".join(f"{g:.0f}" for g in gaps)
    median = f"**{statistics.median(gaps):.0f}**" if gaps else "-"
    top = f"{max(gaps):.0f}" if gaps else "-"
    print(f"| {system} | {len(runs)} ({verdicts}) | {faults} | {len(gaps)} | {shown} | {median} | {top} |")
PY
