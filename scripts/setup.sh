#!/usr/bin/env bash
# Installs the system packages ordeal needs, once. Idempotent: packages already present are
# skipped, and nothing runs apt when everything is there.
#
# Usage: scripts/setup.sh [EXTRA-PACKAGE...]
set -euo pipefail

packages=(
  libclang-dev      # bindgen for the rocksdb crate
  librocksdb-dev    # RocksDB itself: linking Debian's library saves ~14 min of C++ per profile
  nftables          # network partitions (netns environment)
  iptables          # packet loss and NFQUEUE delay
  iproute2          # namespaces, veth, bridges
  faketime          # per-node clock skew
  chromium          # headless checks of the HTML report
  etcd-server       # the second system under test (ordeal run --system etcd; the benchmark)
  "$@"              # what one script needs beyond these
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo=(sudo); else
    echo "setup: missing packages ${missing[*]}, and not root: install them with apt-get" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
