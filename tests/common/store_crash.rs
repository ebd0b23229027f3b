//! The crash of `tests/replay_model.rs`: a durable store run through the
//! operations, dropped without its purge, its newest segment cut at a
//! byte, and the replay compared with the model's history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use blobq::backend::name::Name;
use blobq::backend::{Backend, BackendError, PopOptions};
use blobq::config::{Config, OverflowSettings, Settings};
use blobq::store::{FsyncMode, Store};

use crate::store_model::*;
use crate::store_ops::{apply, bytes_of, name};

/// Where the log ends: the newest segment's number and length.
pub(crate) type LogEnd = (u64, u64);

pub(crate) fn log_end(dir: &Path) -> LogEnd {
    let mut newest = (0, 0);
    for entry in std::fs::read_dir(dir.join("log")).expect("log dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(seq) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) else {
            continue;
        };
        if seq > newest.0 {
            newest = (seq, entry.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    newest
}

/// The folders of body files: a file each, and the segments small bodies
/// past the memory limit share.
const BODY_FOLDERS: [&str; 2] = ["blobs", "segments"];

/// Body files the store removed, each with where the log ended when its
/// removal was first seen: the records that allowed it lie before that.
pub(crate) type Removed = BTreeMap<PathBuf, LogEnd>;

/// Keeps a hard link to every blob file and segment of `dir` in `archive`,
/// and notes in `removed` those archived that are gone now. A cut log loses
/// the records after the cut, and with them the removals they made
/// durable: the files such a removal took must be back for the replay, as
/// a real crash would have left them (a file goes only once the record
/// saying it is gone is synced).
pub(crate) fn archive_blob_files(dir: &Path, archive: &Path, removed: &mut Removed) {
    let end = log_end(dir);
    for folder in BODY_FOLDERS {
        std::fs::create_dir_all(archive.join(folder)).expect("archive folder");
        for entry in std::fs::read_dir(dir.join(folder)).expect("body folder") {
            let entry = entry.expect("entry");
            let kept = archive.join(folder).join(entry.file_name());
            if !kept.exists() {
                // Gone meanwhile: removed by the store, which is what a cut undoes.
                let _ = std::fs::hard_link(entry.path(), kept);
            }
        }
        for entry in std::fs::read_dir(archive.join(folder)).expect("archive folder") {
            let file = Path::new(folder).join(entry.expect("entry").file_name());
            if !dir.join(&file).exists() {
                removed.entry(file).or_insert(end);
            }
        }
    }
}

/// Puts back the files whose removal a log cut at `cut` may have undone;
/// those removed by the time the log ended at or before `cut` stay gone,
/// so a replay that still needed one (a move it did not apply, say) fails.
pub(crate) fn restore_blob_files(dir: &Path, archive: &Path, removed: &Removed, cut: LogEnd) {
    for (file, at) in removed {
        if *at > cut && !dir.join(file).exists() {
            std::fs::hard_link(archive.join(file), dir.join(file)).expect("restore a body file");
        }
    }
}

pub(crate) fn newest_segment(dir: &Path) -> PathBuf {
    dir.join("log").join(format!("{:020}.log", log_end(dir).0))
}

pub(crate) fn open(data: &Path, spill: &Path) -> Store {
    let config = Config::from_settings(Settings {
        data_dir: Some(data.to_owned()),
        spill_dir: Some(spill.to_owned()),
        spill_threshold: Some(SPILL_THRESHOLD),
        // A few small bodies in memory, the rest past the limit: in segments.
        memory_limit: Some(MEMORY_LIMIT),
        overflow: OverflowSettings {
            segment_bytes: Some(SEGMENT_BYTES),
            // Compacted only by `Op::CompactSegments`: a move in the
            // background could make and drop a segment between two
            // operations, where the archive never sees it.
            compact_percent: Some(0),
            ..OverflowSettings::default()
        },
        fsync: Some(FsyncMode::Always),
        fsync_interval_ms: Some(5),
        log_segment_bytes: Some(SEGMENT_BYTES),
        max_deliveries: Some(MAX_DELIVERIES),
        ..Settings::default()
    })
    .expect("config");
    Store::new(config.store()).expect("store")
}

/// Runs one case: the operations, the crash at `cut`, the replay.
pub fn run_case(ops: &[Op], short_lived: bool, cut: Index) -> Result<(), TestCaseError> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let data = tempfile::tempdir().expect("data dir");
    let spill = tempfile::tempdir().expect("spill dir");
    let archive = tempfile::tempdir().expect("archive dir");
    let dirs = (data.path(), spill.path(), archive.path());
    // Each store on a thread of its own: a store keeps the namespaces a
    // thread used last in that thread's locals, and they hold its journal,
    // which only stops when the last of them goes (or at the purge).
    let (model, history, mut removed) = std::thread::scope(|scope| {
        let running = scope.spawn(|| runtime().block_on(run(ops, short_lived, dirs)));
        running.join().expect("the operations panicked")
    })?;
    // The crash. Dropped without the shutdown purge, the store wrote out
    // what was pending (as a kill -9 after that write would leave it) and
    // its journal stopped. Then the newest segment is torn.
    journal_threads_end();
    // The removals the last writes made durable.
    archive_blob_files(data.path(), archive.path(), &mut removed);
    let segment = newest_segment(data.path());
    let (newest, len) = log_end(data.path());
    let keep = cut.index(len as usize + 1) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(keep))
        .expect("cut the segment");
    restore_blob_files(data.path(), archive.path(), &removed, (newest, keep));
    let cut = Cut {
        at: (newest, keep),
        len,
        ops: ops.len(),
    };
    let verdict = std::thread::scope(|scope| {
        let replaying = scope.spawn(|| runtime().block_on(replay(&model, &history, cut, dirs)));
        replaying.join().expect("the replay panicked")
    });
    journal_threads_end();
    verdict
}

