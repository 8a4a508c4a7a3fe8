#!/usr/bin/env bash
# The https columns of http-hit: revcache and nginx side by side, with the
# same certificate (ECDSA P-256, made here with openssl) and the same TLS 1.3
# cipher suite, in two setups:
#
#  hits:  wrk over HTTPS (keep-alive) to revcache's TLS listener and to an
#         nginx `listen ssl` with proxy_cache, for cached 1 KiB and 16 KiB
#         objects: the cost of terminating TLS on the hit path.
#  miss:  wrk over plain HTTP to both, for an uncacheable object
#         (Cache-Control: no-store) whose origin is HTTPS only: revcache's
#         https:// route (tls.ca_file, pooled connections) against nginx
#         `proxy_pass https://` (proxy_ssl_verify on, keepalive,
#         session reuse): the cost of TLS to the upstream per request.
#
# The origin is nginx serving files over TLS (HTTP/1.1 only, so both proxies
# speak the same protocol to it). Runs interleave (nginx first, then
# revcache, then the other way round); the table has each one's best run.
#
#   bench/http-hit/https.sh
#   DURATION=20 ROUNDS=3 bench/http-hit/https.sh
#   KEEP_TMP=1 SKIP_BUILD=1 bench/http-hit/https.sh
#
# Prints a markdown table and writes it to bench/http-hit/last-run-https.md.
set -euo pipefail

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-2}"
SKIP_BUILD="${SKIP_BUILD:-0}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
OUT_MD="$HERE/last-run-https.md"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

ensure_tools nginx wrk curl openssl python3
NGINX="$(command -v nginx)"
if [ "$SKIP_BUILD" = 1 ]; then
    [ -x "$BIN" ] || die "SKIP_BUILD=1 but $BIN is missing"
else
    log "building revcache (release)"
    (cd "$REPO" && cargo build --release -q -p revcache)
fi
with_temp_dir bench-https

read -r ORIGIN_PORT NGINX_TLS_PORT NGINX_PORT REV_TLS_PORT REV_PORT ADMIN_PORT < <(free_ports 6)

# ---------------------------------------------------------------- certificates
# A CA and one leaf for localhost, used by the origin and by both proxies.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$TMP/leaf.key" -out "$TMP/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$TMP/san.ext"
openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
    -days 2 -extfile "$TMP/san.ext" -out "$TMP/leaf.pem" 2>/dev/null
