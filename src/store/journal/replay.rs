//! Replay: folds records into the live state they describe. Used at start-up
//! to rebuild the store and by compaction to rewrite the log as only what is
//! still live.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::Path;

use bytes::Bytes;

use super::files::{DataDir, SegmentKind, MAGIC};
use super::record::{decode, encode, BlobData, FrameError, MetaRecord, Record};

/// Metadata as replay keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMeta {
    pub content_type: Box<str>,
    pub custom: Vec<(Box<str>, Box<str>)>,
}

impl LiveMeta {
    fn from_record(m: &MetaRecord<'_>) -> LiveMeta {
        LiveMeta {
            content_type: m.content_type.into(),
            custom: m
                .custom
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    pub fn to_record(&self) -> MetaRecord<'_> {
        MetaRecord {
            content_type: &self.content_type,
            custom: self.custom.iter().map(|(k, v)| (&**k, &**v)).collect(),
        }
    }
}

/// Where a live blob's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveData {
    Inline(Bytes),
    /// A file name in the data directory's `blobs/`.
    File(Box<str>),
}

#[derive(Clone, Debug)]
pub struct LiveBlob {
    pub size: u64,
    pub meta: LiveMeta,
    pub deadline: u64,
    pub exposed: bool,
    pub data: LiveData,
}

#[derive(Clone, Debug)]
pub struct LiveElement {
    pub queue: Box<str>,
    /// Position of its `Put` in the log: queues are rebuilt in this order.
    pub order: u64,
    pub blob: Option<u128>,
    pub meta: LiveMeta,
    pub deadline: u64,
    pub deliveries: u32,
}

/// What one namespace holds.
#[derive(Default, Debug)]
pub struct LiveNamespace {
    pub blobs: HashMap<u128, LiveBlob>,
    pub elements: HashMap<u128, LiveElement>,
}

impl LiveNamespace {
    /// Elements by queue, each queue in FIFO order.
    pub fn queues(&self) -> BTreeMap<&str, Vec<(u128, &LiveElement)>> {
        let mut queues: BTreeMap<&str, Vec<(u128, &LiveElement)>> = BTreeMap::new();
        for (id, e) in &self.elements {
            queues.entry(&e.queue).or_default().push((*id, e));
        }
        for q in queues.values_mut() {
            q.sort_by_key(|(_, e)| e.order);
        }
        queues
    }
}

/// The live state of the whole store.
#[derive(Default, Debug)]
pub struct LiveState {
    pub namespaces: BTreeMap<Box<str>, LiveNamespace>,
    next_order: u64,
}

impl LiveState {
    /// Applies one record. Records about ids that are not live (an element
    /// already dropped by compaction as expired, say) change nothing.
    pub fn apply(&mut self, record: &Record<'_>) {
        let ns = self
            .namespaces
            .entry(record.namespace().into())
            .or_default();
        match record {
            Record::Blob {
                id,
                size,
                meta,
                deadline,
                exposed,
                data,
                ..
            } => {
                let data = match data {
                    BlobData::Inline(bytes) => LiveData::Inline(Bytes::copy_from_slice(bytes)),
                    BlobData::File(name) => LiveData::File((*name).into()),
                };
                ns.blobs.insert(
                    *id,
                    LiveBlob {
                        size: *size,
                        meta: LiveMeta::from_record(meta),
                        deadline: *deadline,
                        exposed: *exposed,
                        data,
                    },
                );
            }
            Record::Expose { id, .. } => {
                if let Some(b) = ns.blobs.get_mut(id) {
                    b.exposed = true;
                }
            }
            Record::BlobGone { id, .. } => {
                ns.blobs.remove(id);
            }
            Record::Put {
                queue,
                id,
                blob,
                meta,
                deadline,
                deliveries,
                ..
            } => {
                self.next_order += 1;
                ns.elements.insert(
                    *id,
                    LiveElement {
                        queue: (*queue).into(),
                        order: self.next_order,
                        blob: *blob,
                        meta: LiveMeta::from_record(meta),
                        deadline: *deadline,
                        deliveries: *deliveries,
                    },
                );
            }
            Record::Take { id, .. } => {
                ns.elements.remove(id);
            }
        }
    }

