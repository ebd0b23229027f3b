//! Compaction across restarts: however often the server is killed, the log
//! stays within about twice the live data plus two segments, and start-up
//! replays a compacted state rather than the history.

use std::path::Path;

use super::common::{self, options, pattern, TestServer};
use super::{drain, pop, push};

const SEGMENT: u64 = 1 << 20;

async fn start(dir: &Path) -> TestServer {
    start_with(dir, SEGMENT).await
}

async fn start_with(dir: &Path, segment: u64) -> TestServer {
    // The default spill threshold keeps 50 KB bodies in the log itself.
    options()
        .arg("--data-dir", dir.display())
        .arg("--log-segment-bytes", segment)
        .arg("--fsync", "always")
        .start()
        .await
}

fn log_bytes(dir: &Path) -> u64 {
    common::files_below(&dir.join("log"))
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Twelve runs, each pushing and popping 18 × 50 KB and then killed with
/// SIGKILL: after each kill and each start the log is within the bound, and
/// the few elements kept live throughout come back every time.
#[tokio::test]
async fn the_log_stays_bounded_across_a_dozen_kills() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path()).await;
    let keep: Vec<Vec<u8>> = (0..3u8).map(|i| pattern(100, i)).collect();
    for body in &keep {
        push(&server, "/qs/ns/keep", body.clone(), &[]).await;
    }
    // The live data is a few hundred bytes: the bound is two segments.
    let bound = 2 * SEGMENT + 64 * 1024;
    for run in 0..12u8 {
        for i in 0..18u8 {
            push(&server, "/qs/ns/churn", pattern(50_000, run ^ i), &[]).await;
        }
        for i in 0..18u8 {
            let (seen, _) = pop(&server, "/qs/ns/churn").await.expect("an element");
            assert_eq!(seen.body, pattern(50_000, run ^ i), "run {run}");
        }
        assert!(pop(&server, "/qs/ns/churn").await.is_none());
        server.kill_hard();
        let killed = log_bytes(data.path());
        assert!(
            killed <= bound,
            "run {run}: {killed} bytes of log after the kill"
        );
        server = start(data.path()).await;
        let started = log_bytes(data.path());
        assert!(
            started <= bound,
            "run {run}: {started} bytes of log after the start"
        );
    }
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("log compacted at start-up")),
        "what earlier runs left is compacted at start-up: {:?}",
        server.log()
    );
    let bodies: Vec<Vec<u8>> = drain(&server, "/qs/ns/keep")
        .await
        .into_iter()
        .map(|(s, _)| s.body)
        .collect();
    assert_eq!(bodies, keep);
}

/// With segments small enough that each run seals several and the
/// background compactor runs, a kill can land in the middle of a
/// compaction: the next start finishes the job, and the log converges.
#[tokio::test]
async fn kills_during_background_compaction_leave_a_log_that_converges() {
    const SMALL: u64 = 256 * 1024;
    let data = tempfile::tempdir().unwrap();
    let mut server = start_with(data.path(), SMALL).await;
    let keep = pattern(100, 7);
    push(&server, "/qs/ns/keep", keep.clone(), &[]).await;
    for run in 0..12u8 {
        for i in 0..18u8 {
            push(&server, "/qs/ns/churn", pattern(50_000, run ^ i), &[]).await;
            assert!(pop(&server, "/qs/ns/churn").await.is_some());
        }
        // Killed at once: the compactor may be writing.
        server.kill_hard();
        let killed = log_bytes(data.path());
        assert!(
            killed <= 4 * SMALL,
            "run {run}: {killed} bytes of log after the kill"
        );
        server = start_with(data.path(), SMALL).await;
        let started = log_bytes(data.path());
        assert!(
            started <= 2 * SMALL,
            "run {run}: {started} bytes of log after the start"
        );
    }
    let bodies: Vec<Vec<u8>> = drain(&server, "/qs/ns/keep")
        .await
        .into_iter()
        .map(|(s, _)| s.body)
        .collect();
    assert_eq!(bodies, vec![keep]);
    assert!(pop(&server, "/qs/ns/churn").await.is_none());
}
