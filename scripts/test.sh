#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace.
# Installs what the tests need when it is missing (CI starts from a clean
# clone on a fresh machine). Tests start their own servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  # Installs Debian packages named in "$@" that are not present yet.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    # Packages must not start their services: tests run their own servers.
    local policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  fi
}
# `kill` (procps) sends SIGTERM in the binary's shutdown tests; curl talks to
# the TLS listener; Apache with
# mod_dav, litmus and cadaver are the WebDAV real-server suite.
apt_install procps apache2 litmus cadaver curl

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== loom model checks"
# revcache-core's concurrency protocols under the loom model checker: single
# flight (one leader per key, every waiter gets the leader's outcome or
# Abandoned and never hangs, the key is freed), generations (a ticket taken
# before an invalidation is never current after it) and the store/purge/
# eviction protocol of the cache and its catalog (a fill overtaken by a
# purge is never kept; every key held in memory stays findable by target
# and tag). Exhaustive (no preemption bound): about 30 s of checking after
# a one-minute build. Its own target dir: --cfg loom rebuilds every
# dependency.
RUSTFLAGS="--cfg loom" cargo test -p revcache-core --release --lib --target-dir target/loom --quiet loom
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci
else
  cargo test --workspace
fi
