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
        ..OverflowConfig::default()
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
    assert!(old.worth_compacting_below(25));
    overflow.compact_below(25).await.unwrap();
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
    // Folders of other programs that merely share the prefix are left alone.
    let lookalike = root.path().join("blobq-bench.Ab12Cd");
    std::fs::create_dir(&lookalike).unwrap();
    let holding_more = root.path().join("blobq-abc123");
    std::fs::create_dir(&holding_more).unwrap();
    std::fs::write(holding_more.join("rows.tsv"), b"x").unwrap();
    let live = SpillFolder::create(root.path()).unwrap();
    assert!(!stale.exists(), "a folder nobody holds is removed");
    assert!(other.exists(), "other names are left alone");
    assert!(lookalike.exists(), "a longer name is not a spill folder");
    assert!(
        holding_more.exists(),
        "a folder holding other files is kept"
    );
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
        tokio::spawn(async move { overflow.compact_below(25).await })
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

fn windows(segment_bytes: u64, read_ahead_bytes: u64) -> OverflowConfig {
    OverflowConfig {
        read_ahead_bytes,
        read_ahead_windows: 2,
        ..config(segment_bytes)
    }
}

/// Appends arriving while a write is in progress are written together
/// (group commit): one write for all of them, every body where it was said
/// to be.
#[tokio::test]
async fn appends_arriving_together_are_written_many_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), config(1 << 20));
    // As if a flusher were busy: the appends queue up behind it.
    overflow.writer.lock().unwrap().flushing = true;
    let appends: Vec<_> = (0..400)
        .map(|i| {
            let overflow = overflow.clone();
            tokio::spawn(async move {
                let bytes = body(i, 1000 + i % 50);
                (overflow.append(bytes.clone()).await.unwrap(), bytes)
            })
        })
        .collect();
    while overflow.writer.lock().unwrap().queue.len() < 400 {
        tokio::task::yield_now().await;
    }
    // The flusher runs with the flag set, and clears it once done.
    let flusher = overflow.clone();
    tokio::task::spawn_blocking(move || flusher.flush_queued());
    let mut stored = Vec::new();
    for a in appends {
        stored.push(a.await.unwrap());
    }
    assert_eq!(overflow.writes(), 1, "one write for 400 bodies");
    for (b, bytes) in &stored {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
}

/// A write queue smaller than what arrives makes appends wait for room,
/// and one body larger than the whole queue still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_makes_appends_wait_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let small = OverflowConfig {
        write_queue_bytes: 4096,
        ..config(1 << 20)
    };
    let overflow = Overflow::new(dir.path().to_owned(), small);
    let appends: Vec<_> = (0..100)
        .map(|i| {
            let overflow = overflow.clone();
            let bytes = body(i, if i == 50 { 10_000 } else { 900 });
            tokio::spawn(async move { (overflow.append(bytes.clone()).await.unwrap(), bytes) })
        })
        .collect();
    for a in appends {
        let (b, bytes) = a.await.unwrap();
        assert_eq!(b.read().await.unwrap(), bytes);
    }
    assert_eq!(
        overflow.queue_room.available_permits(),
        4096,
        "all given back"
    );
}

