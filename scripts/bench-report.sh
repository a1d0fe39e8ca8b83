#!/usr/bin/env bash
# Report benchmark: analyses and renders a run whose history holds 1,000,000 generated
# operations, and prints the time, the report's size and the peak memory.
#
# Usage: scripts/bench-report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordeal/target}"
cargo bench --locked -p ordeal-reports --bench report
