# The table of every case: each (target, case) with its medians, the spread
# of its req/s samples (a case whose samples were far apart was disturbed by
# other load on the machine) and blobq's ratios to the other targets. Reads
# what `rows.awk` collected.

# The note of row i, with the connections the peer dropped if any.
function note(i) {
    if (!dropped[i]) return n[i]
    return n[i] (n[i] == "" ? "" : "; ") "dropped " dropped[i] " connections in " dropped_in[i] " of " seen[i] " samples"
}
function vs(i, other,   j) {
    j = key[other "|" c[i]]
    if (t[i] != "blobq" || !j) return ""
    return ratio(r[i], r[j]) "x, p99 " ratio(p99[i], p99[j]) "x"
}
END {
    print "| target | case | req/s | spread | p50 | p99 | blobq/ceiling | blobq/ceiling-kept | blobq/ceiling-shaped | blobq/webdis | notes |"
    print "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |"
    for (i = 1; i <= rows; i++)
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t[i], c[i], r[i], spread[i], p50[i], p99[i], vs(i, "ceiling"), vs(i, "ceiling-kept"), vs(i, "ceiling-shaped"), vs(i, "webdis"), note(i)
}
