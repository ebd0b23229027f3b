//! Durable mode (`--data-dir`): an append-only log of every change to the
//! store, replayed at start-up. [`Journal`] is its writing end.
//!
//! Operations append [`Record`]s while they hold their namespace's lock, so
//! the log's order is the order the changes happened, and before answering
//! wait for them to be written (and, with `--fsync always`, synced) by group
//! commit (`group_commit`). In `batch` mode a background thread syncs what
//! was written every interval (`syncer`), so no request waits for an
//! `fsync`. Sealed segments are rewritten as their live state by a third
//! thread from the files alone (`compactor`), so compaction never takes a
//! store lock. At start-up `replay` reads the files into the state `live`
//! describes. `docs/DURABILITY.md` describes the guarantees.

mod body_files;
pub mod compactor;
#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod faults;
pub mod files;
mod group_commit;
pub mod live;
pub mod record;
pub mod replay;
mod syncer;
#[cfg(test)]
mod test_records;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use files::{create_segment, sync_dir, DataDir, SegmentKind};
use group_commit::{Pending, Shared};
pub use record::Record;

/// When the log is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
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
    /// Start despite corruption in the middle of the log, dropping only the
    /// damaged records (`--repair`).
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

/// A file the log's records point into: durable mode's overflow segments
/// and, in `batch` mode, blob files.
/// Synced with the log, and before it, so that a record on stable storage
/// never names bytes that are not.
pub trait SyncedWithLog: Send + Sync {
    fn sync_data(&self) -> std::io::Result<()>;
}

/// The bytes of a blob file of the data directory, synced by its path. A
/// file already removed has nothing left to make durable.
struct BlobFileBytes(PathBuf);

