#!/usr/bin/env bash
# Install what building, the demo and the tests need, only when it is missing.
# Idempotent and fast when everything is there (no network access then).
# Debian 12, as root. `make deps` runs it; `make demo` and `make test` depend on it.
set -euo pipefail

PKGS=(
  libdpdk-dev dpdk           # DPDK 22.11 headers/libs, and dpdk-testpmd
  clang libclang-dev pkg-config   # bindgen and the C wrappers of dpdk-sys
  protobuf-compiler          # protoc for the dpvs.v1 gRPC code
  iproute2 ethtool nftables  # netns topology; kernel-lb comparison peer
  curl socat iperf3 tcpdump python3  # clients, real servers' helpers, debugging
  iputils-ping               # ping through the kernel interface (e2e_kni)
  wrk                        # HTTP connections/s in the kernel comparison (make bench)
  prometheus                 # promtool and a server the metrics tests scrape dpvsd with
  keepalived                 # VRRP between two directors (e2e_ha, deploy/ha)
  bird2 frr                  # BGP: directors (BIRD) announce VIPs to a router (FRR) for ECMP (e2e_ha)
)

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done
# Any nginx flavour serves the real servers; install the light one if none is there.
if ! command -v nginx >/dev/null && ! installed nginx-light && ! installed nginx; then
  missing+=(nginx-light)
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The tests run prometheus and nginx themselves, per namespace: never let the
  # packages start system-wide services (a policy-rc.d that refuses them, for
  # the install only, unless the host already has one).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: 'cargo' not found. Install the Rust toolchain (https://rustup.rs) and retry." >&2
  exit 1
fi
for sub in fmt clippy; do
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    echo "deps: 'cargo $sub' not found: rustup component add $( [[ $sub == fmt ]] && echo rustfmt || echo clippy )" >&2
    exit 1
  fi
done
# cargo-fuzz builds the fuzz targets (fuzz/, docs/fuzzing.md) on stable Rust
# (`-s none`); `make test` runs them briefly. A pinned version, from source
# (about 30 s to build here).
CARGO_FUZZ_VERSION=0.13.2
if [[ $(cargo fuzz --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "deps: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
echo "deps: ok"
