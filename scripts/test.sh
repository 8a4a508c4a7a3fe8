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
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
# `kill` (procps) sends SIGTERM in the binary's shutdown tests.
command -v kill >/dev/null || apt_install procps

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci
else
  cargo test --workspace
fi