impl SyncedWithLog for BlobFileBytes {
    fn sync_data(&self) -> std::io::Result<()> {
        match std::fs::File::open(&self.0) {
            Ok(file) => file.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The log's writing end.
pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The records a request waited for could not be written (a full disk,
/// most often): its answer cannot be promised durable. The records stay
/// with the journal for the next round; the request takes its change back.
#[derive(Debug, thiserror::Error)]
#[error("the log could not be written")]
pub struct JournalFailed;

impl Journal {
    /// Starts writing segment `seq` of `dir`.
    pub fn start(
        dir: DataDir,
        config: &DurabilityConfig,
        seq: u64,
        compacted: u64,
    ) -> std::io::Result<Journal> {
        let file = create_segment(&dir.segment(seq, SegmentKind::Log))?;
        sync_dir(&dir.log_dir())?;
        let (to_compactor, sealed) = mpsc::channel();
        let shared = Arc::new(Shared::new(dir, config, file, seq, compacted, to_compactor));
        let mut threads = Vec::new();
        let compactor = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("blobq-compact".into())
                .spawn(move || compactor::run(&compactor, &sealed))?,
        );
        let syncer = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("blobq-fsync".into())
                .spawn(move || syncer.flush_periodically())?,
        );
        Ok(Journal {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Segments earlier processes sealed and no compaction has rewritten
    /// yet, `bytes` long in all: they count toward the next compaction,
    /// which reads them too, so the log converges however often the server
    /// restarts.
    pub fn count_sealed(&self, bytes: u64) {
        self.shared.hold().sealed_bytes += bytes;
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.shared.pending)
    }

    /// Appends a record. Called under the namespace's lock, so it is kept
    /// to an encode into a buffer.
    pub fn append(&self, record: &Record<'_>) {
        let mut p = self.pending();
        record::encode(record, &mut p.buf);
        p.appended += 1;
    }

    /// Appends records already encoded, `count` of them, in one piece: a
    /// leader writes all of them or none.
    pub fn append_encoded(&self, records: &[u8], count: u64) {
        let mut p = self.pending();
        p.buf.extend_from_slice(records);
        p.appended += count;
    }

    /// Removes `path` once the log durably says its blob is gone.
    pub fn unlink_later(&self, path: PathBuf) {
        self.pending().unlink.push(path);
    }

    /// A new blob file exists: sync its folder with the next log sync, and
    /// in `batch` mode its bytes too, before the log (in `always` mode they
    /// were synced before its record was made; `never` syncs nothing).
    pub fn file_added(&self, path: &std::path::Path) {
        let mut p = self.pending();
        p.new_files = true;
        if self.shared.mode == FsyncMode::Batch {
            let file: Arc<dyn SyncedWithLog> = Arc::new(BlobFileBytes(path.to_owned()));
            p.body_files.push(file);
        }
    }

    /// A record just appended names bytes of `file`: sync it with the next
    /// log sync, before the log. Nothing is synced in `never` mode.
    pub fn sync_with_log(&self, file: &Arc<dyn SyncedWithLog>) {
        if self.shared.mode == FsyncMode::Never {
            return;
        }
        let mut p = self.pending();
        group_commit::add_unique(&mut p.body_files, file);
    }

    /// Waits until every record appended so far is as durable as `commit`
    /// asks in this mode. The first waiter to find the segment free writes
    /// everything pending (and syncs it in `always` mode) for all waiters;
    /// the others wait for its result. `Err` when the round holding this
    /// request's records failed while it waited: the request answers `507`
    /// and takes its change back.
    pub async fn wait(&self, commit: Commit) -> Result<(), JournalFailed> {
        let sync = self.shared.mode == FsyncMode::Always;
        if commit == Commit::Consumed && !sync {
            return Ok(());
        }
        let target = self.pending().appended;
        let mut rx = self.shared.progress.subscribe();
        let failures = rx.borrow().failures;
        loop {
            let p = *rx.borrow_and_update();
            if (if sync { p.synced } else { p.written }) >= target {
                return Ok(());
            }
            // A round that failed before this wait began is retried below,
            // not reported: its failure was told to its own waiters.
            if p.failures > failures && p.failed_through >= target {
                return Err(JournalFailed);
            }
            let led = self
                .shared
                .try_hold()
                .map(|out| self.shared.lead_blocking(out));
            match led {
                Some(Ok(())) => continue,
                Some(Err(_)) => return Err(JournalFailed),
                None => {
                    if rx.changed().await.is_err() {
                        return Err(JournalFailed);
                    }
                }
            }
        }
    }

    /// Before an operation that will wait for `commit` changes anything:
    /// if a failed round's records are still unwritten, writes them now
    /// (with whatever else is pending). `Err` if that fails again, so that
    /// while the disk is full a request is refused having changed nothing,
    /// and only the requests of the round that met the failure have a
    /// change to take back.
    pub async fn ready_for(&self, commit: Commit) -> Result<(), JournalFailed> {
        if !self.shared.behind.load(Ordering::Acquire) {
            return Ok(());
        }
        if commit == Commit::Consumed && self.shared.mode != FsyncMode::Always {
            return Ok(());
        }
        self.wait(Commit::Accepted).await
    }

    /// A failed round's records wait to be written: requests that need the
    /// log go through [`Journal::ready_for`] first.
    pub fn is_behind(&self) -> bool {
        self.shared.behind.load(Ordering::Acquire)
    }

    /// Test hook: the next `n` writes of the log fail as on a full disk.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self, n: u64) {
        self.shared.faults.writes.store(n, Ordering::Release);
    }

    /// Why the log cannot be written, while it cannot (no path: clients
    /// read it).
    pub fn fault(&self) -> Option<crate::backend::StorageFault> {
        lock(&self.shared.fault).clone()
    }

    /// Writes and syncs what is pending, removes the files waiting for it,
    /// and stops the background threads.
    pub fn close(&self) {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.shared.lead(self.shared.hold(), true) {
            tracing::error!(error = %e, "the log's last records could not be written at shutdown; those changes are lost");
        }
        {
            // See `flush_periodically`: the syncer is either waiting, and is
            // woken, or not yet, and then sees `closing` before it waits.
            let _guard = lock(&self.shared.syncer_wake.0);
            self.shared.syncer_wake.1.notify_all();
        }
        // Closing the channel ends the compactor.
        let (closed, _) = mpsc::channel();
        *lock(&self.shared.to_compactor) = closed;
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::syncer::NEVER_MODE_SYNC_PARTS;
    use super::*;

    fn journal(dir: &std::path::Path) -> Arc<Journal> {
        // The syncer never ticks during the test: only a wake-up from the
        // request path can end a wait.
        journal_with(dir, FsyncMode::Batch, Duration::from_secs(3600), 1 << 30)
    }

    fn journal_with(
        dir: &std::path::Path,
        fsync: FsyncMode,
        fsync_interval: Duration,
        segment_bytes: u64,
    ) -> Arc<Journal> {
        let data = DataDir::new(dir);
        data.create().unwrap();
        let config = DurabilityConfig {
            dir: dir.to_owned(),
            fsync,
            fsync_interval,
            segment_bytes,
            repair: false,
        };
        Arc::new(Journal::start(data, &config, 1, 0).unwrap())
    }

    /// In never mode the open segment is synced in the background once an
    /// eighth of it is unsynced, so sealing it never has a large sync to do
    /// while requests wait.
    #[tokio::test]
    async fn never_mode_syncs_a_filling_segment_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 64 * 1024;
        let journal = journal_with(
            dir.path(),
            FsyncMode::Never,
            Duration::from_millis(10),
            segment,
        );
        let mut id = 0;
        while journal.shared.hold().file_len < segment / 4 {
            for _ in 0..50 {
                id += 1;
                journal.append(&Record::Expose { ns: "ns", id });
            }
            journal.wait(Commit::Accepted).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (len, synced) = {
                let out = journal.shared.hold();
                (out.file_len, out.synced_len)
            };
            if len - synced < segment / NEVER_MODE_SYNC_PARTS {
                break;
            }
            assert!(Instant::now() < deadline, "{synced} of {len} bytes synced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        journal.close();
    }

    /// The syncer of a journal closed at once may not have started waiting
    /// yet: the close must still end it, not leave it asleep for its
    /// interval (an hour here) while `close` joins it. The race shows
    /// mostly on a loaded machine, hence the many rounds.
    #[test]
    fn a_journal_closed_right_after_it_started_closes_at_once() {
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let journal = journal(dir.path());
            let (closed, done) = mpsc::channel();
            std::thread::spawn(move || {
                journal.close();
                let _ = closed.send(());
            });
            assert!(
                done.recv_timeout(Duration::from_secs(10)).is_ok(),
                "close waited for the syncer's interval"
            );
        }
    }

    /// A request whose records were appended while another held the segment
    /// without writing them is woken when the segment is released, not at
    /// the next periodic flush.
    #[tokio::test]
    async fn a_waiter_left_behind_by_the_holder_is_woken_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal(dir.path());
        let held = journal.shared.hold();
        journal.append(&Record::Expose { ns: "ns", id: 7 });
        let waiter = tokio::spawn({
            let journal = journal.clone();
            async move { journal.wait(Commit::Accepted).await }
        });
        // Let the waiter find the segment taken and start waiting.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        drop(held);
        let done = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "the waiter was not woken when the segment was released"
        );
        assert_eq!(journal.shared.progress.borrow().written, 1);
        journal.close();
    }
}
