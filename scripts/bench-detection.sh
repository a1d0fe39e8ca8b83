#!/usr/bin/env bash
# Detection benchmark: the full form of suites/detection.toml. Runs every entry over N seeds and
# prints, per configuration: how many runs ended as expected, the detection rate of each seeded
# bug, the median time from the start of the run to the first op a failing checker names (the
# first anomaly), and the false alarms of the clean build.
#
# Usage: scripts/bench-detection.sh [--seeds N] [--debug] [--suite FILE.toml] [--expect valid|invalid]
#        (defaults: 20 seeds, release build, suites/detection.toml; --debug uses the debug build
#        CI tests; --expect keeps only the entries expecting that verdict: `--expect valid` measures
#        the false alarms of the clean build alone)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=20
profile=release
suite=suites/detection.toml
expect=
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --debug) profile=debug; shift ;;
    --suite) suite="$2"; shift 2 ;;
    --expect) expect="$2"; shift 2 ;;
    *) echo "usage: $0 [--seeds N] [--debug] [--suite FILE.toml] [--expect valid|invalid]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
if [ "$profile" = release ]; then
  cargo build --release --locked --workspace --bins -q
else
  cargo build --locked --workspace --bins -q
fi
# The runs stay in the store afterwards, so that every miss can be looked into.
store="$(mktemp -d -t ordeal-detection.XXXXXX)"
# The suite, with every entry's seeds replaced by 1..N (and only the entries expecting $expect).
sed "s/^seeds = .*/seeds = [$(seq -s, 1 "$seeds")]/" "$suite" | python3 -c '
import sys
expect = sys.argv[1]
head, *entries = sys.stdin.read().split("[[entry]]")
kept = [e for e in entries if not expect or f"expect = \"{expect}\"" in e]
sys.stdout.write("[[entry]]".join([head] + kept))
' "$expect" > "$store/detection.toml"
"$CARGO_TARGET_DIR/$profile/ordeal" suite "$store/detection.toml" --store "$store" > "$store/out.txt" || true
python3 - "$store" <<'PY'
import glob, json, statistics, sys
from collections import defaultdict
store = sys.argv[1]
state = json.load(open(glob.glob(f"{store}/suites/*/*/suite.json")[0]))

def indices(x):
    """The index of every op a checker's details name as anomalous (not the ops around it)."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k in ("index", "op_index") and isinstance(v, int):
                yield v
            elif k not in ("prefix", "concurrent", "involved"):
                yield from indices(v)
    elif isinstance(x, list):
        for v in x:
            yield from indices(v)

def first_anomaly_s(run_dir):
    results = json.load(open(f"{run_dir}/results.json"))
    named = [i for c in results["checkers"] if c["verdict"] == "invalid" for i in indices(c.get("details"))]
    if not named:
        return None
    first = min(named)
    with open(f"{run_dir}/history.jsonl") as h:
        for line in h:
            op = json.loads(line)
            if op["index"] == first:
                return op["time"] / 1e9
    return None

configs = defaultdict(list)
for case in state["cases"]:
    configs[case["config"]].append(case)
print("| configuration | expect | runs | as expected | rate | first anomaly (median s) | run time (median s) |")
print("|---|---|---|---|---|---|---|")
for config, cases in configs.items():
    expect = cases[0]["expect"]
    good = [c for c in cases if c["verdict"] == expect]
    times = [t for c in good if expect == "invalid" for t in [first_anomaly_s(c["run_dir"])] if t is not None]
    first = f"{statistics.median(times):.1f}" if times else "-"
    elapsed = statistics.median(c["elapsed_s"] for c in cases)
    rate = f"{100 * len(good) / len(cases):.0f} %"
    print(f"| {config} | {expect} | {len(cases)} | {len(good)} | {rate} | {first} | {elapsed:.1f} |")
print()
for c in state["cases"]:
    if c["verdict"] != c["expect"]:
        print(f"not as expected: {c['id']}: {c['verdict']}: {c['reason']} ({c['run_dir']})")
print(f"runs kept in {store}")
PY
