//! Damaged blob files: a flipped byte or a truncated file is never served
//! as a complete answer; the element moves to its dead-letter queue with the
//! reason in its metadata, and `/metrics` counts the damage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::{self, custom_data, header, pattern, TestServer, STEP};
use super::{durable, push, stop};

pub(super) const SIZE: usize = 300_000;

/// The one blob file of a data directory.
pub(super) fn blob_file(dir: &Path) -> PathBuf {
    let files = common::files_below(&dir.join("blobs"));
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

pub(super) async fn damaged_count(server: &TestServer) -> u64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("blobq_damaged_blobs_total "))
        .unwrap_or_else(|| panic!("no damage counter in {text}"))
        .parse()
        .unwrap()
}

/// Pops `path` (a damaged element's queue): whatever the answer, it is not
/// a complete `200` body.
pub(super) async fn pop_is_never_complete(server: &TestServer, path: &str) {
    let Ok(r) = server.client.get(server.url(path)).send().await else {
        return; // cut off before its head was even sent out
    };
    let status = r.status().as_u16();
    if status != 200 {
        assert_eq!(status, 500, "{path}");
        return;
    }
    let announced: usize = header(&r, "content-length").parse().unwrap();
    assert_eq!(announced, SIZE);
    // Cut off: the client knows the answer is incomplete.
    if let Ok(body) = r.bytes().await {
        panic!(
            "a damaged body was answered complete ({} bytes)",
            body.len()
        );
    }
}

/// Waits for the damaged element in `queue`'s dead-letter queue and
/// returns its metadata.
pub(super) async fn dead_lettered(server: &TestServer, queue: &str, id: &str) -> Vec<String> {
    let deadline = Instant::now() + STEP;
    loop {
        let r = server.get(&format!("{queue}.dead")).await;
        if r.status() == 200 {
            assert_eq!(header(&r, "x-queueserver-id"), id);
            let custom = custom_data(&r);
            assert!(
                r.bytes().await.unwrap().is_empty(),
                "moved without the damaged bytes"
            );
            return custom;
        }
        assert_eq!(r.status(), 204);
        assert!(Instant::now() < deadline, "nothing in {queue}.dead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_flipped_byte_is_never_served_complete_and_the_element_is_dead_lettered() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    let body = pattern(SIZE, 9);
    let id = push(&server, "/qs/ns/q", body, &[("x-custom-data", "k=v")]).await;
    // The checksum is in the log: it is checked after a restart too.
    stop(&mut server).await;
    let mut server = durable(data.path(), &[]).await;
    let file = blob_file(data.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[SIZE - 10] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    pop_is_never_complete(&server, "/qs/ns/q").await;
    let custom = dead_lettered(&server, "/qs/ns/q", &id).await;
    assert_eq!(custom, vec!["k=v", "blobq-damage=checksum"]);
    assert_eq!(damaged_count(&server).await, 1);
    assert!(
        common::files_below(&data.path().join("damaged"))
            .iter()
            .any(|p| std::fs::read(p).unwrap() == bytes),
        "the damaged file is kept for inspection"
    );
    stop(&mut server).await;
}

#[tokio::test]
async fn a_truncated_file_is_not_served_and_its_element_survives_a_restart_dead_lettered() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    let id = push(&server, "/qs/ns/q", pattern(SIZE, 4), &[]).await;
    let file = blob_file(data.path());
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(SIZE as u64 / 2).unwrap();

    let r = server.get("/qs/ns/q").await;
    assert_eq!(r.status(), 500, "found before the answer starts");
    assert_eq!(damaged_count(&server).await, 1);
    // The move is in the log: it is found after a restart.
    stop(&mut server).await;
    let server = durable(data.path(), &[]).await;
    assert_eq!(server.get("/qs/ns/q").await.status(), 204);
    let custom = dead_lettered(&server, "/qs/ns/q", &id).await;
    assert_eq!(custom, vec!["blobq-damage=size"]);
}

/// A leased pop of a damaged element ends its lease: the element is in the
/// dead-letter queue, not back in its queue for another consumer.
#[tokio::test]
async fn a_damaged_element_popped_under_a_lease_is_dead_lettered_once() {
    let data = tempfile::tempdir().unwrap();
    let server = durable(data.path(), &[]).await;
    let id = push(&server, "/qs/ns/q", pattern(SIZE, 5), &[]).await;
    let file = blob_file(data.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x80;
    std::fs::write(&file, &bytes).unwrap();

    pop_is_never_complete(&server, "/qs/ns/q?lease=60").await;
    let custom = dead_lettered(&server, "/qs/ns/q", &id).await;
    assert_eq!(custom, vec!["blobq-damage=checksum"]);
    let stats = server.json("/qs/ns/q/stats", 200).await;
    assert_eq!(stats["leased"], 0, "{stats}");
    assert_eq!(stats["elements"], 0, "{stats}");
}

/// With `--fsync always` the move of an element whose checksum fails is
/// synced before its answer fails, as a size mismatch's is before the
/// answer starts: a crash right after the client saw the failure still
/// finds the element in the dead-letter queue.
#[tokio::test]
async fn with_fsync_always_a_crash_after_a_checksum_failure_keeps_the_dead_lettered_element() {
    let data = tempfile::tempdir().unwrap();
    // A long interval: nothing reaches the log in the background meanwhile.
    let flags = [("--fsync", "always"), ("--fsync-interval-ms", "600000")];
    let mut server = durable(data.path(), &flags).await;
    let id = push(&server, "/qs/ns/q", pattern(SIZE, 7), &[]).await;
    let file = blob_file(data.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[SIZE / 2] ^= 0x04;
    std::fs::write(&file, &bytes).unwrap();

    pop_is_never_complete(&server, "/qs/ns/q").await;
    server.kill_hard();
    let server = durable(data.path(), &flags).await;
    assert_eq!(server.get("/qs/ns/q").await.status(), 204);
    let custom = dead_lettered(&server, "/qs/ns/q", &id).await;
    assert_eq!(custom, vec!["blobq-damage=checksum"]);
}
