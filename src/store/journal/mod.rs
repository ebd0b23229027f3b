//! Durable mode (`--data-dir`): an append-only log of every change to the
//! store, replayed at start-up.
//!
//! Operations append [`Record`]s to an in-memory buffer while they hold their
//! namespace's lock (so the log's order is the order the changes happened),
//! and a writer thread moves the buffer to the current segment file in one
//! `write` per batch. A client is answered only once its change is written
//! (and, with `--fsync always`, synced): every request waiting meanwhile
//! shares that write and that `fsync`, which is what keeps throughput up under
//! concurrency (group commit). Sealed segments are compacted by a second
//! thread from the files alone, so compaction never takes a store lock.
//! `docs/DURABILITY.md` describes the guarantees.

pub mod files;
pub mod record;
pub mod replay;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use files::{create_segment, sync_dir, DataDir, SegmentKind};
pub use record::Record;

/// When the log is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before every answer (group commit shares one fsync among concurrent requests).
    Always,
    /// At least every `--fsync-interval-ms`.
    Batch,
    /// Left to the operating system.
    Never,
}

/// Settings of durable mode.
#[derive(Clone, Debug)]
pub struct DurabilityConfig {
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    pub fsync_interval: Duration,
    /// A segment is sealed once it grows past this many bytes.
    pub segment_bytes: u64,
    /// Start despite corruption in the middle of the log, dropping what
    /// follows the damage in the damaged file.
    pub repair: bool,
}

/// What an answer waits for before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Something was accepted (push, stored blob): it must be written, and
    /// synced in `always` mode.
    Accepted,
    /// Something was consumed (pop, ack, delete): in `always` mode it must be
    /// synced; otherwise a crash may deliver it again, which is allowed.
    Consumed,
}

/// The log's writing end.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    compactor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Records written to the segment file (in the page cache).
    written: watch::Sender<u64>,
    /// Records on stable storage.
    synced: watch::Sender<u64>,
    failed: AtomicBool,
    mode: FsyncMode,
    interval: Duration,
    segment_bytes: u64,
    dir: DataDir,
    /// Size of the last compacted file: the live data, roughly.
    compacted_bytes: AtomicU64,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Records appended so far.
    appended: u64,
    /// Blob files to remove once the records saying they are gone are durable.
    unlink: Vec<PathBuf>,
    /// New blob files were made: the folder must be synced with the log.
    new_files: bool,
    closing: bool,
}

/// The journal failed to write: answers cannot be promised durable.
#[derive(Debug, thiserror::Error)]
#[error("the log could not be written; see the server log")]
pub struct JournalFailed;

