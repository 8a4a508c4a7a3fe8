#!/usr/bin/env bash
# revcache's three ways of answering a cached request, side by side:
#
#   L1 hit        fresh entry in the memory tier
#   L2 hit        fresh entry read from the disk tier (the memory tier is too
#                 small to keep it), promoted and served
#   revalidation  stale entry (`Cache-Control: no-cache`), conditional request
#                 upstream, the origin answers 304, the stored body is served
#
# and, as the named reference, the origin (nginx serving the same files from
# the page cache) asked directly. Every path reads the same OBJECTS objects of
# OBJECT_BYTES bytes in random order (a wrk Lua script), so the memory tier
# cannot keep the L2 instance's set and single flights rarely collapse.
#
#   bench/hit-paths/run.sh
#   DURATION=20 OBJECTS=50000 bench/hit-paths/run.sh
#   KEEP_TMP=1 SKIP_BUILD=1 bench/hit-paths/run.sh
#
# Prints a markdown table and writes it to bench/hit-paths/last-run.md.
set -euo pipefail

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
OBJECTS="${OBJECTS:-20000}"
OBJECT_BYTES="${OBJECT_BYTES:-1024}"
SKIP_BUILD="${SKIP_BUILD:-0}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
OUT_MD="$HERE/last-run.md"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# ---------------------------------------------------------------- tools
ensure_tools nginx wrk curl python3
NGINX="$(command -v nginx)"

if [ "$SKIP_BUILD" = 1 ]; then
    [ -x "$BIN" ] || die "SKIP_BUILD=1 but $BIN is missing"
else
    log "building revcache (release)"
    (cd "$REPO" && cargo build --release -q -p revcache)
fi

# ---------------------------------------------------------------- temp dir + cleanup
with_temp_dir paths

read -r ORIGIN_PORT L1_PORT L1_ADMIN L2_PORT L2_ADMIN < <(free_ports 5)

# ---------------------------------------------------------------- objects + origin
log "writing $OBJECTS objects of $OBJECT_BYTES bytes"
python3 - "$TMP/www" "$OBJECTS" "$OBJECT_BYTES" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
for i in range(n):
    with open(os.path.join(root, f"{i}.bin"), "wb") as f:
        f.write(os.urandom(size))
PY
chmod -R a+rX "$TMP/www"
# /fresh/ and /stale/ serve the same files; /stale/ responses must be
# revalidated on every use, and nginx answers a matching If-None-Match with 304.
cat > "$TMP/origin.conf" <<CONF
$(nginx_preamble "$TMP" origin)
worker_processes 1;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    etag on;
    keepalive_requests 1000000;
    log_format st '\$status';
    access_log $TMP/origin-access.log st;
$(nginx_temp_paths "$TMP" origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location /fresh/ {
            alias $TMP/www/;
            add_header Cache-Control "public, max-age=3600";
        }
        location /stale/ {
            alias $TMP/www/;
            add_header Cache-Control "no-cache";
        }
    }
}
CONF
start_nginx origin

# ---------------------------------------------------------------- two revcaches
# l1: a memory tier that holds every object. l2: the smallest memory tier
# revcache accepts (1 MiB), so nearly every request is answered from disk.
mkdir -p "$TMP/l1-data" "$TMP/l2-data"
cat > "$TMP/l2.toml" <<TOML
[cache]
memory_limit = "1MiB"
[limits]
max_cacheable_body_bytes = "256KiB"
TOML
"$BIN" serve --upstream "http://127.0.0.1:$ORIGIN_PORT" \
    --listen "127.0.0.1:$L1_PORT" --admin-listen "127.0.0.1:$L1_ADMIN" \
    --data-dir "$TMP/l1-data" --memory-limit 1GiB --log-level warn \
    2> "$TMP/l1.log" &
PIDS+=($!)
"$BIN" serve --config "$TMP/l2.toml" --upstream "http://127.0.0.1:$ORIGIN_PORT" \
    --listen "127.0.0.1:$L2_PORT" --admin-listen "127.0.0.1:$L2_ADMIN" \
    --data-dir "$TMP/l2-data" --log-level warn \
    2> "$TMP/l2.log" &
