//! The journal when writes fail: a failed round is reported to its own
//! waiters only, leaves no torn record in the segment, is written first by
//! the next leader, and the log recovers without a restart. Writes and
//! syncs fail on demand through the `Faults` hook, so no full disk is
//! needed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{DataDir, SegmentKind, MAGIC};
use super::record::decode;
use super::*;

fn journal(dir: &std::path::Path, fsync: FsyncMode, interval: Duration) -> Arc<Journal> {
    let data = DataDir::new(dir);
    data.create().unwrap();
    let config = DurabilityConfig {
        dir: dir.to_owned(),
        fsync,
        fsync_interval: interval,
        segment_bytes: 1 << 30,
        repair: false,
    };
    Arc::new(Journal::start(data, &config, 1, 0).unwrap())
}

/// A journal whose syncer never ticks during the test.
fn quiet(dir: &std::path::Path, fsync: FsyncMode) -> Arc<Journal> {
    journal(dir, fsync, Duration::from_secs(3600))
}

fn mark(journal: &Journal, id: u128) {
    journal.append(&Record::Expose { ns: "ns", id });
}

/// The ids of the segment's records, in order; fails on any record that
/// does not decode whole (a torn record left in the segment).
fn logged(dir: &std::path::Path) -> Vec<u128> {
    let bytes = std::fs::read(DataDir::new(dir).segment(1, SegmentKind::Log)).unwrap();
    assert_eq!(&bytes[..MAGIC.len()], MAGIC);
    let mut at = MAGIC.len();
    let mut ids = Vec::new();
    while at < bytes.len() {
        let (record, used) = decode(&bytes[at..]).expect("only whole records in the segment");
        match record {
            Record::Expose { id, .. } => ids.push(id),
            other => panic!("unexpected record {other:?}"),
        }
        at += used;
    }
    ids
}

#[tokio::test]
async fn a_failed_round_fails_its_waiters_is_cut_back_and_written_by_the_next_leader() {
    for mode in [FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never] {
        let dir = tempfile::tempdir().unwrap();
        let journal = quiet(dir.path(), mode);
        mark(&journal, 1);
        journal.wait(Commit::Accepted).await.unwrap();
        // The disk fills halfway through the next round's write.
        journal.shared.faults.partial.store(5, Ordering::Release);
        journal.shared.faults.writes.store(1, Ordering::Release);
        mark(&journal, 2);
        assert!(journal.wait(Commit::Accepted).await.is_err(), "{mode:?}");
        assert_eq!(
            logged(dir.path()),
            [1],
            "{mode:?}: cut back to the last good record"
        );
        assert!(journal
            .fault()
            .is_some_and(|f| f.full && f.reason.contains("No space left")));
        // Room again: the next round writes the failed one's records first.
        mark(&journal, 3);
        journal.wait(Commit::Accepted).await.unwrap();
        assert_eq!(logged(dir.path()), [1, 2, 3], "{mode:?}");
        assert!(journal.fault().is_none(), "{mode:?}: healthy again");
        journal.close();
    }
}

#[tokio::test]
async fn a_failed_sync_in_always_mode_fails_the_round_and_leaves_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = quiet(dir.path(), FsyncMode::Always);
    mark(&journal, 1);
    journal.wait(Commit::Consumed).await.unwrap();
    journal.shared.faults.syncs.store(1, Ordering::Release);
    mark(&journal, 2);
    assert!(journal.wait(Commit::Consumed).await.is_err());
    assert_eq!(logged(dir.path()), [1], "written but not synced: cut back");
    journal.wait(Commit::Consumed).await.unwrap();
    assert_eq!(logged(dir.path()), [1, 2]);
    journal.close();
}

#[tokio::test]
async fn while_behind_a_request_is_refused_before_it_changes_anything() {
    let dir = tempfile::tempdir().unwrap();
    let journal = quiet(dir.path(), FsyncMode::Always);
    journal.shared.faults.writes.store(3, Ordering::Release);
    mark(&journal, 1);
    assert!(journal.wait(Commit::Accepted).await.is_err());
    // Still full: the retry fails, and the caller changes nothing.
    assert!(journal.ready_for(Commit::Accepted).await.is_err());
    assert!(
        journal.ready_for(Commit::Consumed).await.is_err(),
        "always mode logs pops"
    );
    // Room again: the failed round is written and requests go ahead.
    journal.ready_for(Commit::Accepted).await.unwrap();
    assert_eq!(logged(dir.path()), [1]);
    assert!(!journal.shared.behind.load(Ordering::Acquire));
    journal.close();
}

