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
  openssh-client    # ssh, ssh-keygen: nodes on other hosts (--env ssh)
  openssh-server    # sshd in each node's namespace (--env ssh-lab, its tests); never started as a service
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
# These are tools here, not services: the daemons they ship (etcd, sshd) must not start, now or at
# boot. A policy-rc.d that refuses every start (what container images carry) keeps the packages
# from starting them; it is removed again if this script put it there.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if command -v systemctl >/dev/null; then
  for p in "${missing[@]}"; do
    case "$p" in
      etcd-server) "${sudo[@]}" systemctl disable --quiet etcd 2>/dev/null || true ;;
      openssh-server) "${sudo[@]}" systemctl disable --quiet ssh 2>/dev/null || true ;;
    esac
  done
fi