/// Bodies read in order share reads, those straddling a window's edge
/// included, and read back whole in any order; pops of neighbours arriving
/// together share the one read in flight.
#[tokio::test]
async fn pops_in_segment_order_are_served_from_windows_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), windows(16_384, 4096));
    let mut stored = Vec::new();
    for i in 0..60 {
        let bytes = body(i, 700 + (i * 97) % 600);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    for (b, bytes) in &stored {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
    let reads = overflow.reads();
    assert!(reads <= 30, "{reads} reads for 60 bodies");
    for (b, bytes) in stored.iter().rev() {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }

    let fresh = Overflow::new(dir.path().join("x"), windows(16_384, 8192));
    std::fs::create_dir(dir.path().join("x")).unwrap();
    let mut stored = Vec::new();
    for i in 0..6 {
        let bytes = body(i, 1000);
        stored.push((fresh.append(bytes.clone()).await.unwrap(), bytes));
    }
    let stored = Arc::new(stored);
    let pops: Vec<_> = (0..6)
        .map(|i| {
            let stored = stored.clone();
            tokio::spawn(async move { stored[i].0.read().await.unwrap() == stored[i].1 })
        })
        .collect();
    for p in pops {
        assert!(p.await.unwrap());
    }
    assert_eq!(fresh.reads(), 1, "one read for six neighbours");
}

/// A window's buffer is read into again once neither the window nor an
/// answer holds it, and never while an answer still does.
#[tokio::test]
async fn window_buffers_are_reused_only_once_nothing_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let one_window = OverflowConfig {
        read_ahead_windows: 1,
        ..windows(1 << 20, 4096)
    };
    let overflow = Overflow::new(dir.path().to_owned(), one_window);
    let mut stored = Vec::new();
    for i in 0..20 {
        let bytes = body(i, 1000);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    // Each read below starts a window of its own (four bodies a window),
    // which drops the one before it.
    let held = stored[0].0.read().await.unwrap();
    let first = held.as_ptr();
    let second = stored[8].0.read().await.unwrap();
    assert_ne!(
        second.as_ptr(),
        first,
        "the first answer still holds its buffer"
    );
    assert_eq!(held, stored[0].1, "and its bytes are unchanged");
    assert_eq!(second, stored[8].1);
    drop(held);
    let third = stored[16].0.read().await.unwrap();
    assert_eq!(third, stored[16].1);
    assert_eq!(third.as_ptr(), first, "the first buffer is free again");
    assert_eq!(overflow.reads(), 3);
}

/// Windows read from a segment before its compaction stay right for the
/// bodies they hold; a moved body is read from its new place.
#[tokio::test]
async fn read_ahead_stays_right_across_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), windows(12_000, 3500));
    let mut stored = Vec::new();
    for i in 0..30 {
        let bytes = body(i, 1000);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    let kept: Vec<_> = stored
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 12 == 3 || i % 12 == 4)
        .map(|(_, b)| b)
        .collect();
    for (b, bytes) in &kept {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
    let before: Vec<_> = kept.iter().map(|(b, _)| b.place().segment).collect();
    overflow.compact_below(25).await.unwrap();
    let moved = kept
        .iter()
        .zip(&before)
        .filter(|((b, _), old)| !Arc::ptr_eq(&b.place().segment, old))
        .count();
    assert!(moved >= 4, "{moved} bodies moved");
    drop(before);
    for (b, bytes) in kept.iter().rev() {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
    assert_eq!(files_in(dir.path()), 1);
}

/// A failed write fails the appends whose bytes it held, as a full disk
/// (so a push answers 507), and nothing else: bodies written before and
/// after read back whole, through windows spanning the unused room.
#[tokio::test]
async fn a_failed_write_fails_its_appends_and_loses_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let overflow = Overflow::new(dir.path().to_owned(), windows(1 << 20, 64 << 10));
    let mut stored = Vec::new();
    for i in 0..10 {
        let bytes = body(i, 900);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    overflow.fail_next_writes(1);
    let refused = overflow.append(body(10, 900)).await.unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::ENOSPC));
    // Appends arriving together: those in the failed write fail, the rest
    // are stored.
    overflow.fail_next_writes(1);
    let appends: Vec<_> = (11..60)
        .map(|i| {
            let overflow = overflow.clone();
            let bytes = body(i, 900);
            tokio::spawn(async move { (overflow.append(bytes.clone()).await, bytes) })
        })
        .collect();
    let mut failed = 0;
    for a in appends {
        match a.await.unwrap() {
            (Ok(b), bytes) => stored.push((b, bytes)),
            (Err(e), _) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
                failed += 1;
            }
        }
    }
    assert!(failed >= 1, "the failed write held a body");
    for i in 60..70 {
        let bytes = body(i, 900);
        stored.push((overflow.append(bytes.clone()).await.unwrap(), bytes));
    }
    let live: u64 = stored.iter().map(|(b, _)| b.size()).sum();
    assert_eq!(stored[0].0.place().segment.live_bytes(), live);
    for (b, bytes) in &stored {
        assert_eq!(b.read().await.unwrap(), *bytes);
    }
}
