# Each target of the performance issue (listed in docs/PERFORMANCE.md,
# "Targets") judged on this run's medians, after the table. A target blobq
# misses is "out of reach in this run" when even the floor misses it: the
# better of ceiling-kept (the HTTP stack holding the bodies and popping them
# oldest first, the least an in-memory FIFO does) and ceiling-shaped (that,
# answering in the contract's shape). With a baseline (BENCH_BASELINE), a
# second table judges blobq against it. Reads what `rows.awk` collected.

function rate(target, kase,   j) { j = key[target "|" kase]; return j ? r[j] : "" }
# Verdicts compare unrounded ratios (`exact`, in rows.awk). A ratio as the
# verdicts show it: three decimals, so that one just below a
# goal does not read as on it.
function times(x) { return x == "" ? "" : sprintf("%.3f×", x) }
# "NAME_A A×, NAME_B B×", leaving out either that is missing.
function both(name_a, a, name_b, b) {
    return (a == "" ? "" : name_a " " times(a)) (a != "" && b != "" ? ", " : "") (b == "" ? "" : name_b " " times(b))
}
function better(a, b) { return a == "" ? b : (b == "" || a + 0 >= b + 0) ? a : b }
# met, or why not: below the floor too, or not.
function verdict(got, goal, floor) {
    if (got == "") return ""
    if (got + 0 >= goal) return "met"
    if (floor != "" && floor + 0 < goal) return "out of reach in this run: the floor is below it too"
    return "not met"
}
function line(what, got, floor, judged) {
    if (judged != "") printf "| %s | %s | %s | %s |\n", what, got, floor, judged
}
# blobq against the ceiling on one wrk case, with the floors beside it.
function against_ceiling(kase, goal,   ceil, got, kept, shaped) {
    ceil = rate("ceiling", kase)
    got = exact(rate("blobq", kase), ceil)
    kept = exact(rate("ceiling-kept", kase), ceil)
    shaped = exact(rate("ceiling-shaped", kase), ceil)
    line(kase " ≥ " goal "× ceiling", times(got),
         both("ceiling-kept", kept, "ceiling-shaped", shaped),
         verdict(got, goal, better(kept, shaped)))
}
function p99_against_ceiling(kase, most,   b, c, got) {
    b = key["blobq|" kase]; c = key["ceiling|" kase]
    if (!b || !c) return
    got = exact(p99[b], p99[c])
    line(kase " p99 ≤ " most "× ceiling's", times(got), "", got == "" ? "" : (got + 0 <= most ? "met" : "not met"))
}
# blobq against webdis; the floor is the better of the two held-body
# ceilings against webdis, and the bare ceiling is shown as well.
function against_webdis(kase, goal,   w, got, bare, floor) {
    w = rate("webdis", kase)
    got = exact(rate("blobq", kase), w)
    bare = exact(rate("ceiling", kase), w)
    floor = better(exact(rate("ceiling-kept", kase), w), exact(rate("ceiling-shaped", kase), w))
    line(kase " ≥ " goal "× webdis", times(got),
         both("held-body ceiling", floor, "bare ceiling", bare),
         verdict(got, goal, floor))
}
# The number in text matched by re (which holds one number), or "".
function grab(text, re,   x) {
    if (!match(text, re)) return ""
    x = substr(text, RSTART, RLENGTH); gsub(/[^0-9.]/, "", x); return x
}
function each_below(a, a_most, b, b_most) {
    if (a == "" || b == "") return "not reported"
    return (a + 0 < a_most && b + 0 < b_most) ? "met" : "not met"
}
# The scale case of row i against its target, for blobq or the baseline
# (whose lines start "baseline: ").
function scale(i,   mbs, rss, per, x, who) {
    if (t[i] != "blobq" && t[i] != "baseline") return
    who = t[i] == "baseline" ? "baseline: " : ""
    if (c[i] ~ / element (push|pop)$/) {
        mbs = grab(n[i], "[0-9.]+ MB/s"); rss = grab(n[i], "peak RSS [0-9.]+ MiB")
        line(who c[i] " ≥ 500 MB/s, peak RSS < 64 MiB", mbs " MB/s, " rss " MiB", "",
             (mbs == "" || rss == "") ? "not reported" : (mbs + 0 >= 500 && rss + 0 < 64) ? "met" : "not met")
    } else if (c[i] ~ /blocked consumers/) {
        rss = grab(n[i], "server RSS [0-9.]+ MiB while waiting")
        line(who c[i] ": RSS < 256 MiB, p99 < 10 ms", rss " MiB, p99 " p99[i] " ms", "", each_below(rss, 256, p99[i], 10))
    } else if (c[i] ~ /queued .* elements$/) {
        per = grab(n[i], "[0-9.]+ B per element")
        line(who c[i] ": < 350 B each", per " B", "", per == "" ? "not reported" : (per + 0 < 350 ? "met" : "not met"))
    } else if (c[i] ~ /expiring under/) {
        x = grab(n[i], "[0-9.]+x the same load")
        line(who c[i] ": ≥ 0.8× without expiry", x == "" ? "" : x "×", "", x == "" ? "not reported" : verdict(x, 0.8, ""))
    }
}
# blobq against the baseline on one wrk case (the redesign's target), with
# the two against the bare ceiling of the same run beside it.
function against_baseline(kase, goal,   base, got, ceil) {
    base = rate("baseline", kase)
    got = exact(rate("blobq", kase), base)
    ceil = rate("ceiling", kase)
    line(kase " ≥ " goal "× baseline", times(got),
         both("blobq", exact(rate("blobq", kase), ceil), "baseline", exact(base, ceil)),
         verdict(got, goal, ""))
}
END {
    print ""
    print "Against the targets, in this run (floor: the better of ceiling-kept and ceiling-shaped):"
    print ""
    print "| target | blobq | floor in this run | verdict |"
    print "| --- | --- | --- | --- |"
    against_ceiling("push 100 B", 0.8); p99_against_ceiling("push 100 B", 1.25); against_webdis("push 100 B", 2)
    against_ceiling("pop 100 B", 0.8); p99_against_ceiling("pop 100 B", 1.25); against_webdis("pop 100 B", 2)
    against_ceiling("push 10 KiB", 0.8); against_ceiling("pop 10 KiB", 0.8)
    for (i = 1; i <= rows; i++) scale(i)
    if (with_baseline) {
        print ""
        print "Against the baseline (BENCH_BASELINE), in this run:"
        print ""
        print "| target | blobq | against the ceiling | verdict |"
        print "| --- | --- | --- | --- |"
        against_baseline("push 100 B", 0.9); against_baseline("pop 100 B", 0.9)
        against_baseline("push 10 KiB", 0.9); against_baseline("pop 10 KiB", 0.9)
    }
}