PIDS+=($!)

wait_up() { # url name
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$TMP"/*.log >&2 2>/dev/null || true
    die "$2 did not come up at $1"
}
wait_up "http://127.0.0.1:$ORIGIN_PORT/fresh/0.bin" origin
wait_up "http://127.0.0.1:$L1_ADMIN/readyz" "revcache l1"
wait_up "http://127.0.0.1:$L2_ADMIN/readyz" "revcache l2"

metric() { # admin-port series (name and labels, as printed) -> value
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v s="$2 " 'index($0, s) == 1 {v = $NF} END {printf "%d", v}'
}
L2_ENTRIES='revcache_tier_entries{tier="l2"}'
DISK_HITS='revcache_disk_lookups_total{result="hit"}'

# ---------------------------------------------------------------- warm
# One keep-alive client per instance and path: every object once, then check
# that a sample is answered the way the path says.
warm() { # port path-prefix
    python3 - "$1" "$2" "$OBJECTS" <<'PY'
import http.client, sys
port, prefix, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    c.request("GET", f"{prefix}{i}.bin")
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"warm {prefix}{i}.bin: status {r.status}")
PY
}
log "warming l1 /fresh/ and /stale/, l2 /fresh/ ($OBJECTS objects each)"
warm "$L1_PORT" /fresh/
warm "$L1_PORT" /stale/
warm "$L2_PORT" /fresh/
# The l2 instance's disk writer is asynchronous: wait for every entry.
for _ in $(seq 600); do
    [ "$(metric "$L2_ADMIN" "$L2_ENTRIES")" -ge "$OBJECTS" ] && break
    sleep 0.1
done
[ "$(metric "$L2_ADMIN" "$L2_ENTRIES")" -ge "$OBJECTS" ] \
    || die "the l2 instance's disk tier holds fewer than $OBJECTS entries"

status_of() { # url -> Cache-Status value
    curl -fsS -o /dev/null -D - "$1" | awk -F': ' 'tolower($1) == "cache-status" {print $2}' | tr -d '\r'
}
expect_status() { # url regex
    local got
    got="$(status_of "$1")"
    grep -Eq "$2" <<< "$got" || die "$1: Cache-Status '$got' does not match '$2'"
    log "$1: $got"
}
expect_status "http://127.0.0.1:$L1_PORT/fresh/7.bin" '; hit'
expect_status "http://127.0.0.1:$L2_PORT/fresh/8.bin" '; hit'
expect_status "http://127.0.0.1:$L1_PORT/stale/9.bin" 'fwd=stale; fwd-status=304'

# ---------------------------------------------------------------- runs
cat > "$TMP/random.lua" <<LUA
-- a uniformly random object per request; each wrk thread seeds itself
local n = $OBJECTS
local prefix = os.getenv("PREFIX")
local seeded = false
request = function()
    if not seeded then
        math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
        seeded = true
    end
    return wrk.format("GET", prefix .. (math.random(n) - 1) .. ".bin")
end
LUA

origin_lines() { wc -l < "$TMP/origin-access.log"; }
origin_304s() { awk '$1 == 304 {n++} END {printf "%d", n}' "$TMP/origin-access.log"; }

