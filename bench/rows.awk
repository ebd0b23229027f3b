# The rows `bench/run.sh` collects, read once for the scripts that print
# from them (`table.awk`, `targets.awk`): one line per wrk sample (target,
# case, req/s, p50 ms, p99 ms, note, connections the peer dropped) or per
# scale case (the same, with "-" for what does not apply). Rows come once
# per round; at the end each (target, case) i has its medians r[i], p50[i]
# and p99[i], and spread[i]: how far apart its req/s samples were, as a
# share of the median ("" with one sample); with_baseline is 1 when a
# baseline binary ran (BENCH_BASELINE in `run.sh`). Run through `bench_table` in
# `bench/lib.sh`.
{
    k = $1 "|" $2
    if (!(k in key)) { rows++; key[k] = rows; t[rows] = $1; c[rows] = $2 }
    i = key[k]; m = ++seen[i]
    s[i, 1, m] = $3; s[i, 2, m] = $4; s[i, 3, m] = $5; n[i] = $6
    if ($7 > 0) { dropped[i] += $7; dropped_in[i]++ }
}
# Median of row i, field f (1 req/s, 2 p50, 3 p99) over its samples.
function median(i, f,   a, m, x, y, v) {
    m = seen[i]
    for (x = 1; x <= m; x++) a[x] = s[i, f, x]
    if (a[1] == "-" || a[1] == "") return a[1]
    for (x = 2; x <= m; x++)
        for (y = x; y > 1 && a[y - 1] + 0 > a[y] + 0; y--) { v = a[y]; a[y] = a[y - 1]; a[y - 1] = v }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
# (largest - smallest) / median of row i's req/s, in percent, or "".
function spread_of(i,   x, lo, hi, v) {
    if (seen[i] < 2 || s[i, 1, 1] == "-" || s[i, 1, 1] == "") return ""
    lo = hi = s[i, 1, 1] + 0
    for (x = 2; x <= seen[i]; x++) {
        v = s[i, 1, x] + 0
        if (v < lo) lo = v
        if (v > hi) hi = v
    }
    return r[i] > 0 ? sprintf("%d%%", 100 * (hi - lo) / r[i] + 0.5) : ""
}
# a / b unrounded, or "" when either is missing; `ratio` as the table shows it.
function exact(a, b) { return (a == "" || a == "-" || b == "" || b == "-" || b == 0) ? "" : a / b }
function ratio(a, b,   x) { x = exact(a, b); return x == "" ? "" : sprintf("%.2f", x) }
END {
    for (i = 1; i <= rows; i++) {
        r[i] = median(i, 1); p50[i] = median(i, 2); p99[i] = median(i, 3)
        if (r[i] != "-") r[i] = sprintf("%d", r[i] + 0.5)
        if (p50[i] != "-") p50[i] = sprintf("%.2f", p50[i])
        if (p99[i] != "-") p99[i] = sprintf("%.2f", p99[i])
        spread[i] = spread_of(i)
        if (t[i] == "baseline") with_baseline = 1
    }
}
