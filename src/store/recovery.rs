//! Opening a data directory: lock it, replay its log, cut a torn tail (or,
//! under `--repair`, report what damage was skipped), compact what earlier
//! processes left once it is worth it, start the journal, reopen the
//! overflow segments the live state points into (their bodies stay on
//! disk: a backlog larger than memory restarts), and put the live state
//! back into namespaces.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smol_str::SmolStr;

use super::blob::{Blob, BlobContent, StoredFile};
use super::clock::Millis;
use super::element::Element;
use super::journal::compactor::{worth_compacting, write_compacted};
use super::journal::files::{DataDir, DirLock, SegmentKind};
use super::journal::live::{LiveData, LiveMeta, LiveNamespace};
use super::journal::replay::{replay, Damage, OnDamage};
use super::journal::{DurabilityConfig, Journal};
use super::namespace::{Arrival, Graveyard, Namespace, NsState, Quota};
use super::overflow::{segment_name, Overflow, OverflowConfig, Removal, Segment};
use super::segment_body::SegmentBody;
use super::stats::Totals;
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::meta::{CustomPair, Metadata, SharedMeta};
use crate::backend::name::Name;

/// A data directory in use: its lock, its journal and its overflow
/// segments.
pub(crate) struct Opened {
    pub lock: DirLock,
    pub journal: Arc<Journal>,
    pub dir: DataDir,
    pub overflow: Arc<Overflow>,
}

/// What the store needs to rebuild its namespaces.
pub(crate) struct Rebuild<'a> {
    pub namespaces: &'a super::Namespaces,
    pub totals: &'a Arc<Totals>,
    pub max_deliveries: u32,
    pub quota_of: &'a dyn Fn(&Name) -> Quota,
    /// How overflow segments are sized.
    pub overflow: OverflowConfig,
}

/// Opens `config.dir`, restores its live state into `rebuild.namespaces`,
/// and returns the deadlines the sweeper must know about.
pub(crate) fn open(
    config: &DurabilityConfig,
    rebuild: &Rebuild<'_>,
) -> io::Result<(Opened, Vec<(Millis, Name)>)> {
    let dir = DataDir::new(&config.dir);
    dir.create()?;
    let lock = DirLock::acquire(&dir)?;
    let on_damage = if config.repair {
        OnDamage::Repair
    } else {
        OnDamage::Refuse
    };
    let (mut state, report) = replay(&dir, on_damage).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{e}; the log is damaged before its end. Start with --repair to drop only the damaged records (copies of the damaged files are kept in DIR/damaged/)"),
        )
    })?;
    let repaired = report_repair(&dir, &report.repaired)?;
    if let Some((path, len)) = &report.torn_tail {
        cut_torn_tail(path, *len)?;
    }
    let now = Millis::now();
    state.settle(now.0);
    remove_orphan_files(&dir, &state.blob_files(), repaired.as_deref())?;
    let next_segment = remove_orphan_segments(&dir, &state.segments(), repaired.as_deref())?;
    let (mut compacted, mut uncompacted) = log_sizes(&dir)?;
    // What earlier processes left uncompacted (their sealed segments, or a
    // compaction a crash interrupted) is compacted now, from the state
    // just replayed, once it is worth it; after a repair always, so that
    // the damage is gone from the log.
    if !report.repaired.is_empty() || worth_compacting(uncompacted, compacted, config.segment_bytes)
    {
        let started = std::time::Instant::now();
        compacted = write_compacted(&dir, report.last_seq, &state)?;
        tracing::info!(
            replaced_bytes = uncompacted,
            live_bytes = compacted,
            took_ms = started.elapsed().as_millis() as u64,
            "log compacted at start-up"
        );
        uncompacted = 0;
    }
    let journal = Arc::new(Journal::start(
        dir.clone(),
        config,
        report.last_seq + 1,
        compacted,
    )?);
    journal.count_sealed(uncompacted);
    let overflow = durable_overflow(&dir, rebuild.overflow, next_segment, &journal);
    let mut segments = Segments {
        overflow: &overflow,
        dir: &dir,
        open: HashMap::new(),
    };
    let mut wakeups = Vec::new();
    let (mut elements, mut blobs) = (0u64, 0u64);
    for (name, live) in &state.namespaces {
        let Ok(ns) = Name::parse(name) else {
            tracing::warn!(namespace = %name, "skipped a namespace with an invalid name in the log");
            continue;
        };
        let namespace = Namespace::new(
            ns.clone(),
            rebuild.totals.clone(),
            rebuild.max_deliveries,
            (rebuild.quota_of)(&ns),
            Some(journal.clone()),
        );
        let wake = {
            let mut st = namespace.lock();
            let counted = restore_namespace(&mut st, &ns, live, &mut segments, rebuild.totals, now);
            elements += counted.0;
            blobs += counted.1;
            st.reschedule()
        };
        if let Some(at) = wake {
            wakeups.push((at, ns.clone()));
        }
        rebuild.namespaces.insert(ns, Arc::new(namespace));
    }
    tracing::info!(
        dir = %config.dir.display(),
        records = report.records,
        segments = report.segments,
        elements,
        blobs,
        "data directory replayed"
    );
    drop(segments);
    let opened = Opened {
        lock,
        journal,
        dir,
        overflow,
    };
    Ok((opened, wakeups))
}

