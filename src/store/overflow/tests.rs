//! Segments: bodies read back byte for byte, files removed once nothing in
//! them is live, compaction moving live bodies while they are read, and
//! stale spill folders removed while live ones stay.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

fn config(segment_bytes: u64) -> OverflowConfig {
    OverflowConfig {
        segment_bytes,
        compact_percent: 25,
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn body(i: usize, len: usize) -> Bytes {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[tokio::test]
async fn bodies_read_back_whole_and_drained_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), config(4096));
    let mut stored = Vec::new();
    for i in 0..20 {
        let bytes = body(i, 700 + i);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    // 20 bodies of about 700 bytes, five to a segment of 4096.
    assert_eq!(overflow.segment_count(), 4);
    assert_eq!(files_in(dir.path()), 4);
    for (body, bytes) in &stored {
        assert_eq!(body.read().await.unwrap(), *bytes);
    }
    // The first segment's bodies go: its file with them.
    stored.drain(..5);
    assert_eq!(files_in(dir.path()), 3);
    // A body larger than a segment gets one to itself.
    let big = body(99, 5000);
    let b = overflow.append(big.clone()).await.unwrap();
    assert_eq!(b.read().await.unwrap(), big);
    stored.clear();
    drop(b);
    // Drained, even the segment being written goes.
    assert_eq!(overflow.segment_count(), 0);
    assert_eq!(files_in(dir.path()), 0);
    let again = overflow.append(body(7, 10)).await.unwrap();
    assert_eq!(again.read().await.unwrap(), body(7, 10));
    assert_eq!(files_in(dir.path()), 1);
}

#[tokio::test]
async fn a_mostly_dead_segment_is_compacted_and_a_reader_of_the_old_place_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), config(12_000));
    let mut stored = Vec::new();
    for i in 0..30 {
        let bytes = body(i, 1000);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    assert_eq!(overflow.segment_count(), 3);
    // Twelve bodies a segment; keep one in ten: the two sealed segments
    // are mostly dead, and their live bodies fit in the current one.
    let kept: Vec<_> = stored
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 3)
        .map(|(_, b)| b)
        .collect();
    let first = kept[0].0.place();
    let old = first.segment.clone();
    assert!(old.worth_compacting());
    overflow.compact_candidates().unwrap();
    assert!(!Arc::ptr_eq(&kept[0].0.place().segment, &old), "moved on");
    // The old place still reads the same bytes while it is held.
    assert_eq!(old.read_at(1000, first.offset).unwrap(), kept[0].1.to_vec());
    assert_eq!(old.live_bytes(), 0);
    drop((first, old));
    for (body, bytes) in &kept {
        assert_eq!(body.read().await.unwrap(), *bytes);
    }
    // Two sealed segments gone; the current one holds the moved bodies.
    assert_eq!(overflow.segment_count(), 1);
    assert_eq!(files_in(dir.path()), 1);
}

#[tokio::test]
async fn the_compactor_task_runs_when_a_sealed_segment_falls_below_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), config(8000));
    let closing = tokio_util::sync::CancellationToken::new();
    overflow.start_compactor(closing.clone());
    let mut stored = Vec::new();
    for i in 0..24 {
        let bytes = body(i, 1000);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    let kept = stored.remove(0);
    stored.truncate(7); // the rest of the first segment goes...
    stored.clear(); // ...and of the second; the third is current.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files_in(dir.path()) > 1 {
        assert!(std::time::Instant::now() < deadline, "not compacted");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(kept.0.read().await.unwrap(), kept.1);
    closing.cancel();
}

#[test]
fn stale_spill_folders_go_and_live_ones_stay() {
    let root = tempfile::tempdir().unwrap();
    let stale = root.path().join("blobq-stale1");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("segment-00000000"), b"old").unwrap();
    let other = root.path().join("not-ours");
    std::fs::create_dir(&other).unwrap();
    let live = SpillFolder::create(root.path()).unwrap();
    assert!(!stale.exists(), "a folder nobody holds is removed");
    assert!(other.exists(), "other names are left alone");
    let name = live.path().file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("blobq-"), "{name}");
    // A second store in the same directory leaves the first one's folder.
    let second = SpillFolder::create(root.path()).unwrap();
    assert!(live.path().exists());
    let live_path = live.path().to_owned();
    drop(live);
    assert!(!live_path.exists(), "removed on drop");
    assert!(second.path().exists());
}

/// Readers racing the compactor always read the right bytes: from the old
/// place, held until they finish, or from the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_a_compaction_read_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), config(16_384));
    let mut kept = Vec::new();
    for i in 0..200 {
        let bytes = body(i, 500 + i % 300);
        let b = overflow.append(bytes.clone()).await.unwrap();
        if i % 8 == 0 {
            kept.push((b, bytes));
        }
    }
    let kept = Arc::new(kept);
    let before = files_in(dir.path());
    assert!(before >= 6, "{before} segments");
    let mut readers = Vec::new();
    for _ in 0..4 {
        let kept = kept.clone();
        readers.push(tokio::spawn(async move {
            for _ in 0..20 {
                for (b, bytes) in kept.iter() {
                    assert_eq!(b.read().await.unwrap(), *bytes);
                }
            }
        }));
    }
    let compacting = {
        let overflow = overflow.clone();
        tokio::task::spawn_blocking(move || overflow.compact_candidates())
    };
    compacting.await.unwrap().unwrap();
    for r in readers {
        r.await.unwrap();
    }
    for (b, bytes) in kept.iter() {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
    assert!(
        files_in(dir.path()) <= 2,
        "compacted from {before} segments"
    );
}
