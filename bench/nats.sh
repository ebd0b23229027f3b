#!/usr/bin/env bash
# The NATS backend's cases (issue 30): push and pop through blobq nodes on a
# three-node JetStream cluster on loopback, against JetStream used directly
# and against blobq's embedded backend, in the same run.
#
# Per round and size (BENCH_NATS_SIZES), each on a fresh namespace:
#   embedded     blobq with its own store (--memory-limit 0), as run.sh runs it;
#   nats-1       one blobq node (--backend the cluster's first server), wrk
#                -t2 -c64 as every other case;
#   nats-2       two blobq nodes (the first and the second server) serving
#                one queue, a wrk on each at once: rates summed, latencies
#                the slower node's;
#   jetstream-1  JetStream used directly by the scale harness (`scale
#                jetstream load`, benches/scale/jetstream.rs) on one
#                connection to the first server with as many operations in
#                flight as wrk has connections: publishes waited for until
#                acknowledged, bare and then with the unique Nats-Msg-Id
#                and Nats-TTL the issue's mapping has blobq send (the
#                yardstick: what JetStream itself does for an element),
#                then fetches of one message acknowledged with a double
#                ack, as a blobq pop does;
#   jetstream-2  the same on two connections, to the first and the second
#                server, as many in flight on each.
# Streams are made as blobq makes a namespace's: work-queue retention, file
# storage, per-message TTLs, three replicas. Each stream, and its consumer,
# is then led from the first server (`scale jetstream lead`): JetStream
# elects a leader at random, and a leader on another server than the
# client's adds a hop that moved a case's rate by a third between runs. Prints one table and the verdicts of the issue's
# target (blobq >= 0.7x direct JetStream), writes both to BENCH_NATS_OUT.
# Called by bench/run.sh when "nats" is among its targets (it is by
# default); alone: `make bench-nats`. Skips, saying so, without nats-server
# (.ci/install-nats installs one).
#
# Settings (environment), besides run.sh's BENCH_DURATION, BENCH_ROUNDS,
# BENCH_THREADS, BENCH_CONNECTIONS and BENCH_POLICY, which apply here too:
#   BENCH_NATS_SIZES     element sizes in bytes ("100 10240")
#   BENCH_NATS_PREFILL_BYTES  most bytes a pop case queues up front (2 GiB;
#                        on NATS each of the three servers stores them; the
#                        embedded pop cases past it pop references to one
#                        stored blob, as run.sh's do)
#   BENCH_NATS_OUT       where the table is also written (target/bench/nats.md)
#   BENCH_NATS_CPUS      "split" (the default on two CPUs or more): the three
#                        nats-servers run on CPU 0 and their clients (blobq
#                        nodes and wrk, or the direct client) on the others,
#                        as on separate machines, so that the HTTP load
#                        generator's and blobq's own work do not take the
#                        cluster's CPU; "shared": every process on every CPU.
#                        The embedded case always runs on every CPU.
#   BENCH_BLOBQ          a blobq binary to use instead of building the
#                        release one (e.g. target/debug/blobq, to check this
#                        script)
#   BENCH_SCALE_BIN      the scale harness binary to use instead of
#                        `cargo bench --bench scale`
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
SIZES=${BENCH_NATS_SIZES:-100 10240}
PREFILL_BUDGET=${BENCH_NATS_PREFILL_BYTES:-$((2 << 30))}
OUT=${BENCH_NATS_OUT:-target/bench/nats.md}
CPUS=${BENCH_NATS_CPUS:-split}
NATS_PORTS=(14231 14232 14233) ROUTE_PORTS=(16231 16232 16233)
NODE_PORTS=(18091 18092) EMBEDDED_PORT=18093

. bench/lib.sh
if ! command -v nats-server >/dev/null; then
    echo "bench: nats-server not found (.ci/install-nats installs one): skipping the NATS cases" >&2
    exit 0
fi
generator_policy
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"

blobq_and_scale

start_workdir blobq-nats
ROWS=$WORK/rows.tsv
: >"$ROWS"
FAILED=0
fail() { echo "bench: FAIL: $*" >&2; FAILED=1; }
ports_free "${NATS_PORTS[@]}" "${ROUTE_PORTS[@]}" "${NODE_PORTS[@]}" $EMBEDDED_PORT

url_of() { echo "nats://127.0.0.1:${NATS_PORTS[$1]}"; }
# servers N: the URLs of the first N servers, separated by commas.
servers() {
    local i urls=()
    for ((i = 0; i < $1; i++)); do urls+=("$(url_of "$i")"); done
    (
        IFS=,
        echo "${urls[*]}"
    )
}

