#!/usr/bin/env bash
# Durable mode against in-memory blobq and against redis-server with an
# append-only file, back to back on this machine. Part of `make bench`
# (run alone with `make bench-durable`); docs/PERFORMANCE.md has the method.
#
# For each blobq mode (memory, --fsync never, batch, always) and each client
# count, wrk pushes 100-byte elements for BENCH_DURATION seconds, then pops
# for half as long from the backlog the pushes left (a pop case that ran the
# queue empty is flagged). redis-server runs with appendonly yes and
# appendfsync always / everysec, driven by redis-benchmark (LPUSH / RPOP,
# 100-byte values) over its own protocol, as context.
#
# Settings (environment):
#   BENCH_DURATION    seconds per push case (10)
#   BENCH_THREADS     wrk threads (1)
#   BENCH_CLIENTS     client counts ("1 64")
#   BENCH_OUT         where the table is also written (target/bench/durability.md)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
POP_DURATION=$(( (DURATION + 1) / 2 ))
THREADS=${BENCH_THREADS:-1}
CLIENTS=${BENCH_CLIENTS:-1 64}
OUT=${BENCH_OUT:-target/bench/durability.md}
PORT=18180 REDIS_PORT=16391

. bench/lib.sh
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
HAVE_REDIS=1
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "bench: redis-server or redis-benchmark missing (apt-get install -y redis-server): no redis rows" >&2
    HAVE_REDIS=0
fi

cargo build -q --release --bin blobq
BLOBQ=target/release/blobq
start_workdir blobq-durable
ports_free $PORT $REDIS_PORT

# wrk METHOD SIZE SECONDS CLIENTS -> "req/s p50_ms p99_ms"; fails on any error.
run_wrk() {
    local out line
    out=$(BENCH_METHOD=$1 BENCH_SIZE=$2 wrk -t"$THREADS" -c"$4" -d"$3"s --latency \
        -s bench/wrk.lua "http://127.0.0.1:$PORT/qs/bench/q" 2>&1)
    line=$(grep '^BENCH ' <<<"$out")
    local errors=$(( $(jf status "$line") + $(jf connect "$line") + $(jf read "$line") + $(jf write "$line") + $(jf timeout "$line") ))
    if (( errors > 0 )); then
        echo "bench: $1 against blobq had $errors errors" >&2
        echo "$out" >&2
        exit 1
    fi
    awk -v r="$(jf requests "$line")" -v d="$(jf duration_us "$line")" \
        -v p50="$(jf p50_us "$line")" -v p99="$(jf p99_us "$line")" \
        'BEGIN { printf "%.0f %.2f %.2f", r / (d / 1e6), p50 / 1000, p99 / 1000 }'
}

ROWS=()
declare -A MEMORY_PUSH MEMORY_POP
for clients in $CLIENTS; do
    for mode in memory never batch always; do
        rm -rf "$WORK/data"
        args=()
        [[ $mode != memory ]] && args=(--data-dir "$WORK/data" --fsync "$mode")
        $BLOBQ serve --listen 127.0.0.1:$PORT --max-lifetime 86400 \
            --default-lifetime 86400 "${args[@]}" 2>"$WORK/blobq.log" &
        pid=$!
        PIDS+=("$pid")
        wait_port $PORT
        read -r push _ push99 <<<"$(run_wrk POST 100 "$DURATION" "$clients")"
        read -r pop _ pop99 <<<"$(run_wrk GET 0 "$POP_DURATION" "$clients")"
        left=$(curl -s "http://127.0.0.1:$PORT/qs/bench/q/stats" | sed -n 's/.*"elements":\([0-9]*\).*/\1/p')
        [[ ${left:-0} -gt 0 ]] || pop="$pop (ran empty)"
        stop "$pid"
        if [[ $mode == memory ]]; then
            MEMORY_PUSH[$clients]=$push
            MEMORY_POP[$clients]=${pop%% *}
        fi
        ratio_push=$(awk -v a="$push" -v b="${MEMORY_PUSH[$clients]}" 'BEGIN { printf "%.2f", a / b }')
        ratio_pop=$(awk -v a="${pop%% *}" -v b="${MEMORY_POP[$clients]}" 'BEGIN { printf "%.2f", a / b }')
        ROWS+=("| blobq | $mode | $clients | $push | $push99 | $pop | $pop99 | $ratio_push | $ratio_pop |")
        echo "bench: blobq $mode c=$clients push $push/s pop $pop/s" >&2
    done
    if (( HAVE_REDIS )); then
        for fsync in always everysec; do
            rm -rf "$WORK/redis" && mkdir -p "$WORK/redis"
            redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly yes \
                --appendfsync "$fsync" --dir "$WORK/redis" --daemonize no >"$WORK/redis.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_port $REDIS_PORT
            # Enough requests for a few seconds per case at the rates seen here.
            [[ $fsync == always && $clients == 1 ]] && n=5000 || n=200000
            csv=$(redis-benchmark -p $REDIS_PORT -c "$clients" -n "$n" -d 100 -t lpush,rpop --csv 2>/dev/null)
            rps() { grep "\"$1\"" <<<"$csv" | head -1 | cut -d, -f2 | tr -d '"' | cut -d. -f1; }
            p99() { grep "\"$1\"" <<<"$csv" | head -1 | cut -d, -f7 | tr -d '"'; }
            ROWS+=("| redis AOF | appendfsync $fsync | $clients | $(rps LPUSH) | $(p99 LPUSH) | $(rps RPOP) | $(p99 RPOP) | | |")
            echo "bench: redis $fsync c=$clients lpush $(rps LPUSH)/s" >&2
            stop "$pid"
        done
    fi
done

mkdir -p "$(dirname "$OUT")"
{
    echo "Durable mode, 100-byte elements, $(nproc) cores, wrk -t$THREADS, push ${DURATION}s then pop ${POP_DURATION}s"
    echo
    echo "| target | mode | clients | push req/s | push p99 ms | pop req/s | pop p99 ms | push / memory | pop / memory |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT"
