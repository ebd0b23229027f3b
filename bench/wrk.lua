-- wrk script for `make bench` (bench/run.sh).
--
-- BENCH_METHOD: the request method (default GET).
-- BENCH_SIZE:   bytes of request body to send (default 0: none).
--
-- The request is built once, so wrk stays on its fast path. No `response`
-- callback: defining one makes wrk copy every body into Lua, which for 1 MiB
-- answers costs the generator (which shares the machine) more than the
-- server. wrk counts statuses of 400 and above itself; run.sh also checks
-- afterwards that the queue never ran empty (a 2xx "empty" answer).
--
-- done() prints one JSON line that run.sh parses.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local size = tonumber(os.getenv("BENCH_SIZE") or "0")
if size > 0 then
  wrk.body = string.rep("x", size)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
