#!/usr/bin/env bash
# Failover benchmark: `ordeal run` with leader kills on a local 3-node cluster at the harness's
# default fast raft settings (10 ms ticks, 50 ms heartbeats, 500-1000 ms election timeout).
# Prints every fault's write gap (fault -> first acknowledged write) and the median.
#
# Usage: scripts/bench-failover.sh [--kills N] (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=7
if [ "${1:-}" = "--kills" ]; then kills="$2"; fi
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --bins -q
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
# One fault every 5 s (2 s quiet, 3 s down), so N kills take about 5N s.
"$CARGO_TARGET_DIR/release/ordeal" run --workload register --nemesis kill-leader \
  --time-limit "$((kills * 5 + 1))" --nemesis-interval 2 --fault-duration 3 --rate 200 \
  --seed 1 --store "$store" --no-progress > "$store/out.txt" || true
python3 - "$store/latest/results.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
gaps = [f["gap_ms"] for f in r["faults"] if f["gap_ms"] is not None]
print(f"verdict: {r['verdict']}; leader kills: {len(r['faults'])}; writes resumed after {len(gaps)}")
print("write gaps (ms): " + ", ".join(f"{g:.0f}" for g in gaps))
if gaps:
    print(f"median write gap: {statistics.median(gaps):.0f} ms, max {max(gaps):.0f} ms")
PY
