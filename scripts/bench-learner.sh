#!/usr/bin/env bash
# Learner catch-up under the harness: `ordeal run --scenario learner-catchup` on a local
# 3-node broker cluster under 1,000 log appends/s with leader kills, each round replacing a voter
# by a fresh learner that catches up from a snapshot (the log is compacted every 100 entries).
# Prints each learner's time to promotable (attachment -> applied what the leader had committed
# then) and catch-up rate (entries/s, and MB/s of snapshot state received), from the run's results.json (the `membership` checker's figures).
#
# Usage: scripts/bench-learner.sh [--rounds N]   (default 3 learners)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "usage: $0 [--rounds N]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --workspace --bins -q
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
# 5 s of load before each fault, so that the state grows between learners.
"$CARGO_TARGET_DIR/release/ordeal" run --scenario learner-catchup --system broker --env local \
  --workload log --nemesis kill-leader --fault-rounds "$rounds" --nemesis-interval 5 --fault-duration 2 \
  --rate 1000 --concurrency 20 --seed 1 --store "$store" --no-progress > "$store/out.txt" || true
python3 - "$store/latest/results.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
m = next(c for c in r["checkers"] if c["name"] == "membership")
print(f"verdict {r['verdict']}; membership: {m['summary']}")
print("| learner | entries to catch up | snapshot bytes | time to promotable (ms) | entries/s | MB/s |")
print("|---|---|---|---|---|---|")
for l in m["details"]["learners"]:
    ms, rate, mb = l["promotable_ms"], l["entries_per_s"], l.get("mb_per_s")
    head = f"| n{l['node']} | {l['entries']} | {l.get('snapshot_bytes')} |"
    mbs = f"{mb:.2f}" if mb is not None else "-"
    print(f"{head} {ms:.0f} | {rate:.0f} | {mbs} |" if ms else f"{head} not within the bound | - | - |")
done = [l["promotable_ms"] for l in m["details"]["learners"] if l["promotable_ms"]]
if done:
    print(f"median time to promotable: {statistics.median(done):.0f} ms")
PY
