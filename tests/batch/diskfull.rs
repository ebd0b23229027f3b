//! A full spill directory: a batch whose part cannot be written answers
//! `507` naming the part and stores nothing; once space is back the same
//! batch goes through, without a restart.

use crate::common::{self, pattern, problem};
use crate::tmpfs::TinyDisk;
use crate::wire::{self, encode, post_raw, queued, Part};

#[tokio::test]
async fn a_batch_meeting_a_full_spill_directory_is_507_and_leaves_nothing() {
    let Some(disk) =
        TinyDisk::mount("a_batch_meeting_a_full_spill_directory_is_507_and_leaves_nothing")
    else {
        return;
    };
    let server = common::options()
        .spill_into(disk.path())
        .arg("--spill-threshold", 1024)
        .start()
        .await;
    let parts = [
        Part::new("small"),
        Part::new(pattern(64 * 1024, 1)),
        Part::new(pattern(64 * 1024, 2)),
    ];
    disk.fill();
    let p = problem(post_raw(&server, "ns", "q", encode(&parts)).await, 507).await;
    assert_eq!(p["type"], "urn:blobq:problem:spill-dir-full", "{p}");
    assert_eq!(p["part"], 1, "{p}");
    assert_eq!(queued(&server, "ns", "q").await, 0);
    assert_eq!(wire::stored_bytes(&server).await, (0, 0));
    assert!(
        server.spill_files().is_empty(),
        "no file of the batch is left"
    );
    disk.free();
    let elements = wire::push(&server, "ns", "q", &parts).await;
    assert_eq!(elements.len(), 3);
    let batch = wire::pop(&server, "/qs/ns/q?count=3").await;
    assert_eq!(batch.parts[2].body, parts[2].body);
}
