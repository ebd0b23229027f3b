//! Batches on the embedded store (docs/API.md, "Batches"): a large part
//! streamed through a spill file, a part's header limit, the parser's
//! properties, a full spill directory, and a durable batch across a crash.
//! Batch pushes, pops, acknowledgements and their limits are in the suite
//! run on every backend (tests/suite/batch.rs, batch_limits.rs).

mod common;
#[path = "batch/diskfull.rs"]
mod diskfull;
#[path = "batch/durable.rs"]
mod durable;
#[path = "batch/limits.rs"]
mod limits;
#[path = "batch/parsing.rs"]
mod parsing;
#[path = "diskfull/tmpfs.rs"]
mod tmpfs;
#[path = "batch/wire.rs"]
mod wire;

use common::pattern;
use wire::{pop, push, Part};

#[tokio::test]
async fn a_batch_with_a_large_spilled_part_streams_both_ways() {
    let server = common::start().await;
    let big = pattern(6 << 20, 9);
    let parts = [
        Part::new("small"),
        Part::new(big.clone()).header("Content-Type", "application/x-big"),
        Part::new("tail"),
    ];
    let elements = push(&server, "ns", "q", &parts).await;
    assert_eq!(elements[1]["size"], big.len() as u64);
    assert_eq!(server.spill_files().len(), 1, "the large part is in a file");
    let (memory, disk) = wire::stored_bytes(&server).await;
    assert_eq!((memory, disk), (9, big.len() as u64));
    let batch = pop(&server, "/qs/ns/q?count=3").await;
    assert_eq!(batch.parts[1].body, big);
    assert_eq!(batch.parts[2].body, b"tail");
    assert!(server.spill_files().is_empty(), "popped, its file is gone");
}
