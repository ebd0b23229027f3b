//! Compaction of durable overflow segments: a mostly dead segment of
//! `DIR/segments/` is compacted in the background (its file disappears,
//! its survivors come back byte for byte, also after a restart), and a
//! SIGKILL during or after compactions, under `always` and `batch`, loses
//! no acknowledged element and duplicates none.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::{self, pattern, TestServer, STEP};
use super::{durable, pop, push, stop};

/// A durable server with every small body past the memory budget, in
/// segments of 16 KiB, compacted below 25 % live.
async fn compacting(dir: &Path, fsync: &str) -> TestServer {
    durable(
        dir,
        &[
            ("--memory-limit", "1"),
            ("--overflow-segment-bytes", "16384"),
            ("--overflow-compact-percent", "25"),
            ("--log-segment-bytes", "8192"),
            ("--fsync", fsync),
            ("--fsync-interval-ms", "20"),
        ],
    )
    .await
}

/// Body `i`: 300 to 900 bytes (below the spill threshold), each different.
fn body(i: usize) -> Vec<u8> {
    pattern(300 + (i * 53) % 600, (i * 7) as u8)
}

fn segment(dir: &Path, number: u64) -> PathBuf {
    dir.join("segments").join(format!("segment-{number:08}"))
}

fn holds(file: &Path, bytes: &[u8]) -> bool {
    std::fs::read(file).is_ok_and(|f| f.windows(bytes.len()).any(|w| w == bytes))
}

async fn pop_expecting(server: &TestServer, path: &str, expected: &(String, Vec<u8>), what: &str) {
    let popped = pop(server, path).await;
    let (seen, _) = popped.unwrap_or_else(|| panic!("{what}: no element"));
    assert_eq!(seen.id, expected.0, "{what}");
    assert!(seen.body == expected.1, "{what}: bytes differ");
}

#[tokio::test]
async fn a_mostly_dead_durable_segment_is_compacted_and_its_survivors_come_back_byte_for_byte() {
    for fsync in ["always", "batch"] {
        let data = tempfile::tempdir().unwrap();
        let mut server = compacting(data.path(), fsync).await;
        let mut pushed = Vec::new();
        for i in 0..80 {
            let bytes = body(i);
            pushed.push((push(&server, "/qs/ns/q", bytes.clone(), &[]).await, bytes));
        }
        let first = segment(data.path(), 0);
        let in_first = pushed.iter().filter(|(_, b)| holds(&first, b)).count();
        assert!(
            in_first > 8,
            "{fsync}: {in_first} bodies in the first segment"
        );
        // All but the last two of the first segment's bodies popped: it is
        // mostly dead, and the compactor moves the two.
        let survivors = in_first - 2;
        for (i, expected) in pushed.drain(..survivors).enumerate() {
            pop_expecting(
                &server,
                "/qs/ns/q",
                &expected,
                &format!("{fsync}: element {i}"),
            )
            .await;
        }
        let deadline = Instant::now() + STEP;
        while first.exists() {
            assert!(
                Instant::now() < deadline,
                "{fsync}: the first segment is still there"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pop_expecting(
            &server,
            "/qs/ns/q",
            &pushed.remove(0),
            &format!("{fsync}: a moved body"),
        )
        .await;

        // A restart finds the other moved body, and every later one, at
        // its place now.
        stop(&mut server).await;
        let mut server = compacting(data.path(), fsync).await;
        assert!(!first.exists(), "{fsync}");
        for (i, expected) in pushed.iter().enumerate() {
            pop_expecting(
                &server,
                "/qs/ns/q",
                expected,
                &format!("{fsync}: after the restart, {i}"),
            )
            .await;
        }
        assert!(pop(&server, "/qs/ns/q").await.is_none(), "{fsync}");
        stop(&mut server).await;
    }
}

/// Rounds of pushes to five queues, four of them popped as they go, so
/// that each sealed segment is about a fifth live and compacted: the fifth
/// queue's bodies move forward again and again. Each round ends with a
/// SIGKILL a moment (different each round) after its last pop, while the
/// compactor is likely moving bodies. After each restart the kept queue
/// holds every element pushed to it, once each, in order, byte for byte;
/// a popped queue holds nothing with `always`, and with `batch` at most the
/// last pops (not yet durable), never an element twice.
#[tokio::test]
async fn a_sigkill_during_or_after_compaction_loses_and_duplicates_nothing() {
    const KEPT: usize = 4;
    for fsync in ["always", "batch"] {
        let data = tempfile::tempdir().unwrap();
        let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
        let mut next = 0;
        for round in 0..4u64 {
            let mut server = compacting(data.path(), fsync).await;
            let mut popped: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); KEPT];
            for _ in 0..100 {
                let bytes = body(next);
                let queue = next % (KEPT + 1);
                next += 1;
                let path = format!("/qs/ns/q{queue}");
                let id = push(&server, &path, bytes.clone(), &[]).await;
                if queue == KEPT {
                    kept.push((id, bytes));
                    continue;
                }
                let (seen, _) = pop(&server, &path).await.expect("an element");
                assert_eq!(seen.id, id, "{fsync} round {round}");
                assert!(seen.body == bytes, "{fsync} round {round}");
                popped[queue].push((id, bytes));
            }
            tokio::time::sleep(Duration::from_millis(round * 15)).await;
            server.kill_hard();

            let mut server = compacting(data.path(), fsync).await;
            for (queue, popped) in popped.iter().enumerate() {
                let mut back = Vec::new();
                while let Some((seen, _)) = pop(&server, &format!("/qs/ns/q{queue}")).await {
                    back.push((seen.id, seen.body));
                }
                if fsync == "always" {
                    assert!(back.is_empty(), "always: a popped element came back");
                }
                assert!(
                    back.len() <= popped.len() && back[..] == popped[popped.len() - back.len()..],
                    "{fsync} round {round}: what came back of q{queue} is not its last pops"
                );
            }
            // The kept queue, read under leases, which a restart ends: still
            // there for the next round.
            for (i, expected) in kept.iter().enumerate() {
                let r = server.get(&format!("/qs/ns/q{KEPT}?lease=600")).await;
                assert_eq!(
                    r.status(),
                    200,
                    "{fsync} round {round}: element {i} of {}",
                    kept.len()
                );
                let id = common::header(&r, "x-queueserver-id").to_owned();
                let bytes = r.bytes().await.unwrap().to_vec();
                assert_eq!(id, expected.0, "{fsync} round {round}: element {i}");
                assert!(
                    bytes == expected.1,
                    "{fsync} round {round}: element {i}: bytes differ"
                );
            }
            let more = pop(&server, &format!("/qs/ns/q{KEPT}")).await;
            assert!(
                more.is_none(),
                "{fsync} round {round}: more than was pushed"
            );
            stop(&mut server).await;
        }
        // Stopped with leases held: back in their queue at the next start.
        let mut server = compacting(data.path(), fsync).await;
        let path = format!("/qs/ns/q{KEPT}");
        for (i, expected) in kept.iter().enumerate() {
            pop_expecting(
                &server,
                &path,
                expected,
                &format!("{fsync}: at the end, {i}"),
            )
            .await;
        }
        assert!(
            pop(&server, &format!("/qs/ns/q{KEPT}")).await.is_none(),
            "{fsync}"
        );
        stop(&mut server).await;
        let left = common::files_below(&data.path().join("segments"));
        assert!(left.len() <= 1, "{fsync}: segments left {left:?}");
    }
}
