//! Durable compaction at the overflow's level, with a [`MoveLog`] that
//! moves (or refuses) as told: nothing moves without a log; only bodies the
//! log names are copied, each checked against its CRC32C; a body not yet
//! named is left for a later pass; copies the log refused leave no file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::compactor::Compacted;
use super::*;
use crate::backend::ids::BlobId;
use crate::backend::name::Name;

#[derive(Debug, Default)]
struct TestLog {
    refuse: AtomicBool,
    /// The blobs of the moves asked for.
    asked: Mutex<Vec<BlobId>>,
}

impl MoveLog for TestLog {
    fn commit_move(&self, body: &Arc<OverflowBody>, from: &Place, to: Place) -> bool {
        let name = body.log_name().expect("only named bodies are moved");
        self.asked.lock().unwrap().push(name.blob);
        !self.refuse.load(Ordering::Acquire) && body.move_to(from, to)
    }
}

fn durable(dir: &Path) -> Arc<Overflow> {
    let config = OverflowConfig {
        segment_bytes: 4096,
        read_ahead_bytes: 0,
        ..OverflowConfig::default()
    };
    Overflow::durable(dir.to_owned(), config, 0, Removal::Now)
}

fn body(i: usize) -> Bytes {
    (0..1000).map(|j| (i * 13 + j * 3) as u8).collect()
}

/// Four bodies of 1000 bytes in segment 0, named by the log as blobs 0 to
/// 3, then a fifth that seals it; all but `kept` (and the fifth) dropped.
async fn mostly_dead(overflow: &Overflow, kept: &[usize]) -> Vec<(usize, Arc<OverflowBody>)> {
    let mut bodies = Vec::new();
    for i in 0..5 {
        let b = overflow.append(body(i)).await.unwrap();
        named(&b, i);
        bodies.push((i, b));
    }
    bodies.retain(|(i, _)| kept.contains(i) || *i == 4);
    bodies
}

fn first_segment(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_name(0))
}

fn named(b: &OverflowBody, i: usize) {
    let ns = Name::parse("ns").unwrap();
    b.name_in_log(&ns, BlobId::from_u128(i as u128), crc32c::crc32c(&body(i)))
        .set_logged(true);
}

#[tokio::test]
async fn a_durable_overflow_moves_nothing_until_it_has_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = durable(dir.path());
    let bodies = mostly_dead(&overflow, &[0]).await;
    assert_eq!(overflow.compact_below(50).await.unwrap(), Compacted::Done);
    assert_eq!(
        bodies[0].1.place().segment.path(),
        first_segment(dir.path())
    );

    let log = Arc::new(TestLog::default());
    overflow.log_moves(log.clone());
    overflow.compact_below(50).await.unwrap();
    assert_eq!(*log.asked.lock().unwrap(), vec![BlobId::from_u128(0)]);
    assert!(
        !first_segment(dir.path()).exists(),
        "moved, and the file gone"
    );
    assert_eq!(bodies[0].1.read().await.unwrap(), body(0));
}

#[tokio::test]
async fn only_intact_bodies_the_log_names_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = durable(dir.path());
    let log = Arc::new(TestLog::default());
    overflow.log_moves(log.clone());
    let bodies = mostly_dead(&overflow, &[0, 1]).await;
    // Body 1 is gone from the log (a reader still holds it), and body 0's
    // bytes are damaged.
    bodies[1].1.log_name().unwrap().set_logged(false);
    let path = first_segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(overflow.compact_below(60).await.unwrap(), Compacted::Done);
    assert!(log.asked.lock().unwrap().is_empty(), "nothing moved");
    assert!(bodies[0].1.log_name().unwrap().is_damaged());
    assert!(!bodies[1].1.log_name().unwrap().is_damaged());
    for (_, b) in &bodies[..2] {
        assert_eq!(b.place().segment.path(), path, "left where it is");
    }
    // Marked, it is not read again.
    let reads = overflow.reads();
    overflow.compact_below(60).await.unwrap();
    assert_eq!(overflow.reads(), reads);
}

#[tokio::test]
async fn a_body_not_yet_named_is_left_for_later_and_a_refused_copy_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = durable(dir.path());
    let log = Arc::new(TestLog::default());
    overflow.log_moves(log.clone());
    // Segment 0: a named body, an unnamed one (its push not yet logged),
    // two dropped; a fifth body seals it.
    let first = overflow.append(body(0)).await.unwrap();
    named(&first, 0);
    let unnamed = overflow.append(body(1)).await.unwrap();
    for i in 2..4 {
        drop(overflow.append(body(i)).await.unwrap());
    }
    let sealer = overflow.append(body(4)).await.unwrap();
    assert_eq!(
        overflow.compact_below(60).await.unwrap(),
        Compacted::SomeLeft
    );
    assert_eq!(*log.asked.lock().unwrap(), vec![BlobId::from_u128(0)]);
    assert!(
        first_segment(dir.path()).exists(),
        "the unnamed body keeps it"
    );
    drop(unnamed);
    assert!(!first_segment(dir.path()).exists());

    // Segment 1 now holds the sealer and the moved body; with the sealer
    // dropped it is half dead. The log refuses the move: the copy, alone
    // in a new segment, is unused, and that segment goes at once.
    overflow.seal_current();
    drop(sealer);
    log.refuse.store(true, Ordering::Release);
    assert_eq!(overflow.compact_below(60).await.unwrap(), Compacted::Done);
    assert_eq!(log.asked.lock().unwrap().len(), 2);
    assert_eq!(overflow.segment_count(), 1);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(first.read().await.unwrap(), body(0));
}