# revcache reads PKCS#8 or SEC1 keys; give it PKCS#8 like nginx's.
openssl pkcs8 -topk8 -nocrypt -in "$TMP/leaf.key" -out "$TMP/leaf.p8" 2>/dev/null
chmod 644 "$TMP"/*.pem "$TMP"/*.p8 "$TMP"/*.key

SIZES=(1k 16k)
declare -A BYTES=([1k]=1024 [16k]=16384)
mkdir -p "$TMP/www/nostore"
for s in "${SIZES[@]}"; do head -c "${BYTES[$s]}" /dev/urandom > "$TMP/www/obj-$s.bin"; done
head -c 1024 /dev/urandom > "$TMP/www/nostore/obj-1k.bin"
chmod -R a+rX "$TMP/www"

# ---------------------------------------------------------------- revcache (started first: its cipher suite decides nginx's)
mkdir -p "$TMP/revcache-data"
cat > "$TMP/revcache.toml" <<CONF
listen = "127.0.0.1:$REV_PORT"
data_dir = "$TMP/revcache-data"
log_level = "warn"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[cache]
memory_limit = "1GiB"
[tls]
listen = "127.0.0.1:$REV_TLS_PORT"
cert_file = "$TMP/leaf.pem"
key_file = "$TMP/leaf.p8"
[[routes]]
name = "origin"
upstream = "https://localhost:$ORIGIN_PORT"
[routes.tls]
ca_file = "$TMP/ca.pem"
CONF
"$BIN" check --config "$TMP/revcache.toml" >/dev/null
"$BIN" serve --config "$TMP/revcache.toml" 2> "$TMP/revcache.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break; sleep 0.1; done
SUITE="$(openssl s_client -connect "127.0.0.1:$REV_TLS_PORT" -servername localhost -tls1_3 </dev/null 2>/dev/null \
    | awk '/^New, TLSv1.3, Cipher is/ {print $NF}')"
[ -n "$SUITE" ] || die "cannot read the cipher suite of revcache's TLS listener"
log "revcache negotiates $SUITE; nginx is pinned to it"

# ---------------------------------------------------------------- nginx: origin and proxy
TLS_CONF="ssl_certificate $TMP/leaf.pem;
        ssl_certificate_key $TMP/leaf.key;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites $SUITE;
        ssl_session_cache shared:SSL:10m;"
CORES="$(nproc)"
cat > "$TMP/origin.conf" <<CONF
$(nginx_preamble "$TMP" origin)
worker_processes 1;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    access_log off;
    keepalive_requests 100000;
$(nginx_temp_paths "$TMP" origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT ssl;
        $TLS_CONF
        root $TMP/www;
        location / { add_header Cache-Control "public, max-age=3600"; }
        location /nostore/ { add_header Cache-Control "no-store"; }
    }
}
CONF
cat > "$TMP/nginx.conf" <<CONF
$(nginx_preamble "$TMP" nginx)
worker_processes $CORES;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    access_log off;
    keepalive_requests 100000;
$(nginx_temp_paths "$TMP" nginx)
    proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=bench:16m max_size=2g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        $TLS_CONF
        location / {
            proxy_pass https://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $TMP/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.3;
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            add_header X-Cache-Status \$upstream_cache_status always;
        }
    }
}
CONF
for inst in origin nginx; do start_nginx "$inst"; done
CURL=(curl -fsS --cacert "$TMP/ca.pem" -o /dev/null)
for _ in $(seq 100); do "${CURL[@]}" "https://localhost:$NGINX_TLS_PORT/obj-1k.bin?probe" 2>/dev/null && break; sleep 0.1; done

# ---------------------------------------------------------------- checks
# Both sides of every pair speak the pinned suite and serve the right body;
# cached objects are hits, the no-store object a miss every time.
for port in "$REV_TLS_PORT" "$NGINX_TLS_PORT"; do
    got="$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -tls1_3 </dev/null 2>/dev/null \
        | awk '/^New, TLSv1.3, Cipher is/ {print $NF}')"
    [ "$got" = "$SUITE" ] || die "port $port negotiates ${got:-nothing}, not $SUITE"
done
check() { # url header regex
    local n h
    for n in 1 2 3; do
        h="$(curl -fsS --cacert "$TMP/ca.pem" -D - -o "$TMP/body" "$1" | tr -d '\r' | grep -i "^$2:" | tail -n1)"
        cmp -s "$TMP/body" "$TMP/www/${1#*[0-9]/}" || die "$1: wrong body"
        [ "$n" = 1 ] || grep -Eiq "$3" <<< "$h" || die "$1 request $n: $h"
    done
}
for s in "${SIZES[@]}"; do
    check "https://localhost:$REV_TLS_PORT/obj-$s.bin" cache-status '; hit'
    check "https://localhost:$NGINX_TLS_PORT/obj-$s.bin" x-cache-status 'HIT'
done
check "http://127.0.0.1:$REV_PORT/nostore/obj-1k.bin" cache-status 'fwd='
check "http://127.0.0.1:$NGINX_PORT/nostore/obj-1k.bin" x-cache-status 'MISS|BYPASS'

# ---------------------------------------------------------------- runs
declare -A BEST
ANOMALIES=()
run() { # key url
    local out="$TMP/wrk-$1.txt" rps bad
    log "wrk $1 $2"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$2" > "$out"
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    [ -n "$rps" ] || { cat "$out" >&2; die "cannot parse wrk output for $1"; }
    bad="$(grep -E 'Non-2xx or 3xx responses|Socket errors' "$out" || true)"
    [ -z "$bad" ] || ANOMALIES+=("$1: $(tr -s ' \n' ' ' <<< "$bad")")
    if awk -v a="$rps" -v b="${BEST[$1]:-0}" 'BEGIN { exit !(a > b) }'; then BEST[$1]="$rps"; fi
}
declare -A URL=(
    [nginx-hit-1k]="https://localhost:$NGINX_TLS_PORT/obj-1k.bin"
    [revcache-hit-1k]="https://localhost:$REV_TLS_PORT/obj-1k.bin"
    [nginx-hit-16k]="https://localhost:$NGINX_TLS_PORT/obj-16k.bin"
    [revcache-hit-16k]="https://localhost:$REV_TLS_PORT/obj-16k.bin"
    [nginx-miss]="http://127.0.0.1:$NGINX_PORT/nostore/obj-1k.bin"
    [revcache-miss]="http://127.0.0.1:$REV_PORT/nostore/obj-1k.bin"
)
for round in $(seq "$ROUNDS"); do
    for what in hit-1k hit-16k miss; do
        if [ $((round % 2)) = 1 ]; then order=(nginx revcache); else order=(revcache nginx); fi
        for who in "${order[@]}"; do run "$who-$what" "${URL[$who-$what]}"; done
    done
done
UPSTREAM_ERRORS="$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^revcache_upstream_errors_total/ {s += $NF} END {printf "%d", s}')"
[ "$UPSTREAM_ERRORS" = 0 ] || ANOMALIES+=("revcache counted $UPSTREAM_ERRORS upstream errors")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
row() { # label key
    printf '| %s | %.0f | %.0f | %s |\n' "$1" "${BEST[nginx-$2]}" "${BEST[revcache-$2]}" \
        "$(ratio "${BEST[revcache-$2]}" "${BEST[nginx-$2]}")"
}
TABLE="| what | nginx req/s | revcache req/s | revcache/nginx |
|---|---:|---:|---:|
$(row "hit over HTTPS, 1 KiB" hit-1k)
$(row "hit over HTTPS, 16 KiB" hit-16k)
$(row "uncacheable 1 KiB from an https:// upstream (client over HTTP)" miss)"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
    echo "# http-hit https: last run"
    echo
    echo "- date: $(date -u), nproc $CORES, commit $COMMIT"
    echo "- wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, best of $ROUNDS interleaved rounds"
    echo "- TLS 1.3, $SUITE, ECDSA P-256 certificate for both; nginx $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), worker_processes $CORES"
    echo
    echo "$TABLE"
    if [ "${#ANOMALIES[@]}" -gt 0 ]; then
        echo
        echo "Anomalies:"
        printf -- '- %s\n' "${ANOMALIES[@]}"
    fi
} > "$OUT_MD"
cat "$OUT_MD"
