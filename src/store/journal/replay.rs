//! Replay: reads a data directory's files in order into the live state,
//! telling a torn tail (which a crash leaves and which is cut off) from
//! damage before the end (which is refused, or under `--repair` skipped up
//! to the next intact record).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{DataDir, SegmentKind, MAGIC};
use super::live::LiveState;
use super::record::{decode, intact_frame, FrameError};

/// How to treat damage found while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse: the caller reports and stops.
    Refuse,
    /// Skip the damaged bytes, going on at the next intact record
    /// (`--repair`).
    Repair,
}

/// A damaged stretch of a file that `--repair` skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// The byte range dropped: from the first bad frame to the next intact
    /// record (or the end of the file).
    pub start: u64,
    pub end: u64,
    /// What was wrong with its first frame.
    pub what: &'static str,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: bytes {}..{} ({} bytes, {})",
            self.path.display(),
            self.start,
            self.end,
            self.end - self.start,
            self.what
        )
    }
}

/// What a replay read and found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub records: u64,
    pub segments: usize,
    /// The newest segment (the one a crash may have cut) and the length its
    /// valid records end at, when it has a torn tail to cut off.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Damage skipped under `--repair`.
    pub repaired: Vec<Damage>,
    /// Highest segment number seen.
    pub last_seq: u64,
}

/// Applies the records of one file. `last` says whether it is the newest
/// log segment, the only one a crash can legitimately leave cut short.
///
/// A frame that does not read back is either a torn tail (at the end of the
/// newest segment, with no intact record after it), cut off, or damage:
/// refused, or under `--repair` skipped up to the next intact record,
/// found by its framing and checksum (see [`resync`]).
pub(super) fn apply_file(
    state: &mut LiveState,
    path: &Path,
    last: bool,
    on_damage: OnDamage,
    report: &mut ReplayReport,
) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let mut at = MAGIC.len();
    let mut damage = None;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if last && MAGIC.starts_with(&bytes) {
            // Created but its magic not (fully) written before a crash.
            report.torn_tail = Some((path.to_owned(), 0));
            return Ok(());
        }
        at = 0;
        damage = Some("not a blobq log file");
    }
    loop {
        if let Some(what) = damage.take() {
            if on_damage == OnDamage::Refuse {
                let msg = format!("{}: {what} at byte {at} of {}", path.display(), bytes.len());
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            let end = resync(&bytes, at + 1).unwrap_or(bytes.len());
            report.repaired.push(Damage {
                path: path.to_owned(),
                start: at as u64,
                end: end as u64,
                what,
            });
            at = end;
        }
        if at >= bytes.len() {
            return Ok(());
        }
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
                if last && is_tail && resync(&bytes, at + 1).is_none() {
                    report.torn_tail = Some((path.to_owned(), at as u64));
                    return Ok(());
                }
                damage = Some(match e {
                    FrameError::Truncated => "a record cut short",
                    FrameError::Corrupt(why) => why,
                });
            }
        }
    }
}

