#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]
#
# Runs each fuzz target (default: all) for SECONDS of wall time, one
# libFuzzer process at a time under `nice -n 19` (idle CPU only), on a
# working corpus (fuzz/work/<target>, not committed) seeded from
# fuzz/corpus/<target>. Appends one line per target to fuzz/runs.log:
# date, commit, target, CPU seconds, executions, working corpus size and
# crash artifacts written (fuzz/artifacts/<target>/).
#
# fuzz/run.sh --merge TARGET adds to fuzz/corpus/<target> the entries of
# the working corpus that reach new coverage (libFuzzer -merge=1). Use it
# sparingly: keep each committed corpus under ~200 files.
#
# Build the targets first (sanitizer-free, with debug assertions):
#   cd fuzz && env -u CARGO_TARGET_DIR flock /tmp/revcache-cargo.lock cargo +nightly fuzz build -a -s none
set -euo pipefail
cd "$(dirname "$0")"
bins=target/x86_64-unknown-linux-gnu/release

usage() {
  echo "usage: fuzz/run.sh SECONDS [TARGET...] | fuzz/run.sh --merge TARGET" >&2
  exit 2
}
[ $# -ge 1 ] || usage

binary() {
  local bin="$bins/$1"
  if [ ! -x "$bin" ]; then
    echo "no $bin; build it: cd fuzz && env -u CARGO_TARGET_DIR flock /tmp/revcache-cargo.lock cargo +nightly fuzz build -a -s none" >&2
    exit 1
  fi
  echo "$bin"
}

if [ "$1" = "--merge" ]; then
  [ $# -eq 2 ] || usage
  target=$2
  bin=$(binary "$target")
  before=$(ls "corpus/$target" | wc -l)
  nice -n 19 "$bin" -merge=1 "corpus/$target" "work/$target" 2>"work/$target.merge.log"
  after=$(ls "corpus/$target" | wc -l)
  echo "$target: corpus $before -> $after files"
  [ "$after" -le 200 ] || echo "$target: over 200 files; keep the corpus small (git checkout it, merge less)" >&2
  exit 0
fi

seconds=$1
shift
case "$seconds" in '' | *[!0-9]*) usage ;; esac
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

for target in "${targets[@]}"; do
  bin=$(binary "$target")
  mkdir -p "work/$target" "artifacts/$target"
  cp -n "corpus/$target"/* "work/$target/" 2>/dev/null || true
  crashes_before=$(ls "artifacts/$target" | wc -l)
  log="work/$target.log"
  # `time` reports the CPU the fuzzer used (user + system).
  TIMEFORMAT='%U %S'
  set +e
  { time nice -n 19 "$bin" "work/$target" \
      -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="artifacts/$target/" \
      2>"$log"; } 2>"work/$target.time"
  status=$?
  set -e
  read -r user sys <"work/$target.time"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log" | tail -1)
  corpus=$(ls "work/$target" | wc -l)
  crashes=$(( $(ls "artifacts/$target" | wc -l) - crashes_before ))
  line="$(date -u +%Y-%m-%dT%H:%MZ) commit=$commit target=$target cpu_s=$cpu execs=${execs:-0} corpus=$corpus crashes=$crashes exit=$status"
  echo "$line" | tee -a runs.log
done
