#!/usr/bin/env bash
# Side-by-side cache-hit benchmark: nginx (proxy_cache), Varnish and revcache,
# all in front of the same nginx origin, plus the "static ceiling" (a bare
# hyper server answering from memory, bench/static-ceiling) and the ceiling
# again sending a revcache hit's exact head, wrk as the load generator.
#
#   bench/http-hit/run.sh                 # 10 s per wrk run, 64 connections
#   DURATION=30 CONNECTIONS=128 bench/http-hit/run.sh
#   KEEP_TMP=1 bench/http-hit/run.sh      # keep the temp dir (configs, logs, raw wrk output)
#   SKIP_BUILD=1 bench/http-hit/run.sh    # use target/release/revcache as it is (no cargo)
#
# Then it measures latency at a fixed request rate, half of nginx's maximum
# for that size, with oha (`-q RATE --latency-correction`: latency counted
# from when each request was due, so no coordinated omission). oha is taken
# from PATH or target/tools, or installed there with `cargo install` (about
# 4 minutes, once); FIXED_RATE=0 skips this part.
#
# Prints a markdown table and writes it to bench/http-hit/last-run.md.
set -euo pipefail

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
SKIP_BUILD="${SKIP_BUILD:-0}"
# fixed-rate step: rate = FIXED_FRACTION x nginx's wrk req/s for that size
FIXED_RATE="${FIXED_RATE:-1}"
FIXED_FRACTION="${FIXED_FRACTION:-0.5}"
FIXED_DURATION="${FIXED_DURATION:-10}"
# rounds of the fixed-rate step (servers interleaved); the table has medians
FIXED_ROUNDS="${FIXED_ROUNDS:-5}"
OHA_VERSION=1.16.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
STATIC_BIN="$REPO/target/release/revcache-bench-static"
OUT_MD="$HERE/last-run.md"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# ---------------------------------------------------------------- tools
ensure_tools nginx wrk curl python3 varnishd:varnish
NGINX="$(command -v nginx)"
VARNISHD="$(command -v varnishd)"
OHA=""
if [ "$FIXED_RATE" = 1 ]; then
    OHA="$(command -v oha || true)"
    if [ -z "$OHA" ]; then
        OHA="$REPO/target/tools/bin/oha"
        if [ ! -x "$OHA" ]; then
            log "installing oha $OHA_VERSION into target/tools (cargo install, once)"
            cargo install -q --locked --version "$OHA_VERSION" --root "$REPO/target/tools" oha
        fi
    fi
fi

# ---------------------------------------------------------------- revcache
# Build by default: cargo does nothing when the binary is current, and a stale
# binary would measure old code under the new commit's name (the report
# says when the binary is older than HEAD's commit).
if [ "$SKIP_BUILD" = 1 ]; then
    [ -x "$BIN" ] || die "SKIP_BUILD=1 but $BIN is missing"
    log "SKIP_BUILD=1: using $BIN as it is"
else
    log "building revcache (release)"
    (cd "$REPO" && cargo build --release -q -p revcache)
fi
# The static ceiling is a tiny hyper server.
if [ "$SKIP_BUILD" != 1 ] || [ ! -x "$STATIC_BIN" ]; then
    log "building revcache-bench-static (release)"
    (cd "$REPO" && cargo build --release -q -p revcache-bench-static)
fi

# ---------------------------------------------------------------- temp dir + cleanup
TMP="$(mktemp -d /tmp/revcache-bench.XXXXXX)"
chmod 755 "$TMP"
PIDS=()
# processes started by our children rather than by us (the varnishd child):
# killed only after their parent is gone, so it cannot restart them
EXTRA_PIDS=()
cleanup() {
    local rc=$?
    set +e
    stop_all "${PIDS[@]}"
    for pid in "${EXTRA_PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
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
read -r ORIGIN_PORT NGINX_PORT REV_PORT ADMIN_PORT VARNISH_PORT STATIC_PORT SAME_PORT < <(free_ports 7)

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

# ---------------------------------------------------------------- origin (nginx, static)
cat > "$TMP/origin.conf" <<CONF
$(nginx_preamble "$TMP" origin)
worker_processes 1;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    etag on;
    keepalive_requests 100000;
    # Only cache misses reach the origin; log them to see who went upstream.
    log_format who '\$http_x_bench_proxy \$request \$status';
    access_log $TMP/origin-access.log who;
$(nginx_temp_paths "$TMP" origin)
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
$(nginx_preamble "$TMP" nginx)
worker_processes $CORES;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
$(nginx_temp_paths "$TMP" nginx)
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

for inst in origin nginx; do start_nginx "$inst"; done

# ---------------------------------------------------------------- varnish
# builtin VCL does the rest: no cookies/authorization in the requests, and the
# origin's Cache-Control: public, max-age=3600 makes every object cacheable.
cat > "$TMP/varnish.vcl" <<VCL
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "$ORIGIN_PORT";
}

