#!/usr/bin/env bash
# A blobq jobs worker in a few lines of curl: claims jobs from one queue,
# reports progress, and uploads the input turned to upper case as the
# result. See docs/JOBS.md.
#
#   examples/job-worker.sh http://127.0.0.1:8080 NAMESPACE QUEUE
#
# WORKER_MAX_JOBS=N stops after N jobs (default: run until killed).
set -euo pipefail

base=$1 ns=$2 queue=$3
max=${WORKER_MAX_JOBS:-0}
done_jobs=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

while [ "$max" -eq 0 ] || [ "$done_jobs" -lt "$max" ]; do
  # Block up to 20 s for a job, under a 60 s lease.
  status=$(curl -sS -X POST -D "$work/headers" -o "$work/input" -w '%{http_code}' \
    "$base/jobs/$ns/$queue/claim?lease=60&timeout=20")
  [ "$status" = 204 ] && continue
  [ "$status" = 200 ] || { echo "claim answered $status" >&2; exit 1; }
  header() { grep -i "^$1:" "$work/headers" | head -n1 | cut -d' ' -f2- | tr -d '\r'; }
  job=$(header location)
  lease=$(header x-queueserver-lease)

  curl -sS -o /dev/null -X POST "$base$job/heartbeat" -H "X-QueueServer-Lease: $lease" \
    -d '{"progress": 50, "message": "converting"}'

  if tr '[:lower:]' '[:upper:]' <"$work/input" >"$work/result"; then
    curl -sS -o /dev/null --fail-with-body -X PUT "$base$job/result" \
      -H "X-QueueServer-Lease: $lease" -H 'Content-Type: text/plain' \
      --data-binary "@$work/result"
  else
    curl -sS -o /dev/null -X POST "$base$job/fail" -H "X-QueueServer-Lease: $lease" \
      -d '{"code": "CONVERT_FAILED", "message": "tr failed", "retry": true}'
  fi
  done_jobs=$((done_jobs + 1))
done