# Under "split", CLUSTER and CLIENT run a command on the cluster's CPU and on
# the clients' CPUs; else they run it as it is.
CLUSTER=() CLIENT=() CLIENT_CPUS=
if [[ $CPUS == split ]] && (($(nproc) >= 2)); then
    CLIENT_CPUS="1-$(($(nproc) - 1))"
    CLUSTER=(taskset -c 0) CLIENT=(taskset -c "$CLIENT_CPUS")
elif [[ $CPUS != split && $CPUS != shared ]]; then
    echo "bench: BENCH_NATS_CPUS is split or shared, not $CPUS" >&2
    exit 2
else
    CPUS=shared
fi
# on_clients CMD...: CMD (a shell function too) on the clients' CPUs.
on_clients() {
    (
        if [[ -n $CLIENT_CPUS ]]; then taskset -p -c "$CLIENT_CPUS" "$BASHPID" >/dev/null; fi
        "$@"
    )
}

start_cluster() {
    local i j routes
    for i in 0 1 2; do
        routes=()
        for j in 0 1 2; do ((i == j)) || routes+=("nats://127.0.0.1:${ROUTE_PORTS[$j]}"); done
        "${CLUSTER[@]}" nats-server -js -a 127.0.0.1 -p "${NATS_PORTS[$i]}" -n "n$i" --cluster_name blobq-bench \
            --cluster "nats://127.0.0.1:${ROUTE_PORTS[$i]}" --routes "$(
                IFS=,
                echo "${routes[*]}"
            )" -sd "$WORK/nats$i" >>"$WORK/nats$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 0 1 2; do wait_port "${NATS_PORTS[$i]}"; done
    SCALE jetstream ready --servers "$(servers 3)"
}

label() { if (($1 % 1024 == 0)); then echo "$(($1 / 1024)) KiB"; else echo "$1 B"; fi; }

# Elements a pop case must find queued: half again what RATE pops a second
# take in the case's time, within the prefill budget.
pop_need() {
    local want=$(((DURATION * $1 * 3 + 1) / 2)) most=$((PREFILL_BUDGET / $2))
    echo $((want < most ? want : most))
}

blobq_elements() {
    curl -sf "http://127.0.0.1:$1/qs/$2/$3/stats" | sed -n 's/.*"elements":\([0-9]*\).*/\1/p'
}

