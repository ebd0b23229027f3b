#!/usr/bin/env bash
# `make bench`: blobq against its ceiling (a bare hyper server built from this
# repository) and its peer (webdis in front of redis-server), back to back on
# this machine with the same generator and settings, then the scale cases.
# Prints one table, then each target judged on it (bench/targets.awk); see
# docs/PERFORMANCE.md for the method. The ceiling also
# runs each in-memory size keeping the bodies and popping them oldest first
# ("ceiling-kept"), and doing so while answering in the contract's shape
# ("ceiling-shaped").
#
# With BENCH_BASELINE, a second blobq binary (an older build, for an A/B of a
# change) runs as the target "baseline": on its own port with the same flags,
# in the same interleaved rounds and cases, and through the same scale cases;
# the table then shows blobq's ratio to it and judges the redesign's target
# (push and pop at 100 B and 10 KiB at 0.9x the baseline or better).
#
# Settings (environment):
#   BENCH_DURATION     seconds per wrk case (5)
#   BENCH_ROUNDS       rounds of every wrk case, interleaved; the table shows
#                      each case's median (3)
#   BENCH_THREADS      wrk threads (2), the same for every target
#   BENCH_CONNECTIONS  keep-alive connections (64)
#   BENCH_POLICY       the generator's scheduling policy: "batch" (the
#                      default: wrk never preempts the server it measures
#                      when a response wakes it) or "other" (the default
#                      policy of every process); see docs/PERFORMANCE.md
#   BENCH_SIZES        element sizes in bytes ("100 10240 1048576")
#   BENCH_TARGETS      which targets ("ceiling blobq auth webdis";
#                      "baseline" is added when BENCH_BASELINE is set;
#                      "auth" is blobq with a token on every request, 100 B
#                      only, judged against "blobq" after the table; "nats",
#                      in the default set, runs bench/nats.sh after the table:
#                      the NATS backend's cases, skipped without nats-server)
#   BENCH_BASELINE     path of an older blobq binary to compare with ("")
#   BENCH_SCALE        scale cases ("big,blocked,million,storm"; "" for none)
#   BENCH_SCALE_ARGS   extra arguments for them, e.g. "--million 100000"
#   BENCH_PREFILL_BYTES  most bytes a pop case may queue up front (8 GiB)
#   BENCH_OUT          where the table is also written (target/bench/latest.md)
#   BENCH_TLS          "1" (the default): blobq's 100 B push and pop also over
#                      TLS with HTTP/1.1 keep-alive (wrk) and over HTTP/2 on
#                      TLS (h2load, 64 streams on 8 connections), each shown
#                      against plain HTTP/1.1 after the table; "0": not
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
SIZES=${BENCH_SIZES:-100 10240 1048576}
TARGETS=${BENCH_TARGETS:-ceiling blobq auth webdis}
SCALE_CASES=${BENCH_SCALE-big,blocked,million,storm}
SCALE_ARGS=${BENCH_SCALE_ARGS:-}
PREFILL_BUDGET=${BENCH_PREFILL_BYTES:-$((8 << 30))}
OUT=${BENCH_OUT:-target/bench/latest.md}
BASELINE=${BENCH_BASELINE:-}
BLOBQ_PORT=18080 BASELINE_PORT=18085 AUTH_PORT=18086 CEILING_PORT=18090 REDIS_PORT=16390 WEBDIS_PORT=17379
BLOBQ_TLS_PORT=18443
TLS_CASES=${BENCH_TLS:-1}
# Extra server flags, request headers (curl and wrk) and fill flags of the
# blobq cases: empty but for the "auth" target (see run_auth).
AUTH_SERVE=() AUTH_HEADER=() AUTH_FILL=()
# blobq's default spill threshold: bodies this large go to files, not memory.
KEPT_BELOW=102400

. bench/lib.sh
generator_policy
need wrk "apt-get install -y wrk"
need curl "apt-get install -y curl"
if [[ -n $BASELINE ]]; then
    if [[ ! -x $BASELINE ]]; then
        echo "bench: BENCH_BASELINE=$BASELINE is not an executable file" >&2
        exit 2
    fi
    BASELINE=$(realpath "$BASELINE")
    TARGETS=$(with_baseline "$TARGETS")
