#!/usr/bin/env bash
# Event ingestion: how many Gerrit events per second revcache applies
# durably (each event's invalidations committed to the disk tier before the
# POST is answered), posted one per request and as NDJSON batches, against a
# named peer measured in the same run: one fsync'd append per event on the
# same filesystem (the floor of any design that commits each event alone).
#
#   bench/event-ingest/run.sh
#   EVENTS=5000 BATCH=500 bench/event-ingest/run.sh
#   SKIP_BUILD=1 KEEP_TMP=1 bench/event-ingest/run.sh
#
# The disk tier holds ENTRIES entries tagged like Gerrit changes first, so
# invalidations find rows to remove. Prints a markdown table and writes it
# to bench/event-ingest/last-run.md.
set -euo pipefail

EVENTS="${EVENTS:-3000}"
BATCH="${BATCH:-500}"
SKIP_BUILD="${SKIP_BUILD:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="$REPO/target/release/revcache"
# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

ensure_tools curl python3
if [ "$SKIP_BUILD" != 1 ]; then
    log "building revcache (release)"
    (cd "$REPO" && cargo build --release -q -p revcache)
fi
with_temp_dir bench-events
read -r PORT ADMIN_PORT ORIGIN_PORT < <(free_ports 3)

# An origin answering every change with a distinct body, so the disk tier
# fills with entries tagged change:N.
cat > "$TMP/origin.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (")]}'\n{\"_number\": %s, \"project\": \"p\"}" % self.path.rsplit("/", 1)[-1]).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$TMP/origin.py" "$ORIGIN_PORT" &
PIDS+=($!)
cat > "$TMP/revcache.toml" <<CONF
listen = "127.0.0.1:$PORT"
data_dir = "$TMP/data"
log_level = "warn"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[routes]]
name = "gerrit"
dialect = "gerrit"
upstream = "http://127.0.0.1:$ORIGIN_PORT"
[routes.events]
trust = "1h"
CONF
"$BIN" serve --config "$TMP/revcache.toml" 2> "$TMP/revcache.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break; sleep 0.1; done

cat > "$TMP/drive.py" <<'PY'
import http.client, json, os, sys, time
port, admin, events, batch, tmp = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
def event(n):
    return json.dumps({"type": "comment-added", "change": {"project": "p", "number": n}})
c = http.client.HTTPConnection("127.0.0.1", port)
a = http.client.HTTPConnection("127.0.0.1", admin)
def fill():
    """One cached change per event (stored on disk, tagged change:N)."""
    for n in range(1, events + 1):
        c.request("GET", "/a/changes/%d" % n, headers={"authorization": "Basic YTpi"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    # Let the disk writer commit the fills before the clock starts (a new
    # admin connection: the idle one may have timed out meanwhile).
    global a
    a = http.client.HTTPConnection("127.0.0.1", admin)
    a.request("POST", "/sweep"); a.getresponse().read()
def post(body, ctype):
    a.request("POST", "/events/gerrit", body=body, headers={"content-type": ctype})
    r = a.getresponse(); out = r.read()
    assert r.status == 200, (r.status, out)
    return json.loads(out)["accepted"]
# Single: one event per POST, one after the other.
fill()
t = time.perf_counter()
for n in range(1, events + 1):
    post(event(n), "application/json")
single = events / (time.perf_counter() - t)
# Batched: NDJSON bodies of `batch` events.
fill()
t = time.perf_counter()
done = 0
for start in range(1, events + 1, batch):
    lines = "\n".join(event(n) for n in range(start, min(start + batch, events + 1)))
    done += post(lines, "application/x-ndjson")
assert done == events
batched = events / (time.perf_counter() - t)
# Peer: one fsync'd append per event, in the data dir's filesystem.
path = os.path.join(tmp, "fsync-peer.log")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
t = time.perf_counter()
for n in range(1, events + 1):
    os.write(fd, (event(n) + "\n").encode())
    os.fsync(fd)
peer = events / (time.perf_counter() - t)
os.close(fd)
print("%.0f %.0f %.0f" % (single, batched, peer))
PY
log "filling $EVENTS entries, then posting $EVENTS events singly and in batches of $BATCH"
read -r SINGLE BATCHED PEER < <(python3 "$TMP/drive.py" "$PORT" "$ADMIN_PORT" "$EVENTS" "$BATCH" "$TMP")
METRICS="$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics")"
INVALIDATED="$(awk '/^revcache_invalidated_entries_total\{source="event"\}/ {print $NF}' <<< "$METRICS")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
    echo "# event-ingest: last run"
    echo
    echo "- date: $(date -u), nproc $(nproc), commit $COMMIT"
    echo "- $EVENTS Gerrit comment-added events for $EVENTS cached changes; batches of $BATCH; entries invalidated by events: ${INVALIDATED:-?}"
    echo
    echo "| posting | events/s | / one fsync per event (peer, $PEER/s) |"
    echo "|---|---:|---:|"
    echo "| one event per POST | $SINGLE | $(ratio "$SINGLE" "$PEER") |"
    echo "| NDJSON, $BATCH per POST | $BATCHED | $(ratio "$BATCHED" "$PEER") |"
} > "$HERE/last-run.md"
cat "$HERE/last-run.md"
