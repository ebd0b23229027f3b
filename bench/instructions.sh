#!/usr/bin/env bash
# `make bench-instructions`: user-space instructions blobq spends per push and
# pop of a 100-byte element, counted by valgrind's callgrind. Unlike req/s on
# this shared machine (10-20 % run to run), the count repeats to within a
# fraction of a percent, so it shows small changes to the hot path.
#
# The server runs under callgrind twice, for N and for 2N pushes then as many
# pops, one connection at a time (`scale fill`); the difference between the
# two totals, divided by N, leaves out start-up and shutdown.
#
# With INSTR_CACHE=1 callgrind also simulates the caches and the script
# reports the instruction-cache misses per push and pop: how many cache lines
# of code a request pulls in, which on this machine costs as much as the
# instructions themselves (docs/PERFORMANCE.md). The count moves by a few
# percent between runs, with where the kernel places the code; run twice.
#
# Settings (environment):
#   INSTR_CACHE  1: also count simulated I1 misses (twice as slow)
#   INSTR_COUNT  N, the pushes (and pops) of the smaller run (5000)
#   INSTR_SIZE   body size in bytes (100)
#   BLOBQ        the server binary (target/release/blobq, built first)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${INSTR_COUNT:-5000}
SIZE=${INSTR_SIZE:-100}
PORT=18081
CACHE=()
[[ ${INSTR_CACHE:-0} == 1 ]] && CACHE=(--cache-sim=yes)

. bench/lib.sh
need valgrind "apt-get install -y valgrind"
need curl "apt-get install -y curl"
if [[ -z ${BLOBQ:-} ]]; then
    cargo build -q --release --bin blobq
    BLOBQ=target/release/blobq
fi
cargo bench -q --no-run --bench scale 2>/dev/null
SCALE() { cargo bench -q --bench scale -- "$@"; }

start_workdir blobq-instructions
ports_free $PORT

fill_failed() {
    cat "$WORK/fill.log" >&2
    exit 1
}

# count N: prints the instructions of a run with N pushes and N pops.
count() {
    local pid out=$WORK/callgrind.$1
    valgrind --tool=callgrind "${CACHE[@]}" --callgrind-out-file="$out" "$BLOBQ" serve \
        --listen "127.0.0.1:$PORT" --spill-dir "$WORK" --memory-limit 0 --log warn \
        2>>"$WORK/valgrind.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port $PORT
    SCALE fill "http://127.0.0.1:$PORT/qs/instr/q" --count "$1" --size "$SIZE" \
        >/dev/null 2>"$WORK/fill.log" || fill_failed
    SCALE fill "http://127.0.0.1:$PORT/qs/instr/q" --method GET --count "$1" --size 0 \
        --expect 200 >/dev/null 2>"$WORK/fill.log" || fill_failed
    kill -INT "$pid"
    wait "$pid" || true
    sed -n 's/^summary: //p' "$out"
}

# The summary line holds one total per event: Ir first, I1mr fourth when
# the caches are simulated.
read -ra small <<<"$(count "$N")"
read -ra large <<<"$(count $((2 * N)))"
if [[ ${#small[@]} -eq 0 || ${#large[@]} -eq 0 ]]; then
    echo "bench: callgrind wrote no summary (see $WORK/valgrind.log)" >&2
    exit 1
fi
misses=""
if [[ ${#CACHE[@]} -gt 0 ]]; then
    misses=", $(((large[3] - small[3]) / N)) instruction-cache misses"
fi
echo "$BLOBQ ($(git describe --always --dirty 2>/dev/null || echo '?') here):" \
    "$(((large[0] - small[0]) / N)) instructions${misses} per push and pop of $SIZE B" \
    "(callgrind, $N vs $((2 * N)) of each)"
