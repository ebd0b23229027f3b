//! Compaction: sealed segments are rewritten as only what is still live, by
//! a thread of its own that reads the files alone, so compaction never takes
//! a store lock and pushes and pops never wait for it.

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
                tracing::error!(segment = upto, error = %e, "log compaction failed; will retry at the next segment")
            }
        }
    }
}

/// Rewrites the state as of the end of segment `upto` into `upto.compact`:
/// written to a temporary file, made durable, renamed, and only then are the
/// files it replaces removed, so a crash at any point leaves a readable log.
/// Returns the compacted file's size.
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
    for (seq, kind) in inputs {
        if (seq, kind) != (upto, SegmentKind::Compact) {
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
}
