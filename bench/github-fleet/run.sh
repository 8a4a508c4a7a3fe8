#!/usr/bin/env bash
# GitHub CI fleet: 200 CI jobs polling 20 pull requests of a fake GitHub
# (the pull, its commits, the head commit's combined status and check runs,
# once per simulated polling interval) while pushes, reviews, statuses and
# check runs arrive as signed webhooks, with two installation tokens
# rotating midway. Direct, through revcache revalidating every hit, and
# through revcache trusting the webhooks, in one run (all in-process:
# revcache-bench-github starts the fake and revcache itself).
#
#   bench/github-fleet/run.sh            # 30 rounds
#   bench/github-fleet/run.sh 60         # more rounds
#   SKIP_BUILD=1 bench/github-fleet/run.sh
#
# Prints the table and the issue's targets (PASS/FAIL) and writes them, with
# the date, commit and machine, to bench/github-fleet/last-run.md; exits
# non-zero when a target fails.
set -euo pipefail

ROUNDS="${1:-30}"
SKIP_BUILD="${SKIP_BUILD:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache-bench-github"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

if [ "$SKIP_BUILD" != 1 ]; then
    log "building revcache-bench-github (release)"
    (cd "$REPO" && cargo build --release -q -p revcache-bench-github)
fi
[ -x "$BIN" ] || die "$BIN missing (run without SKIP_BUILD=1)"

COMMIT="$(git -C "$REPO" rev-parse --short HEAD)"
[ -z "$(git -C "$REPO" status --porcelain -- crates bench Cargo.toml)" ] || COMMIT="$COMMIT plus local changes"
log "running $ROUNDS rounds per mode"
rc=0
OUT="$("$BIN" "$ROUNDS")" || rc=$?
printf '%s\n' "$OUT"
{
    echo "# github-fleet: last run"
    echo
    echo "$(date -u '+%F %H:%M') UTC, commit $COMMIT, $(nproc) cores, kernel $(uname -r)."
    echo
    printf '%s\n' "$OUT"
} > "$HERE/last-run.md"
log "wrote $HERE/last-run.md"
exit "$rc"
