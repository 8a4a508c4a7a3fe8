#!/usr/bin/env bash
# Side-by-side cache-hit benchmark: nginx (proxy_cache) vs revcache, both in
# front of the same nginx origin, wrk as the load generator.
#
#   bench/http-hit/run.sh                 # 10 s per wrk run, 64 connections
#   DURATION=30 CONNECTIONS=128 bench/http-hit/run.sh
#   KEEP_TMP=1 bench/http-hit/run.sh      # keep the temp dir (configs, logs, raw wrk output)
#
# Prints a markdown table and writes it to bench/http-hit/last-run.md.
set -euo pipefail

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
OUT_MD="$HERE/last-run.md"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} via apt-get"
    # Keep the nginx package from starting a system-wide nginx on port 80.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
export PATH="$PATH:/usr/sbin:/sbin"
NGINX="$(command -v nginx)"

# ---------------------------------------------------------------- revcache
# Always build: cargo does nothing when the binary is current, and a stale
# binary would measure old code under the new commit's name.
log "building revcache (release)"
(cd "$REPO" && cargo build --release -q -p revcache)

# ---------------------------------------------------------------- temp dir + cleanup
TMP="$(mktemp -d /tmp/revcache-bench.XXXXXX)"
chmod 755 "$TMP"
PIDS=()
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        # give each process up to 5 s, then SIGKILL
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # nginx workers of an instance whose master died: reap by pid file
    for pf in "$TMP"/*.pid; do
        [ -f "$pf" ] || continue
        p="$(cat "$pf" 2>/dev/null)"
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- ports
read -r ORIGIN_PORT NGINX_PORT REV_PORT ADMIN_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
')

# ---------------------------------------------------------------- objects
SIZES=(1k 16k 256k 4m)
declare -A BYTES=([1k]=1024 [16k]=16384 [256k]=262144 [4m]=4194304)
declare -A LABEL=([1k]="1 KiB" [16k]="16 KiB" [256k]="256 KiB" [4m]="4 MiB")
mkdir -p "$TMP/www"
for s in "${SIZES[@]}"; do
    head -c "${BYTES[$s]}" /dev/urandom > "$TMP/www/obj-$s.bin"
done
chmod 644 "$TMP"/www/*
chmod 755 "$TMP/www"

USER_LINE=""
# workers must read the objects and write the cache in $TMP
if [ "$(id -u)" = 0 ]; then USER_LINE="user root;"; fi

temp_paths() { # $1 = instance name
    local d="$TMP/$1-temp"
    mkdir -p "$d"
    cat <<CONF
    client_body_temp_path $d/client_body;
    proxy_temp_path       $d/proxy;
    fastcgi_temp_path     $d/fastcgi;
    uwsgi_temp_path       $d/uwsgi;
    scgi_temp_path        $d/scgi;
CONF
}

# ---------------------------------------------------------------- origin (nginx, static)
cat > "$TMP/origin.conf" <<CONF
$USER_LINE
daemon off;
worker_processes 1;
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    etag on;
    keepalive_requests 100000;
    # Only cache misses reach the origin; log them to see who went upstream.
    log_format who '\$http_x_bench_proxy \$request \$status';
    access_log $TMP/origin-access.log who;
$(temp_paths origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        location / {
            add_header Cache-Control "public, max-age=3600";
        }
    }
}
CONF

# ---------------------------------------------------------------- nginx caching proxy
CORES="$(nproc)"
cat > "$TMP/nginx.conf" <<CONF
$USER_LINE
daemon off;
worker_processes $CORES;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
$(temp_paths nginx)
    proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=bench:16m
                     max_size=2g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Bench-Proxy nginx;
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
CONF

for inst in origin nginx; do
    "$NGINX" -t -q -p "$TMP" -e "$TMP/$inst-error.log" -c "$TMP/$inst.conf" \
        || { cat "$TMP/$inst-error.log" >&2 || true; die "nginx config $inst.conf invalid"; }
    "$NGINX" -p "$TMP" -e "$TMP/$inst-error.log" -c "$TMP/$inst.conf" &
    PIDS+=($!)
done

# ---------------------------------------------------------------- revcache
mkdir -p "$TMP/revcache-data"
"$BIN" serve \
    --upstream "http://127.0.0.1:$ORIGIN_PORT" \
    --listen "127.0.0.1:$REV_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --data-dir "$TMP/revcache-data" \
    --memory-limit 1GiB \
    --log-level warn \
    2> "$TMP/revcache.log" &
PIDS+=($!)

wait_up() { # url name
    for _ in $(seq 100); do
        curl -fsS -o /dev/null -H "X-Bench-Proxy: harness" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$TMP"/*error.log "$TMP/revcache.log" >&2 2>/dev/null || true
    die "$2 did not come up at $1"
}
wait_up "http://127.0.0.1:$ORIGIN_PORT/obj-1k.bin" origin
wait_up "http://127.0.0.1:$ADMIN_PORT/readyz" "revcache admin"
# nginx: a HEAD-less probe on a path that is not benchmarked
wait_up "http://127.0.0.1:$NGINX_PORT/obj-1k.bin?probe" nginx

# ---------------------------------------------------------------- helpers
# fetch URL -> prints "status size sha256" and stores headers in $TMP/h
fetch() {
    local meta
    meta="$(curl -sS -o "$TMP/body" -D "$TMP/h" -w '%{http_code} %{size_download}' "$1")"
    echo "$meta $(sha256sum < "$TMP/body" | cut -d' ' -f1)"
}
header() { # name -> value from $TMP/h (last occurrence)
    grep -i "^$1:" "$TMP/h" | tail -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'
}

to_ms() { # wrk duration like 812.00us / 1.23ms / 2.01s / 1.00m
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") m = n / 1000; else if (u == "ms") m = n;
        else if (u == "s") m = n * 1000; else if (u == "m") m = n * 60000;
        else if (u == "h") m = n * 3600000; else { print "NaN"; exit }
        printf "%.3f", m }'
}

ANOMALIES=()
run_wrk() { # name url -> sets RPS P50 P99
    local name="$1" url="$2" out="$TMP/wrk-$1-$3.txt"
    log "wrk $name $url (${DURATION}s, $CONNECTIONS conns)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$out"
    RPS="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    P50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
    P99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    [ -n "$RPS" ] || { cat "$out" >&2; die "could not parse wrk output for $name"; }
    local bad
    bad="$(grep -E 'Non-2xx or 3xx responses|Socket errors' "$out" || true)"
    if [ -n "$bad" ]; then
        ANOMALIES+=("$name $3: $(echo "$bad" | tr -s ' \n' ' ')")
        log "ANOMALY $name $3: $bad"
    fi
}

# ---------------------------------------------------------------- run
ROWS=()
i=0
for s in "${SIZES[@]}"; do
    path="/obj-$s.bin"
    want="${BYTES[$s]}"
    want_sha="$(sha256sum < "$TMP/www/obj-$s.bin" | cut -d' ' -f1)"

    # warm revcache: first request is a miss that stores, later ones must be hits
    for n in 1 2 3; do
        read -r code size sha < <(fetch "http://127.0.0.1:$REV_PORT$path")
        cs="$(header Cache-Status)"
        [ "$code" = 200 ] && [ "$size" = "$want" ] && [ "$sha" = "$want_sha" ] \
            || die "revcache $path request $n: status $code, $size bytes (want 200, $want, matching body); Cache-Status: $cs"
        if [ "$n" -ge 2 ]; then
            grep -Eiq '(^|;)[[:space:]]*hit[[:space:]]*(;|$)' <<< "$cs" \
                || die "revcache $path request $n was not a hit; Cache-Status: $cs"
        fi
        log "revcache $path #$n: $cs"
    done

    # warm nginx: MISS, then HIT
    for n in 1 2 3; do
        read -r code size sha < <(fetch "http://127.0.0.1:$NGINX_PORT$path")
        xc="$(header X-Cache-Status)"
        [ "$code" = 200 ] && [ "$size" = "$want" ] && [ "$sha" = "$want_sha" ] \
            || die "nginx $path request $n: status $code, $size bytes (want 200, $want, matching body); X-Cache-Status: $xc"
        if [ "$n" -ge 2 ] && [ "$xc" != HIT ]; then
            die "nginx $path request $n was not a HIT; X-Cache-Status: $xc"
        fi
        log "nginx $path #$n: X-Cache-Status $xc"
    done

    # alternate which server goes first
    if [ $((i % 2)) = 0 ]; then order=(nginx revcache); else order=(revcache nginx); fi
    for who in "${order[@]}"; do
        if [ "$who" = nginx ]; then
            run_wrk nginx "http://127.0.0.1:$NGINX_PORT$path" "$s"
            N_RPS=$RPS N_P50=$P50 N_P99=$P99
        else
            run_wrk revcache "http://127.0.0.1:$REV_PORT$path" "$s"
            R_RPS=$RPS R_P50=$P50 R_P99=$P99
        fi
    done
    ratio="$(awk -v r="$R_RPS" -v n="$N_RPS" 'BEGIN { printf "%.2f", (n > 0 ? r / n : 0) }')"
    ROWS+=("$(printf '| %s | %.0f | %.0f | %s | %.2f / %.2f | %.2f / %.2f |' \
        "${LABEL[$s]}" "$N_RPS" "$R_RPS" "$ratio" "$N_P50" "$N_P99" "$R_P50" "$R_P99")")
    i=$((i + 1))
done

# ---------------------------------------------------------------- upstream traffic
METRICS="$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics")"
echo "$METRICS" > "$TMP/metrics.txt"
REV_UPSTREAM="$(echo "$METRICS" | awk '/^revcache_upstream_requests_total[{ ]/ {s += $NF} END {printf "%d", s}')"
REV_UPSTREAM_LINES="$(echo "$METRICS" | grep -E '^revcache_upstream_requests_total' || true)"
REV_OUTCOMES="$(echo "$METRICS" | grep -E '^revcache_requests_total' || true)"
ORIGIN_FROM_NGINX="$(grep -c '^nginx ' "$TMP/origin-access.log" || true)"
ORIGIN_FROM_REV="$(grep -c '^- ' "$TMP/origin-access.log" || true)"
ORIGIN_TOTAL="$(wc -l < "$TMP/origin-access.log")"
NOBJ="${#SIZES[@]}"
UPSTREAM_NOTE="revcache sent $REV_UPSTREAM request(s) upstream for $NOBJ objects"
if [ "$REV_UPSTREAM" -gt "$NOBJ" ]; then
    UPSTREAM_NOTE="$UPSTREAM_NOTE -- MORE THAN ONE PER OBJECT: some benchmark hits went upstream"
    ANOMALIES+=("$UPSTREAM_NOTE")
fi

# ---------------------------------------------------------------- report
TABLE="| object | nginx req/s | revcache req/s | ratio | nginx p50/p99 ms | revcache p50/p99 ms |
|---|---:|---:|---:|---:|---:|
$(printf '%s\n' "${ROWS[@]}")"

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=""
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then DIRTY=" (uncommitted changes)"; fi
NGINX_VER="$( ("$NGINX" -v 2>&1 || true) | sed 's/^nginx version: //')"
BIN_BUILT="built $(date -u -r "$BIN" "+%Y-%m-%d %H:%M:%S UTC")"
WRK_VER="$( (wrk -v 2>&1 || true) | head -n1 | awk '{print $1, $2}')"

{
    echo "# http-hit: last run"
    echo
    echo "- date: $(date -u)"
    echo "- nproc: $CORES"
    echo "- kernel: $(uname -sr)"
    echo "- commit: $COMMIT$DIRTY"
    echo "- wrk: -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, on the same machine as the servers ($WRK_VER)"
    echo "- nginx: $NGINX_VER, worker_processes $CORES, proxy_cache on disk under /tmp"
    echo "- revcache: --memory-limit 1GiB, binary $BIN_BUILT"
    echo
    echo "$TABLE"
    echo
    echo "Upstream: $UPSTREAM_NOTE."
    echo "Origin access log: $ORIGIN_TOTAL request(s): $ORIGIN_FROM_NGINX from nginx (one is the readiness probe), $ORIGIN_FROM_REV from revcache, the rest from the harness's direct probe."
    echo
    echo '```'
    echo "$REV_UPSTREAM_LINES"
    echo "$REV_OUTCOMES"
    echo '```'
    if [ "${#ANOMALIES[@]}" -gt 0 ]; then
        echo
        echo "Anomalies:"
        printf -- '- %s\n' "${ANOMALIES[@]}"
    fi
} > "$OUT_MD"

echo
echo "$TABLE"
echo
echo "$UPSTREAM_NOTE"
echo "$REV_UPSTREAM_LINES"
echo "origin access log: $ORIGIN_TOTAL request(s): $ORIGIN_FROM_NGINX from nginx, $ORIGIN_FROM_REV from revcache"
if [ "${#ANOMALIES[@]}" -gt 0 ]; then
    echo "ANOMALIES:"
    printf -- '- %s\n' "${ANOMALIES[@]}"
fi
if [ -s "$TMP/revcache.log" ]; then
    echo "revcache stderr (warnings):"
    tail -n 20 "$TMP/revcache.log"
fi
echo "written to ${OUT_MD#"$REPO"/}"
