# The table of every case: each (target, case) with its medians, the spread
# of its req/s samples (a case whose samples were far apart was disturbed by
# other load on the machine) and blobq's ratios to the other targets; the
# column for the baseline (BENCH_BASELINE) only in a run that has one. Reads
# what `rows.awk` collected.

# The note of row i, with the connections the peer dropped if any.
function note(i) {
    if (!dropped[i]) return n[i]
    return n[i] (n[i] == "" ? "" : "; ") "dropped " dropped[i] " connections in " dropped_in[i] " of " seen[i] " samples"
}
# blobq's row i against `other`'s row of the same case: "R×, p99 P×", with
# "-" for a ratio a row cannot give (a scale case's "-" fields).
function vs(i, other,   j, a, b) {
    j = key[other "|" c[i]]
    if (t[i] != "blobq" || !j) return ""
    a = ratio(r[i], r[j]); b = ratio(p99[i], p99[j])
    if (a == "" && b == "") return ""
    return (a == "" ? "-" : a "x") ", p99 " (b == "" ? "-" : b "x")
}
END {
    head = "| target | case | req/s | spread | p50 | p99 | blobq/ceiling | blobq/ceiling-kept | blobq/ceiling-shaped | blobq/webdis |"
    rule = "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
    if (with_baseline) { head = head " blobq/baseline |"; rule = rule " --- |" }
    print head " notes |"
    print rule " --- |"
    for (i = 1; i <= rows; i++) {
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", t[i], c[i], r[i], spread[i], p50[i], p99[i], vs(i, "ceiling"), vs(i, "ceiling-kept"), vs(i, "ceiling-shaped"), vs(i, "webdis")
        if (with_baseline) printf " %s |", vs(i, "baseline")
        printf " %s |\n", note(i)
    }
}
