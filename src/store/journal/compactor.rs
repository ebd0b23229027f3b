//! Compaction: sealed segments are rewritten as only what is still live, by
//! a thread of its own that reads the files alone, so compaction never takes
//! a store lock and pushes and pops never wait for it. It reads every sealed
//! segment on disk, earlier processes' too; what they left is counted at
//! start-up (and compacted there once worth it, see `store::recovery`).

use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use super::files::{DataDir, SegmentKind, MAGIC};
use super::group_commit::Shared;
use super::live::LiveState;
use super::replay::{apply_file, OnDamage, ReplayReport};

/// How much lower than the request threads the compactor runs: it rewrites
/// the whole live log now and then, and on a small machine that work should
/// wait for idle CPU rather than take it from answers.
const COMPACTOR_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (on Linux `setpriority`
/// with `who = 0` applies to the calling thread alone). Best effort.
fn lower_priority() {
    // SAFETY: setpriority takes no pointers; it only changes our own nice value.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, COMPACTOR_NICE) };
    if result != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not lower the compactor's priority");
    }
}

/// Compacts each sealed segment number it receives, until the journal closes.
pub(super) fn run(shared: &Shared, sealed: &mpsc::Receiver<u64>) {
    lower_priority();
    while let Ok(mut upto) = sealed.recv() {
        // Catch up in one pass if several were sealed meanwhile.
        while let Ok(later) = sealed.try_recv() {
            upto = later;
        }
        let started = Instant::now();
        let now = crate::store::clock::Millis::now().0;
        match compact(&shared.dir, upto, now) {
            Ok(bytes) => {
                shared.compacted_bytes.store(bytes, Ordering::Relaxed);
                tracing::info!(
                    segment = upto,
                    live_bytes = bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "log compacted"
                );
            }
            Err(e) => {
                shared.compaction_failed.store(true, Ordering::Release);
                tracing::error!(segment = upto, error = %e, "log compaction failed; will retry at the next segment")
            }
        }
    }
}

/// Whether the segments sealed since the last compaction, `sealed` bytes of
/// them, are worth rewriting: once they outgrow the live data the last
/// compaction left (`live` bytes), or a segment's worth while that is small.
/// Between two compactions the log holds the compacted file, less than this
/// much sealed, and the open segment: about twice the live data plus two
/// segments.
pub(crate) fn worth_compacting(sealed: u64, live: u64, segment_bytes: u64) -> bool {
    sealed >= live.max(segment_bytes)
}

/// Rewrites the state as of the end of segment `upto` into `upto.compact`,
/// reading the newest compacted file at or before `upto` and every log
/// segment after it up to `upto`, whichever process wrote them. Returns the
/// compacted file's size.
pub fn compact(dir: &DataDir, upto: u64, now: u64) -> io::Result<u64> {
    let files = dir.list()?;
    let base = files
        .iter()
        .filter(|(seq, k)| *k == SegmentKind::Compact && *seq <= upto)
        .map(|(seq, _)| *seq)
        .max();
    let mut state = LiveState::default();
    let mut report = ReplayReport::default();
    let inputs: Vec<(u64, SegmentKind)> = files
        .iter()
        .copied()
        .filter(|&(seq, kind)| {
            seq <= upto
                && match (base, kind) {
                    (Some(b), SegmentKind::Compact) => seq == b,
                    (Some(b), SegmentKind::Log) => seq > b,
                    (None, SegmentKind::Log) => true,
                    (None, SegmentKind::Compact) => false,
                }
        })
        .collect();
    for &(seq, kind) in &inputs {
        apply_file(
            &mut state,
            &dir.segment(seq, kind),
            false,
            OnDamage::Refuse,
            &mut report,
        )?;
    }
    state.settle(now);
    write_compacted(dir, upto, &state)
}

