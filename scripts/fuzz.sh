#!/usr/bin/env bash
# Builds a fuzz target with libFuzzer's instrumentation (what `cargo fuzz run` does, on the stable
# toolchain) and runs it: scripts/fuzz.sh TARGET [libFuzzer flags], e.g.
#   scripts/fuzz.sh peer -runs=1000000
#   scripts/fuzz.sh parsers -max_total_time=600
set -euo pipefail
target=${1:?usage: scripts/fuzz.sh TARGET [libFuzzer flags]}
shift
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target-fuzz}
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation out of build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --target "$host" --bin "$target"
corpus="$CARGO_TARGET_DIR/corpus/$target"
mkdir -p "$corpus"
exec "$CARGO_TARGET_DIR/$host/release/$target" "$corpus" "$@"
