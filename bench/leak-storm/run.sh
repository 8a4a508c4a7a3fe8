#!/usr/bin/env bash
# The big randomized leak run (issue "Safe to expose", item 9): the suite's
# leak_storm test at a size too large for CI, in release mode.
#   bench/leak-storm/run.sh [REQUESTS] [SEED]
# Prints one line: requests, callers, runs on one data dir, hits, upstream
# requests and leaks; exits non-zero when any leak was found.
set -euo pipefail
cd "$(dirname "$0")/../.."
export REVCACHE_LEAK_REQUESTS="${1:-300000}"
[ -n "${2:-}" ] && export REVCACHE_LEAK_SEED="$2"
cargo test --release -q -p revcache-http --test leak_storm -- --nocapture 2>&1 | grep -E "leak storm|leaks|panicked|test result"
