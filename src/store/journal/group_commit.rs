//! Group commit: the buffer records are appended to and the leader that
//! writes them. Operations append under their namespace's lock, so the
//! buffer is kept to an encode; the first request to wait and find the open
//! segment free becomes the leader and writes everything pending in one
//! `write` (syncing it in `always` mode) for every waiter. No hand-off to
//! another thread: a request's own task does the write when it is first.
//!
//! A write or sync that fails (a full disk, most often) fails that round
//! only: the segment is cut back to its last good length, so no torn record
//! is left in its middle, and the round's records stay with the segment to
//! be written first by the next leader. The round's waiters learn of it
//! through [`Progress`] and answer `507`; the store then takes their changes
//! back out, logging that too (see `Store::withdraw`), so when the records
//! are finally written, replay ends in the state the clients were told.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::backend::{StorageFault, StoragePlace};

pub(super) use super::body_files::{add_unique, remove_files, sync_body_files};
#[cfg(test)]
use super::faults::Faults;
use super::files::{self, create_segment, sync_dir, DataDir, SegmentKind};
use super::{lock, DurabilityConfig, FsyncMode, SyncedWithLog};

/// What the request threads, the syncer and the compactor share.
pub(super) struct Shared {
    /// Records appended and not yet written. Appenders hold it for an encode.
    pub(super) pending: Mutex<Pending>,
    /// The segment being written. Whoever holds it is the leader: it writes
    /// every pending record for everyone waiting (group commit).
    out: Mutex<Output>,
    /// How far the records got, and the last failed round: what waiters
    /// watch.
    pub(super) progress: watch::Sender<Progress>,
    /// Set while a round's records wait to be written again after a
    /// failure: requests that need the log first try that write themselves
    /// and change nothing if it fails.
    pub(super) behind: AtomicBool,
    /// Why the log cannot be written, while it cannot: `/healthz` says so.
    pub(super) fault: Mutex<Option<StorageFault>>,
    /// Test hook: fails writes on demand (see [`Faults`]).
    #[cfg(test)]
    pub(super) faults: Faults,
    pub(super) closing: AtomicBool,
    /// Wakes the batch-mode syncer early at shutdown.
    pub(super) syncer_wake: (Mutex<()>, Condvar),
    pub(super) mode: FsyncMode,
    pub(super) interval: Duration,
    pub(super) segment_bytes: u64,
    pub(super) dir: DataDir,
    /// Size of the last compacted file: the live data, roughly.
    pub(super) compacted_bytes: AtomicU64,
    /// The last compaction failed (no room for its output, most often):
    /// the next sealed segment starts another.
    pub(super) compaction_failed: AtomicBool,
    pub(super) to_compactor: Mutex<mpsc::Sender<u64>>,
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) buf: Vec<u8>,
    /// Records appended so far.
    pub(super) appended: u64,
    /// Blob files to remove once the records saying they are gone are durable.
    pub(super) unlink: Vec<PathBuf>,
    /// New blob files were made: their folder must be synced with the log.
    pub(super) new_files: bool,
    /// Files the pending records point into, to sync before the log.
    pub(super) body_files: Vec<Arc<dyn SyncedWithLog>>,
}

/// Where the records are, in counts of records appended since start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    /// Records written to the segment file (in the page cache).
    pub written: u64,
    /// Records on stable storage.
    pub synced: u64,
    /// Rounds that failed so far.
    pub failures: u64,
    /// The last failed round held the records up to this one: a request
    /// whose records are among them, waiting when it failed, answers `507`.
    pub failed_through: u64,
}

/// The leader's side: the open segment and what waits for its sync.
pub(super) struct Output {
    pub(super) file: Arc<File>,
    seq: u64,
    pub(super) file_len: u64,
    /// Bytes of `file` known to be on stable storage.
    pub(super) synced_len: u64,
    /// Bytes in segments sealed since the last compaction, including those
    /// earlier processes sealed (see [`Journal::count_sealed`]).
    pub(super) sealed_bytes: u64,
    /// Records written to `file` or an earlier segment.
    pub(super) written: u64,
    /// Files to remove once the record count given is synced.
    pub(super) unlink: Vec<(u64, PathBuf)>,
    /// Blob files were created since the last sync.
    pub(super) dir_dirty: bool,
    /// Files written records point into, not yet synced: synced before
    /// the log ([`Journal::sync_with_log`]).
    pub(super) body_files: Vec<Arc<dyn SyncedWithLog>>,
    /// The records of the round being written; after a failed round, its
    /// records, written first by the next leader. Empty between rounds.
    batch: Vec<u8>,
    /// A failed round could not cut the segment back to `file_len`: the
    /// next one must, before it writes.
    torn: bool,
    spare: Vec<u8>,
}

/// The segment, held: whoever holds it writes for everyone (see
/// [`Journal::wait`]). Releasing it wakes the waiters it left behind.
pub(super) struct Held<'a> {
    shared: &'a Shared,
    out: Option<MutexGuard<'a, Output>>,
}

