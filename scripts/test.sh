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
# mod_dav, litmus and cadaver are the WebDAV real-server suite; redis-server
# is the shared tier of the multi-node tests; systemd-analyze (systemd)
# checks dist/revcache.service; ip (iproute2) puts Redis in a network namespace
# for the partition test.
apt_install procps apache2 litmus cadaver curl redis-server systemd iproute2
# Real GitHub clients for tests/github_clients.rs: PyGithub in a venv and
# @octokit/rest in a node_modules, both under target/github-clients, at the
# versions pinned in crates/revcache-http/tests/clients/. Reinstalled only
# when the pins change.
# Only when missing: node and npm may come from elsewhere than Debian.
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv python3-pip
{ command -v node && command -v npm; } >/dev/null 2>&1 || apt_install nodejs npm
clients=crates/revcache-http/tests/clients
installed=target/github-clients
mkdir -p "$installed/node"
if ! cmp -s "$clients/requirements.txt" "$installed/venv/requirements.txt" 2>/dev/null; then
  echo "== installing PyGithub"
  rm -rf "$installed/venv"
  python3 -m venv "$installed/venv"
  "$installed/venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
  cp "$clients/requirements.txt" "$installed/venv/requirements.txt"
fi
if ! cmp -s "$clients/package.json" "$installed/node/package.json" 2>/dev/null \
  || [ ! -e "$installed/node/node_modules/@octokit/rest/package.json" ]; then
  echo "== installing @octokit/rest"
  cp "$clients/package.json" "$installed/node/package.json"
  (cd "$installed/node" && npm install --silent --no-audit --no-fund --no-package-lock)
fi

# The dashboard's browser test (crates/revcache/tests/dashboard.rs): Debian's
# chromium, driven headless by playwright-core (pinned in
# crates/revcache/tests/browser/package.json; it downloads no browser of its
# own) from target/dashboard-browser/node. Reinstalled only when the pin
# changes.
apt_install chromium
browser=crates/revcache/tests/browser
driver=target/dashboard-browser
mkdir -p "$driver/node"
if ! cmp -s "$browser/package.json" "$driver/node/package.json" 2>/dev/null \
  || [ ! -e "$driver/node/node_modules/playwright-core/package.json" ]; then
  echo "== installing playwright-core"
  cp "$browser/package.json" "$driver/node/package.json"
  (cd "$driver/node" && npm install --silent --no-audit --no-fund --no-package-lock)
fi

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
