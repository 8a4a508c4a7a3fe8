#!/usr/bin/env bash
# bench/multi-node: the gerrit-storm scenarios and the webdav-cms workload
# through 1 node, 3 independent nodes and 3 nodes sharing one Redis, then
# L3-vs-L1 hit latency and throughput. Writes bench/multi-node/last-run.md.
# Needs redis-server and apache2 (scripts/test.sh installs both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/bench/lib.sh"
ensure_tools redis-server apache2
cd "$root"
cargo build --release -p revcache-bench-multi-node -p revcache-bench-gerrit -p revcache-bench-webdav
bin="${CARGO_TARGET_DIR:-$root/target}/release"
out="$here/last-run.md"
{
    echo "# bench/multi-node, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) cores"
    echo
    echo "## gerrit-storm, trusted events"
    echo
    "$bin/revcache-bench-gerrit" --nodes
    echo
    echo "## webdav-cms, webdav dialect with trust (${WEBDAV_OPS:-20000} measured operations)"
    echo
    "$bin/revcache-bench-webdav" --nodes "${WEBDAV_OPS:-20000}"
    echo
    echo "## L3 hit vs L1 hit, and throughput"
    echo
    "$bin/revcache-bench-multi-node"
} | tee "$out"
log "written to $out"