/// The data directory's overflow segments, numbered on from `next`. A
/// segment nothing lives in any more is removed through the log, once the
/// records saying its bodies are gone are durable (the journal is held
/// weakly: after it closed, the file is left to the next start-up, which
/// removes segments no live blob points into). They are compacted as in
/// memory mode once the store gives the overflow its log of moves
/// (`segment_body::LoggedMoves`).
fn durable_overflow(
    dir: &DataDir,
    config: OverflowConfig,
    next: u64,
    journal: &Arc<Journal>,
) -> Arc<Overflow> {
    let journal = Arc::downgrade(journal);
    let removal = Removal::Deferred(Arc::new(move |path| {
        if let Some(journal) = journal.upgrade() {
            journal.unlink_later(path);
        }
    }));
    Overflow::durable(dir.segments_dir(), config, next, removal)
}

/// The segments reopened so far at start-up, by number.
struct Segments<'a> {
    overflow: &'a Arc<Overflow>,
    dir: &'a DataDir,
    open: HashMap<u64, Option<Arc<Segment>>>,
}

impl Segments<'_> {
    /// Segment `number`, reopened the first time it is asked for; `None`
    /// (logged once) when its file cannot be opened.
    fn get(&mut self, number: u64) -> Option<Arc<Segment>> {
        self.open
            .entry(number)
            .or_insert_with(|| match self.overflow.reopen(number) {
                Ok(segment) => Some(segment),
                Err(e) => {
                    let path = self.dir.segments_dir().join(segment_name(number));
                    tracing::warn!(path = %path.display(), error = %e, "a segment of bodies cannot be opened; their elements will answer 410 Gone");
                    None
                }
            })
            .clone()
    }
}

/// Cuts the newest segment's torn tail off at `len`; a segment a crash left
/// without even its magic is removed, so that it is not read as damage once
/// a later segment follows it.
fn cut_torn_tail(path: &Path, len: u64) -> io::Result<()> {
    let file = fs::OpenOptions::new().write(true).open(path)?;
    let was = file.metadata()?.len();
    if len == 0 {
        drop(file);
        fs::remove_file(path)?;
    } else {
        file.set_len(len)?;
        file.sync_all()?;
    }
    tracing::warn!(path = %path.display(), kept_bytes = len, cut_bytes = was - len, "cut a torn record off the end of the log (a crash during a write)");
    Ok(())
}

