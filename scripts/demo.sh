#!/usr/bin/env bash
# The README's main job: installs what is missing, builds in release mode, and runs
# `ordeal demo`: a short register test with leader kills on a local 3-node broker cluster,
# checked for linearizability, with an HTML report in store/latest/.
#
# Usage: scripts/demo.sh [extra `ordeal demo` flags]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo build --release --locked --workspace --bins
exec "$CARGO_TARGET_DIR/release/ordeal" demo "$@"