/// Threads of this process whose name says they belong to a journal.
pub(crate) fn journal_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("blobq-fsync") || name.starts_with("blobq-compact"))
        .count()
}

/// Waits until the dropped store's journal has stopped its threads: until
/// then its syncer may still remove blob files and its compactor rewrite
/// the log, which a crash would not do.
pub(crate) fn journal_threads_end() {
    let deadline = Instant::now() + PATIENCE;
    while journal_threads() > 0 {
        assert!(Instant::now() < deadline, "the journal outlived its store");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Where the newest segment was cut.
pub(crate) struct Cut {
    pub(crate) at: LogEnd,
    pub(crate) len: u64,
    pub(crate) ops: usize,
}

pub(crate) type Dirs<'a> = (&'a Path, &'a Path, &'a Path);

/// The model after each operation, and where the log ended then.
pub(crate) type History = Vec<(Durable, LogEnd)>;

/// Applies `ops` to a fresh store and the model; returns the model, its
/// history and the body files removed so far.
pub(crate) async fn run(
    ops: &[Op],
    short_lived: bool,
    (data, spill, archive): Dirs<'_>,
) -> Result<(Model, History, Removed), TestCaseError> {
    let ns = name("ns");
    let store = open(data, spill);
    let mut model = Model::default();
    let mut history: History = vec![(model.durable(), log_end(data))];
    let mut removed = Removed::new();
    for (n, op) in ops.iter().enumerate() {
        model.settle_expiry().await;
        if let Op::CompactSegments = op {
            // Not through `Backend`: a method of the embedded store.
            if let Err(e) = store.compact_overflow(100).await {
                return Err(TestCaseError::fail(format!("compaction: {e}")));
            }
        } else {
            apply(&store, &ns, &mut model, op, n, short_lived, data).await?;
        }
        archive_blob_files(data, archive, &mut removed);
        history.push((model.durable(), log_end(data)));
    }
    // Short-lived elements have run out before the crash, so that the
    // replay's view of them is certain.
    if let Some(at) = model.short_until {
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
    }
    drop(store);
    Ok((model, history, removed))
}

/// Reopens the cut data directory and compares it with the history.
pub(crate) async fn replay(
    model: &Model,
    history: &History,
    Cut { at, len, ops }: Cut,
    (data, spill, _): Dirs<'_>,
) -> Result<(), TestCaseError> {
    let (newest, keep) = at;
    let ns = name("ns");
    let last = history.iter().rposition(|(_, end)| *end <= at).unwrap_or(0);
    let store = open(data, spill);
    let found = observe(&store, &ns, model).await;
    let before = &history[last].0;
    let verdict = match history.get(last + 1) {
        // The cut falls inside the next operation's records: unanswered, it
        // may have happened in part (a pop's blob exposed, its element not
        // yet taken, say), but nothing the two states agree on may differ.
        Some((after, _)) if history[last].1 < at => between(&found, before, after),
        _ if found == *before => Ok(()),
        _ => Err("the state differs".to_owned()),
    };
    if let Err(why) = verdict {
        return Err(TestCaseError::fail(format!(
            "cut at byte {keep} of segment {newest} ({len} bytes), after operation {last} of {}: \
             {why}\nreplay gave\n{found:?}\nafter operation {last}:\n{before:?}\nafter the next:\n{:?}",
            ops,
            history.get(last + 1).map(|h| &h.0),
        )));
    }
    Ok(())
}

/// What the reopened store holds: every blob the model ever knew, read by
/// id, then every queue drained under leases (so deliveries show).
pub(crate) async fn observe(store: &dyn Backend, ns: &Name, model: &Model) -> Durable {
    let mut blobs = BTreeMap::new();
    for id in &model.known {
        if let Ok(read) = store.read_blob(ns, id, false).await {
            let bytes = bytes_of(Some(read.body)).await.unwrap_or_default();
            blobs.insert(id.clone(), (Digest::of(&bytes), Meta::of(&read.meta)));
        }
    }
    let mut queues = BTreeMap::new();
    for queue in QUEUES {
        let mut listed = Vec::new();
        let opts = PopOptions {
            with_data: true,
            lease: Some(Duration::from_secs(3600)),
            wait: Duration::ZERO,
        };
        loop {
            let p = match store.pop(ns, &name(queue), opts).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // Shown in the report as an element that no state has.
                Err(e) => {
                    listed.push(Entry {
                        id: format!("a pop failed: {e}"),
                        blob: None,
                        data: None,
                        meta: Meta::plain(),
                        deliveries: 0,
                    });
                    match e {
                        BackendError::BlobGone => continue,
                        _ => break,
                    }
                }
            };
            let deliveries = p.lease.map_or(0, |l| l.deliveries - 1);
            listed.push(Entry {
                id: p.id.to_string(),
                blob: p.blob_id.map(|b| b.to_string()),
                meta: Meta::of(&p.meta),
                data: bytes_of(p.body).await.as_deref().map(Digest::of),
                deliveries,
            });
        }
        if !listed.is_empty() {
            queues.insert(queue, listed);
        }
    }
    Durable { queues, blobs }
}