/// The size of the newest compacted file, and the bytes of the log
/// segments after it: what no compaction has rewritten yet.
fn log_sizes(dir: &DataDir) -> io::Result<(u64, u64)> {
    let files = dir.list()?;
    let base = files
        .iter()
        .filter(|(_, k)| *k == SegmentKind::Compact)
        .map(|(seq, _)| *seq)
        .max();
    let (mut compacted, mut uncompacted) = (0, 0);
    for (seq, kind) in files {
        let len = fs::metadata(dir.segment(seq, kind))?.len();
        match kind {
            SegmentKind::Compact if Some(seq) == base => compacted = len,
            SegmentKind::Log if base.is_none_or(|b| seq > b) => uncompacted += len,
            _ => {}
        }
    }
    Ok((compacted, uncompacted))
}

/// Rebuilds one namespace's blobs and queues. Returns (elements, blobs).
fn restore_namespace(
    st: &mut NsState,
    ns: &Name,
    live: &LiveNamespace,
    segments: &mut Segments<'_>,
    totals: &Arc<Totals>,
    now: Millis,
) -> (u64, u64) {
    let dir = segments.dir;
    let mut metas: HashMap<u128, SharedMeta> = HashMap::new();
    for (id, b) in &live.blobs {
        let content = match &b.data {
            LiveData::Inline(bytes) => BlobContent::Memory(bytes.clone()),
            LiveData::File { name, crc32c } => {
                let path = dir.blob_dir().join(&**name);
                if !path.exists() {
                    tracing::warn!(path = %path.display(), "a blob's file is missing; its elements will answer 410 Gone");
                }
                BlobContent::stored(StoredFile::new(path, true, *crc32c))
            }
            // Left on disk, whatever the memory budget: read when popped.
            LiveData::Segment {
                number,
                offset,
                crc32c,
            } => match segments.get(*number) {
                Some(segment) => BlobContent::in_segment(SegmentBody::restored(
                    Overflow::adopt(&segment, *offset, b.size),
                    *crc32c,
                    ns,
                    BlobId::from_u128(*id),
                )),
                // A missing segment, kept (never removed) as a missing blob
                // file is: reads find it gone.
                None => BlobContent::stored(StoredFile::new(
                    dir.segments_dir().join(segment_name(*number)),
                    true,
                    Some(*crc32c),
                )),
            },
        };
        let meta = metadata(&b.meta);
        metas.insert(*id, meta.clone());
        let blob = Blob::with_id(
            BlobId::from_u128(*id),
            content,
            b.size,
            meta,
            totals.clone(),
        );
        st.restore_blob(blob, b.exposed, Millis(b.deadline));
    }
    let mut grave = Graveyard::default();
    let mut count = 0;
    for (queue, elements) in live.queues() {
        let Ok(queue) = Name::parse(queue) else {
            tracing::warn!(%queue, "skipped a queue with an invalid name in the log");
            continue;
        };
        for (id, e) in elements {
            let blob = e.blob.and_then(|b| st.restored_blob(BlobId::from_u128(b)));
            // Share the blob's metadata when the element has the same.
            let meta = match (&blob, e.blob.and_then(|b| metas.get(&b))) {
                (Some(_), Some(m)) if live_meta_eq(m, &e.meta) => m.clone(),
                _ => metadata(&e.meta),
            };
            let element = Element {
                id: ElementId::from_u128(id),
                blob,
                meta,
                deadline: Millis(e.deadline),
                deliveries: e.deliveries,
                indexed: false,
            };
            st.enqueue(&queue, element, Arrival::Restore, now, &mut grave);
            count += 1;
        }
    }
    (count, live.blobs.len() as u64)
}

