# Helpers shared by the side-by-side benchmark scripts (sourced, not run).

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# install_packages PKG... : apt-get installs the packages, without letting
# them start system services (a temporary /usr/sbin/policy-rc.d).
install_packages() {
    [ "$#" -gt 0 ] || return 0
    log "installing $* via apt-get"
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# ensure_tools CMD[:PACKAGE]... : installs the package of every command that
# is missing (PACKAGE defaults to CMD), then puts the sbin dirs on PATH.
ensure_tools() {
    local spec cmd missing=()
    for spec in "$@"; do
        cmd="${spec%%:*}"
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${spec#*:}")
    done
    install_packages "${missing[@]}"
    export PATH="$PATH:/usr/sbin:/sbin"
}

# nginx_preamble DIR NAME : the main-context lines of an nginx instance
# NAME whose files live in DIR (pid, error log, no daemon; as root the workers
# stay root so they can read and write DIR).
nginx_preamble() {
    if [ "$(id -u)" = 0 ]; then echo "user root;"; fi
    cat <<CONF
daemon off;
pid $1/$2.pid;
error_log $1/$2-error.log warn;
CONF
}

# nginx_temp_paths DIR NAME : the http-context temp paths of instance NAME.
nginx_temp_paths() {
    local d="$1/$2-temp"
    mkdir -p "$d"
    cat <<CONF
    client_body_temp_path $d/client_body;
    proxy_temp_path       $d/proxy;
    fastcgi_temp_path     $d/fastcgi;
    uwsgi_temp_path       $d/uwsgi;
    scgi_temp_path        $d/scgi;
CONF
}

# start_nginx NAME : checks then starts the nginx instance whose config is
# $TMP/NAME.conf (logs in $TMP), in the background; its pid goes to PIDS.
start_nginx() {
    "$NGINX" -t -q -p "$TMP" -e "$TMP/$1-error.log" -c "$TMP/$1.conf" \
        || { cat "$TMP/$1-error.log" >&2 || true; die "nginx config $1.conf invalid"; }
    "$NGINX" -p "$TMP" -e "$TMP/$1-error.log" -c "$TMP/$1.conf" &
    PIDS+=($!)
}

# free_ports N : prints N free loopback ports.
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
' "$1"
}

# to_ms DURATION : a wrk duration (812.00us, 1.23ms, 2.01s, 1.00m) in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v; sub(/[a-z]+$/, "", n); u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") m = n / 1000; else if (u == "ms") m = n;
        else if (u == "s") m = n * 1000; else if (u == "m") m = n * 60000;
        else if (u == "h") m = n * 3600000; else { print "NaN"; exit }
        printf "%.3f", m }'
}

# with_temp_dir NAME : makes $TMP (/tmp/revcache-NAME.XXXXXX) and, on exit,
# stops every pid in $PIDS and removes $TMP (kept when KEEP_TMP=1).
with_temp_dir() {
    TMP="$(mktemp -d "/tmp/revcache-$1.XXXXXX")"
    chmod 755 "$TMP"
    PIDS=()
    trap _cleanup_temp_dir EXIT
    trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
    trap 'exit 130' INT TERM
}
_cleanup_temp_dir() {
    local rc=$?
    set +e
    stop_all "${PIDS[@]}"
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}

# stop_all PID... : SIGTERM, up to 5 s each, then SIGKILL.
stop_all() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "$@"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
}