impl std::ops::Deref for Held<'_> {
    type Target = Output;
    fn deref(&self) -> &Output {
        self.out.as_deref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Output {
        self.out.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.out.take());
        self.shared.wake_waiters_left_behind();
    }
}

impl Shared {
    /// The shared state of a journal starting segment `seq` (already created
    /// as `file`), whose last compacted file is `compacted` bytes long.
    pub(super) fn new(
        dir: DataDir,
        config: &DurabilityConfig,
        file: File,
        seq: u64,
        compacted: u64,
        to_compactor: mpsc::Sender<u64>,
    ) -> Shared {
        Shared {
            pending: Mutex::new(Pending::default()),
            out: Mutex::new(Output {
                file: Arc::new(file),
                seq,
                file_len: files::MAGIC.len() as u64,
                synced_len: 0,
                sealed_bytes: 0,
                written: 0,
                unlink: Vec::new(),
                dir_dirty: false,
                body_files: Vec::new(),
                batch: Vec::new(),
                torn: false,
                spare: Vec::new(),
            }),
            progress: watch::Sender::new(Progress::default()),
            behind: AtomicBool::new(false),
            fault: Mutex::new(None),
            #[cfg(test)]
            faults: Faults::default(),
            closing: AtomicBool::new(false),
            syncer_wake: (Mutex::new(()), Condvar::new()),
            mode: config.fsync,
            interval: config.fsync_interval,
            segment_bytes: config.segment_bytes,
            dir,
            compacted_bytes: AtomicU64::new(compacted),
            compaction_failed: AtomicBool::new(false),
            to_compactor: Mutex::new(to_compactor),
        }
    }