fn metadata(m: &LiveMeta) -> SharedMeta {
    if m.custom.is_empty() && *m.content_type == *crate::backend::meta::DEFAULT_CONTENT_TYPE {
        return Metadata::plain();
    }
    SharedMeta::new(Metadata {
        content_type: SmolStr::new(&m.content_type),
        custom: m
            .custom
            .iter()
            .map(|(k, v)| CustomPair {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    })
}

fn live_meta_eq(m: &Metadata, live: &LiveMeta) -> bool {
    *m.content_type == *live.content_type
        && m.custom.len() == live.custom.len()
        && m.custom
            .iter()
            .zip(&live.custom)
            .all(|(p, (k, v))| p.key == *k && p.value == *v)
}

/// Under `--repair`, says what was dropped (at warn, and on stderr, as an
/// operator runs it by hand) and keeps a copy of each damaged file in
/// `DIR/damaged/` for investigation (compaction then rewrites the log
/// without them). Returns that folder when there was damage.
fn report_repair(dir: &DataDir, damage: &[Damage]) -> io::Result<Option<PathBuf>> {
    if damage.is_empty() {
        return Ok(None);
    }
    let kept = dir.root.join("damaged");
    fs::create_dir_all(&kept)?;
    let mut files = BTreeSet::new();
    for d in damage {
        tracing::warn!(
            file = %d.path.display(),
            start = d.start,
            end = d.end,
            bytes = d.end - d.start,
            what = d.what,
            "--repair: dropped a damaged part of the log"
        );
        files.insert(&d.path);
    }
    for path in &files {
        let Some(name) = path.file_name() else {
            continue;
        };
        let copy = kept.join(name);
        let _ = fs::remove_file(&copy);
        // A second name for the same bytes; a copy where links fail.
        if fs::hard_link(path, &copy).is_err() {
            fs::copy(path, &copy)?;
        }
    }
    let bytes: u64 = damage.iter().map(|d| d.end - d.start).sum();
    eprintln!(
        "blobq --repair: dropped {} damaged part(s) of the log, {bytes} bytes in {} file(s); every intact record was kept; copies of the damaged files are in {}",
        damage.len(),
        files.len(),
        kept.display()
    );
    for d in damage {
        eprintln!("blobq --repair: dropped {d}");
    }
    Ok(Some(kept))
}

/// Removes the overflow segments no live blob points into (their bodies
/// all gone, the removal not yet done when the process stopped), or after
/// a repair moves them into `kept`. Returns the number the next segment
/// gets: above every segment found, so that no record of an earlier
/// process can name a new segment.
fn remove_orphan_segments(
    dir: &DataDir,
    live: &std::collections::HashSet<u64>,
    kept: Option<&Path>,
) -> io::Result<u64> {
    let mut next = 0;
    for entry in fs::read_dir(dir.segments_dir())? {
        let entry = entry?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            next = next.max(number + 1);
            if live.contains(&number) {
                continue;
            }
        }
        match kept {
            Some(kept) => fs::rename(entry.path(), kept.join(&name))?,
            None => fs::remove_file(entry.path())?,
        }
    }
    Ok(next)
}

/// Removes blob files no live blob refers to: bodies received when the
/// process died before their push was logged, or whose removal was pending.
/// After a repair they are moved into `kept` instead: they may be bodies
/// whose records were damaged.
fn remove_orphan_files(
    dir: &DataDir,
    live: &std::collections::HashSet<&str>,
    kept: Option<&Path>,
) -> io::Result<()> {
    let mut removed = 0u64;
    for entry in fs::read_dir(dir.blob_dir())? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| live.contains(n)) {
            continue;
        }
        match kept {
            Some(kept) => fs::rename(entry.path(), kept.join(&name))?,
            None => fs::remove_file(entry.path())?,
        }
        removed += 1;
    }
    if removed > 0 {
        match kept {
            Some(kept) => {
                tracing::warn!(files = removed, folder = %kept.display(), "--repair: moved blob files no intact record refers to");
                eprintln!(
                    "blobq --repair: moved {removed} blob file(s) no intact record refers to into {}",
                    kept.display()
                );
            }
            None => tracing::info!(
                files = removed,
                "removed blob files the log does not refer to"
            ),
        }
    }
    Ok(())
}