/// The offset, from `from` on, of the next intact record of `bytes` (see
/// [`intact_frame`]) followed by another, by the end of the file, or by a
/// frame the end of the file cuts short: a second frame makes a chance
/// match inside damaged bytes very unlikely.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        let Some(used) = intact_frame(&bytes[at..]) else {
            return false;
        };
        let next = &bytes[at + used..];
        next.is_empty()
            || intact_frame(next).is_some()
            || frame_end(next).is_none_or(|end| end > next.len())
    })
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
    use crate::store::journal::files::create_segment;
    use crate::store::journal::record::{change_body, encode, Record};
    use crate::store::journal::test_records::{blob, ids, put, write_log};

    /// A change of several records is one frame: a crash that cuts it
    /// anywhere leaves none of it, and whole it replays all of it.
    #[test]
    fn a_change_cut_anywhere_replays_whole_or_not_at_all() {
        let mut frames = Vec::new();
        for r in [blob(100, false), put(2, "q", Some(100), 10_000)] {
            encode(&r, &mut frames);
        }
        let inner = change_body(&frames);
        let before = put(1, "q", None, 10_000);
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        write_log(&dir, 1, &[before.clone(), Record::Change(&inner)]);
        let path = dir.segment(1, SegmentKind::Log);
        let full = fs::read(&path).unwrap();
        let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
        assert_eq!(ids(&state, "q"), vec![1, 2]);
        assert!(state.namespaces["ns"].blobs.contains_key(&100));
        // Every cut after the first record's frame.
        let first = MAGIC.len() + {
            let mut one = Vec::new();
            encode(&before, &mut one);
            one.len()
        };
        for cut in first..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (state, _) = replay(&dir, OnDamage::Refuse).unwrap();
            let got = ids(&state, "q");
            assert!(got == vec![1] || got.is_empty(), "cut at {cut}: {got:?}");
            let blobs = state.namespaces.get("ns").map_or(0, |ns| ns.blobs.len());
            assert_eq!(blobs, 0, "cut at {cut}: part of the change replayed");
        }
    }

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
        assert_eq!(
            ids(&state, "q"),
            vec![2],
            "the intact record after the damage is kept"
        );
        assert_eq!(report.repaired.len(), 1);
    }

    /// `--repair` skips a damaged record, whatever part of its frame is
    /// damaged (its length too), and reads every intact record after it,
    /// in an older segment or the newest.
    /// A long stretch of random bytes (a block overwritten by something
    /// else) is skipped in one piece, quickly: random bytes fail the
    /// record test before any checksum over their claimed length is
    /// computed.
    #[test]
    fn repair_skips_a_long_stretch_of_garbage_quickly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        dir.create().unwrap();
        let mut buf = MAGIC.to_vec();
        let records: Vec<_> = (1..=4).map(|id| put(id, "q", None, u64::MAX)).collect();
        for r in &records[..2] {
            crate::store::journal::record::encode(r, &mut buf);
        }
        let garbage_at = buf.len();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..(2 << 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        let garbage_end = buf.len();
        for r in &records[2..] {
            crate::store::journal::record::encode(r, &mut buf);
        }
        fs::write(dir.segment(1, SegmentKind::Log), &buf).unwrap();
        create_segment(&dir.segment(2, SegmentKind::Log)).unwrap();
        let started = std::time::Instant::now();
        let (state, report) = replay(&dir, OnDamage::Repair).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(ids(&state, "q"), vec![1, 2, 3, 4]);
        let d = &report.repaired;
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].start, d[0].end),
            (garbage_at as u64, garbage_end as u64)
        );
    }

    #[test]
    fn repair_skips_only_the_damaged_record() {
        let records: Vec<_> = (1..=20).map(|id| put(id, "q", None, u64::MAX)).collect();
        let mut frame = Vec::new();
        crate::store::journal::record::encode(&records[0], &mut frame);
        let frame_len = frame.len();
        for (seq, byte) in [(1, 0), (1, 1), (1, 5), (1, 12), (2, 0), (2, 14)] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = DataDir::new(tmp.path());
            dir.create().unwrap();
            write_log(&dir, 1, &records[..10]);
            write_log(&dir, 2, &records[10..]);
            let path = dir.segment(seq, SegmentKind::Log);
            let mut bytes = fs::read(&path).unwrap();
            // The fourth record of the segment.
            let start = MAGIC.len() + 3 * frame_len;
            bytes[start + byte] ^= 0x41;
            fs::write(&path, &bytes).unwrap();
            assert!(replay(&dir, OnDamage::Refuse).is_err(), "{seq}/{byte}");
            let (state, report) = replay(&dir, OnDamage::Repair).unwrap();
            let lost = (seq - 1) as u128 * 10 + 4;
            let expected: Vec<u128> = (1..=20).filter(|id| *id != lost).collect();
            assert_eq!(ids(&state, "q"), expected, "{seq}/{byte}");
            let damage = &report.repaired[..];
            assert_eq!(damage.len(), 1, "{seq}/{byte}");
            assert_eq!(
                (damage[0].start, damage[0].end),
                (start as u64, (start + frame_len) as u64),
                "{seq}/{byte}"
            );
            assert_eq!(report.torn_tail, None);
        }
    }
}
