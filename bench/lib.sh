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

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# A field of the JSON line wrk.lua prints.
jf() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