#[tokio::test]
async fn pops_need_no_room_in_batch_mode_while_behind() {
    let dir = tempfile::tempdir().unwrap();
    let journal = quiet(dir.path(), FsyncMode::Batch);
    journal
        .shared
        .faults
        .writes
        .store(u64::MAX, Ordering::Release);
    mark(&journal, 1);
    assert!(journal.wait(Commit::Accepted).await.is_err());
    assert!(journal.ready_for(Commit::Accepted).await.is_err());
    journal.ready_for(Commit::Consumed).await.unwrap();
    journal.wait(Commit::Consumed).await.unwrap();
    journal.shared.faults.writes.store(0, Ordering::Release);
    journal.close();
    assert_eq!(logged(dir.path()), [1], "written at close");
}

/// Only the waiters of the round that failed are told: a request whose
/// records came later leads the next round itself.
#[tokio::test]
async fn a_request_appended_after_the_failed_round_is_not_told_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = quiet(dir.path(), FsyncMode::Batch);
    journal.shared.faults.writes.store(1, Ordering::Release);
    mark(&journal, 1);
    let held = journal.shared.hold();
    let first = tokio::spawn({
        let journal = journal.clone();
        async move { journal.wait(Commit::Accepted).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!first.is_finished(), "waits for the holder");
    // The holder leads a round holding the first waiter's records; it fails.
    assert!(journal.shared.lead(held, false).is_err());
    let first = tokio::time::timeout(Duration::from_secs(10), first).await;
    assert!(
        matches!(first, Ok(Ok(Err(_)))),
        "the failed round's waiter is told"
    );
    mark(&journal, 2);
    journal.wait(Commit::Accepted).await.unwrap();
    assert_eq!(logged(dir.path()), [1, 2]);
    journal.close();
}

/// With nobody writing, the background flush retries the failed round, so
/// the log (and `/healthz`) recovers by itself once space returns.
#[tokio::test]
async fn the_background_flush_retries_a_failed_round() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path(), FsyncMode::Batch, Duration::from_millis(10));
    journal.shared.faults.writes.store(3, Ordering::Release);
    mark(&journal, 1);
    assert!(journal.wait(Commit::Accepted).await.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.fault().is_some() || journal.shared.behind.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the log did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(logged(dir.path()), [1]);
    journal.close();
}

/// A full segment that cannot be sealed (the next one cannot be created)
/// keeps taking records; the fault is reported until sealing succeeds.
#[tokio::test]
async fn a_segment_that_cannot_be_sealed_grows_and_the_fault_clears_once_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    data.create().unwrap();
    let config = DurabilityConfig {
        dir: dir.path().to_owned(),
        fsync: FsyncMode::Always,
        fsync_interval: Duration::from_secs(3600),
        segment_bytes: 4096,
        repair: false,
    };
    let journal = Journal::start(data.clone(), &config, 1, 0).unwrap();
    // Something in the way of the next segment.
    let next = data.segment(2, SegmentKind::Log);
    std::fs::write(&next, b"in the way").unwrap();
    let mut id = 0;
    while std::fs::metadata(data.segment(1, SegmentKind::Log))
        .unwrap()
        .len()
        < 8192
    {
        id += 1;
        mark(&journal, id);
        journal
            .wait(Commit::Accepted)
            .await
            .expect("written all the same");
        assert_eq!(
            journal.fault().is_some(),
            id > 1 && journal.shared.hold().file_len >= 4096
        );
    }
    assert!(journal.fault().is_some());
    assert_eq!(
        std::fs::read(&next).unwrap(),
        b"in the way",
        "not ours: left alone"
    );
    std::fs::remove_file(&next).unwrap();
    mark(&journal, id + 1);
    journal.wait(Commit::Accepted).await.unwrap();
    assert!(journal.fault().is_none(), "sealed: healthy again");
    assert_eq!(logged(dir.path()).len() as u128, id + 1);
    journal.close();
}

/// In `batch` mode a new blob file's bytes are synced by the background
/// flush, before the log that names it (`always` mode synced them before
/// the record was made; `never` syncs nothing); a file removed meanwhile
/// needs nothing and is no fault.
#[tokio::test]
async fn batch_mode_syncs_a_blob_file_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(dir.path(), FsyncMode::Batch, Duration::from_millis(10));
    let file = dir.path().join("blob");
    std::fs::write(&file, b"bytes").unwrap();
    journal.file_added(&file);
    journal.file_added(&dir.path().join("already-gone"));
    assert_eq!(journal.pending().body_files.len(), 2);
    mark(&journal, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The files are synced before the log: once the record is synced, so
    // are they.
    while journal.shared.progress.borrow().synced < 1 {
        assert!(Instant::now() < deadline, "the log was never synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(journal.fault().is_none());
    journal.close();
    for mode in [FsyncMode::Always, FsyncMode::Never] {
        let other = tempfile::tempdir().unwrap();
        let journal = quiet(other.path(), mode);
        journal.file_added(&file);
        assert!(journal.pending().body_files.is_empty(), "{mode:?}");
        journal.close();
    }
}
