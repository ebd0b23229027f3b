//! The benchmark harness's bookkeeping (`bench/table.awk`, `wrk_errors` in
//! `bench/lib.sh`): which wrk errors fail a `make bench` run and how the
//! table reports the rest. Runs the scripts themselves with awk and bash,
//! which every machine that runs `make bench` has.

use std::path::Path;
use std::process::Command;

fn bench_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench"))
}

/// The table `bench/table.awk` prints for these tab-separated rows.
fn table(rows: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.tsv");
    std::fs::write(&path, rows).unwrap();
    let out = Command::new("awk")
        .arg("-F\t")
        .arg("-f")
        .arg(bench_dir().join("table.awk"))
        .arg(&path)
        .output()
        .expect("awk runs");
    assert!(out.status.success(), "awk failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The table's line for `target` and `case`.
fn line<'a>(table: &'a str, target: &str, case: &str) -> &'a str {
    let start = format!("| {target} | {case} |");
    table
        .lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no row {start} in\n{table}"))
}

/// What `wrk_errors TARGET LINE` says: (errors that fail the run, dropped).
fn wrk_errors(target: &str, line: &str) -> (u64, u64) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#". "$0/lib.sh" && wrk_errors "$1" "$2""#)
        .arg(bench_dir())
        .arg(target)
        .arg(line)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "bash failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut numbers = text.split_whitespace().map(|n| n.parse().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

fn wrk_line(read: u64, status: u64) -> String {
    format!(
        r#"{{"requests":1000,"duration_us":5000000,"bytes":1,"p50_us":1,"p99_us":2,"connect":0,"read":{read},"write":0,"status":{status},"timeout":0}}"#
    )
}

#[test]
fn connections_the_peer_drops_are_counted_not_failed() {
    assert_eq!(wrk_errors("webdis", &wrk_line(3, 0)), (0, 3));
    assert_eq!(wrk_errors("webdis", &wrk_line(3, 2)), (2, 3));
}

#[test]
fn every_error_from_blobq_or_the_ceiling_fails() {
    for target in ["blobq", "ceiling", "ceiling-kept", "ceiling-shaped"] {
        assert_eq!(wrk_errors(target, &wrk_line(3, 0)), (3, 0), "{target}");
        assert_eq!(wrk_errors(target, &wrk_line(0, 0)), (0, 0), "{target}");
    }
}

#[test]
fn the_table_shows_medians_ratios_and_the_drops_of_each_case() {
    let rows = "\
webdis\tpush 100 B\t100\t1.00\t2.00\t\t3
webdis\tpush 100 B\t120\t1.00\t4.00\t\t0
webdis\tpush 100 B\t110\t1.00\t3.00\t\t2
webdis\tpop 100 B\t90\t1.00\t2.00\tRPOPLPUSH rotation\t0
blobq\tpush 100 B\t220\t0.50\t3.00\t\t0
blobq\tbig element\t-\t-\t-\t1000 MB/s
";
    let table = table(rows);
    let webdis = line(&table, "webdis", "push 100 B");
    assert!(webdis.contains("| 110 |"), "median req/s: {webdis}");
    assert!(
        webdis.ends_with("| dropped 5 connections in 2 of 3 samples |"),
        "{webdis}"
    );
    let pop = line(&table, "webdis", "pop 100 B");
    assert!(
        pop.ends_with("| RPOPLPUSH rotation |"),
        "no drops, no count: {pop}"
    );
    let blobq = line(&table, "blobq", "push 100 B");
    assert!(
        blobq.contains("| 2.00x, p99 1.00x |"),
        "ratio to webdis: {blobq}"
    );
    let scale = line(&table, "blobq", "big element");
    assert!(scale.ends_with("| 1000 MB/s |"), "{scale}");
}
