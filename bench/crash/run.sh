#!/usr/bin/env bash
# The crash loop at scale (issue "Reliability campaign"): the suite's crash
# test (crates/revcache/tests/crash.rs, 12 kills) with 100 SIGKILLs at
# random moments under mixed read / write / purge load, in release mode.
#   bench/crash/run.sh [KILLS]
# Prints one line: kills, responses verified byte for byte, hits, writes
# and purges acknowledged, wrong responses; exits non-zero on any wrong
# body, any purge or write undone by a crash, or a failed start-up.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CRASH_ROUNDS="${1:-100}"
cargo test --release -q -p revcache --test crash -- --nocapture 2>&1 | grep -E "crash test|wrong|panicked|test result"