impl Journal {
    /// Starts writing segment `seq` of `dir`.
    pub fn start(
        dir: DataDir,
        config: &DurabilityConfig,
        seq: u64,
        compacted: u64,
    ) -> io::Result<Journal> {
        let file = create_segment(&dir.segment(seq, SegmentKind::Log))?;
        sync_dir(&dir.log_dir())?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: watch::Sender::new(0),
            synced: watch::Sender::new(0),
            failed: AtomicBool::new(false),
            mode: config.fsync,
            interval: config.fsync_interval,
            segment_bytes: config.segment_bytes,
            dir,
            compacted_bytes: AtomicU64::new(compacted),
        });
        let (to_compactor, sealed) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("blobq-journal".into())
                .spawn(move || {
                    Writer {
                        shared,
                        file,
                        seq,
                        file_len: files::MAGIC.len() as u64,
                        sealed_bytes: 0,
                        to_compactor,
                    }
                    .run()
                })?
        };
        let compactor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("blobq-compact".into())
                .spawn(move || compact_loop(&shared, &sealed))?
        };
        Ok(Journal {
            shared,
            writer: Mutex::new(Some(writer)),
            compactor: Mutex::new(Some(compactor)),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a record. Called under the namespace's lock, so keep it short:
    /// an encode into a buffer and a wake-up.
    pub fn append(&self, record: &Record<'_>) {
        let mut p = self.pending();
        record::encode(record, &mut p.buf);
        p.appended += 1;
        drop(p);
        self.shared.wake.notify_one();
    }

    /// Removes `path` once the log durably says the blob is gone.
    pub fn unlink_later(&self, path: PathBuf) {
        self.pending().unlink.push(path);
        self.shared.wake.notify_one();
    }

    /// A new blob file exists: sync its folder with the next log sync.
    pub fn file_added(&self) {
        self.pending().new_files = true;
    }

    pub fn mode(&self) -> FsyncMode {
        self.shared.mode
    }

    /// Waits until every record appended so far is as durable as `commit`
    /// asks in this mode.
    pub async fn wait(&self, commit: Commit) -> Result<(), JournalFailed> {
        let sync = self.shared.mode == FsyncMode::Always;
        if commit == Commit::Consumed && !sync {
            return Ok(());
        }
        let target = self.pending().appended;
        let mut rx = if sync {
            self.shared.synced.subscribe()
        } else {
            self.shared.written.subscribe()
        };
        let reached = rx.wait_for(|&n| n >= target).await.is_ok();
        if !reached || self.shared.failed.load(Ordering::Acquire) {
            return Err(JournalFailed);
        }
        Ok(())
    }

    /// Writes and syncs what is pending and stops the threads.
    pub fn close(&self) {
        self.pending().closing = true;
        self.shared.wake.notify_one();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
        let compactor = self
            .compactor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(c) = compactor {
            let _ = c.join();
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir.root)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    file: File,
    seq: u64,
    file_len: u64,
    /// Bytes in segments sealed since the last compaction.
    sealed_bytes: u64,
    to_compactor: mpsc::Sender<u64>,
}

impl Writer {
    fn run(mut self) {
        let mut spare = Vec::new();
        let mut written = 0u64;
        let mut synced = 0u64;
        let mut last_sync = Instant::now();
        let mut unlink: Vec<PathBuf> = Vec::new();
        let mut dir_dirty = false;
        loop {
            let (batch, appended, closing) = {
                let mut p = self
                    .shared
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                loop {
                    let unsynced = written > synced || dir_dirty || !unlink.is_empty();
                    let batch_sync = self.shared.mode == FsyncMode::Batch && unsynced;
                    let sync_due = batch_sync && last_sync.elapsed() >= self.shared.interval;
                    if !p.buf.is_empty() || !p.unlink.is_empty() || p.closing || sync_due {
                        break;
                    }
                    let timeout = if batch_sync {
                        self.shared.interval.saturating_sub(last_sync.elapsed())
                    } else {
                        Duration::from_secs(1)
                    };
                    p = self
                        .shared
                        .wake
                        .wait_timeout(p, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                unlink.append(&mut p.unlink);
                dir_dirty |= std::mem::take(&mut p.new_files);
                std::mem::swap(&mut p.buf, &mut spare);
                (std::mem::take(&mut spare), p.appended, p.closing)
            };
            let mut batch = batch;
            if !batch.is_empty() {
                if let Err(e) = self.file.write_all(&batch) {
                    self.fail(&e);
                    return;
                }
                self.file_len += batch.len() as u64;
            }
            written = appended;
            self.shared.written.send_replace(written);
            batch.clear();
            spare = batch;
            let sync_now = match self.shared.mode {
                FsyncMode::Always => true,
                FsyncMode::Batch => closing || last_sync.elapsed() >= self.shared.interval,
                FsyncMode::Never => closing,
            };
            if sync_now && (written > synced || dir_dirty || !unlink.is_empty()) {
                if let Err(e) = self.sync(std::mem::take(&mut dir_dirty)) {
                    self.fail(&e);
                    return;
                }
                synced = written;
                last_sync = Instant::now();
                self.shared.synced.send_replace(synced);
            }
            if sync_now || self.shared.mode == FsyncMode::Never {
                remove_files(&mut unlink);
            }
            if closing {
                return;
            }
            if self.file_len >= self.shared.segment_bytes {
                if let Err(e) = self.rotate() {
                    self.fail(&e);
                    return;
                }
            }
        }
    }

    fn sync(&self, dir_dirty: bool) -> io::Result<()> {
        self.file.sync_data()?;
        if dir_dirty {
            sync_dir(&self.shared.dir.blob_dir())?;
        }
        Ok(())
    }

    /// Seals the current segment and starts the next; hands the sealed one to
    /// compaction once enough has built up since the last.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let next = self.seq + 1;
        self.file = create_segment(&self.shared.dir.segment(next, SegmentKind::Log))?;
        sync_dir(&self.shared.dir.log_dir())?;
        self.sealed_bytes += self.file_len;
        self.file_len = files::MAGIC.len() as u64;
        let live = self.shared.compacted_bytes.load(Ordering::Relaxed);
        if self.sealed_bytes >= live.max(self.shared.segment_bytes) {
            let _ = self.to_compactor.send(self.seq);
            self.sealed_bytes = 0;
        }
        self.seq = next;
        Ok(())
    }

    fn fail(&self, e: &io::Error) {
        tracing::error!(error = %e, "cannot write the log; refusing further writes");
        self.shared.failed.store(true, Ordering::Release);
        // Wake every waiter: they see `failed`.
        self.shared.written.send_replace(u64::MAX);
        self.shared.synced.send_replace(u64::MAX);
    }
}

fn remove_files(paths: &mut Vec<PathBuf>) {
    for path in paths.drain(..) {
        remove_file(&path);
    }
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove blob file");
        }
    }
}

/// Compacts each sealed segment number it receives, until the writer stops.
fn compact_loop(shared: &Shared, sealed: &mpsc::Receiver<u64>) {
    while let Ok(mut upto) = sealed.recv() {
        // Catch up in one pass if several were sealed meanwhile.
        while let Ok(later) = sealed.try_recv() {
            upto = later;
        }
        let started = Instant::now();
        let now = super::clock::Millis::now().0;
        match replay::compact(&shared.dir, upto, now) {
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