    /// Drops what is dead at `now` (wall-clock milliseconds): expired
    /// elements, elements whose blob was deleted, and blobs nothing keeps.
    pub fn settle(&mut self, now: u64) {
        for ns in self.namespaces.values_mut() {
            let blobs = &ns.blobs;
            ns.elements
                .retain(|_, e| e.deadline > now && e.blob.is_none_or(|b| blobs.contains_key(&b)));
            let mut refs: HashMap<u128, u32> = HashMap::new();
            for e in ns.elements.values() {
                if let Some(b) = e.blob {
                    *refs.entry(b).or_default() += 1;
                }
            }
            ns.blobs
                .retain(|id, b| refs.contains_key(id) || (b.exposed && b.deadline > now));
        }
        self.namespaces
            .retain(|_, ns| !ns.blobs.is_empty() || !ns.elements.is_empty());
    }

    /// Writes the state as records: every blob, then every queue in order.
    pub fn write_records(&self, buf: &mut Vec<u8>) {
        for (name, ns) in &self.namespaces {
            for (id, b) in &ns.blobs {
                let data = match &b.data {
                    LiveData::Inline(bytes) => BlobData::Inline(bytes),
                    LiveData::File(name) => BlobData::File(name),
                };
                let record = Record::Blob {
                    ns: name,
                    id: *id,
                    size: b.size,
                    meta: b.meta.to_record(),
                    deadline: b.deadline,
                    exposed: b.exposed,
                    data,
                };
                encode(&record, buf);
            }
            for (queue, elements) in ns.queues() {
                for (id, e) in elements {
                    let record = Record::Put {
                        ns: name,
                        queue,
                        id,
                        blob: e.blob,
                        meta: e.meta.to_record(),
                        deadline: e.deadline,
                        deliveries: e.deliveries,
                    };
                    encode(&record, buf);
                }
            }
        }
    }

    /// Names of the blob files the state needs.
    pub fn blob_files(&self) -> std::collections::HashSet<&str> {
        self.namespaces
            .values()
            .flat_map(|ns| ns.blobs.values())
            .filter_map(|b| match &b.data {
                LiveData::File(name) => Some(&**name),
                LiveData::Inline(_) => None,
            })
            .collect()
    }
}

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
fn apply_file(
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
    use crate::store::journal::files::create_segment;
    use std::io::Write;

    fn meta() -> MetaRecord<'static> {
        MetaRecord {
            content_type: "text/plain",
            custom: vec![("k", "v")],
        }
    }

    fn put(id: u128, queue: &'static str, blob: Option<u128>, deadline: u64) -> Record<'static> {
        Record::Put {
            ns: "ns",
            queue,
            id,
            blob,
            meta: meta(),
            deadline,
            deliveries: 0,
        }
    }

    fn blob(id: u128, exposed: bool) -> Record<'static> {
        Record::Blob {
            ns: "ns",
            id,
            size: 3,
            meta: meta(),
            deadline: 10_000,
            exposed,
            data: BlobData::Inline(b"abc"),
        }
    }

    fn write_log(dir: &DataDir, seq: u64, records: &[Record<'_>]) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            encode(r, &mut buf);
        }
        let mut f = create_segment(&dir.segment(seq, SegmentKind::Log)).unwrap();
        f.write_all(&buf).unwrap();
        buf
    }

    fn ids(state: &LiveState, queue: &str) -> Vec<u128> {
        let Some(ns) = state.namespaces.get("ns") else {
            return Vec::new();
        };
        ns.queues()
            .get(queue)
            .map(|q| q.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    #[test]
    fn replay_rebuilds_queues_in_order_and_settle_drops_the_dead() {
        let mut s = LiveState::default();
        for r in [
            blob(100, false),
            put(1, "q", Some(100), 10_000),
            put(2, "q", None, 10_000),
            put(3, "other", None, 500),
            put(4, "q", None, 10_000),
            Record::Take { ns: "ns", id: 2 },
            blob(200, true),
            blob(300, false),
            Record::Take { ns: "ns", id: 99 },
        ] {
            s.apply(&r);
        }
        s.settle(1000);
        assert_eq!(ids(&s, "q"), vec![1, 4]);
        assert!(ids(&s, "other").is_empty(), "expired");
        let blobs = &s.namespaces["ns"].blobs;
        assert!(blobs.contains_key(&100) && blobs.contains_key(&200));
        assert!(!blobs.contains_key(&300), "unreferenced, unexposed");
    }

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
