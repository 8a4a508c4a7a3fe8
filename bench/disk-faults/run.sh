#!/usr/bin/env bash
# The disk fault campaign (issue "Reliability campaign"): the suite's
# random workload under injected disk faults
# (crates/revcache-core/tests/disk_fault_injection.rs, 24 cases in CI) with
# CASES seeded cases (default 2000), in release mode. Each case runs 40
# random steps (stores, lookups, purges, sweeps, flushes, restarts) with
# ENOSPC, EIO, a short write or a crash at a random disk operation.
#   bench/disk-faults/run.sh [CASES]
# Prints one line: cases, how many reached their fault, time; exits
# non-zero on any wrong body, purge undone, panic or tier that did not
# reopen (the failing seed replays with REVCACHE_FAULT_SEED=N).
set -euo pipefail
cd "$(dirname "$0")/../.."
export REVCACHE_FAULT_CASES="${1:-2000}"
cargo test --release -q -p revcache-core --test disk_fault_injection -- --nocapture random_workloads 2>&1 \
  | grep -E "cases|seed|panicked|test result"