ANOMALIES=()
ROWS=()
declare -A RPS
run() { # label port prefix admin-port(or -) -> appends a row
    local label="$1" port="$2" prefix="$3" admin="$4" out="$TMP/wrk-$1.txt"
    local up0 n3040 l2r0 up n304 l2r reqs share p50 p99
    up0="$(origin_lines)"; n3040="$(origin_304s)"
    l2r0=0; [ "$admin" = - ] || l2r0="$(metric "$admin" "$DISK_HITS")"
    log "wrk $label ${prefix}N.bin (${DURATION}s, $CONNECTIONS conns)"
    PREFIX="$prefix" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -s "$TMP/random.lua" "http://127.0.0.1:$port" > "$out"
    RPS[$label]="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    [ -n "${RPS[$label]}" ] || { cat "$out" >&2; die "could not parse wrk output for $label"; }
    reqs="$(awk '/requests in/ {print $1}' "$out")"
    p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    up=$(( $(origin_lines) - up0 )); n304=$(( $(origin_304s) - n3040 ))
    l2r=-
    if [ "$admin" != - ]; then
        l2r=$(( $(metric "$admin" "$DISK_HITS") - l2r0 ))
    fi
    if grep -Eq 'Non-2xx or 3xx responses|Socket errors' "$out"; then
        ANOMALIES+=("$label: $(grep -E 'Non-2xx or 3xx responses|Socket errors' "$out" | tr -s ' \n' ' ')")
    fi
    ROWS+=("$label|${RPS[$label]}|$p50|$p99|$reqs|$up|$n304|$l2r")
}

run "L1 hit" "$L1_PORT" /fresh/ "$L1_ADMIN"
run "L2 hit" "$L2_PORT" /fresh/ "$L2_ADMIN"
run "revalidation (304)" "$L1_PORT" /stale/ "$L1_ADMIN"
run "origin direct" "$ORIGIN_PORT" /fresh/ -

# ---------------------------------------------------------------- checks + report
L1="${RPS["L1 hit"]}"
TABLE="| path | req/s | vs L1 hit | p50 / p99 ms | requests | origin requests (304s) | disk-tier reads |
|---|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do
    IFS='|' read -r label rps p50 p99 reqs up n304 l2r <<< "$row"
    TABLE="$TABLE
$(printf '| %s | %.0f | %.2f | %s / %s | %s | %s (%s) | %s |' "$label" "$rps" \
        "$(awk -v a="$rps" -v b="$L1" 'BEGIN {print a / b}')" "$p50" "$p99" "$reqs" "$up" "$n304" "$l2r")"
    case "$label" in
        "L1 hit")
            [ "$up" = 0 ] || ANOMALIES+=("L1 hit: $up request(s) reached the origin")
            [ "$l2r" = 0 ] || ANOMALIES+=("L1 hit: $l2r disk-tier read(s)") ;;
        "L2 hit")
            [ "$up" = 0 ] || ANOMALIES+=("L2 hit: $up request(s) reached the origin")
            awk -v a="$l2r" -v b="$reqs" 'BEGIN {exit !(a < 0.9 * b)}' \
                && ANOMALIES+=("L2 hit: only $l2r of $reqs requests read the disk tier") ;;
        "revalidation (304)")
            awk -v a="$n304" -v b="$reqs" 'BEGIN {exit !(a < 0.9 * b)}' \
                && ANOMALIES+=("revalidation: only $n304 origin 304s for $reqs requests (single flights collapsed the rest)") ;;
    esac
done

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=""
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then DIRTY=" (uncommitted changes)"; fi
{
    echo "# hit-paths: last run"
    echo
    echo "- date: $(date -u)"
    echo "- nproc: $(nproc), kernel $(uname -sr)"
    echo "- commit: $COMMIT$DIRTY, revcache binary built $(date -u -r "$BIN" "+%Y-%m-%d %H:%M:%S UTC")"
    echo "- $OBJECTS objects of $OBJECT_BYTES bytes, random order; wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency"
    echo "- L1 instance: --memory-limit 1GiB; L2 instance: memory_limit 1MiB; both with their disk tier on"
    echo
    echo "$TABLE"
    if [ "${#ANOMALIES[@]}" -gt 0 ]; then
        echo
        echo "Anomalies:"
        printf -- '- %s\n' "${ANOMALIES[@]}"
    fi
} > "$OUT_MD"
echo
echo "$TABLE"
if [ "${#ANOMALIES[@]}" -gt 0 ]; then
    echo "ANOMALIES:"
    printf -- '- %s\n' "${ANOMALIES[@]}"
fi
echo "written to ${OUT_MD#"$REPO"/}"
