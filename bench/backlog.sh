#!/usr/bin/env bash
# A backlog past blobq's memory budget (issue 29): BENCH_BACKLOG_BYTES of
# BENCH_BACKLOG_SIZE-byte elements pushed, then all popped, over 64
# connections, by the scale harness (`scale backlog`, benches/scale/backlog.rs).
# Three targets, each on a fresh server, back to back: "blobq" with the
# default settings (1 GiB memory limit: the rest of the backlog goes to
# overflow segments), "blobq-unbounded" (--memory-limit 0: all in memory)
# and "webdis" (webdis in front of redis-server, all in redis's memory).
# Part of `make bench` (alone: `make bench-backlog`); prints the table, then
# each target judged on it (backlog_verdicts below). docs/PERFORMANCE.md has
# the method.
#
# Settings (environment):
#   BENCH_BACKLOG_BYTES  bytes queued before the pops (4 GiB)
#   BENCH_BACKLOG_SIZE   bytes per element (10240)
#   BENCH_BACKLOG_TARGETS  which targets ("blobq blobq-unbounded webdis")
#   BENCH_BACKLOG_ARGS   extra flags of target "blobq" ("": the defaults;
#                        e.g. "--memory-limit 4194304" for a tiny backlog
#                        that still overflows; the verdicts assume the
#                        defaults)
#   BENCH_BLOBQ          a blobq binary to use instead of building the
#                        release one (e.g. target/debug/blobq, to check
#                        this script with a tiny backlog)
#   BENCH_SCALE_BIN      the scale harness binary to use instead of
#                        `cargo bench --bench scale`
#   BENCH_OUT            where the table is also written (target/bench/backlog.md)
set -euo pipefail
cd "$(dirname "$0")/.."

BYTES=${BENCH_BACKLOG_BYTES:-$((4 << 30))}
SIZE=${BENCH_BACKLOG_SIZE:-10240}
TARGETS=${BENCH_BACKLOG_TARGETS:-blobq blobq-unbounded webdis}
BLOBQ_ARGS=${BENCH_BACKLOG_ARGS:-}
OUT=${BENCH_OUT:-target/bench/backlog.md}
REDIS_PORT=16392 WEBDIS_PORT=17380
# blobq's defaults the verdicts judge against.
MEMORY_LIMIT_MIB=1024 SEGMENT_MIB=64

. bench/lib.sh
if [[ " $TARGETS " == *" webdis "* ]]; then
    if ! command -v webdis >/dev/null || ! command -v redis-server >/dev/null; then
        echo "bench: webdis or redis-server missing (apt-get install -y webdis redis-server): no webdis rows" >&2
        TARGETS=${TARGETS//webdis/}
    fi
fi

blobq_and_scale
start_workdir blobq-backlog
ROWS=$WORK/rows.tsv
: >"$ROWS"
FAILED=0
fail() { echo "bench: FAIL: $*" >&2; FAILED=1; }

run_target() {
    local pid
    echo "bench: backlog: $1" >&2
    case $1 in
    blobq)
        SCALE backlog --blobq "$BLOBQ" --bytes "$BYTES" --size "$SIZE" --serve-args "$BLOBQ_ARGS" \
            >>"$ROWS" || fail "blobq backlog"
        ;;
    blobq-unbounded)
        SCALE backlog --blobq "$BLOBQ" --bytes "$BYTES" --size "$SIZE" --serve-args "--memory-limit 0" |
            relabel blobq-unbounded >>"$ROWS" || fail "blobq --memory-limit 0 backlog"
        ;;
    webdis)
        ports_free $REDIS_PORT $WEBDIS_PORT
        redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --logfile "$WORK/redis.log" &
        pid=$!
        PIDS+=("$pid")
        wait_port $REDIS_PORT
        cat >"$WORK/webdis.json" <<JSON
{"redis_host": "127.0.0.1", "redis_port": $REDIS_PORT, "http_host": "127.0.0.1",
 "http_port": $WEBDIS_PORT, "threads": 2, "pool_size": 20, "daemonize": false,
 "database": 0, "verbosity": 1, "logfile": "$WORK/webdis.log"}
JSON
        webdis "$WORK/webdis.json" 2>>"$WORK/webdis.err" &
        PIDS+=($!)
        wait_port $WEBDIS_PORT
        SCALE backlog --webdis "http://127.0.0.1:$WEBDIS_PORT" --bytes "$BYTES" --size "$SIZE" |
            relabel webdis >>"$ROWS" || fail "webdis backlog"
        stop "${PIDS[-1]}"
        stop "$pid"
        ;;
    *) fail "unknown backlog target $1" ;;
    esac
}

# backlog_verdicts ROWS: the targets of issue 29 for a backlog, judged on
# the rows of this run.
backlog_verdicts() {
    awk -F'\t' -v size="$(label_of "$SIZE")" -v limit="$MEMORY_LIMIT_MIB" -v segment="$SEGMENT_MIB" \
        -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
function row(target, k) { return key[target "|" "backlog " size " " k] }
function number(text, re,   x) {
    if (!match(text, re)) return ""
    x = substr(text, RSTART, RLENGTH); gsub(/[^0-9.]/, "", x); return x
}
function verdict(got, ok) { return got == "" ? "not run" : (ok ? "met" : "not met") }
function judge(what, got, ok, shown) {
    printf "| %s | %s | %s |\n", what, got == "" ? "-" : shown, verdict(got, ok)
}
END {
    print ""
    print "Backlog of " size " elements past the memory limit, in this run:"
    print ""
    print "| target | got | verdict |"
    print "| --- | --- | --- |"
    split("push,pop", ways, ",")
    for (w = 1; w <= 2; w++) {
        a = row("blobq", ways[w]); b = row("blobq-unbounded", ways[w]); peer = row("webdis", ways[w])
        x = (a && b) ? exact(r[a], r[b]) : ""
        judge(ways[w] " ≥ 0.8× --memory-limit 0", x, x + 0 >= 0.8, sprintf("%.3f×", x))
        x = (a && b) ? exact(p99[a], p99[b]) : ""
        judge(ways[w] " p99 ≤ 3× --memory-limit 0", x, x + 0 <= 3, sprintf("%.2f×", x))
        x = (a && peer) ? exact(r[a], r[peer]) : ""
        judge(ways[w] " ≥ 1.5× webdis+redis", x, x + 0 >= 1.5, sprintf("%.3f×", x))
    }
    a = row("blobq", "pop")
    rss = a ? number(n[a], "peak RSS [0-9.]+ MiB") : ""
    judge("peak RSS ≤ memory limit + 256 MiB", rss, rss + 0 <= limit + 256, rss " MiB")
    disk = a ? number(n[a], "draining [0-9.]+ MiB") : ""
    judge("disk after draining ≤ one segment (" segment " MiB)", disk, disk + 0 <= segment, disk " MiB")
}
AWK
}
label_of() { if (($1 % 1024 == 0)); then echo "$(($1 / 1024)) KiB"; else echo "$1 B"; fi; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for target in $TARGETS; do run_target "$target"; done

mkdir -p "$(dirname "$OUT")"
{
    echo "blobq $(git describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)," \
        "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
    echo "backlog: $((BYTES >> 20)) MiB of $(label_of "$SIZE") elements pushed, then popped, 64 connections;" \
        "latencies in ms; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    awk -F'\t' -f bench/rows.awk -f bench/table.awk "$ROWS"
    backlog_verdicts "$ROWS"
} | tee "$OUT"
if ((FAILED)); then
    echo "bench: some backlog cases failed (see above)" >&2
    exit 1
fi