    /// [`Shared::lead`] from an async task: an `fsync` can take milliseconds,
    /// so in `always` mode the worker thread's other tasks move elsewhere
    /// meanwhile.
    pub(super) fn lead_blocking(&self, out: Held<'_>) -> io::Result<()> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if self.mode == FsyncMode::Always && multi_thread {
            tokio::task::block_in_place(|| self.lead(out, false))
        } else {
            self.lead(out, false)
        }
    }

    /// Writes every pending record in one `write` (after those of a failed
    /// round, if any); syncs in `always` mode (or when `final_sync`); seals
    /// the segment once it is full. On failure nothing of the round stays in
    /// the segment and its records are kept for the next leader.
    pub(super) fn lead(&self, mut out: Held<'_>, final_sync: bool) -> io::Result<()> {
        let (appended, unlink, new_files) = {
            let mut p = lock(&self.pending);
            if out.batch.is_empty() {
                let spare = std::mem::take(&mut out.spare);
                out.batch = std::mem::replace(&mut p.buf, spare);
            } else {
                out.batch.extend_from_slice(&p.buf);
                p.buf.clear();
            }
            let unlink = std::mem::take(&mut p.unlink);
            for file in p.body_files.drain(..) {
                add_unique(&mut out.body_files, &file);
            }
            (p.appended, unlink, std::mem::take(&mut p.new_files))
        };
        if out.batch.is_empty() && unlink.is_empty() && !new_files && !final_sync && !out.torn {
            return Ok(());
        }
        out.dir_dirty |= new_files;
        // Removed once a sync covers `appended`, which only a round that
        // wrote these records can reach.
        out.unlink
            .extend(unlink.into_iter().map(|path| (appended, path)));
        let sync = self.mode == FsyncMode::Always || final_sync;
        let good_len = out.file_len;
        // The bytes the records point into are on stable storage before
        // the records are even written.
        let bodies_synced = if sync {
            sync_body_files(&mut out.body_files)
        } else {
            Ok(())
        };
        if let Err(e) = bodies_synced.and_then(|()| self.write_round(&mut out, sync)) {
            self.cut_back(&mut out, good_len);
            self.round_failed(appended, &e);
            return Err(e);
        }
        out.written = appended;
        self.progress.send_modify(|p| {
            p.written = appended;
            if sync {
                p.synced = appended;
            }
        });
        if sync {
            remove_files(out.unlink.drain(..).map(|(_, p)| p));
        } else if self.mode == FsyncMode::Never {
            // Nothing promised beyond the page cache: remove at once.
            remove_files(out.unlink.drain(..).map(|(_, p)| p));
        }
        self.behind.store(false, Ordering::Release);
        // The records are written: a segment that cannot be sealed yet (no
        // room for the next one) grows until it can, and the fault stays.
        let sealed = if out.file_len >= self.segment_bytes {
            self.rotate(&mut out)
        } else {
            Ok(())
        };
        match sealed {
            Ok(()) => self.clear_fault(),
            Err(e) => self.note_fault(
                &e,
                "cannot start a new log segment; the current one grows until one can be",
            ),
        }
        Ok(())
    }

    /// Writes the round's records, and syncs them if `sync`.
    fn write_round(&self, out: &mut Output, sync: bool) -> io::Result<()> {
        if out.torn {
            out.file.set_len(out.file_len)?;
            out.torn = false;
        }
        if !out.batch.is_empty() {
            #[cfg(test)]
            self.faults.before_write(&out.file, &out.batch)?;
            (&*out.file).write_all(&out.batch)?;
            out.file_len += out.batch.len() as u64;
        }
        if sync {
            self.sync(out)?;
        }
        let mut done = std::mem::take(&mut out.batch);
        done.clear();
        out.spare = done;
        Ok(())
    }

    /// Cuts the segment back to `good_len` after a failed round, so that
    /// the next round's records follow the last good one with no torn
    /// record between them. Shortening a file needs no space; should it fail
    /// anyway, the next round tries again before writing.
    fn cut_back(&self, out: &mut Output, good_len: u64) {
        out.file_len = good_len;
        out.synced_len = out.synced_len.min(good_len);
        if let Err(e) = out.file.set_len(good_len) {
            tracing::warn!(error = %e, "cannot cut the log segment back after a failed write; retrying before the next write");
            out.torn = true;
        }
    }

    /// Tells the waiters of a failed round (records up to `through`) that
    /// it failed; the records wait for the next leader.
    fn round_failed(&self, through: u64, e: &io::Error) {
        self.behind.store(true, Ordering::Release);
        self.note_fault(
            e,
            "cannot write the log; requests that need it answer 507 until it can",
        );
        self.progress.send_modify(|p| {
            p.failures += 1;
            p.failed_through = through;
        });
    }

    /// Records why the log cannot be written, logging the first time.
    pub(super) fn note_fault(&self, e: &io::Error, what: &str) {
        let mut fault = lock(&self.fault);
        if fault.is_none() {
            tracing::error!(dir = %self.dir.root.display(), error = %e, "{what}");
        }
        *fault = Some(StorageFault::new(StoragePlace::Data, e));
    }

    /// The background sync succeeded: a fault a sync or a sealing left is
    /// over, unless a failed round still waits to be written.
    pub(super) fn sync_succeeded(&self) {
        let mut fault = lock(&self.fault);
        if !self.behind.load(Ordering::Acquire) && fault.take().is_some() {
            tracing::info!("the log can be written again");
        }
    }

    /// A round was written (and the segment sealed if due): the log is
    /// healthy again.
    fn clear_fault(&self) {
        if lock(&self.fault).take().is_some() {
            tracing::info!("the log can be written again");
        }
    }

    /// Takes the segment, waiting for it.
    pub(super) fn hold(&self) -> Held<'_> {
        Held {
            shared: self,
            out: Some(lock(&self.out)),
        }
    }

    /// Takes the segment if it is free.
    pub(super) fn try_hold(&self) -> Option<Held<'_>> {
        let out = match self.out.try_lock() {
            Ok(out) => out,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Held {
            shared: self,
            out: Some(out),
        })
    }

    /// Called by [`Held`] after releasing the segment. A request that found
    /// it taken waits for the next change of `written` (or `synced`); if its
    /// records were appended after the holder took the pending batch, or the
    /// holder wrote nothing (the syncer, a rotation's sync after the write),
    /// no change would come before the next periodic flush, an interval later.
    fn wake_waiters_left_behind(&self) {
        let appended = lock(&self.pending).appended;
        let p = *self.progress.borrow();
        let done = if self.mode == FsyncMode::Always {
            p.synced
        } else {
            p.written
        };
        if appended > done {
            self.progress.send_modify(|_| {});
        }
    }

    /// Syncs the segment (and the blob folder if files were added), then
    /// removes the files whose removal is now durable.
    fn sync(&self, out: &mut Output) -> io::Result<()> {
        #[cfg(test)]
        self.faults.before_sync()?;
        out.file.sync_data()?;
        out.synced_len = out.file_len;
        if out.dir_dirty {
            sync_dir(&self.dir.blob_dir())?;
            out.dir_dirty = false;
        }
        Ok(())
    }

    /// Seals the current segment and starts the next; hands the sealed one to
    /// compaction once enough has built up since the last.
    fn rotate(&self, out: &mut Output) -> io::Result<()> {
        // Sealed segments are complete on disk before later ones get data,
        // so only the newest segment can ever have a torn tail.
        out.file.sync_data()?;
        let next = out.seq + 1;
        let path = self.dir.segment(next, SegmentKind::Log);
        // A segment begun on a full disk may lack its magic: removed, so
        // the next try creates it afresh. One found there is not ours.
        let file = create_segment(&path).inspect_err(|e| {
            if e.kind() != io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(&path);
            }
        })?;
        if let Err(e) = sync_dir(&self.dir.log_dir()) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        out.file = Arc::new(file);
        out.sealed_bytes += out.file_len;
        out.file_len = files::MAGIC.len() as u64;
        out.synced_len = 0;
        let live = self.compacted_bytes.load(Ordering::Relaxed);
        if super::compactor::worth_compacting(out.sealed_bytes, live, self.segment_bytes)
            || self.compaction_failed.swap(false, Ordering::AcqRel)
        {
            let _ = lock(&self.to_compactor).send(out.seq);
            out.sealed_bytes = 0;
        }
        out.seq = next;
        Ok(())
    }
}