# wrk_case TARGET CASE METHOD SIZE PATH NOTE PORT...: a wrk on each PORT
# at once, for PATH; one row, rates summed, p50 and p99 the worst of them.
# Sets RATE.
wrk_case() {
    local target=$1 kase=$2 method=$3 size=$4 path=$5 note=$6 port i=0 pids=() line errors
    local p50=0 p99=0 v pin=("${CLIENT[@]}")
    [[ $target == embedded ]] && pin=()
    shift 6
    if (($# > 1)); then note="$# nodes at once, rates summed, latencies the slower's${note:+; $note}"; fi
    echo "bench: round $ROUND: $target $kase" >&2
    for port in "$@"; do
        BENCH_METHOD=$method BENCH_SIZE=$size "${pin[@]}" "${GENERATOR[@]}" wrk -t"$THREADS" -c"$CONNS" \
            -d"${DURATION}s" -s bench/wrk.lua "http://127.0.0.1:$port$path" >"$WORK/wrk$i.out" 2>&1 &
        pids+=($!)
        PIDS+=($!)
        i=$((i + 1))
    done
    for v in "${pids[@]}"; do wait "$v" || true; done
    RATE=0
    for ((i = 0; i < ${#pids[@]}; i++)); do
        line=$(grep '^BENCH ' "$WORK/wrk$i.out" | cut -c7- || true)
        if [[ -z $line ]]; then
            fail "$target $kase: wrk printed no result: $(cat "$WORK/wrk$i.out")"
            continue
        fi
        read -r errors _ < <(wrk_errors "$target" "$line")
        if ((errors > 0)); then fail "$target $kase: $errors errors or unexpected statuses: $line"; fi
        RATE=$((RATE + $(wrk_rate "$line")))
        v=$(jf p50_us "$line")
        ((v > p50)) && p50=$v
        v=$(jf p99_us "$line")
        ((v > p99)) && p99=$v
    done
    printf '%s\t%s\t%d\t%s\t%s\t%s\t0\n' "$target" "$kase" "$RATE" \
        "$(awk -v v="$p50" 'BEGIN{printf "%.2f", v/1000}')" \
        "$(awk -v v="$p99" 'BEGIN{printf "%.2f", v/1000}')" "$note" >>"$ROWS"
}

# start_blobq PORT ARGS...: a blobq serving on PORT, ready (/healthz 200),
# on the clients' CPUs when it has a --backend.
start_blobq() {
    local port=$1 pin=()
    shift
    [[ " $* " == *" --backend "* ]] && pin=("${CLIENT[@]}")
    "${pin[@]}" "$BLOBQ" serve --listen "127.0.0.1:$port" --log warn "$@" 2>>"$WORK/blobq-$port.log" &
    PIDS+=($!)
    wait_port "$port"
    for _ in $(seq 400); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0
        sleep 0.05
    done
    fail "blobq on port $port never became healthy: $(tail -5 "$WORK/blobq-$port.log")"
    return 1
}

declare -A DIRECT_POP
# run_jetstream SIZE N: JetStream used directly on N connections.
run_jetstream() {
    local size=$1 n=$2 out
    echo "bench: round $ROUND: jetstream-$n $(label "$size")" >&2
    if out=$(on_clients SCALE jetstream load --servers "$(servers "$n")" --size "$size" --seconds "$DURATION" \
        --inflight "$CONNS" --replicas 3 --prefill-bytes "$PREFILL_BUDGET"); then
        relabel "jetstream-$n" <<<"$out" >>"$ROWS"
        DIRECT_POP[$size-$n]=$(awk -F'\t' '$2 ~ /^pop / { print $3 }' <<<"$out")
    else
        fail "jetstream-$n $(label "$size")"
    fi
}

# run_nats SIZE N: push and pop through N blobq nodes sharing a queue.
run_nats() {
    local size=$1 n=$2 l ports=() pids=() i have top want left path=/qs/bench/q$1
    l=$(label "$size")
    for ((i = 0; i < n; i++)); do
        start_blobq "${NODE_PORTS[$i]}" --backend "$(url_of "$i")" || return 0
        pids+=("${PIDS[-1]}")
        ports+=("${NODE_PORTS[$i]}")
    done
    # The namespace's stream and the queue's consumer made, and known to
    # every node, before the clock starts.
    curl -sf -X POST --data-binary x "http://127.0.0.1:${ports[0]}$path" >/dev/null || fail "nats-$n: first push"
    for i in "${ports[@]}"; do curl -sf "http://127.0.0.1:$i$path" >/dev/null || fail "nats-$n: first pop"; done
    # Led from the first server, as the direct client's stream is.
    SCALE jetstream lead --servers "$(url_of 0)" --stream BLOBQ_bench --consumer "q$size" ||
        fail "nats-$n: moving the stream's leader"
    wrk_case "nats-$n" "push $l" POST "$size" "$path" "" "${ports[@]}"
    have=$(blobq_elements "${ports[0]}" bench "q$size")
    top=${DIRECT_POP[$size-$n]:-0}
    ((RATE > top)) && top=$RATE
    want=$(pop_need "$top" "$size")
    if ((want > ${have:-0})); then
        SCALE fill "http://127.0.0.1:${ports[0]}$path" --count $((want - ${have:-0})) --size "$size" ||
            fail "nats-$n: prefill"
    fi
    wrk_case "nats-$n" "pop $l" GET 0 "$path" "" "${ports[@]}"
    left=$(blobq_elements "${ports[0]}" bench "q$size")
    ((${left:-0} > 0)) || fail "nats-$n pop $l: the queue ran empty (some pops answered 204)"
    for i in "${pids[@]}"; do stop "$i"; done
    SCALE jetstream drop --servers "$(url_of 0)" --prefix BLOBQ_ || fail "dropping blobq's streams"
}

# run_embedded SIZE: the same push and pop on blobq's own store.
declare -A EMBEDDED_POP
run_embedded() {
    local size=$1 l have top want id path=/qs/bench/q$1 note="" pid
    l=$(label "$size")
    start_blobq $EMBEDDED_PORT --spill-dir "$WORK" --memory-limit 0 || return 0
    pid=${PIDS[-1]}
    wrk_case embedded "push $l" POST "$size" "$path" "" $EMBEDDED_PORT
    have=$(blobq_elements $EMBEDDED_PORT bench "q$size")
    # Half again what the faster of its push and its last pop could take;
    # before its first pop, twice its push (its pops can outrun its pushes).
    top=${EMBEDDED_POP[$size]:-$((2 * RATE))}
    ((RATE > top)) && top=$RATE
    want=$(((DURATION * top * 3 + 1) / 2))
    if ((want * size <= PREFILL_BUDGET)); then
        if ((want > have)); then
            SCALE fill "http://127.0.0.1:$EMBEDDED_PORT$path" --count $((want - have)) --size "$size"
        fi
    else
        # Past the budget: elements that all reference one stored blob,
        # popped exactly as pushed ones are (see run.sh).
        id=$(curl -sf -X POST --data-binary @<(head -c "$size" /dev/zero) \
            "http://127.0.0.1:$EMBEDDED_PORT/tbs/bench/blobs" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
        path=/qs/bench/shared$size
        SCALE fill "http://127.0.0.1:$EMBEDDED_PORT$path" --method PUT --size 0 \
            --header "X-BlobStorage_Id: $id" --count "$want"
        note="$want references to one blob"
    fi
    wrk_case embedded "pop $l" GET 0 "$path" "$note" $EMBEDDED_PORT
    EMBEDDED_POP[$size]=$RATE
    (($(blobq_elements $EMBEDDED_PORT bench "${path##*/}") > 0)) || fail "embedded pop $l: the queue ran empty"
    stop "$pid"
}

# nats_table ROWS: blobq on NATS against JetStream used directly and the
# embedded backend, then the verdicts.
nats_table() {
    awk -F'\t' -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
function at(target, kase) { return key[target "|" kase] }
function cell(x) { return x == "" ? "" : sprintf("%.2fx", x) }
END {
    print "| case | blobq nodes | blobq req/s | spread | p50 | p99 | direct JetStream req/s | its p99 | blobq/direct | direct bare publish req/s | blobq/bare | embedded req/s | blobq/embedded | notes |"
    print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | --- | --- |"
    for (i = 1; i <= rows; i++) {
        if (t[i] !~ /^nats-/) continue
        nodes = substr(t[i], 6); d = at("jetstream-" nodes, c[i]); e = at("embedded", c[i])
        b = at("jetstream-" nodes, c[i] " bare")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c[i], nodes, r[i], spread[i],
            p50[i], p99[i], d ? r[d] : "-", d ? p99[d] : "-", d ? cell(exact(r[i], r[d])) : "",
            b ? r[b] : "-", b ? cell(exact(r[i], r[b])) : "",
            e ? r[e] : "-", e ? cell(exact(r[i], r[e])) : "", n[i]
    }
    print ""
    print "Against the target, in this run (blobq on NATS ≥ 0.7× JetStream used directly):"
    print ""
    print "| target | blobq | verdict |"
    print "| --- | --- | --- |"
    for (i = 1; i <= rows; i++) {
        if (t[i] !~ /^nats-/) continue
        nodes = substr(t[i], 6); d = at("jetstream-" nodes, c[i])
        x = d ? exact(r[i], r[d]) : ""
        printf "| %s through %s ≥ 0.7× direct JetStream | %s | %s |\n", c[i],
            nodes == 1 ? "one node" : nodes " nodes", x == "" ? "-" : sprintf("%.3f×", x),
            x == "" ? "not run" : (x + 0 >= 0.7 ? "met" : "not met")
    }
}
AWK
}

start_cluster
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Direct JetStream and blobq on it swap places from one round to the next,
# so that neither always runs in the state the other left the cluster in.
for ROUND in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        run_embedded "$size"
        for n in 1 2; do
            if ((ROUND % 2)); then
                run_jetstream "$size" "$n"
                run_nats "$size" "$n"
            else
                run_nats "$size" "$n"
                run_jetstream "$size" "$n"
            fi
        done
    done
done

mkdir -p "$(dirname "$OUT")"
{
    echo "blobq $(git describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)," \
        "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
    echo "$(nats-server --version), three servers on loopback, streams of three replicas on files;" \
        "wrk -t$THREADS -c$CONNS -d${DURATION}s (policy $POLICY) per node, direct JetStream $CONNS in flight per connection;" \
        "CPUs $CPUS$([[ $CPUS == split ]] && echo ": the nats-servers on CPU 0, blobq nodes, wrk and the direct client on the others; the embedded case on all");" \
        "median of $ROUNDS interleaved rounds per case; latencies in ms;" \
        "load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    nats_table "$ROWS"
} | tee "$OUT"
if ((FAILED)); then
    echo "bench: some NATS cases failed (see above)" >&2
    exit 1
fi
