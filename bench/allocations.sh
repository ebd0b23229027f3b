#!/usr/bin/env bash
# `make bench-allocations`: heap allocations and frees per push and per pop
# of a 100-byte element, counted exactly with uprobes on jemalloc's entry
# points (`perf probe`). Like the instruction count, and unlike req/s on
# this shared machine, the count repeats from run to run, so it shows a
# single allocation taken out of (or added to) the hot path.
#
# The probes are placed on the binary before the server starts; wrk fills
# a queue for three seconds, then pushes (and then pops) over
# ALLOC_CONNECTIONS connections for one second each while `perf stat`
# counts every probe hit in the server. A probe costs a few microseconds,
# so the server answers ~8k req/s. Counts are divided by wrk's request
# count; the allocations of wrk's connections themselves show as the .01
# after each figure.
#
# Needs root (uprobes) and perf (`apt-get install -y linux-perf`).
#
# Settings (environment):
#   ALLOC_CONNECTIONS  wrk connections (4)
#   ALLOC_SIZE         body size in bytes (100)
#   ALLOC_POP_QUERY    query of the pops ("": none; "?timeout=5" for a
#                      blocking consumer's pop that finds an element)
#   BLOBQ              the server binary (target/release/blobq, built first)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${ALLOC_CONNECTIONS:-4}
SIZE=${ALLOC_SIZE:-100}
QUERY=${ALLOC_POP_QUERY:-}
PORT=18082

. bench/lib.sh
need perf "apt-get install -y linux-perf"
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
if [[ -z ${BLOBQ:-} ]]; then
    cargo build -q --release --bin blobq
    BLOBQ=target/release/blobq
fi
BLOBQ=$(realpath "$BLOBQ")

start_workdir blobq-allocations
ports_free $PORT
# Probes of our own group, removed however the script ends.
GROUP=blobq_alloc
trap 'perf probe -q -d "$GROUP:*" 2>/dev/null || true; cleanup' EXIT
perf probe -q -d "$GROUP:*" 2>/dev/null || true
for probe in malloc=_rjem_malloc free=_rjem_sdallocx; do
    perf probe -q -x "$BLOBQ" --add "$GROUP:$probe" 2>"$WORK/probe.log" || {
        cat "$WORK/probe.log" >&2
        echo "bench: perf probe failed (uprobes need root and a kernel with CONFIG_UPROBE_EVENTS)" >&2
        exit 1
    }
done

"$BLOBQ" serve --listen "127.0.0.1:$PORT" --spill-dir "$WORK" --memory-limit 0 --log warn &
SERVER=$!
PIDS+=("$SERVER")
wait_port $PORT
URL=http://127.0.0.1:$PORT/qs/alloc/q

# run METHOD SIZE URL: wrk for a second, every probe hit counted around it.
# Sets REQUESTS, MALLOCS and FREES.
run() {
    local stat=$WORK/stat.txt out requests counts
    perf stat -x, -e "$GROUP:malloc,$GROUP:free" -p "$SERVER" -o "$stat" &
    local perf_pid=$!
    sleep 0.3
    out=$(BENCH_METHOD=$1 BENCH_SIZE=$2 wrk -t1 -c"$CONNS" -d1s -s bench/wrk.lua "$3")
    sleep 0.3
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    requests=$(jf requests "$(grep '^BENCH ' <<<"$out" | cut -c7-)")
    if [[ -z $requests || $requests -eq 0 ]]; then
        echo "bench: wrk made no requests: $out" >&2
        exit 1
    fi
    counts=$(awk -F, -v g="$GROUP" '$3 == g ":malloc" {m = $1} $3 == g ":free" {f = $1}
        END {if (m ~ /^[0-9]+$/ && f ~ /^[0-9]+$/) print m, f}' "$stat" 2>/dev/null || true)
    if [[ -z $counts ]]; then
        echo "bench: perf stat counted nothing:" >&2
        cat "$stat" >&2 2>/dev/null || true
        exit 1
    fi
    REQUESTS=$requests
    read -r MALLOCS FREES <<<"$counts"
}

per() { awk -v n="$1" -v c="$2" 'BEGIN{printf "%.2f", c / n}'; }

# Prefill enough for the pops (wrk at ~8k req/s for one second), which
# also warms the server up; then count the pushes, then the pops.
BENCH_METHOD=POST BENCH_SIZE=$SIZE wrk -t1 -c"$CONNS" -d3s -s bench/wrk.lua "$URL" >/dev/null
run POST "$SIZE" "$URL"
pushes=$REQUESTS push_mallocs=$MALLOCS push_frees=$FREES
run GET 0 "$URL$QUERY"
pops=$REQUESTS pop_mallocs=$MALLOCS pop_frees=$FREES
# Every pop counted must have found an element: one more must still find one.
if [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL") != 200 ]]; then
    echo "bench: the queue ran empty during the pops; the pop count is not of data pops" >&2
    exit 1
fi
echo "$BLOBQ ($(git describe --always --dirty 2>/dev/null || echo '?') here), $SIZE B, wrk -c$CONNS:"
echo "  push: $(per "$pushes" "$push_mallocs") allocations, $(per "$pushes" "$push_frees") frees per request ($pushes pushes)"
echo "  pop$QUERY: $(per "$pops" "$pop_mallocs") allocations, $(per "$pops" "$pop_frees") frees per request ($pops pops)"
