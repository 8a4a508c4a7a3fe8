#!/usr/bin/env bash
# The soak (issue "Reliability campaign"): mixed traffic with key churn
# against `revcache serve` (release build) for SECONDS (default 3600), its
# RSS and open files sampled every second and plotted to
# bench/soak/soak.png (matplotlib, installed from PyPI into
# target/soak-venv when missing).
#   bench/soak/run.sh [SECONDS]
# Prints the summary line; exits non-zero when any answer was wrong,
# stale or an error, or RSS or open files grew (see src/main.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-3600}"
out=target/soak
cargo build --release -q -p revcache -p revcache-bench-soak
venv=target/soak-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check matplotlib
fi
status=0
target/release/revcache-bench-soak target/release/revcache "$seconds" "$out" || status=$?
"$venv/bin/python" bench/soak/plot.py "$out/samples.csv" bench/soak/soak.png \
  "revcache soak, $(date -u +%F), commit $(git rev-parse --short HEAD), ${seconds} s"
exit $status
