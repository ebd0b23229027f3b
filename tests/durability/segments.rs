//! Small bodies past the memory budget in durable mode: appended to the
//! data directory's overflow segments (no file of their own), popped back
//! byte for byte while the log is compacted, brought back after a SIGKILL
//! without being loaded into memory, checked on read (a flipped byte moves
//! the element to its dead-letter queue) and their segments removed once
//! drained.

use std::path::Path;
use std::time::{Duration, Instant};

use super::common::{self, pattern, TestServer, STEP};
use super::damage::{damaged_count, dead_lettered};
use super::{durable, pop, push, stop};

/// Segments of 16 KiB: a few dozen bodies each.
const SEGMENT: &str = "16384";

/// A durable server holding at most `budget` bytes of bodies in memory,
/// with small log segments, so the log is compacted as bodies are read.
async fn overflowing(dir: &Path, budget: &str, fsync: &str) -> TestServer {
    durable(
        dir,
        &[
            ("--memory-limit", budget),
            ("--overflow-segment-bytes", SEGMENT),
            ("--log-segment-bytes", "4096"),
            ("--fsync", fsync),
        ],
    )
    .await
}

fn count(dir: &Path, folder: &str) -> usize {
    common::files_below(&dir.join(folder)).len()
}

/// The body of element `i`: below the spill threshold (1024), sizes and
/// bytes differing element to element.
fn body(i: usize) -> Vec<u8> {
    pattern(100 + (i * 37) % 900, i as u8)
}

async fn stored_bytes(server: &TestServer, storage: &str) -> u64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    let prefix = format!("blobq_stored_bytes{{storage=\"{storage}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .parse()
        .unwrap()
}

/// Pops `n` elements of `/qs/ns/q` and checks them against `expected`.
async fn pop_in_order(server: &TestServer, expected: &[(String, Vec<u8>)]) {
    for (i, (id, bytes)) in expected.iter().enumerate() {
        let (seen, _) = pop(server, "/qs/ns/q").await.expect("an element");
        assert_eq!(&seen.id, id, "element {i}");
        assert!(seen.body == *bytes, "element {i}: bytes differ");
    }
}

async fn wait_for_segments_at_most(dir: &Path, n: usize) {
    let deadline = Instant::now() + STEP;
    while count(dir, "segments") > n {
        assert!(
            Instant::now() < deadline,
            "segments left: {:?}",
            common::files_below(&dir.join("segments"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_backlog_past_the_budget_shares_segments_and_comes_back_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let mut server = overflowing(data.path(), "4000", "batch").await;
    let mut pushed = Vec::new();
    for i in 0..150 {
        let bytes = body(i);
        let id = push(&server, "/qs/ns/q", bytes.clone(), &[]).await;
        pushed.push((id, bytes));
    }
    let total: usize = pushed.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(count(data.path(), "blobs"), 0, "no file per body");
    let segments = count(data.path(), "segments");
    assert!(
        (2..=total / 16_384 + 2).contains(&segments),
        "{segments} segments for {total} bytes"
    );
    assert!(stored_bytes(&server, "memory").await <= 4000);
    assert!(stored_bytes(&server, "disk").await + 4000 >= total as u64);

    // Half popped (the log compacted meanwhile), then a restart, then the rest.
    pop_in_order(&server, &pushed[..75]).await;
    stop(&mut server).await;
    let mut server = overflowing(data.path(), "4000", "batch").await;
    assert!(
        stored_bytes(&server, "memory").await <= 4000,
        "a restart leaves the bodies in their segments"
    );
    pop_in_order(&server, &pushed[75..]).await;
    assert!(pop(&server, "/qs/ns/q").await.is_none());
    wait_for_segments_at_most(data.path(), 0).await;
    let log = common::files_below(&data.path().join("log"));
    assert!(
        log.iter()
            .any(|p| p.extension().is_some_and(|e| e == "compact")),
        "the log was compacted: {log:?}"
    );
    stop(&mut server).await;
}

#[tokio::test]
async fn a_sigkill_loses_no_acknowledged_body_in_a_segment() {
    for fsync in ["always", "batch"] {
        let data = tempfile::tempdir().unwrap();
        // Every body past the budget.
        let mut server = overflowing(data.path(), "1", fsync).await;
        let mut pushed = Vec::new();
        for i in 0..80 {
            let bytes = body(i + 3);
            let id = push(&server, "/qs/ns/q", bytes.clone(), &[]).await;
            pushed.push((id, bytes));
        }
        pop_in_order(&server, &pushed[..10]).await;
        server.kill_hard();

        let mut server = overflowing(data.path(), "1", fsync).await;
        assert_eq!(stored_bytes(&server, "memory").await, 0, "{fsync}");
        // At least once: with batch, the last pops may come back.
        let mut expected = &pushed[10..];
        let (first, _) = pop(&server, "/qs/ns/q").await.expect("an element");
        let at = pushed.iter().position(|(id, _)| *id == first.id).unwrap();
        assert!(at <= 10, "{fsync}: element {at} came first");
        assert!(first.body == pushed[at].1, "{fsync}");
        if fsync == "always" {
            assert_eq!(at, 10, "always: popped elements stay popped");
        }
        if at < 10 {
            pop_in_order(&server, &pushed[at + 1..10]).await;
        } else {
            expected = &pushed[11..];
        }
        pop_in_order(&server, expected).await;
        assert!(pop(&server, "/qs/ns/q").await.is_none(), "{fsync}");
        assert_eq!(count(data.path(), "blobs"), 0);
        wait_for_segments_at_most(data.path(), 0).await;
        stop(&mut server).await;
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_segment_is_found_on_read_and_dead_letters_its_element() {
    let data = tempfile::tempdir().unwrap();
    let mut server = overflowing(data.path(), "1", "batch").await;
    let before = push(&server, "/qs/ns/q", body(1), &[]).await;
    let target = pattern(700, 77);
    let id = push(
        &server,
        "/qs/ns/q",
        target.clone(),
        &[("x-custom-data", "k=v")],
    )
    .await;
    let after = push(&server, "/qs/ns/q", body(2), &[]).await;
    stop(&mut server).await;

    // The target's bytes in their segment, one of them flipped.
    let segment = common::files_below(&data.path().join("segments"))
        .into_iter()
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(target.len()).any(|w| w == target)
        })
        .expect("the body in a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(target.len())
        .position(|w| w == target)
        .unwrap();
    bytes[at + 350] ^= 0x04;
    std::fs::write(&segment, &bytes).unwrap();

    let mut server = overflowing(data.path(), "1", "batch").await;
    let (first, _) = pop(&server, "/qs/ns/q").await.unwrap();
    assert_eq!(first.id, before);
    let r = server.get("/qs/ns/q").await;
    assert_eq!(r.status(), 500, "found before the answer starts");
    let custom = dead_lettered(&server, "/qs/ns/q", &id).await;
    assert_eq!(custom, vec!["k=v", "blobq-damage=checksum"]);
    assert_eq!(damaged_count(&server).await, 1);
    let (next, _) = pop(&server, "/qs/ns/q").await.unwrap();
    assert_eq!(next.id, after, "the elements around it are intact");
    assert!(
        common::files_below(&data.path().join("damaged"))
            .iter()
            .any(|p| std::fs::read(p).unwrap() == bytes),
        "the damaged segment is kept for inspection"
    );
    stop(&mut server).await;
}