/// Writes `state`, the live state as of the end of segment `upto` (settled),
/// as `upto.compact`: to a temporary file first, made durable, renamed, and
/// only then are the files it replaces (every file numbered `upto` or
/// lower) removed, so a crash at any point leaves a readable log, and a
/// compaction a crash interrupted is done again by the next one (at the
/// latest at the next start, which counts what is left uncompacted).
/// Returns the compacted file's size.
pub fn write_compacted(dir: &DataDir, upto: u64, state: &LiveState) -> io::Result<u64> {
    let mut buf = MAGIC.to_vec();
    state.write_records(&mut buf);
    let target = dir.segment(upto, SegmentKind::Compact);
    let tmp = target.with_extension("compact.tmp");
    {
        let mut file = fs::File::create(&tmp)?;
        io::Write::write_all(&mut file, &buf)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &target)?;
    super::files::sync_dir(&dir.log_dir())?;
    for (seq, kind) in dir.list()? {
        if seq <= upto && (seq, kind) != (upto, SegmentKind::Compact) {
            fs::remove_file(dir.segment(seq, kind))?;
        }
    }
    Ok(buf.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::record::Record;
    use crate::store::journal::replay::replay;
    use crate::store::journal::test_records::{blob, ids, put, write_log};

    #[test]
    fn compaction_keeps_exactly_the_live_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        write_log(&dir, 1, &[blob(100, false), put(1, "q", Some(100), 10_000)]);
        write_log(
            &dir,
            2,
            &[
                put(2, "q", None, 10_000),
                Record::Take { ns: "ns", id: 1 },
                Record::BlobGone { ns: "ns", id: 100 },
                put(3, "q", None, 10_000),
            ],
        );
        write_log(&dir, 3, &[put(4, "q", None, 10_000)]);
        compact(&dir, 2, 0).unwrap();
        assert_eq!(
            dir.list().unwrap(),
            vec![(2, SegmentKind::Compact), (3, SegmentKind::Log)]
        );
        let (state, report) = replay(&dir, OnDamage::Refuse).unwrap();
        assert_eq!(ids(&state, "q"), vec![2, 3, 4]);
        assert!(state.namespaces["ns"].blobs.is_empty());
        assert_eq!((report.segments, report.torn_tail), (2, None));
    }

    /// A body moved by the overflow compactor is rewritten at its new
    /// place, whether its move is in the segments compacted or after them.
    #[test]
    fn compaction_writes_a_moved_body_at_its_place_now() {
        use crate::store::journal::live::LiveData;
        use crate::store::journal::test_records::{moved, segment_blob};

        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        write_log(
            &dir,
            1,
            &[
                segment_blob(100, 0, 0),
                put(1, "q", Some(100), u64::MAX),
                segment_blob(200, 0, 3),
                put(2, "q", Some(200), u64::MAX),
                moved(100, 4, 12),
            ],
        );
        write_log(&dir, 2, &[moved(200, 5, 0)]);
        compact(&dir, 1, 0).unwrap();
        assert_eq!(
            dir.list().unwrap(),
            vec![(1, SegmentKind::Compact), (2, SegmentKind::Log)]
        );
        let place = |state: &LiveState, id| state.namespaces["ns"].blobs[&id].data.clone();
        let at = |number, offset| LiveData::Segment {
            number,
            offset,
            crc32c: 7,
        };
        // The compacted file alone holds the first move.
        let mut alone = LiveState::default();
        let mut report = ReplayReport::default();
        let compacted = dir.segment(1, SegmentKind::Compact);
        apply_file(&mut alone, &compacted, false, OnDamage::Refuse, &mut report).unwrap();
        assert_eq!(place(&alone, 100), at(4, 12));
        assert_eq!(place(&alone, 200), at(0, 3));
        let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
        assert_eq!(place(&state, 100), at(4, 12));
        assert_eq!(place(&state, 200), at(5, 0));
        assert_eq!(ids(&state, "q"), vec![1, 2]);
    }

    /// Segments earlier processes sealed count toward this process's next
    /// compaction, which rewrites them with its own: here the live data
    /// outweighs one segment, so this process's one sealed segment alone
    /// would not be worth compacting.
    #[test]
    fn the_compactor_picks_up_segments_earlier_processes_sealed() {
        use crate::store::journal::{Commit, DurabilityConfig, FsyncMode, Journal};
        use std::time::{Duration, Instant};

        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        let segment_bytes = 4096;
        // The live data: a compacted file of 200 elements.
        let live: Vec<Record<'_>> = (1..=200).map(|id| put(id, "q", None, u64::MAX)).collect();
        write_log(&dir, 1, &live);
        let live_bytes = compact(&dir, 1, 0).unwrap();
        assert!(live_bytes > 2 * segment_bytes);
        // Two earlier runs churned, each leaving a sealed segment behind.
        let mut leftover = 0;
        for (seq, first) in [(2u64, 1000u128), (3, 2000)] {
            let mut churn = Vec::new();
            for id in first..first + 60 {
                churn.push(put(id, "churn", None, u64::MAX));
                churn.push(Record::Take { ns: "ns", id });
            }
            write_log(&dir, seq, &churn);
            leftover += fs::metadata(dir.segment(seq, SegmentKind::Log))
                .unwrap()
                .len();
        }
        assert!(leftover + segment_bytes >= live_bytes && segment_bytes < live_bytes);

        let config = DurabilityConfig {
            dir: tmp.path().to_owned(),
            fsync: FsyncMode::Always,
            fsync_interval: Duration::from_secs(3600),
            segment_bytes,
            repair: false,
        };
        let journal = Journal::start(dir.clone(), &config, 4, live_bytes).unwrap();
        journal.count_sealed(leftover);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut id = 5000;
        while !dir.list().unwrap().contains(&(5, SegmentKind::Log)) {
            id += 1;
            journal.append(&put(id, "new", None, u64::MAX));
            journal.append(&Record::Take { ns: "ns", id });
            rt.block_on(journal.wait(Commit::Accepted)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.list().unwrap().contains(&(4, SegmentKind::Compact)) {
            assert!(Instant::now() < deadline, "not compacted: {:?}", dir.list());
            std::thread::sleep(Duration::from_millis(10));
        }
        journal.close();
        assert_eq!(
            dir.list().unwrap(),
            vec![(4, SegmentKind::Compact), (5, SegmentKind::Log)],
            "the earlier processes' segments were rewritten too"
        );
        let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
        assert_eq!(ids(&state, "q"), (1..=200).collect::<Vec<_>>());
        assert!(ids(&state, "churn").is_empty() && ids(&state, "new").is_empty());
    }

    /// A compaction that fails (here its output cannot be created) is tried
    /// again at the next sealed segment, not a whole threshold later.
    #[test]
    fn a_failed_compaction_is_retried_at_the_next_sealed_segment() {
        use crate::store::journal::{Commit, DurabilityConfig, FsyncMode, Journal};
        use std::time::{Duration, Instant};

        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        let blocked = dir
            .segment(1, SegmentKind::Compact)
            .with_extension("compact.tmp");
        fs::create_dir(&blocked).unwrap();
        let config = DurabilityConfig {
            dir: tmp.path().to_owned(),
            fsync: FsyncMode::Always,
            fsync_interval: Duration::from_secs(3600),
            segment_bytes: 4096,
            repair: false,
        };
        // The live data is claimed large, so that one sealed segment alone
        // is never worth compacting; earlier processes' leftovers are.
        let journal = Journal::start(dir.clone(), &config, 1, 1 << 20).unwrap();
        journal.count_sealed(1 << 20);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut id = 0;
        let mut seal = |upto: u64| {
            while !dir.list().unwrap().contains(&(upto + 1, SegmentKind::Log)) {
                id += 1;
                journal.append(&put(id, "q", None, u64::MAX));
                journal.append(&Record::Take { ns: "ns", id });
                rt.block_on(journal.wait(Commit::Accepted)).unwrap();
            }
        };
        seal(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !journal.shared.compaction_failed.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the compaction did not fail");
            std::thread::sleep(Duration::from_millis(10));
        }
        seal(2);
        while !dir.list().unwrap().contains(&(2, SegmentKind::Compact)) {
            assert!(Instant::now() < deadline, "not retried: {:?}", dir.list());
            std::thread::sleep(Duration::from_millis(10));
        }
        journal.close();
        fs::remove_dir(&blocked).unwrap();
    }

    /// A compaction killed before its rename leaves a `.tmp` file, removed
    /// at start-up with the inputs intact; killed after it, the inputs
    /// it replaces, removed at start-up as stale. Either way replay finds
    /// the same state.
    #[test]
    fn a_compaction_killed_at_any_point_leaves_a_readable_log() {
        let records = [
            vec![put(1, "q", None, u64::MAX), put(2, "q", None, u64::MAX)],
            vec![
                Record::Take { ns: "ns", id: 1 },
                put(3, "q", None, u64::MAX),
            ],
        ];
        for killed_after_rename in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = DataDir::new(tmp.path());
            dir.create().unwrap();
            write_log(&dir, 1, &records[0]);
            write_log(&dir, 2, &records[1]);
            let target = dir.segment(2, SegmentKind::Compact);
            if killed_after_rename {
                // The compacted file, as `write_compacted` renames it.
                let mut state = LiveState::default();
                for r in records.iter().flatten() {
                    state.apply(r);
                }
                let mut buf = MAGIC.to_vec();
                state.write_records(&mut buf);
                fs::write(&target, &buf).unwrap();
            } else {
                fs::write(target.with_extension("compact.tmp"), &MAGIC[..5]).unwrap();
            }
            let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
            assert_eq!(ids(&state, "q"), vec![2, 3], "{killed_after_rename}");
            let left = dir.list().unwrap();
            let expected = if killed_after_rename {
                vec![(2, SegmentKind::Compact)]
            } else {
                vec![(1, SegmentKind::Log), (2, SegmentKind::Log)]
            };
            assert_eq!(left, expected);
            assert_eq!(fs::read_dir(dir.log_dir()).unwrap().count(), expected.len());
        }
    }
}
