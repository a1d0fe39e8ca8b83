#!/usr/bin/env bash
# Builds ordeal-broker as it was at a git ref, for a rolling upgrade from that release:
#
#   ordeal run --scenario rolling-upgrade --from "$(scripts/build-release.sh v0.1.0)" --to ...
#
# Checks the ref out in a temporary git worktree, builds the broker there and copies the binary
# to $ORDEAL_RELEASES/<commit>/ordeal-broker (default ~/.cache/ordeal/releases), whose path it
# prints on stdout (everything else goes to stderr). A ref built before is not built again.
# Cargo's target directory is $ORDEAL_RELEASE_TARGET (default $ORDEAL_RELEASES/target), shared
# by every ref, so dependencies compile once. Never point it at another checkout's target
# directory: cargo names the workspace's own crates alike in every checkout, so the two builds
# would overwrite each other's libraries and binaries.
#
# Usage: scripts/build-release.sh REF
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 REF" >&2
  exit 2
fi
repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
commit="$(git -C "$repo" rev-parse --verify --quiet "$1^{commit}")" || {
  echo "$0: $1 is not a commit of $repo" >&2
  exit 2
}
cache="${ORDEAL_RELEASES:-$HOME/.cache/ordeal/releases}"
out="$cache/$commit/ordeal-broker"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
src="$cache/src-$commit"
mkdir -p "$cache/$commit"
git -C "$repo" worktree remove --force "$src" 2>/dev/null || true
git -C "$repo" worktree add --detach "$src" "$commit" >&2
trap 'git -C "$repo" worktree remove --force "$src" >&2 || true' EXIT
target="${ORDEAL_RELEASE_TARGET:-$cache/target}"
echo "building ordeal-broker at $1 ($commit) in $target" >&2
(cd "$src" && CARGO_TARGET_DIR="$target" cargo build -p ordeal-system --bin ordeal-broker >&2)
cp "$target/debug/ordeal-broker" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
