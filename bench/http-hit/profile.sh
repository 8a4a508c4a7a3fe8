#!/usr/bin/env bash
# Instructions per cache hit, revcache against the static ceiling, under
# callgrind: instruction counts repeat from run to run on a shared machine,
# where throughput does not.
#
#   bench/http-hit/profile.sh                 # 1 KiB object, 20,000 hits each
#   REQUESTS=50000 SIZE=16384 bench/http-hit/profile.sh
#   KEEP_TMP=1 bench/http-hit/profile.sh      # keep the callgrind.out files
#
# Each server runs under valgrind: revcache, the static ceiling, and the
# ceiling again sending the same response head as a revcache hit (so the
# difference between those two is the cache's own work, not the origin's
# headers). After a warm-up (the miss, the first hits) the counters are zeroed, a keep-alive client sends REQUESTS GETs,
# and the counters are dumped. Prints instructions per request for both and
# the functions that cost revcache the most (inclusive).
set -euo pipefail

REQUESTS="${REQUESTS:-20000}"
SIZE="${SIZE:-1024}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

ensure_tools valgrind python3 curl nginx
(cd "$REPO" && cargo build --release -q -p revcache -p revcache-bench-static)

with_temp_dir profile

read -r ORIGIN_PORT REV_PORT ADMIN_PORT STATIC_PORT SAME_PORT < <(free_ports 5)
mkdir -p "$TMP/www"
head -c "$SIZE" /dev/urandom > "$TMP/www/obj.bin"
chmod -R a+rX "$TMP/www"
cat > "$TMP/origin.conf" <<CONF
$(nginx_preamble "$TMP" origin)
worker_processes 1;
events { worker_connections 256; }
http {
    access_log off;
$(nginx_temp_paths "$TMP" origin)
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $TMP/www;
        add_header Cache-Control "public, max-age=3600";
    }
}
CONF
nginx -p "$TMP" -e "$TMP/origin-error.log" -c "$TMP/origin.conf" &
PIDS+=($!)

declare -A CG_PID
cg() { # name command... : runs the command under callgrind
    valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.$1" \
        "${@:2}" > "$TMP/$1.log" 2>&1 &
    PIDS+=($!)
    CG_PID[$1]=$!
}
cg revcache "$REPO/target/release/revcache" serve \
    --upstream "http://127.0.0.1:$ORIGIN_PORT" --listen "127.0.0.1:$REV_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --data-dir "$TMP/data" --log-level warn
cg static "$REPO/target/release/revcache-bench-static" "127.0.0.1:$STATIC_PORT" "$TMP/www/obj.bin"

wait_up() { # url
    for _ in $(seq 600); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$TMP"/*.log >&2
    die "nothing answers at $1"
}

# hits NAME URL N: N GETs on one keep-alive connection, each a 200
hits() {
    python3 - "$2" "$3" <<'PY'
import http.client, sys, urllib.parse
url, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection(url.hostname, url.port)
for _ in range(n):
    c.request("GET", url.path)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{sys.argv[1]}: status {r.status}")
PY
}

declare -A IR
for name in revcache static same; do
    case "$name" in
        revcache) url="http://127.0.0.1:$REV_PORT/obj.bin" ;;
        static) url="http://127.0.0.1:$STATIC_PORT/obj.bin" ;;
        same)
            url="http://127.0.0.1:$SAME_PORT/obj.bin"
            # The ceiling again, sending the head of a revcache hit (hyper
            # adds Date and Content-Length to both).
            curl -fsS -o /dev/null -D - "http://127.0.0.1:$REV_PORT/obj.bin" | tr -d '\r' \
                | awk -F': ' 'NR > 1 && NF > 1 && tolower($1) != "date" && tolower($1) != "content-length"' \
                > "$TMP/hit-headers"
            cg same "$REPO/target/release/revcache-bench-static" --headers "$TMP/hit-headers" \
                "127.0.0.1:$SAME_PORT" "$TMP/www/obj.bin"
            ;;
    esac
    wait_up "$url"
    hits "$name" "$url" 200
    if [ "$name" = revcache ]; then
        status="$(curl -fsS -o /dev/null -D - "$url" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" {print $2}')"
        [ "$status" = "revcache; hit" ] || die "revcache does not answer from its cache: $status"
    fi
    pid="${CG_PID[$name]}"
    callgrind_control -z "$pid" > /dev/null
    hits "$name" "$url" "$REQUESTS"
    callgrind_control -d "$pid" > /dev/null
    out="$(ls -t "$TMP/callgrind.$name".* | head -n1)"
    IR[$name]="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
    [ -n "${IR[$name]}" ] || die "no callgrind totals for $name"
    cp "$out" "$TMP/$name.out"
done

per() { awk -v a="$1" -v n="$REQUESTS" 'BEGIN { printf "%.0f", a / n }'; }
echo
echo "| server | instructions per request ($REQUESTS GETs of $SIZE bytes, one connection) |"
echo "|---|---:|"
echo "| revcache (hit) | $(per "${IR[revcache]}") |"
echo "| static ceiling | $(per "${IR[static]}") |"
echo "| static ceiling sending a revcache hit's head ($(wc -l < "$TMP/hit-headers") headers besides Date and Content-Length) | $(per "${IR[same]}") |"
echo
echo "revcache/ceiling instructions: $(awk -v a="${IR[revcache]}" -v b="${IR[static]}" 'BEGIN { printf "%.2f", a / b }')"
echo "revcache/ceiling with the same head: $(awk -v a="${IR[revcache]}" -v b="${IR[same]}" 'BEGIN { printf "%.2f", a / b }')"
echo
echo "a revcache hit's head:"
sed 's/^/    /' "$TMP/hit-headers"
echo
echo "revcache, inclusive, top functions:"
callgrind_annotate --inclusive=yes "$TMP/revcache.out" 2>/dev/null \
    | grep -E 'revcache|hyper|tokio|http::|bytes::|quick_cache|memcpy|malloc|free' \
    | awk 'NR <= 40'
