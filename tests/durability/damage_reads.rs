//! Damaged blob files read by id (`GET /tbs/{ns}/blobs/{id}`): as a popped
//! element's, a wrong size is refused before the answer starts and a wrong
//! checksum cuts the answer; the damage is logged, counted in `/metrics`
//! and its file kept in `DIR/damaged/`. The blob stays stored: the elements
//! referencing it move to their dead-letter queue when popped.

use std::time::{Duration, Instant};

use super::common::{self, header, pattern, TestServer, STEP};
use super::damage::{blob_file, damaged_count, dead_lettered, pop_is_never_complete, SIZE};
use super::{durable, push_reference};

/// Stores a blob of [`SIZE`] bytes in namespace `ns`: its id.
async fn store_blob(server: &TestServer, seed: u8) -> String {
    let r = server.post("/tbs/ns/blobs", pattern(SIZE, seed)).await;
    assert_eq!(r.status(), 201);
    header(&r, "x-blobstorage_id").to_owned()
}

/// Waits (bounded) for the server's log to report a damaged stored blob
/// `times` times.
async fn logged_damage(server: &TestServer, times: usize) {
    let deadline = Instant::now() + STEP;
    loop {
        let lines = server.log();
        let seen = lines
            .iter()
            .filter(|l| l.contains("a stored blob is damaged"))
            .count();
        if seen >= times {
            return;
        }
        assert!(Instant::now() < deadline, "damage not logged: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_blob_with_a_flipped_byte_is_never_read_complete_and_the_damage_is_counted() {
    let data = tempfile::tempdir().unwrap();
    let server = durable(data.path(), &[]).await;
    let blob = store_blob(&server, 3).await;
    let element = push_reference(&server, "/qs/ns/q", &[("x-blobstorage_id", &blob)]).await;
    let file = blob_file(data.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[SIZE - 3] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();

    let path = format!("/tbs/ns/blobs/{blob}");
    pop_is_never_complete(&server, &path).await;
    logged_damage(&server, 1).await;
    assert_eq!(damaged_count(&server).await, 1);
    assert!(
        common::files_below(&data.path().join("damaged"))
            .iter()
            .any(|p| std::fs::read(p).unwrap() == bytes),
        "the damaged file is kept for inspection"
    );
    // The blob stays: read again, it fails again; an element referencing
    // it moves to its dead-letter queue when popped.
    pop_is_never_complete(&server, &path).await;
    pop_is_never_complete(&server, "/qs/ns/q").await;
    let custom = dead_lettered(&server, "/qs/ns/q", &element).await;
    assert_eq!(custom, vec!["blobq-damage=checksum"]);
    assert_eq!(server.delete(&path).await.status(), 204);
}

#[tokio::test]
async fn a_truncated_blob_is_refused_before_the_answer_starts_and_stays_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = durable(data.path(), &[]).await;
    let blob = store_blob(&server, 8).await;
    let file = blob_file(data.path());
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(SIZE as u64 / 3).unwrap();

    let path = format!("/tbs/ns/blobs/{blob}");
    let r = server.get(&path).await;
    assert_eq!(r.status(), 500, "found before the answer starts");
    assert_eq!(
        header(&r, "content-type"),
        "application/problem+json",
        "a problem document, not a cut body"
    );
    logged_damage(&server, 1).await;
    assert_eq!(damaged_count(&server).await, 1);
    // A read that would delete the blob fails first: the blob stays.
    let r = server.get(&format!("{path}?delete=1")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(damaged_count(&server).await, 2);
    assert_eq!(server.get(&path).await.status(), 500, "still stored");
    assert_eq!(server.delete(&path).await.status(), 204);
    assert_eq!(server.get(&path).await.status(), 404);
}