else
    TARGETS=${TARGETS//baseline/}
fi
if [[ $TLS_CASES == 1 && " $TARGETS " == *" blobq "* && " $SIZES " == *" 100 "* ]]; then
    need h2load "apt-get install -y nghttp2-client"
    need openssl "apt-get install -y openssl"
else
    TLS_CASES=0
fi
# The NATS backend's cases are a script of their own, run after the table
# (bench/nats.sh: its own cluster, rounds and table).
[[ -n ${BENCH_TARGETS:-} ]] || TARGETS+=" nats"
NATS_CASES=0
if [[ " $TARGETS " == *" nats "* ]]; then
    NATS_CASES=1
    TARGETS=${TARGETS//nats/}
fi
if [[ " $TARGETS " == *" webdis "* ]]; then
    if ! command -v webdis >/dev/null || ! command -v redis-server >/dev/null; then
        echo "bench: webdis or redis-server missing (apt-get install -y webdis redis-server): skipping the peer" >&2
        TARGETS=${TARGETS//webdis/}
    fi
fi

echo "bench: building" >&2
cargo build -q --release --bin blobq --example ceiling
cargo bench -q --no-run --bench scale 2>/dev/null
BLOBQ=target/release/blobq
SCALE() { cargo bench -q --bench scale -- "$@"; }

start_workdir blobq-bench
ROWS=$WORK/rows.tsv
: >"$ROWS"
FAILED=0
ports_free $BLOBQ_PORT $BASELINE_PORT $AUTH_PORT $CEILING_PORT $REDIS_PORT $WEBDIS_PORT $BLOBQ_TLS_PORT

fail() { echo "bench: FAIL: $*" >&2; FAILED=1; }

# wrk_case TARGET CASE URL METHOD BODY_SIZE [NOTE]: one wrk run, one row.
# Sets RATE.
wrk_case() {
    local out line errors dropped p50 p99
    echo "bench: round $ROUND: $1 $2" >&2
    out=$(BENCH_METHOD=$4 BENCH_SIZE=$5 "${GENERATOR[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        "${AUTH_HEADER[@]}" -s bench/wrk.lua "$3" 2>&1) || true
    line=$(grep '^BENCH ' <<<"$out" | cut -c7- || true)
    if [[ -z $line ]]; then
        fail "$1 $2: wrk printed no result: $out"
        RATE=0
        return
    fi
    p50=$(jf p50_us "$line")
    p99=$(jf p99_us "$line")
    read -r errors dropped < <(wrk_errors "$1" "$line")
    if ((errors > 0)); then
        fail "$1 $2: $errors errors or unexpected statuses: $line"
    fi
    RATE=$(wrk_rate "$line")
    printf '%s\t%s\t%d\t%s\t%s\t%s\t%d\n' "$1" "$2" "$RATE" \
        "$(awk -v v="$p50" 'BEGIN{printf "%.2f", v/1000}')" \
        "$(awk -v v="$p99" 'BEGIN{printf "%.2f", v/1000}')" "${6:-}" "$dropped" >>"$ROWS"
}

label() {
    case $1 in
    1048576) echo "1 MiB" ;;
    10240) echo "10 KiB" ;;
    *) echo "$1 B" ;;
    esac
}

# Elements a pop case must find queued: half again what the fastest pop or
# push seen for this size could take in the run.
pop_need() { echo $(((DURATION * $1 * 3 + 1) / 2)); }

declare -A CEILING_POP
# blobq_elements PORT QUEUE: elements queued in QUEUE of namespace bench.
blobq_elements() {
    curl -sf "${AUTH_HEADER[@]}" "http://127.0.0.1:$1/qs/bench/$2/stats" | sed -n 's/.*"elements":\([0-9]*\).*/\1/p'
}

# held_cases TARGET SIZE PATH COUNT_PATH NOTE: the ceiling keeping each
# body it is sent at PATH, then popping them oldest first, as a queue must:
# bodies stored seconds ago, no longer in the CPU's cache. Topped up like
# blobq's queue.
held_cases() {
    local target=$1 size=$2 path=$3 l have want
    l=$(label "$size")
    wrk_case "$target" "push $l" "http://127.0.0.1:$CEILING_PORT$path" POST "$size" "$5"
    have=$(curl -sf "http://127.0.0.1:$CEILING_PORT$4") || fail "ceiling: GET $4"
    want=$(pop_need "${CEILING_POP[$size]}")
    if ((want > ${have:-0})); then
        SCALE fill "http://127.0.0.1:$CEILING_PORT$path" --count $((want - ${have:-0})) \
            --size "$size" --expect 202
    fi
    wrk_case "$target" "pop $l" "http://127.0.0.1:$CEILING_PORT$path" GET 0 "$5, oldest first"
    curl -sf -X DELETE "http://127.0.0.1:$CEILING_PORT$path" >/dev/null || fail "ceiling: DELETE $path"
}

run_ceiling() {
    local size=$1 l
    l=$(label "$size")
    wrk_case ceiling "push $l" "http://127.0.0.1:$CEILING_PORT/push" POST "$size"
    wrk_case ceiling "pop $l" "http://127.0.0.1:$CEILING_PORT/get/$size" GET 0
    CEILING_POP[$size]=$RATE
    # Only for sizes blobq holds in memory (larger bodies go to spill files):
    # the ceiling copying each body into memory of its own and holding it,
    # the floor for any in-memory queue; and the same answering in the
    # contract's shape (ids, size and lifetime in headers, the push's JSON),
    # the floor for any queue that meets the contract.
    if ((size < KEPT_BELOW)); then
        held_cases ceiling-kept "$size" /keep /kept "held bodies"
        held_cases ceiling-shaped "$size" /shaped /shaped/kept "held bodies, contract's answers"
    fi
}

# blobq_cases TARGET BINARY PORT SIZE: push and pop cases of one blobq
# binary, as target TARGET ("blobq", or "baseline" for BENCH_BASELINE).
blobq_cases() {
    local target=$1 bin=$2 port=$3 size=$4 l pid have want queue note="" id
    l=$(label "$size")
    # Fresh per size; no memory budget so pop prefills stay in memory as pushes would.
    "$bin" serve --listen "127.0.0.1:$port" --spill-dir "$WORK" --memory-limit 0 \
        --log warn "${AUTH_SERVE[@]}" 2>>"$WORK/$target.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    wrk_case "$target" "push $l" "http://127.0.0.1:$port/qs/bench/q$size" POST "$size"
    have=$(blobq_elements "$port" "q$size")
    want=$(pop_need $((RATE > ${CEILING_POP[$size]:-0} ? RATE : ${CEILING_POP[$size]:-0})))
    queue=q$size
    if ((want * size <= PREFILL_BUDGET)); then
        if ((want > have)); then
            SCALE fill "http://127.0.0.1:$port/qs/bench/q$size" --count $((want - have)) --size "$size" \
                "${AUTH_FILL[@]}"
        fi
    else
        # Too many bytes to queue for real: elements that all reference one
        # stored blob (PUT with X-BlobStorage_Id). A pop serves them exactly
        # like pushed ones, except that the blob is not freed afterwards.
        id=$(curl -sf -X POST --data-binary @<(head -c "$size" /dev/zero) \
            "http://127.0.0.1:$port/tbs/bench/blobs" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
        queue=shared$size
        SCALE fill "http://127.0.0.1:$port/qs/bench/$queue" --method PUT --size 0 \
            --header "X-BlobStorage_Id: $id" --count "$want"
        note="$want references to one blob"
    fi
    wrk_case "$target" "pop $l" "http://127.0.0.1:$port/qs/bench/$queue" GET 0 "$note"
    if (($(blobq_elements "$port" "$queue") == 0)); then
        fail "$target pop $l: the queue ran empty (some pops answered 204)"
    fi
    stop "$pid"
}

declare -A BLOBQ_POP
run_blobq() {
    blobq_cases blobq "$BLOBQ" "$BLOBQ_PORT" "$1"
    BLOBQ_POP[$1]=$RATE # for the TLS cases' prefill
}
run_baseline() { blobq_cases baseline "$BASELINE" "$BASELINE_PORT" "$1"; }

# ---- Authentication (issue 27) ----------------------------------------------
# Target "auth": blobq with authentication on (one static token in an
# --auth-file) and every request, the prefill's and the statistics' too,
# carrying the token in `Authorization: Bearer`; 100 B only. After the
# table, auth_verdicts judges its push and pop against "blobq" (the same
# binary without authentication) in the same run: goal 0.95x or better.
AUTH_TOKEN=bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
run_auth() {
    (($1 == 100)) || return 0
    local digest
    digest=$(printf %s "$AUTH_TOKEN" | sha256sum | cut -d' ' -f1)
    printf '[[auth.tokens]]\nname = "bench"\nsha256 = "%s"\nnamespaces = ["bench"]\nroles = ["producer", "consumer", "observer"]\n' \
        "$digest" >"$WORK/auth.toml"
    AUTH_SERVE=(--auth-file "$WORK/auth.toml")
    AUTH_HEADER=(-H "Authorization: Bearer $AUTH_TOKEN")
    AUTH_FILL=(--header "Authorization: Bearer $AUTH_TOKEN")
    blobq_cases auth "$BLOBQ" "$AUTH_PORT" "$1"
    AUTH_SERVE=() AUTH_HEADER=() AUTH_FILL=()
}

# auth_verdicts ROWS: the "auth" target's 100 B push and pop as a ratio to
# "blobq"'s, medians of the same run (rows.awk computes them).
auth_verdicts() {
    awk -F'\t' -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
function rate(target, kase,   j) { j = key[target "|" kase]; return j ? r[j] : "" }
END {
    print ""
    print "Authentication (a static token on every request) against blobq without it, in this run:"
    print ""
    print "| target | auth/blobq | verdict |"
    print "| --- | --- | --- |"
    split("push 100 B,pop 100 B", kases, ",")
    for (k = 1; k <= 2; k++) {
        x = exact(rate("auth", kases[k]), rate("blobq", kases[k]))
        printf "| %s with a token ≥ 0.95× without | %s | %s |\n", kases[k],
            x == "" ? "not run" : sprintf("%.3f×", x), x == "" ? "" : (x + 0 >= 0.95 ? "met" : "not met")
    }
}
AWK
}
# ---- end of authentication ----------------------------------------------------
# --- TLS and HTTP/2 (BENCH_TLS) ---
# blobq serving HTTPS on a port of its own, with a throwaway self-signed
# certificate (neither wrk nor h2load verifies it): push and pop at 100 B
# over TLS with HTTP/1.1 keep-alive (wrk, as the plain cases) and over
# HTTP/2 (h2load, ALPN h2, H2_CONNS connections of H2_STREAMS streams each).
# Rows of target blobq; protocol_ratios (bench/lib.sh) compares them with
# the plain cases after the table.
H2_CONNS=8 H2_STREAMS=8

make_tls_files() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls-key.pem" -out "$WORK/tls-cert.pem" 2>>"$WORK/openssl.log"
    head -c 100 /dev/zero | tr '\0' x >"$WORK/body100"
}

# h2load_case CASE URL [BODY_FILE]: one h2load run (a POST of BODY_FILE, or
# a GET), one row. Sets RATE. Requests in flight when the time is up may
# count as errored; more than that fails the case.
h2load_case() {
    local out rate mean bad errored args=(-D "$DURATION" -t "$THREADS" -c "$H2_CONNS" -m "$H2_STREAMS")
    [[ -n ${3:-} ]] && args+=(-d "$3" -H "content-type: application/octet-stream")
    echo "bench: round $ROUND: blobq $1" >&2
    out=$("${GENERATOR[@]}" h2load "${args[@]}" "$2" 2>&1) || true
    read -r rate mean bad errored < <(h2load_result "$out") || true
    if [[ -z ${rate:-} ]]; then
        fail "blobq $1: h2load printed no result: $out"
        RATE=0
        return
    fi
    if ((bad > 0 || errored > H2_CONNS * H2_STREAMS)); then
        fail "blobq $1: $bad answers of 400 or above, $errored requests unanswered"
    fi
    RATE=$rate
    printf '%s\t%s\t%d\t-\t-\t%s\t0\n' blobq "$1" "$RATE" \
        "h2load -c$H2_CONNS -m$H2_STREAMS, mean $mean ms" >>"$ROWS"
}

# tls_fill QUEUE: queue (over HTTP/2) what a pop case of QUEUE may take.
tls_fill() {
    local have want top=$RATE
    ((${CEILING_POP[100]:-0} > top)) && top=${CEILING_POP[100]}
    ((${BLOBQ_POP[100]:-0} > top)) && top=${BLOBQ_POP[100]}
    have=$(tls_elements "$1")
    want=$(pop_need "$top")
    if ((want > ${have:-0})); then
        h2load -n $((want - ${have:-0})) -c "$H2_CONNS" -m "$H2_STREAMS" -d "$WORK/body100" \
            "https://127.0.0.1:$BLOBQ_TLS_PORT/qs/bench/$1" >/dev/null 2>&1 || fail "blobq: TLS prefill of $1"
    fi
}
tls_elements() {
    curl -sfk "https://127.0.0.1:$BLOBQ_TLS_PORT/qs/bench/$1/stats" | sed -n 's/.*"elements":\([0-9]*\).*/\1/p'
}

run_blobq_tls() {
    local pid url="https://127.0.0.1:$BLOBQ_TLS_PORT/qs/bench" c
    "$BLOBQ" serve --listen "127.0.0.1:$BLOBQ_TLS_PORT" --spill-dir "$WORK" --memory-limit 0 \
        --tls-cert "$WORK/tls-cert.pem" --tls-key "$WORK/tls-key.pem" --log warn 2>>"$WORK/blobq-tls.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$BLOBQ_TLS_PORT"
    wrk_case blobq "push 100 B, TLS HTTP/1.1" "$url/tls" POST 100
    tls_fill tls
    wrk_case blobq "pop 100 B, TLS HTTP/1.1" "$url/tls" GET 0
    h2load_case "push 100 B, HTTP/2 on TLS" "$url/h2" "$WORK/body100"
    tls_fill h2
    h2load_case "pop 100 B, HTTP/2 on TLS" "$url/h2"
    for c in tls h2; do
        (($(tls_elements $c) > 0)) || fail "blobq pop 100 B over $c: the queue ran empty"
    done
    stop "$pid"
}

# ---- Batches (issue 29) -------------------------------------------------------
# Target "batch", in every run unless BENCH_TARGETS is given (then name it):
# at 100 B only, blobq's batch push (POST /qs/bench/batch/batch, one
# multipart/mixed body of BENCH_BATCH_ELEMENTS parts, default 100) and batch
# pop (?count= the same) over 64 connections, BENCH_BATCHES requests each
# (default 20000), by the scale harness ("scale batch"), which reports
# elements per second; then redis-server fed by redis-benchmark pipelining
# 16 deep on as many connections (LPUSH of as many 100 B values, then RPOP
# of them), a request being one element. Rows of targets "blobq" and
# "redis"; batch_verdicts judges blobq at 0.5x redis or better after the
# table.
BATCH_ELEMENTS=${BENCH_BATCH_ELEMENTS:-100}
BATCH_COUNT=${BENCH_BATCHES:-20000}
BATCH_PORT=18087 BATCH_REDIS_PORT=16391
[[ -n ${BENCH_TARGETS:-} ]] || TARGETS+=" batch"
if [[ " $TARGETS " == *" batch "* ]]; then
    ports_free $BATCH_PORT $BATCH_REDIS_PORT
    if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
        echo "bench: redis-benchmark or redis-server missing (apt-get install -y redis-tools redis-server): batches without their peer" >&2
    fi
fi

run_batch() {
    (($1 == 100)) || return 0
    local pid out case="batch $BATCH_ELEMENTS × 100 B"
    "$BLOBQ" serve --listen "127.0.0.1:$BATCH_PORT" --spill-dir "$WORK" --memory-limit 0 \
        --log warn 2>>"$WORK/batch.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port $BATCH_PORT
    echo "bench: round $ROUND: blobq $case" >&2
    SCALE batch "http://127.0.0.1:$BATCH_PORT/qs/bench/batch" --elements "$BATCH_ELEMENTS" \
        --size 100 --batches "$BATCH_COUNT" >>"$ROWS" || fail "blobq $case"
    stop "$pid"
    command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null || return 0
    redis-server --port $BATCH_REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$WORK/batch-redis.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port $BATCH_REDIS_PORT
    echo "bench: round $ROUND: redis $case" >&2
    out=$("${GENERATOR[@]}" redis-benchmark -p $BATCH_REDIS_PORT -c "$CONNS" -P 16 -d 100 \
        -n $((BATCH_ELEMENTS * BATCH_COUNT)) -t lpush,rpop --csv 2>&1) || fail "redis-benchmark: $out"
    redis_rows "$out" "$case" "redis-benchmark -P 16 -c $CONNS" >>"$ROWS"
    stop "$pid"
}

# redis_rows CSV CASE NOTE: the LPUSH and RPOP lines of redis-benchmark's
# --csv output as rows "CASE push" and "CASE pop" of target redis; p50 and
# p99 where this version reports them (a header line names the columns).
redis_rows() {
    awk -F'","' -v kase="$2" -v note="$3" '
        { gsub(/^"|"$/, "") }
        $1 == "test" { for (f = 2; f <= NF; f++) col[$f] = f; next }
        $1 == "LPUSH" || $1 == "RPOP" {
            p50 = col["p50_latency_ms"] ? $(col["p50_latency_ms"]) : "-"
            p99 = col["p99_latency_ms"] ? $(col["p99_latency_ms"]) : "-"
            printf "redis\t%s %s\t%d\t%s\t%s\t%s\n", kase, ($1 == "LPUSH" ? "push" : "pop"), $2 + 0.5, p50, p99, note
        }
    ' <<<"$1"
}

# batch_verdicts ROWS: blobq's batch push and pop element rates as a ratio
# to redis's, medians of the same run.
batch_verdicts() {
    awk -F'\t' -v kase="batch $BATCH_ELEMENTS × 100 B" -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
function rate(target, k,   j) { j = key[target "|" k]; return j ? r[j] : "" }
END {
    print ""
    print "Batch push and pop (" kase ") against redis-benchmark -P 16, elements per second, in this run:"
    print ""
    print "| case | blobq/redis | verdict |"
    print "| --- | --- | --- |"
    split("push,pop", ways, ",")
    for (w = 1; w <= 2; w++) {
        x = exact(rate("blobq", kase " " ways[w]), rate("redis", kase " " ways[w]))
        printf "| %s %s ≥ 0.5× redis | %s | %s |\n", kase, ways[w],
            x == "" ? "not run" : sprintf("%.3f×", x), x == "" ? "" : (x + 0 >= 0.5 ? "met" : "not met")
    }
}
AWK
}
# ---- end of batches -------------------------------------------------------------

# ---- Jobs (issue 25) ---------------------------------------------------------
# The jobs API's cases (`scale jobs`, benches/scale/jobs.rs), each on a fresh
# blobq: jobs per second through submit, claim, result and get from 64
# clients against push/pop pairs per second from 64 clients on the same
# server; 100 000 jobs held (RSS growth per job besides its input's bytes);
# 10 000 clients long-polling one job each while workers finish them (from a
# result's sending to its poll's answer). Rows of target blobq, once per run
# like the scale cases; jobs_verdicts judges them after the table.
#   BENCH_JOBS       "1" (the default): run them; "0": not
#   BENCH_JOBS_ARGS  extra arguments, e.g. "--held 10000 --pollers 1000"
JOBS_CASES=${BENCH_JOBS:-1}
JOBS_ARGS=${BENCH_JOBS_ARGS:-}
run_jobs() {
    echo "bench: jobs cases" >&2
    # shellcheck disable=SC2086 # JOBS_ARGS is a list of words
    SCALE jobs --blobq "$BLOBQ" --seconds "$DURATION" $JOBS_ARGS >>"$ROWS" || fail "jobs cases"
}

# jobs_verdicts ROWS: the jobs cases against their targets.
jobs_verdicts() {
    awk -F'\t' -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
# The number in text matched by re (which holds one number), or "".
function number(text, re,   x) {
    if (!match(text, re)) return ""
    x = substr(text, RSTART, RLENGTH); gsub(/[^0-9.]/, "", x); return x
}
function verdict(got, ok) { return got == "" ? "not run" : (ok ? "met" : "not met") }
END {
    for (i = 1; i <= rows; i++) {
        if (t[i] != "blobq") continue
        if (c[i] ~ /^jobs: submit, claim, result and get/) jobs = i
        else if (c[i] ~ /^jobs: push and pop pairs/) pairs = i
        else if (c[i] ~ /^jobs: [0-9]+ held$/) held = i
        else if (c[i] ~ /^jobs: .* long-polling one job each/) polls = i
    }
    print ""
    print "Jobs (submit, claim, result and get), in this run:"
    print ""
    print "| target | got | verdict |"
    print "| --- | --- | --- |"
    x = (jobs && pairs) ? exact(r[jobs], r[pairs]) : ""
    printf "| jobs per second ≥ 0.3× push/pop pairs per second, 64 clients | %s | %s |\n",
        x == "" ? "-" : sprintf("%.3f×", x), verdict(x, x + 0 >= 0.3)
    per = held ? number(n[held], "-?[0-9.]+ B per job") : ""
    printf "| %s: < 1 KiB of memory each besides their bytes | %s | %s |\n",
        held ? c[held] : "jobs held", per == "" ? "-" : per " B", verdict(per, per + 0 < 1024)
    p = polls ? p99[polls] : ""
    printf "| %s: p99 < 50 ms | %s | %s |\n",
        polls ? c[polls] : "long polls woken", p == "" ? "-" : "p99 " p " ms", verdict(p, p + 0 < 50)
}
AWK
}
# ---- end of jobs ----------------------------------------------------------------
start_webdis() {
    redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$WORK/redis.log" &
    PIDS+=($!)
    wait_port $REDIS_PORT
    cat >"$WORK/webdis.json" <<EOF
{
    "redis_host": "127.0.0.1",
    "redis_port": $REDIS_PORT,
    "http_host": "127.0.0.1",
    "http_port": $WEBDIS_PORT,
    "threads": 2,
    "pool_size": 20,
    "daemonize": false,
    "database": 0,
    "verbosity": 1,
    "logfile": "$WORK/webdis.log"
}
EOF
    # webdis's libevent logs harmless epoll warnings on stderr under load.
    webdis "$WORK/webdis.json" 2>>"$WORK/webdis.err" &
    PIDS+=($!)
    wait_port $WEBDIS_PORT
}

run_webdis() {
    local size=$1 l have want url push_rate note=""
    l=$(label "$size")
    redis() { redis-cli -p $REDIS_PORT "$@"; }
    wrk_case webdis "push $l" "http://127.0.0.1:$WEBDIS_PORT/LPUSH/k$size" PUT "$size"
    have=$(redis LLEN "k$size")
    want=$(pop_need $((RATE > ${CEILING_POP[$size]:-0} ? RATE : ${CEILING_POP[$size]:-0})))
    push_rate=$RATE
    url="http://127.0.0.1:$WEBDIS_PORT/RPOP/k$size.txt"
    # webdis takes large PUT bodies slowly (under 100/s at 1 MiB here): a
    # prefill that would take more than a minute rotates instead.
    if ((want * size <= PREFILL_BUDGET && (want - have) <= push_rate * 60)); then
        if ((want > have)); then
            SCALE fill "http://127.0.0.1:$WEBDIS_PORT/LPUSH/k$size" --method PUT \
                --count $((want - have)) --size "$size" --expect 200
        fi
    else
        # Too many bytes to hold: pop from the tail and push back at the head.
        url="http://127.0.0.1:$WEBDIS_PORT/RPOPLPUSH/k$size/k$size.txt"
        note="RPOPLPUSH rotation"
    fi
    wrk_case webdis "pop $l" "$url" GET 0 "$note"
    if (($(redis LLEN "k$size") == 0)); then
        fail "webdis pop $l: the list ran empty"
    fi
    redis FLUSHALL >/dev/null
}

if [[ " $TARGETS " == *" ceiling "* ]]; then
    target/release/examples/ceiling "127.0.0.1:$CEILING_PORT" 2>>"$WORK/ceiling.log" &
    PIDS+=($!)
    wait_port $CEILING_PORT
fi
if [[ " $TARGETS " == *" webdis "* ]]; then start_webdis; fi
if ((TLS_CASES)); then make_tls_files; fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds interleave the targets, so a burst of load from elsewhere on this
# shared machine hits one sample of each case rather than one whole target.
# blobq and the baseline swap places from one round to the next, so that
# neither always runs right after the other.
for ROUND in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        for target in $(round_order "$ROUND" "$TARGETS"); do "run_$target" "$size"; done
        if ((TLS_CASES)) && [[ $size == 100 ]]; then run_blobq_tls; fi
    done
done

if [[ -n $SCALE_CASES ]]; then
    echo "bench: scale cases $SCALE_CASES" >&2
    # With a baseline, case by case beside blobq, the two taking turns going
    # first; "storm" stays with a "million" before it, whose push rate paces
    # its fill. The baseline's rows are relabelled: the scale harness names
    # every row "blobq".
    groups=("$SCALE_CASES")
    if [[ -n $BASELINE ]]; then
        groups=()
        for case in ${SCALE_CASES//,/ }; do
            if [[ $case == storm && ${#groups[@]} -gt 0 && ${groups[-1]} == million ]]; then
                groups[-1]=million,storm
            else
                groups+=("$case")
            fi
        done
    fi
    n=0
    for group in "${groups[@]}"; do
        n=$((n + 1))
        for target in $(round_order "$n" "blobq${BASELINE:+ baseline}"); do
            bin=$BLOBQ
            [[ $target == baseline ]] && bin=$BASELINE
            # shellcheck disable=SC2086 # SCALE_ARGS is a list of words
            SCALE cases --blobq "$bin" --only "$group" $SCALE_ARGS | relabel "$target" >>"$ROWS" ||
                fail "scale cases $group ($target)"
        done
    done
fi

if ((JOBS_CASES)) && [[ " $TARGETS " == *" blobq "* ]]; then run_jobs; fi

mkdir -p "$(dirname "$OUT")"
{
    echo "blobq $(git describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)," \
        "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
    echo "wrk -t$THREADS -c$CONNS -d${DURATION}s (policy $POLICY), median of $ROUNDS interleaved rounds per case; latencies in ms;" \
        "load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ -n $BASELINE ]]; then
        echo "baseline: $BASELINE (modified $(date -u -r "$BASELINE" +%Y-%m-%dT%H:%MZ))"
    fi
    echo
    bench_table "$ROWS"
    if [[ " $TARGETS " == *" auth "* ]]; then auth_verdicts "$ROWS"; fi
    if [[ " $TARGETS " == *" batch "* ]]; then batch_verdicts "$ROWS"; fi
    if ((JOBS_CASES)) && [[ " $TARGETS " == *" blobq "* ]]; then jobs_verdicts "$ROWS"; fi
    protocol_ratios "$ROWS"
} | tee "$OUT"
if ((NATS_CASES)); then
    echo
    bench/nats.sh || fail "the NATS backend's cases (bench/nats.sh)"
fi
if ((FAILED)); then
    echo "bench: some cases failed (see above)" >&2
    exit 1
fi
