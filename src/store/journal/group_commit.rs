//! Group commit: the buffer records are appended to and the leader that
//! writes them. Operations append under their namespace's lock, so the
//! buffer is kept to an encode; the first request to wait and find the open
//! segment free becomes the leader and writes everything pending in one
//! `write` (syncing it in `always` mode) for every waiter. No hand-off to
//! another thread: a request's own task does the write when it is first.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::files::{self, create_segment, sync_dir, DataDir, SegmentKind};
use super::{lock, DurabilityConfig, FsyncMode};

/// What the request threads, the syncer and the compactor share.
pub(super) struct Shared {
    /// Records appended and not yet written. Appenders hold it for an encode.
    pub(super) pending: Mutex<Pending>,
    /// The segment being written. Whoever holds it is the leader: it writes
    /// every pending record for everyone waiting (group commit).
    out: Mutex<Output>,
    /// Records written to the segment file (in the page cache).
    pub(super) written: watch::Sender<u64>,
    /// Records on stable storage.
    pub(super) synced: watch::Sender<u64>,
    pub(super) failed: AtomicBool,
    pub(super) closing: AtomicBool,
    /// Wakes the batch-mode syncer early at shutdown.
    pub(super) syncer_wake: (Mutex<()>, Condvar),
    pub(super) mode: FsyncMode,
    pub(super) interval: Duration,
    pub(super) segment_bytes: u64,
    pub(super) dir: DataDir,
    /// Size of the last compacted file: the live data, roughly.
    pub(super) compacted_bytes: AtomicU64,
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
}

/// The leader's side: the open segment and what waits for its sync.
pub(super) struct Output {
    pub(super) file: Arc<File>,
    seq: u64,
    pub(super) file_len: u64,
    /// Bytes of `file` known to be on stable storage.
    pub(super) synced_len: u64,
    /// Bytes in segments sealed since the last compaction.
    sealed_bytes: u64,
    /// Records written to `file` or an earlier segment.
    pub(super) written: u64,
    /// Files to remove once the record count given is synced.
    pub(super) unlink: Vec<(u64, PathBuf)>,
    /// Blob files were created since the last sync.
    pub(super) dir_dirty: bool,
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
                spare: Vec::new(),
            }),
            written: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            syncer_wake: (Mutex::new(()), Condvar::new()),
            mode: config.fsync,
            interval: config.fsync_interval,
            segment_bytes: config.segment_bytes,
            dir,
            compacted_bytes: AtomicU64::new(compacted),
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

    /// Writes every pending record in one `write`; syncs in `always` mode
    /// (or when `final_sync`); seals the segment once it is full.
    pub(super) fn lead(&self, mut out: Held<'_>, final_sync: bool) -> io::Result<()> {
        let (mut batch, appended, unlink, new_files) = {
            let mut p = lock(&self.pending);
            let spare = std::mem::take(&mut out.spare);
            let batch = std::mem::replace(&mut p.buf, spare);
            let unlink = std::mem::take(&mut p.unlink);
            (batch, p.appended, unlink, std::mem::take(&mut p.new_files))
        };
        if batch.is_empty() && unlink.is_empty() && !new_files && !final_sync {
            out.spare = batch;
            return Ok(());
        }
        if !batch.is_empty() {
            (&*out.file).write_all(&batch)?;
            out.file_len += batch.len() as u64;
        }
        batch.clear();
        out.spare = batch;
        out.written = appended;
        out.dir_dirty |= new_files;
        out.unlink
            .extend(unlink.into_iter().map(|path| (appended, path)));
        self.written.send_replace(appended);
        match self.mode {
            FsyncMode::Always => self.sync(&mut out)?,
            _ if final_sync => self.sync(&mut out)?,
            // Nothing promised beyond the page cache: remove at once.
            FsyncMode::Never => remove_files(out.unlink.drain(..).map(|(_, p)| p)),
            FsyncMode::Batch => {}
        }
        if out.file_len >= self.segment_bytes {
            self.rotate(&mut out)?;
        }
        Ok(())
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
        if appended > *self.written.borrow() {
            self.written.send_modify(|_| {});
        }
        if self.mode == FsyncMode::Always && appended > *self.synced.borrow() {
            self.synced.send_modify(|_| {});
        }
    }

    /// Syncs the segment (and the blob folder if files were added), then
    /// removes the files whose removal is now durable.
    fn sync(&self, out: &mut Output) -> io::Result<()> {
        out.file.sync_data()?;
        out.synced_len = out.file_len;
        if std::mem::take(&mut out.dir_dirty) {
            sync_dir(&self.dir.blob_dir())?;
        }
        self.synced.send_replace(out.written);
        remove_files(out.unlink.drain(..).map(|(_, p)| p));
        Ok(())
    }

    /// Seals the current segment and starts the next; hands the sealed one to
    /// compaction once enough has built up since the last.
    fn rotate(&self, out: &mut Output) -> io::Result<()> {
        // Sealed segments are complete on disk before later ones get data,
        // so only the newest segment can ever have a torn tail.
        out.file.sync_data()?;
        let next = out.seq + 1;
        out.file = Arc::new(create_segment(&self.dir.segment(next, SegmentKind::Log))?);
        sync_dir(&self.dir.log_dir())?;
        out.sealed_bytes += out.file_len;
        out.file_len = files::MAGIC.len() as u64;
        out.synced_len = 0;
        let live = self.compacted_bytes.load(Ordering::Relaxed);
        if out.sealed_bytes >= live.max(self.segment_bytes) {
            let _ = lock(&self.to_compactor).send(out.seq);
            out.sealed_bytes = 0;
        }
        out.seq = next;
        Ok(())
    }

    pub(super) fn fail(&self, e: &io::Error) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(error = %e, "cannot write the log; refusing further writes");
        }
        // Wake every waiter: they see `failed`.
        self.written.send_replace(u64::MAX);
        self.synced.send_replace(u64::MAX);
    }
}

pub(super) fn remove_files(paths: impl Iterator<Item = PathBuf>) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove blob file");
            }
        }
    }
}
