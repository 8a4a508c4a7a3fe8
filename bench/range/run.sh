#!/usr/bin/env bash
# Range requests for one large object: revcache vs nginx proxy_cache with its
# slice module, side by side in front of the same nginx origin.
#
# CLIENTS (16) clients each resume REQUESTS (12) downloads of one SIZE_MIB
# (64) MiB object from random offsets (`Range: bytes=X-`, curl). The same
# offsets go to both proxies, first with empty caches (cold), then again
# (warm). For each round the table has the wall time, what the clients
# received, the throughput, and what reached the origin (requests and bytes,
# from its access log).
#
#   bench/range/run.sh
#   CLIENTS=32 REQUESTS=4 bench/range/run.sh
#   SKIP_BUILD=1 KEEP_TMP=1 bench/range/run.sh
#
# Every response must be a 206 of the right length; sampled ranges are
# compared byte for byte with the file. Prints a markdown table and writes
# it to bench/range/last-run.md.
set -euo pipefail

CLIENTS="${CLIENTS:-16}"
REQUESTS="${REQUESTS:-12}"
SIZE_MIB="${SIZE_MIB:-64}"
SKIP_BUILD="${SKIP_BUILD:-0}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
OUT_MD="$HERE/last-run.md"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

ensure_tools nginx curl python3
NGINX="$(command -v nginx)"
"$NGINX" -V 2>&1 | grep -q -- --with-http_slice_module || die "this nginx has no slice module"

if [ "$SKIP_BUILD" = 1 ]; then
    [ -x "$BIN" ] || die "SKIP_BUILD=1 but $BIN is missing"
else
    log "building revcache (release)"
    (cd "$REPO" && cargo build --release -q -p revcache)
fi

with_temp_dir range
read -r ORIGIN_PORT NGINX_PORT REV_PORT ADMIN_PORT < <(free_ports 4)
SIZE=$((SIZE_MIB << 20))
mkdir -p "$TMP/www"
head -c "$SIZE" /dev/urandom > "$TMP/www/big.bin"
chmod -R a+rX "$TMP/www"

# ---------------------------------------------------------------- origin
cat > "$TMP/origin.conf" <<CONF
$(nginx_preamble "$TMP" origin)
worker_processes 1;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    etag on;
    keepalive_requests 100000;
    log_format who '\$http_x_bench_proxy \$status \$body_bytes_sent';
    access_log $TMP/origin-access.log who;
$(nginx_temp_paths "$TMP" origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location / { add_header Cache-Control "public, max-age=3600"; }
    }
}
CONF

# ---------------------------------------------------------------- nginx + slice
# The slice module's documented setup: 1 MiB slices, each cached under its
# own key and fetched with its own Range; the lock collapses concurrent
# misses of one slice.
cat > "$TMP/nginx.conf" <<CONF
$(nginx_preamble "$TMP" nginx)
worker_processes $(nproc);
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    keepalive_requests 100000;
$(nginx_temp_paths "$TMP" nginx)
    proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=bench:16m
                     max_size=4g inactive=1h use_temp_path=off;
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            slice 1m;
            proxy_cache bench;
            proxy_cache_key \$uri\$is_args\$args\$slice_range;
            proxy_set_header Range \$slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Bench-Proxy nginx;
            proxy_pass http://origin;
        }
    }
}
CONF
for inst in origin nginx; do start_nginx "$inst"; done

# ---------------------------------------------------------------- revcache
# A Range miss fetches the whole object once (cache.range_miss, the
# default); the object must fit what a fill may keep.
mkdir -p "$TMP/revcache-data"
cat > "$TMP/revcache.toml" <<CONF
listen = "127.0.0.1:$REV_PORT"
data_dir = "$TMP/revcache-data"
log_level = "warn"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[cache]
memory_limit = "1GiB"
range_miss = "fetch-whole"
[limits]
max_cacheable_body_bytes = "$((SIZE_MIB * 2))MiB"
max_fill_bytes = "$((SIZE_MIB * 4))MiB"
[[routes]]
upstream = "http://127.0.0.1:$ORIGIN_PORT"
CONF
"$BIN" serve --config "$TMP/revcache.toml" 2> "$TMP/revcache.log" &
PIDS+=($!)

wait_up() { # url name: until it answers at all
    for _ in $(seq 100); do
        curl -sS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$TMP"/*error.log "$TMP/revcache.log" >&2 2>/dev/null || true
    die "$2 did not come up at $1"
}
wait_up "http://127.0.0.1:$ORIGIN_PORT/big.bin" origin
wait_up "http://127.0.0.1:$ADMIN_PORT/readyz" "revcache admin"
wait_up "http://127.0.0.1:$NGINX_PORT/probe" nginx
: > "$TMP/origin-access.log"

# ---------------------------------------------------------------- offsets
python3 - "$CLIENTS" "$REQUESTS" "$SIZE" > "$TMP/offsets" <<'PY'
import random, sys
clients, requests, size = map(int, sys.argv[1:])
rng = random.Random(20261129)
for c in range(clients):
    print(" ".join(str(rng.randrange(0, size)) for _ in range(requests)))
