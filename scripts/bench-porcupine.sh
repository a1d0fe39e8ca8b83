#!/usr/bin/env bash
# ordeal check beside Porcupine on the very same kv files, the two alternating run by run: a
# generated history of 100,000 ops over 1,000 keys in Porcupine's kv format
# (scripts/gen-busy-kv.sh, seed 1: valid, and its twin with one stale read) and any other
# Porcupine kv logs given. Prints a markdown table of medians: whole process (`ordeal check`
# and Porcupine's driver: wall, CPU, peak RSS from /usr/bin/time) and the check alone, then the
# ratios. The check alone is timed the same way on both sides, by twin drivers: each parses the
# whole file into memory first, untimed, then times one call, wall and process CPU (every
# thread): Porcupine's CheckEvents(kvModel, events), ordeal's check_by_name("kv", ops)
# (checker/examples/porcupine_kv.rs). Both partition by key; neither frees its parsed input
# inside the timed call. The load average is printed before and after: the CPU figures are the
# ones a loaded machine distorts least.
#
# Porcupine is not part of this repository. PORCUPINE_KV names a driver binary that takes kv log
# paths and prints, per file, "PATH<TAB>linearizable=BOOL<TAB>parse_ms=N<TAB>check_ms=N<TAB>
# check_cpu_ms=N". Or PORCUPINE_SRC names a Porcupine checkout (measured: 55508eb) and the
# committed driver, scripts/porcupine-kv (Porcupine's own kv model and parser), is built from it
# with `go build` (Go 1.19 from Debian was used). Without either, only ordeal runs.
#
# Usage: [PORCUPINE_KV=/path/to/driver | PORCUPINE_SRC=/path/to/porcupine]
#        scripts/bench-porcupine.sh [--runs N] [KV_LOG...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
if [ "${1:-}" = "--runs" ]; then runs=$2; shift 2; fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --quiet --locked --release --bin ordeal -p ordeal --example porcupine_kv -p ordeal-checker
ordeal="$CARGO_TARGET_DIR/release/ordeal"
twin="$CARGO_TARGET_DIR/release/examples/porcupine_kv"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if [ -z "${PORCUPINE_KV:-}" ] && [ -n "${PORCUPINE_SRC:-}" ]; then
  cp -r scripts/porcupine-kv "$dir/driver"
  (cd "$dir/driver" && go mod edit -replace "github.com/anishathalye/porcupine=$(realpath "$PORCUPINE_SRC")" &&
    go build -o porcupine-kv .)
  PORCUPINE_KV="$dir/driver/porcupine-kv"
fi
scripts/gen-busy-kv.sh "$dir" 1 1000 100 50 porcupine >/dev/null
files=("$dir/busy-kv-s1-ok.txt" "$dir/busy-kv-s1-stale.txt" "$@")

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# One process under /usr/bin/time: its stdout to $dir/out, "wall cpu_s rss_kb" to $dir/rows.$2.
timed() {
  local tool=$1 tag=$2
  shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$@" >"$dir/out" 2>/dev/null || true
  # The last line: a failing command's status line comes first.
  tail -n 1 "$dir/time" | awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' >>"$dir/rows.$tool.$tag"
}

# A twin driver's check_ms and check_cpu_ms, from $dir/out, to $dir/{check,cpu}.$1.$2.
check_alone() {
  tr '\t' '\n' <"$dir/out" | sed -n 's/^check_ms=//p' >>"$dir/check.$1.$2"
  tr '\t' '\n' <"$dir/out" | sed -n 's/^check_cpu_ms=//p' >>"$dir/cpu.$1.$2"
}

echo "Load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| file | tool | verdict | whole process: wall | CPU | peak RSS | check alone: wall | CPU |"
echo "|---|---|---|---|---|---|---|---|"
ratios=()
for f in "${files[@]}"; do
  tag=$(basename "$f")
  for _ in $(seq "$runs"); do
    timed ordeal "$tag" "$ordeal" check --model kv --json "$f"
    verdict_ordeal=$(sed -n 's/.*"verdict":"\([a-z]*\)".*/\1/p' "$dir/out")
    "$twin" "$f" >"$dir/out" 2>/dev/null || true
    check_alone ordeal "$tag"
    if [ -n "${PORCUPINE_KV:-}" ]; then
      timed porcupine "$tag" "$PORCUPINE_KV" "$f"
      verdict_porcupine=$(tr '\t' '\n' <"$dir/out" | sed -n 's/^linearizable=//p')
      check_alone porcupine "$tag"
    fi
  done
  for tool in ordeal porcupine; do
    [ -f "$dir/rows.$tool.$tag" ] || continue
    wall=$(cut -d' ' -f1 "$dir/rows.$tool.$tag" | median)
    cpu=$(cut -d' ' -f2 "$dir/rows.$tool.$tag" | median)
    rss=$(($(cut -d' ' -f3 "$dir/rows.$tool.$tag" | median) / 1024))
    check=$(median <"$dir/check.$tool.$tag")
    check_cpu=$(median <"$dir/cpu.$tool.$tag")
    if [ "$tool" = ordeal ]; then
      echo "| $tag | ordeal | $verdict_ordeal | $wall s | $cpu s | $rss MiB | $check ms | $check_cpu ms |"
    else
      echo "| $tag | Porcupine | linearizable=$verdict_porcupine | $wall s | $cpu s | $rss MiB | $check ms | $check_cpu ms |"
    fi
  done
  if [ -n "${PORCUPINE_KV:-}" ]; then
    ratio() { awk -v a="$(median <"$1")" -v b="$(median <"$2")" 'BEGIN {printf "%.1f", a / b}'; }
    ratios+=("$tag: Porcupine / ordeal, check alone: wall $(ratio "$dir/check.porcupine.$tag" "$dir/check.ordeal.$tag")x, CPU $(ratio "$dir/cpu.porcupine.$tag" "$dir/cpu.ordeal.$tag")x; whole process: wall $(ratio <(cut -d' ' -f1 "$dir/rows.porcupine.$tag") <(cut -d' ' -f1 "$dir/rows.ordeal.$tag"))x, peak RSS $(ratio <(cut -d' ' -f3 "$dir/rows.porcupine.$tag") <(cut -d' ' -f3 "$dir/rows.ordeal.$tag"))x")
  fi
done
echo
printf '%s\n' "${ratios[@]}"
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