sub vcl_backend_fetch {
    set bereq.http.X-Bench-Proxy = "varnish";
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
VCL
chmod 644 "$TMP/varnish.vcl"
# -F: foreground (we own the manager process); -n: private work dir so it
# cannot clash with a system instance; -T none: no management port. As root
# the default unix jail drops to the varnish/vcache users.
"$VARNISHD" -F \
    -a "127.0.0.1:$VARNISH_PORT" \
    -f "$TMP/varnish.vcl" \
    -n "$TMP/varnish" \
    -T none \
    -s malloc,1G \
    -p thread_pools="$CORES" \
    > "$TMP/varnish.log" 2>&1 &
VARNISH_PID=$!
PIDS+=("$VARNISH_PID")

# ---------------------------------------------------------------- static ceiling
"$STATIC_BIN" "127.0.0.1:$STATIC_PORT" "$TMP"/www/obj-*.bin 2> "$TMP/static.log" &
PIDS+=($!)

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
    cat "$TMP"/*error.log "$TMP/revcache.log" "$TMP/varnish.log" "$TMP/static.log" >&2 2>/dev/null || true
    die "$2 did not come up at $1"
}
wait_up "http://127.0.0.1:$ORIGIN_PORT/obj-1k.bin" origin
wait_up "http://127.0.0.1:$ADMIN_PORT/readyz" "revcache admin"
# nginx: a HEAD-less probe on a path that is not benchmarked
wait_up "http://127.0.0.1:$NGINX_PORT/obj-1k.bin?probe" nginx
wait_up "http://127.0.0.1:$VARNISH_PORT/obj-1k.bin?probe" varnish
wait_up "http://127.0.0.1:$STATIC_PORT/obj-1k.bin" "static ceiling"
# the varnishd worker child (the manager restarts it if it dies alone)
for p in $(ps -o pid= --ppid "$VARNISH_PID" 2>/dev/null); do EXTRA_PIDS+=("$p"); done
VARNISH_VER="$( ("$VARNISHD" -V 2>&1 || true) | head -n1 | sed 's/^varnishd (//; s/ revision.*//')"
varnish_stat() { # counter -> value (empty if varnishstat fails)
    varnishstat -n "$TMP/varnish" -1 -f "$1" 2>/dev/null | awk -v c="$1" '$1 == c {print $2}'
}

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

ANOMALIES=()
check_errors() { # name size file
    local bad
    bad="$(grep -E 'Non-2xx or 3xx responses|Socket errors' "$3" || true)"
    if [ -n "$bad" ]; then
        ANOMALIES+=("$1 $2: $(echo "$bad" | tr -s ' \n' ' ')")
        log "ANOMALY $1 $2: $bad"
    fi
}
declare -A RPS P50 P99
run_wrk() { # name url size -> sets RPS[name] P50[name] P99[name]
    local name="$1" url="$2" out="$TMP/wrk-$1-$3.txt"
    log "wrk $name $url (${DURATION}s, $CONNECTIONS conns)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$out"
    RPS[$name]="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    P50[$name]="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
    P99[$name]="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    [ -n "${RPS[$name]}" ] || { cat "$out" >&2; die "could not parse wrk output for $name"; }
    check_errors "$name" "$3" "$out"
}

# oha at a fixed rate: latency measured from when each request was due (no
# coordinated omission).
declare -A F_P50 F_P99 F_P999
run_fixed() { # name url size rate -> appends to F_*[name]
    local name="$1" url="$2" out="$TMP/oha-$1-$3.json" parsed bad
    log "oha $name $url (${FIXED_DURATION}s, $CONNECTIONS conns, -q $4)"
    "$OHA" -z "${FIXED_DURATION}s" -w -c "$CONNECTIONS" -q "$4" --latency-correction \
        --no-tui --output-format json "$url" > "$out"
    parsed="$(python3 "$HERE/oha-summary.py" "$out")" \
        || { cat "$out" >&2; die "could not parse oha output for $name"; }
    local rps p50 p99 p999
    read -r rps p50 p99 p999 bad <<< "$parsed"
    F_P50[$name]+=" $p50"
    F_P99[$name]+=" $p99"
    F_P999[$name]+=" $p999"
    if [ -n "$bad" ]; then
        ANOMALIES+=("oha $name $3: $bad")
    fi
    if awk -v got="$rps" -v want="$4" 'BEGIN { exit !(got < 0.95 * want) }'; then
        ANOMALIES+=("oha $name $3: asked for $4 req/s, got $rps")
    fi
}
lowest() { # numbers as words -> the smallest
    printf '%s\n' $1 | sort -g | head -n1
}
median() { # numbers as words -> their median
    printf '%s\n' $1 | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
FIXED_ALL=()

origin_count() { # tag -> origin access-log lines from that proxy so far
    awk -v t="$1" '$1 == t {n++} END {printf "%d", n}' "$TMP/origin-access.log"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# ---------------------------------------------------------------- run
SERVERS=(nginx varnish revcache static same)
declare -A URLBASE=(
    [nginx]="http://127.0.0.1:$NGINX_PORT"
    [varnish]="http://127.0.0.1:$VARNISH_PORT"
    [revcache]="http://127.0.0.1:$REV_PORT"
    [static]="http://127.0.0.1:$STATIC_PORT"
    [same]="http://127.0.0.1:$SAME_PORT"
)
# tag each proxy's requests carry in the origin's access log
declare -A ORIGIN_TAG=([nginx]=nginx [varnish]=varnish [revcache]=-)

# warm NAME PATH SIZE SHA HEADER HIT-REGEX: three requests, each 200 with the
# exact body, the 2nd and 3rd must be hits
warm() {
    local name="$1" path="$2" want="$3" want_sha="$4" hdr="$5" hit_re="$6" n code size sha val
    for n in 1 2 3; do
        read -r code size sha < <(fetch "${URLBASE[$name]}$path")
        val="$(header "$hdr")"
        [ "$code" = 200 ] && [ "$size" = "$want" ] && [ "$sha" = "$want_sha" ] \
            || die "$name $path request $n: status $code, $size bytes (want 200, $want, matching body); $hdr: $val"
        if [ "$n" -ge 2 ]; then
            grep -Eiq "$hit_re" <<< "$val" \
                || die "$name $path request $n was not a hit; $hdr: $val"
        fi
        log "$name $path #$n: $hdr: $val"
    done
}

ROWS=()
FIXED_ROWS=()
BENCH_UPSTREAM_CLEAN=1
i=0
for s in "${SIZES[@]}"; do
    path="/obj-$s.bin"
    want="${BYTES[$s]}"
    want_sha="$(sha256sum < "$TMP/www/obj-$s.bin" | cut -d' ' -f1)"

    warm revcache "$path" "$want" "$want_sha" Cache-Status '(^|;)[[:space:]]*hit[[:space:]]*(;|$)'
    warm nginx    "$path" "$want" "$want_sha" X-Cache-Status '^HIT$'
    warm varnish  "$path" "$want" "$want_sha" X-Cache '^HIT$'
    if [ "$i" = 0 ]; then
        # The ceiling again, sending the head of a revcache hit (hyper adds
        # Date and Content-Length to both): revcache against it is the cost
        # of the cache's own work, without the origin's extra headers.
        curl -fsS -o /dev/null -D - -H "X-Bench-Proxy: harness" "${URLBASE[revcache]}$path" | tr -d '\r' \
            | awk -F': ' 'NR > 1 && NF > 1 && tolower($1) != "date" && tolower($1) != "content-length"' \
            > "$TMP/hit-headers"
        "$STATIC_BIN" --headers "$TMP/hit-headers" "127.0.0.1:$SAME_PORT" "$TMP"/www/obj-*.bin 2> "$TMP/same.log" &
        PIDS+=($!)
        wait_up "http://127.0.0.1:$SAME_PORT/obj-1k.bin" "static ceiling with revcache's head"
    fi
    # the static servers have nothing to warm; check the body once
    for who in static same; do
        read -r code size sha < <(fetch "${URLBASE[$who]}$path")
        [ "$code" = 200 ] && [ "$size" = "$want" ] && [ "$sha" = "$want_sha" ] \
            || die "$who $path: status $code, $size bytes (want 200, $want, matching body)"
    done

    # from here on no proxy may go upstream for this object
    declare -A before=()
    for who in nginx varnish revcache; do before[$who]="$(origin_count "${ORIGIN_TAG[$who]}")"; done

    # rotate which server goes first
    order=()
    for k in 0 1 2 3 4; do order+=("${SERVERS[$(( (i + k) % 5 ))]}"); done
    for who in "${order[@]}"; do
        run_wrk "$who" "${URLBASE[$who]}$path" "$s"
    done
    # the fixed-rate step compares the four servers of the latency target
    fixed_order=()
    for who in "${order[@]}"; do [ "$who" = same ] || fixed_order+=("$who"); done

    if [ -n "$OHA" ]; then
        rate="$(awk -v f="$FIXED_FRACTION" -v m="${RPS[nginx]}" 'BEGIN { r = int(m * f); print (r < 1 ? 1 : r) }')"
        F_P50=() F_P99=() F_P999=()
        for _ in $(seq "$FIXED_ROUNDS"); do
            for who in "${fixed_order[@]}"; do
                run_fixed "$who" "${URLBASE[$who]}$path" "$s" "$rate"
            done
        done
        declare -A C_P50=() C_P99=() C_P999=() C_BEST99=()
        for who in "${fixed_order[@]}"; do
            C_BEST99[$who]="$(lowest "${F_P99[$who]}")"
            C_P50[$who]="$(median "${F_P50[$who]}")"
            C_P99[$who]="$(median "${F_P99[$who]}")"
            C_P999[$who]="$(median "${F_P999[$who]}")"
            FIXED_ALL+=("${LABEL[$s]} $who p99 per round (ms):${F_P99[$who]}")
        done
        FIXED_ROWS+=("$(printf '| %s | %s | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %s | %.2f / %.2f | %s |' \
            "${LABEL[$s]}" "$rate" \
            "${C_P50[nginx]}" "${C_P99[nginx]}" "${C_P999[nginx]}" \
            "${C_P50[varnish]}" "${C_P99[varnish]}" "${C_P999[varnish]}" \
            "${C_P50[revcache]}" "${C_P99[revcache]}" "${C_P999[revcache]}" \
            "${C_P50[static]}" "${C_P99[static]}" "${C_P999[static]}" \
            "$(ratio "${C_P99[revcache]}" "${C_P99[nginx]}")" \
            "${C_BEST99[nginx]}" "${C_BEST99[revcache]}" \
            "$(ratio "${C_BEST99[revcache]}" "${C_BEST99[nginx]}")")")
    fi

    for who in nginx varnish revcache; do
        after="$(origin_count "${ORIGIN_TAG[$who]}")"
        if [ "$after" != "${before[$who]}" ]; then
            BENCH_UPSTREAM_CLEAN=0
            ANOMALIES+=("$who $s: $((after - before[$who])) request(s) reached the origin during the benchmark (cache misses)")
        fi
    done

    ROWS+=("$(printf '| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %.0f | %s | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f |' \
        "${LABEL[$s]}" "${RPS[nginx]}" "${RPS[varnish]}" "${RPS[revcache]}" "${RPS[static]}" \
        "$(ratio "${RPS[revcache]}" "${RPS[nginx]}")" \
        "$(ratio "${RPS[revcache]}" "${RPS[varnish]}")" \
        "$(ratio "${RPS[revcache]}" "${RPS[static]}")" \
        "${RPS[same]}" "$(ratio "${RPS[revcache]}" "${RPS[same]}")" \
        "${P50[nginx]}" "${P99[nginx]}" "${P50[varnish]}" "${P99[varnish]}" \
        "${P50[revcache]}" "${P99[revcache]}" "${P50[static]}" "${P99[static]}")")
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
ORIGIN_FROM_VARNISH="$(grep -c '^varnish ' "$TMP/origin-access.log" || true)"
VARNISH_BACKEND_REQ="$(varnish_stat MAIN.backend_req)"
VARNISH_HITS="$(varnish_stat MAIN.cache_hit)"
VARNISH_MISSES="$(varnish_stat MAIN.cache_miss)"
VARNISH_NOTE="varnishstat: MAIN.backend_req ${VARNISH_BACKEND_REQ:-?}, MAIN.cache_hit ${VARNISH_HITS:-?}, MAIN.cache_miss ${VARNISH_MISSES:-?}"
ORIGIN_TOTAL="$(wc -l < "$TMP/origin-access.log")"
NOBJ="${#SIZES[@]}"
if [ "$BENCH_UPSTREAM_CLEAN" = 1 ]; then
    BENCH_UPSTREAM_NOTE="No proxy sent a request to the origin during any wrk run (origin access log counted per proxy before and after each size's runs)."
else
    BENCH_UPSTREAM_NOTE="SOME PROXY REACHED THE ORIGIN DURING A WRK RUN: see the anomalies."
fi
UPSTREAM_NOTE="revcache sent $REV_UPSTREAM request(s) upstream for $NOBJ objects"
if [ "$REV_UPSTREAM" -gt "$NOBJ" ]; then
    UPSTREAM_NOTE="$UPSTREAM_NOTE -- MORE THAN ONE PER OBJECT: some benchmark hits went upstream"
    ANOMALIES+=("$UPSTREAM_NOTE")
fi

# ---------------------------------------------------------------- report
TABLE="| object | nginx req/s | varnish req/s | revcache req/s | static ceiling req/s | revcache/nginx | revcache/varnish | revcache/ceiling | ceiling with revcache's head req/s | revcache/that ceiling | nginx p50/p99 ms | varnish p50/p99 ms | revcache p50/p99 ms | ceiling p50/p99 ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$(printf '%s\n' "${ROWS[@]}")"
if [ -n "$OHA" ]; then
    FIXED_TABLE="Fixed-rate latency (oha $("$OHA" --version | awk '{print $2}'), -c$CONNECTIONS -z${FIXED_DURATION}s -q rate --latency-correction, rate = $FIXED_FRACTION x nginx's wrk req/s for that size; latency from when each request was due; medians of $FIXED_ROUNDS interleaved rounds; the last two columns take each server's best round, the one least disturbed by the machine's other work):

| object | rate req/s | nginx p50/p99/p99.9 ms | varnish p50/p99/p99.9 ms | revcache p50/p99/p99.9 ms | ceiling p50/p99/p99.9 ms | revcache p99 / nginx p99 | best-round p99 nginx / revcache ms | best-round revcache / nginx |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
$(printf '%s\n' "${FIXED_ROWS[@]}")"
else
    FIXED_TABLE="Fixed-rate latency: skipped (FIXED_RATE=0)."
fi

COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=""
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then DIRTY=" (uncommitted changes)"; fi
NGINX_VER="$( ("$NGINX" -v 2>&1 || true) | sed 's/^nginx version: //')"
BIN_BUILT="built $(date -u -r "$BIN" "+%Y-%m-%d %H:%M:%S UTC")"
HEAD_TIME="$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)"
if [ "$(date -r "$BIN" +%s)" -lt "$HEAD_TIME" ]; then
    BIN_BUILT="$BIN_BUILT -- OLDER THAN THE HEAD COMMIT ($(date -u -d "@$HEAD_TIME" "+%Y-%m-%d %H:%M:%S UTC")), may not contain its changes"
fi
STATIC_BUILT="built $(date -u -r "$STATIC_BIN" "+%Y-%m-%d %H:%M:%S UTC")"
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
    echo "- varnish: $VARNISH_VER, -s malloc,1G, thread_pools $CORES, builtin VCL + X-Cache header"
    echo "- revcache: --memory-limit 1GiB, binary $BIN_BUILT"
    echo "- static ceiling: revcache-bench-static, binary $STATIC_BUILT"
    echo
    echo "$TABLE"
    echo
    echo "Upstream: $UPSTREAM_NOTE."
    echo "Origin access log: $ORIGIN_TOTAL request(s): $ORIGIN_FROM_NGINX from nginx and $ORIGIN_FROM_VARNISH from varnish (one each is the readiness probe), $ORIGIN_FROM_REV from revcache, the rest from the harness's direct probe."
    echo "Varnish $VARNISH_NOTE."
    echo "$BENCH_UPSTREAM_NOTE"
    echo
    echo "$FIXED_TABLE"
    if [ "${#FIXED_ALL[@]}" -gt 0 ]; then
        echo
        printf -- '- %s\n' "${FIXED_ALL[@]}"
    fi
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
echo "varnish $VARNISH_NOTE"
echo "$BENCH_UPSTREAM_NOTE"
echo "origin access log: $ORIGIN_TOTAL request(s): $ORIGIN_FROM_NGINX from nginx, $ORIGIN_FROM_VARNISH from varnish, $ORIGIN_FROM_REV from revcache"
echo
echo "$FIXED_TABLE"
if [ "${#ANOMALIES[@]}" -gt 0 ]; then
    echo "ANOMALIES:"
    printf -- '- %s\n' "${ANOMALIES[@]}"
fi
if [ -s "$TMP/revcache.log" ]; then
    echo "revcache stderr (warnings):"
    tail -n 20 "$TMP/revcache.log"
fi
echo "written to ${OUT_MD#"$REPO"/}"