PY

# client PORT LINE PROXY : one client's downloads, one "status bytes" line each
client() {
    local off
    for off in $2; do
        curl -s -o /dev/null -r "$off-" -H "X-Bench-Proxy: $3" \
            -w "%{http_code} %{size_download} $off\n" "http://127.0.0.1:$1/big.bin"
    done
}

# round PROXY PORT ROUND : runs every client at once; appends a row.
declare -A ROW
round() {
    local proxy="$1" port="$2" name="$3" before_lines before_bytes start end
    before_lines=$(grep -c "^$proxy " "$TMP/origin-access.log" || true)
    before_bytes=$(awk -v p="$proxy" '$1 == p {s += $3} END {print s + 0}' "$TMP/origin-access.log")
    start=$(date +%s.%N)
    local pids=() i=0
    while read -r line; do
        client "$port" "$line" "$proxy" > "$TMP/out-$proxy-$name-$i" &
        pids+=($!)
        i=$((i + 1))
    done < "$TMP/offsets"
    wait "${pids[@]}"
    end=$(date +%s.%N)
    sleep 0.5 # the origin's log line is written after its response
    cat "$TMP"/out-"$proxy-$name"-* > "$TMP/all-$proxy-$name"
    awk -v size="$SIZE" -v p="$proxy" '
        $1 != 206 || $2 != size - $3 { bad++; if (bad < 4) print "bad response from " p ": " $0 > "/dev/stderr" }
        END { exit bad > 0 }' "$TMP/all-$proxy-$name" || die "$proxy $name: wrong responses"
    local lines bytes client_bytes secs
    lines=$(( $(grep -c "^$proxy " "$TMP/origin-access.log" || true) - before_lines ))
    bytes=$(( $(awk -v p="$proxy" '$1 == p {s += $3} END {print s + 0}' "$TMP/origin-access.log") - before_bytes ))
    client_bytes=$(awk '{s += $2} END {print s}' "$TMP/all-$proxy-$name")
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
    ROW[$proxy-$name]=$(awk -v s="$secs" -v c="$client_bytes" -v l="$lines" -v u="$bytes" \
        'BEGIN {printf "%s | %.0f | %.0f | %d | %.1f", s, c / 1048576, c / 1048576 / s, l, u / 1048576}')
    ROW[$proxy-$name-mibs]=$(awk -v s="$secs" -v c="$client_bytes" 'BEGIN {printf "%.1f", c / 1048576 / s}')
    ROW[$proxy-$name-up]="$bytes"
    log "$proxy $name: ${ROW[$proxy-$name]}"
}

# sample PORT : compares a few ranges with the file, byte for byte.
sample() {
    local port="$1" first last
    for spec in "0-99" "1048570-1048600" "$((SIZE - 5000))-" "-777" "33554431-33558527"; do
        curl -s -r "$spec" "http://127.0.0.1:$port/big.bin" -o "$TMP/got"
        python3 - "$TMP/www/big.bin" "$TMP/got" "$spec" "$SIZE" <<'PY' || die "range $spec from port $port differs"
import sys
path, got, spec, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
first, last = spec.split("-")
if first == "":
    first, last = size - int(last), size - 1
else:
    first, last = int(first), (int(last) if last else size - 1)
with open(path, "rb") as f:
    f.seek(first)
    want = f.read(last - first + 1)
sys.exit(0 if open(got, "rb").read() == want else 1)
PY
    done
}

# Interleaved: cold for both, then warm for both (the order alternates).
round revcache "$REV_PORT" cold
round nginx "$NGINX_PORT" cold
round nginx "$NGINX_PORT" warm
round revcache "$REV_PORT" warm
sample "$REV_PORT"
sample "$NGINX_PORT"

COMMIT="$(cd "$REPO" && git rev-parse --short HEAD)"
NGINX_VER="$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')"
{
    echo "bench/range on $(date -u +%Y-%m-%d) at $COMMIT: $CLIENTS clients x $REQUESTS resumed downloads (\`Range: bytes=X-\`, random X) of one $SIZE_MIB MiB object; nginx $NGINX_VER with \`slice 1m\`; $(nproc) cores"
    echo
    echo "| proxy | round | wall s | client MiB | client MiB/s | origin requests | origin MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for r in cold warm; do
        for p in revcache nginx; do
            echo "| $p | $r | ${ROW[$p-$r]} |"
        done
    done
    echo
    echo "Throughput revcache/nginx: cold $(awk -v a="${ROW[revcache-cold-mibs]}" -v b="${ROW[nginx-cold-mibs]}" 'BEGIN {printf "%.2f", a / b}'), warm $(awk -v a="${ROW[revcache-warm-mibs]}" -v b="${ROW[nginx-warm-mibs]}" 'BEGIN {printf "%.2f", a / b}'). Every response was a 206 of the right length; sampled ranges matched the file byte for byte."
} | tee "$OUT_MD"
