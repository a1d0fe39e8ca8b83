#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs formatting, lints and every
# test of the workspace. Builds go to a target directory outside the clone so that repeated
# runs on one machine are incremental.
#
# Usage: scripts/test.sh [extra nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
export CARGO_INCREMENTAL=0
export CARGO_TERM_COLOR=never

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
