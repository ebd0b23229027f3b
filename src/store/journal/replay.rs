//! Replay: reads a data directory's files in order into the live state,
//! telling a torn tail (which a crash leaves and which is cut off) from
//! damage before the end (which is refused unless `--repair`).

use std::fs;
use std::io;
use std::path::Path;

use super::files::{DataDir, SegmentKind, MAGIC};
use super::live::LiveState;
use super::record::{decode, FrameError};

/// How to treat damage found while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse: the caller reports and stops.
    Refuse,
    /// Keep what comes before the damage and go on (`--repair`).
    Repair,
}

/// What a replay read and found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub records: u64,
    pub segments: usize,
    /// The newest segment (the one a crash may have cut) and the length its
    /// valid records end at, when it has a torn tail to cut off.
    pub torn_tail: Option<(std::path::PathBuf, u64)>,
    /// Damage skipped under `--repair`.
    pub repaired: Vec<String>,
    /// Highest segment number seen.
    pub last_seq: u64,
}

/// Applies the records of one file. `last` says whether it is the newest
/// log segment, the only one a crash can legitimately leave cut short.
pub(super) fn apply_file(
    state: &mut LiveState,
    path: &Path,
    last: bool,
    on_damage: OnDamage,
    report: &mut ReplayReport,
) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let damaged = |at: usize, what: &str| {
        format!("{}: {what} at byte {at} of {}", path.display(), bytes.len())
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if last && MAGIC.starts_with(&bytes) {
            // Created but its magic not (fully) written before a crash.
            report.torn_tail = Some((path.to_owned(), 0));
            return Ok(());
        }
        let msg = damaged(0, "not a blobq log file");
        return match on_damage {
            OnDamage::Refuse => Err(io::Error::new(io::ErrorKind::InvalidData, msg)),
            OnDamage::Repair => {
                report.repaired.push(msg);
                Ok(())
            }
        };
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Ok((record, used)) => {
                state.apply(&record);
                report.records += 1;
                at += used;
            }
            Err(e) => {
                let is_tail = match e {
                    FrameError::Truncated => true,
                    // A whole last frame with a bad checksum: a write that
                    // reached the disk only in part.
                    FrameError::Corrupt(_) => frame_end(&bytes[at..]) == Some(bytes.len() - at),
                };
                if last && is_tail {
                    report.torn_tail = Some((path.to_owned(), at as u64));
                    return Ok(());
                }
                let what = match e {
                    FrameError::Truncated => "a record cut short",
                    FrameError::Corrupt(why) => why,
                };
                let msg = damaged(at, what);
                return match on_damage {
                    OnDamage::Refuse => Err(io::Error::new(io::ErrorKind::InvalidData, msg)),
                    OnDamage::Repair => {
                        report.repaired.push(msg);
                        if last {
                            report.torn_tail = Some((path.to_owned(), at as u64));
                        }
                        Ok(())
                    }
                };
            }
        }
    }
    Ok(())
}

/// Where the frame at the start of `buf` claims to end.
fn frame_end(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    Some(super::record::FRAME_HEADER + len)
}

/// Reads the newest compacted file and every later log segment into a state.
/// Files older than the compacted one are stale and removed.
pub fn replay(dir: &DataDir, on_damage: OnDamage) -> io::Result<(LiveState, ReplayReport)> {
    dir.remove_temporaries()?;
    let files = dir.list()?;
    let base = files
        .iter()
        .filter(|(_, k)| *k == SegmentKind::Compact)
        .map(|(seq, _)| *seq)
        .max();
    let mut state = LiveState::default();
    let mut report = ReplayReport {
        last_seq: files.iter().map(|(seq, _)| *seq).max().unwrap_or(0),
        ..ReplayReport::default()
    };
    let newest_log = files
        .iter()
        .filter(|(seq, k)| *k == SegmentKind::Log && base.is_none_or(|b| *seq > b))
        .map(|(seq, _)| *seq)
        .max();
    for &(seq, kind) in &files {
        let path = dir.segment(seq, kind);
        let stale = match (base, kind) {
            (Some(b), SegmentKind::Compact) => seq < b,
            (Some(b), SegmentKind::Log) => seq <= b,
            (None, _) => false,
        };
        if stale {
            fs::remove_file(&path)?;
            continue;
        }
        let last = kind == SegmentKind::Log && Some(seq) == newest_log;
        apply_file(&mut state, &path, last, on_damage, &mut report)?;
        report.segments += 1;
    }
    Ok((state, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::test_records::{ids, put, write_log};

    #[test]
    fn a_torn_tail_is_cut_but_damage_in_the_middle_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        let buf = write_log(
            &dir,
            1,
            &[put(1, "q", None, 10_000), put(2, "q", None, 10_000)],
        );
        let path = dir.segment(1, SegmentKind::Log);
        let full = fs::read(&path).unwrap();
        // Cut inside the second record.
        fs::write(&path, &full[..full.len() - 3]).unwrap();
        let (state, report) = replay(&dir, OnDamage::Refuse).unwrap();
        assert_eq!(ids(&state, "q"), vec![1]);
        let first_len = (MAGIC.len() + buf.len() / 2) as u64;
        assert_eq!(report.torn_tail, Some((path.clone(), first_len)));

        // A flipped byte in the first of two records is corruption.
        let mut bad = full.clone();
        bad[MAGIC.len() + 10] ^= 0xff;
        fs::write(&path, &bad).unwrap();
        let err = replay(&dir, OnDamage::Refuse).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        let (state, report) = replay(&dir, OnDamage::Repair).unwrap();
        assert!(ids(&state, "q").is_empty());
        assert_eq!(report.repaired.len(), 1);
    }
}
