#!/usr/bin/env bash
# Learner catch-up under the harness: `ordeal run --scenario learner-catchup` on a local
# 3-node cluster under 1,000 register ops/s with leader kills, each round replacing a voter by a
# fresh learner that catches up from a snapshot (the broker's log is compacted every 100 entries;
# etcd gets --snapshot-count=100). With `--systems broker,etcd` the systems alternate, run by
# run, so that their figures come from the same stretch of the same machine.
# Prints each learner's time to promotable (attachment -> applied what the leader had committed
# then) and catch-up rate (entries/s, and MB/s of snapshot state received), the medians per
# system, and what each system's gate did with the premature promote, from each run's
# results.json (the `membership` checker's figures).
#
# Usage: scripts/bench-learner.sh [--rounds N] [--runs N] [--systems broker,etcd] [--workload W]
#   (default 3 learners per run, 1 run per system, broker only, register)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 runs=1 systems=broker workload=register
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --workload) workload="$2"; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--runs N] [--systems broker,etcd] [--workload W]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --workspace --bins -q
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
results=()
for run in $(seq 1 "$runs"); do
  for system in ${systems//,/ }; do
    # 5 s of load before each fault, so that the state grows between learners.
    "$CARGO_TARGET_DIR/release/ordeal" run --scenario learner-catchup --system "$system" --env local \
      --workload "$workload" --nemesis kill-leader --fault-rounds "$rounds" --nemesis-interval 5 --fault-duration 2 \
      --rate 1000 --concurrency 20 --seed "$run" --store "$store/$system-$run" --no-progress \
      > "$store/$system-$run.txt" || true
    results+=("$system" "$store/$system-$run/latest/results.json")
  done
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
args = sys.argv[1:]
figures = {}
print("| system | run | learner | entries to catch up | snapshot bytes | time to promotable (ms) | entries/s | MB/s |")
print("|---|---|---|---|---|---|---|---|")
notes = []
for i in range(0, len(args), 2):
    system, path = args[i], args[i + 1]
    run = i // 2 + 1
    try:
        r = json.load(open(path))
    except OSError as e:
        notes.append(f"{system} run {run}: no results ({e})")
        continue
    m = next(c for c in r["checkers"] if c["name"] == "membership")
    notes.append(f"{system} run {run}: verdict {r['verdict']}; membership: {m['summary']}")
    for p in m["details"]["premature"]:
        notes.append(
            f"{system} run {run}: premature promote of n{p['node']} {'ACCEPTED' if p['accepted'] else 'refused'}: "
            f"min_applied_index {p['min_applied_index']}, learner applied {p['learner_applied_before']} before, "
            f"{p['learner_applied_after']} after ({p.get('reason') or 'no reason'})")
    f = figures.setdefault(system, {"ms": [], "rate": [], "mb": []})
    for l in m["details"]["learners"]:
        ms, rate, mb = l["promotable_ms"], l["entries_per_s"], l.get("mb_per_s")
        head = f"| {system} | {run} | n{l['node']} | {l['entries']} | {l.get('snapshot_bytes')} |"
        if not ms:
            print(f"{head} not within the bound | - | - |")
            continue
        f["ms"].append(ms); f["rate"].append(rate)
        if mb is not None:
            f["mb"].append(mb)
        print(f"{head} {ms:.0f} | {rate:.0f} | {f'{mb:.2f}' if mb is not None else '-'} |")
print()
for n in notes:
    print(n)
print()
med = {s: {k: statistics.median(v) if v else None for k, v in f.items()} for s, f in figures.items()}
for s, m in med.items():
    show = lambda v, fmt: format(v, fmt) if v is not None else "-"
    print(f"{s}: median time to promotable {show(m['ms'], '.0f')} ms, {show(m['rate'], '.0f')} entries/s, "
          f"{show(m['mb'], '.2f')} MB/s over {len(figures[s]['ms'])} learners")
if "broker" in med and "etcd" in med and med["broker"]["ms"] and med["etcd"]["ms"]:
    print(f"time to promotable, broker / etcd: {med['broker']['ms'] / med['etcd']['ms']:.2f}")
PY
