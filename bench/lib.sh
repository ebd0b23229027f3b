# shellcheck shell=bash
# Helpers shared by the bench scripts; sourced, not run.

# need CMD HINT: fail unless CMD is installed.
need() { command -v "$1" >/dev/null || { echo "bench: $1 not found ($2)" >&2; exit 1; }; }

# Every process a script starts goes into PIDS; WORK is its scratch folder.
# Both are cleaned up however the script ends.
start_workdir() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# ports_free PORT...: fail if something already listens on one of them.
ports_free() {
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "bench: port $port is already in use" >&2
            exit 1
        fi
    done
}

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: nothing listens on port $1" >&2
    exit 1
}

# generator_policy: sets POLICY from BENCH_POLICY ("batch", the default, or
# "other") and GENERATOR, the command that runs wrk under it. Under batch a
# response that wakes wrk does not preempt the server worker that sent it
# (see "The generator's scheduling policy" in docs/PERFORMANCE.md).
# shellcheck disable=SC2034 # POLICY and GENERATOR are for the caller
generator_policy() {
    POLICY=${BENCH_POLICY:-batch}
    case $POLICY in
    batch) GENERATOR=(chrt --batch 0) ;;
    other) GENERATOR=() ;;
    *)
        echo "bench: BENCH_POLICY is batch or other, not $POLICY" >&2
        exit 2
        ;;
    esac
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# with_baseline TARGETS: TARGETS with "baseline" right after "blobq" (or
# last, without blobq), once.
with_baseline() {
    local targets=() t
    for t in $1; do
        [[ $t == baseline ]] && continue
        targets+=("$t")
        [[ $t == blobq ]] && targets+=(baseline)
    done
    [[ " ${targets[*]} " == *" baseline "* ]] || targets+=(baseline)
    echo "${targets[*]}"
}

# round_order ROUND TARGETS: the targets in the order round ROUND runs them.
# With both blobq and baseline, the two swap places in even rounds, so that
# neither always runs first (and so in the state the other left the machine in).
round_order() {
    local order=() t
    for t in $2; do
        if (($1 % 2 == 0)) && [[ " $2 " == *" blobq "* && " $2 " == *" baseline "* ]]; then
            case $t in
            blobq) t=baseline ;;
            baseline) t=blobq ;;
            esac
        fi
        order+=("$t")
    done
    echo "${order[*]}"
}

# relabel TARGET: rows on stdin with their first field (the target) set to
# TARGET, for the scale harness's rows of the baseline binary.
relabel() { awk -F'\t' -v OFS='\t' -v target="$1" '{ $1 = target; print }'; }

# bench_table ROWS: the table of every case, then the targets judged on it.
bench_table() {
    awk -F'\t' -f bench/rows.awk -f bench/table.awk -f bench/targets.awk "$1"
}

# A field of the JSON line wrk.lua prints.
jf() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }

# wrk_rate LINE: the requests per second of one wrk.lua result line.
wrk_rate() { echo $(($(jf requests "$1") * 1000000 / $(jf duration_us "$1"))); }

# wrk_errors TARGET LINE: "ERRORS DROPPED" for one wrk.lua result line.
# webdis, the peer, drops a few keep-alive connections under load (a wrk
# "read" error: the connection closed under a request, no answer at all).
# That is the peer's flaw, not a wrong answer from what is measured: such
# drops are DROPPED, for the row's notes. From any other target every error
# is one of ERRORS, which fail the run.
wrk_errors() {
    local errors dropped
    errors=$(($(jf connect "$2") + $(jf write "$2") + $(jf status "$2") + $(jf timeout "$2")))
    dropped=$(jf read "$2")
    if [[ $1 != webdis ]]; then
        errors=$((errors + dropped))
        dropped=0
    fi
    echo "$errors $dropped"
}

# --- TLS and HTTP/2 cases (run.sh, BENCH_TLS) ---

# h2load_result OUTPUT: "REQ_PER_S MEAN_MS BAD_STATUSES ERRORED" of one
# h2load run (BAD_STATUSES: answers of 400 and above; ERRORED: requests that
# got no answer), or nothing if it printed no result. h2load reports no
# percentiles, only the mean time per request.
h2load_result() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return sprintf("%.2f", v / 1000)
            if (v ~ /ms$/) return sprintf("%.2f", v + 0)
            if (v ~ /s$/) return sprintf("%.2f", v * 1000)
            return "-"
        }
        /^finished in/ { rate = $4 + 0 }
        /^requests:/ { for (f = 2; f <= NF; f++) if ($f ~ /^errored/) errored = $(f - 1) + 0 }
        /^status codes:/ { bad = $7 + $9 }
        /^time for request:/ { mean = ms($6) }
        END { if (rate > 0) printf "%d %s %d %d\n", rate + 0.5, (mean == "" ? "-" : mean), bad, errored }
    ' <<<"$1"
}

# protocol_ratios ROWS: blobq's cases over TLS and HTTP/2 ("push 100 B, TLS
# HTTP/1.1") against its plain HTTP/1.1 case of the same run ("push 100 B"),
# as a table; nothing when the run had none.
protocol_ratios() {
    awk -F'\t' -f bench/rows.awk -f /dev/stdin "$1" <<'AWK'
END {
    for (i = 1; i <= rows; i++) {
        if (t[i] != "blobq" || c[i] !~ /, (TLS|h2c|HTTP\/2)/) continue
        plain = c[i]; sub(/, .*$/, "", plain)
        j = key["blobq|" plain]
        if (!shown++) {
            print ""
            print "| blobq case | req/s | plain HTTP/1.1 req/s | ratio to plain |"
            print "| --- | ---: | ---: | ---: |"
        }
        printf "| %s | %s | %s | %s |\n", c[i], r[i], (j ? r[j] : "-"), (j ? ratio(r[i], r[j]) "x" : "-")
    }
}
AWK
}

# BLOBQ, the release binary (or BENCH_BLOBQ), and SCALE, the scale harness
# (or BENCH_SCALE_BIN), built if not given; both used by the caller.
# shellcheck disable=SC2034,SC2317
blobq_and_scale() {
    if [[ -n ${BENCH_BLOBQ:-} ]]; then
        BLOBQ=$(realpath "$BENCH_BLOBQ")
    else
        echo "bench: building" >&2
        cargo build -q --release --bin blobq
        BLOBQ=target/release/blobq
    fi
    if [[ -n ${BENCH_SCALE_BIN:-} ]]; then
        SCALE() { "$BENCH_SCALE_BIN" --bench "$@"; }
    else
        cargo bench -q --no-run --bench scale 2>/dev/null
        SCALE() { cargo bench -q --bench scale -- "$@"; }
    fi
}
