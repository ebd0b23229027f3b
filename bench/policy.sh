#!/usr/bin/env bash
# `make bench-policy`: what the generator's scheduling policy does to the
# 100 B push and pop cases, blobq against the bare ceiling, in pairs.
#
# wrk shares the two CPUs with the server it measures. Under the default
# policy (SCHED_OTHER) each response that wakes a wrk thread may preempt the
# server worker that sent it; under SCHED_BATCH the woken thread waits for
# the worker to block or for the scheduler's tick. This script measures
# both back to back: each pair is blobq then the ceiling, one case each, a
# few seconds apart, the policies alternating pair by pair, so that a burst
# of load from elsewhere hits both halves of a pair. It prints each pair's
# rates, then per policy and case the medians and the server's context
# switches per 1000 requests. See "The generator's scheduling policy" in
# docs/PERFORMANCE.md.
#
# Settings (environment):
#   POLICY_PAIRS     pairs per policy and case (6)
#   POLICY_DURATION  seconds per wrk run (3)
#   BLOBQ            the server binary (target/release/blobq, built first)
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${POLICY_PAIRS:-6}
DURATION=${POLICY_DURATION:-3}
BLOBQ_PORT=18084 CEILING_PORT=18094

. bench/lib.sh
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
need chrt "apt-get install -y util-linux"
cargo build -q --release --example ceiling
if [[ -z ${BLOBQ:-} ]]; then
    cargo build -q --release --bin blobq
    BLOBQ=target/release/blobq
fi

start_workdir blobq-policy
ports_free $BLOBQ_PORT $CEILING_PORT
target/release/examples/ceiling "127.0.0.1:$CEILING_PORT" 2>/dev/null &
CEILING=$!
PIDS+=("$CEILING")
wait_port $CEILING_PORT

# switches PID: the context switches of all of PID's threads so far.
switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {n += $2} END {print n + 0}'
}

# measure POLICY PID METHOD SIZE URL: one wrk run under POLICY; prints
# "req/s switches-per-1000-requests". Fails on any error status.
measure() {
    local out line requests errors before after
    BENCH_POLICY=$1 generator_policy
    before=$(switches "$2")
    out=$(BENCH_METHOD=$3 BENCH_SIZE=$4 "${GENERATOR[@]}" wrk -t2 -c64 -d"${DURATION}s" \
        -s bench/wrk.lua "$5" 2>&1) || true
    after=$(switches "$2")
    line=$(grep '^BENCH ' <<<"$out" | cut -c7- || true)
    requests=$(jf requests "$line")
    read -r errors _ < <(wrk_errors blobq "$line")
    if [[ -z $requests || $requests -eq 0 || $errors -gt 0 ]]; then
        echo "bench: wrk failed or saw errors on $5: $out" >&2
        exit 1
    fi
    echo "$(wrk_rate "$line") $(((after - before) * 1000 / requests))"
}

ROWS=$WORK/pairs.txt
: >"$ROWS"
for _ in $(seq "$PAIRS"); do
    for policy in other batch; do
        # A fresh blobq for each pair, so each one starts from the same state.
        "$BLOBQ" serve --listen "127.0.0.1:$BLOBQ_PORT" --spill-dir "$WORK" \
            --memory-limit 0 --log warn &
        blobq=$!
        PIDS+=("$blobq")
        wait_port $BLOBQ_PORT
        url=http://127.0.0.1:$BLOBQ_PORT/qs/policy/q
        read -r b bs < <(measure "$policy" "$blobq" POST 100 "$url")
        read -r c cs < <(measure "$policy" "$CEILING" POST 100 "http://127.0.0.1:$CEILING_PORT/push")
        echo "$policy push $b $c $bs $cs" | tee -a "$ROWS"
        # Top the queue up to twice what a pop run could take, then pop.
        BENCH_METHOD=POST BENCH_SIZE=100 wrk -t2 -c64 -d"$((2 * DURATION))s" \
            -s bench/wrk.lua "$url" >/dev/null
        read -r b bs < <(measure "$policy" "$blobq" GET 0 "$url")
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") != 200 ]]; then
            echo "bench: the queue ran empty during the pops" >&2
            exit 1
        fi
        read -r c cs < <(measure "$policy" "$CEILING" GET 0 "http://127.0.0.1:$CEILING_PORT/get/100")
        echo "$policy pop $b $c $bs $cs" | tee -a "$ROWS"
        stop "$blobq"
    done
done

echo
echo "blobq $(git describe --always --dirty 2>/dev/null || echo '?'), $PAIRS pairs of ${DURATION}s per policy and case, wrk -t2 -c64, 100 B:"
echo "| policy | case | blobq req/s | ceiling req/s | blobq/ceiling, median of pairs (range) | switches per 1000 requests, blobq / ceiling |"
echo "| --- | --- | ---: | ---: | --- | --- |"
for policy in other batch; do
    for case in push pop; do
        awk -v p="$policy" -v c="$case" '
            function median(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            $1 == p && $2 == c { n++; b[n] = $3; q[n] = $4; r[n] = $3 / $4; bs[n] = $5; qs[n] = $6 }
            END {
                m = median(r, n); lo = r[1]; hi = r[n]
                printf "| %s | %s | %d | %d | %.3f× (%.3f–%.3f) | %d / %d |\n", p, c,
                    median(b, n), median(q, n), m, lo, hi, median(bs, n), median(qs, n)
            }' "$ROWS"
    done
done
