//! The spill folder and what memory mode keeps in it past the memory
//! budget: small bodies appended to shared overflow segments instead of a
//! file each, read back by (segment, offset, length).
//!
//! - [`Overflow`] (here): appends and the settings.
//! - `writer`: the one writer, which hands out room in the current segment
//!   (starting the next when it is full) and writes the bodies queued there
//!   many at a time.
//! - `read_ahead`: windows read ahead of pops in segment order, which serve
//!   the bodies that follow from memory.
//! - `segment`: a segment's file, live bytes and bodies; it is removed when
//!   nothing in it is live any more.
//! - `body`: a body's place, changed by the compactor, read by anyone.
//! - `compactor`: copies the live bodies of mostly dead segments forward
//!   (in durable mode through a [`MoveLog`], which logs each move).
//! - `folder`: this process's spill folder, and the removal at start-up of
//!   those left behind by dead processes.
//!
//! Large bodies (at or above the spill threshold) keep a file of their own
//! (`ingest`). Durable mode keeps its segments in the data directory
//! ([`Overflow::durable`]): their files outlive the process, are removed
//! through the log ([`Removal::Deferred`]), reopened at restart, and
//! compacted only once the store gives a [`MoveLog`].

mod body;
mod compactor;
mod folder;
#[cfg(test)]
mod logged_tests;
mod read_ahead;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

pub(crate) use body::Place;
pub use body::{LogName, OverflowBody};
pub(crate) use folder::SpillFolder;
pub(crate) use segment::Segment;

use read_ahead::ReadAhead;
use writer::Writer;

/// What happens to a segment's file once nothing in it is live and nothing
/// reads it.
#[derive(Clone)]
pub enum Removal {
    /// Removed at once: memory mode, whose bytes die with the process.
    Now,
    /// Handed over (durable mode: to the log, which removes it once the
    /// records saying its bodies are gone are durable).
    Deferred(Arc<dyn Fn(PathBuf) + Send + Sync>),
}

impl std::fmt::Debug for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Removal::Now => "Now",
            Removal::Deferred(_) => "Deferred",
        })
    }
}

/// Durable mode's side of the compactor's moves: a record names each body's
/// place, so a body may move only where the log's records are ordered.
pub(crate) trait MoveLog: Send + Sync + std::fmt::Debug {
    /// Moves `body` from `from` to `to` (where its bytes were just copied
    /// and synced) and logs the move, if the log still names the body at
    /// `from`; otherwise leaves it where it is. Whether it moved.
    fn commit_move(&self, body: &Arc<OverflowBody>, from: &Place, to: Place) -> bool;
}

/// The name of segment `number` in its folder.
pub fn segment_name(number: u64) -> String {
    format!("segment-{number:08}")
}

/// How overflow segments are sized and when they are compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowConfig {
    /// A segment is sealed, and the next begun, once this many bytes are
    /// written to it (a body never straddles two segments).
    pub segment_bytes: u64,
    /// A sealed segment whose live bytes fall below this percentage of its
    /// size is compacted; 0 never compacts.
    pub compact_percent: u8,
    /// Bytes of bodies waiting to be written at most: an append finding
    /// the queue full waits for room, so a slow disk slows pushes rather
    /// than holding their bodies in memory.
    pub write_queue_bytes: u64,
    /// Bytes read at once from a segment for a pop (its body and those
    /// after it); 0 reads each body alone.
    pub read_ahead_bytes: u64,
    /// Read-ahead windows kept at most, the least recently used dropped
    /// first.
    pub read_ahead_windows: usize,
}

impl Default for OverflowConfig {
    fn default() -> OverflowConfig {
        OverflowConfig {
            segment_bytes: 64 << 20,
            compact_percent: 25,
            write_queue_bytes: 8 << 20,
            read_ahead_bytes: 1 << 20,
            read_ahead_windows: 8,
        }
    }
}

/// The overflow segments of one store.
#[derive(Debug)]
pub struct Overflow {
    /// Given to each segment, which reports back to its overflow.
    me: Weak<Overflow>,
    dir: PathBuf,
    config: OverflowConfig,
    writer: Mutex<Writer>,
    /// One permit a byte of the bodies queued to be written
    /// (`write_queue_bytes`), given back once they are.
    queue_room: Arc<Semaphore>,
    read_ahead: ReadAhead,
    /// Sealed segments, for the compactor to look through; a segment
    /// nothing holds any more is gone from here too.
    sealed: Mutex<Vec<Weak<Segment>>>,
    compactor: Arc<Notify>,
    /// One compaction at a time (the background task's, or one asked for).
    compacting: tokio::sync::Mutex<()>,
    removal: Removal,
    /// Durable mode: a body moves only through `move_log`; until the store
    /// gives one, nothing is compacted.
    durable: bool,
    move_log: OnceLock<Arc<dyn MoveLog>>,
    /// Writes made to segment files and reads made from them, for the
    /// tests that check bodies share them.
    writes: AtomicU64,
    reads: AtomicU64,
    /// Writes still to fail, for the tests of a failed write.
    #[cfg(test)]
    fail_writes: AtomicU64,
}

impl Overflow {
    /// Segments in `dir`, created as they are needed.
    pub fn new(dir: PathBuf, config: OverflowConfig) -> Arc<Overflow> {
        Overflow::build(dir, config, 0, Removal::Now, false)
    }

    /// Durable mode's segments, in the data directory: numbered from
    /// `first_number` on (above those of earlier processes), their files
    /// removed as `removal` says.
    pub fn durable(
        dir: PathBuf,
        config: OverflowConfig,
        first_number: u64,
        removal: Removal,
    ) -> Arc<Overflow> {
        Overflow::build(dir, config, first_number, removal, true)
    }

    fn build(
        dir: PathBuf,
        config: OverflowConfig,
        first_number: u64,
        removal: Removal,
        durable: bool,
    ) -> Arc<Overflow> {
        Arc::new_cyclic(|me| Overflow {
            me: me.clone(),
            dir,
            config,
            writer: Mutex::new(Writer::numbered_from(first_number)),
            queue_room: Arc::new(Semaphore::new(queue_room(&config))),
            read_ahead: ReadAhead::new(config.read_ahead_bytes, config.read_ahead_windows),
            sealed: Mutex::new(Vec::new()),
            compactor: Arc::new(Notify::new()),
            compacting: tokio::sync::Mutex::new(()),
            removal,
            durable,
            move_log: OnceLock::new(),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            #[cfg(test)]
            fail_writes: AtomicU64::new(0),
        })
    }

    /// Reopens segment `number`, written by an earlier process (durable
    /// mode's restart): sealed, and removed like any once nothing in it is
    /// live.
    pub(crate) fn reopen(&self, number: u64) -> io::Result<Arc<Segment>> {
        let segment = Arc::new(Segment::reopen(
            self.dir.join(segment_name(number)),
            self.config.compact_percent,
            self.me.clone(),
            self.removal.clone(),
        )?);
        let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.push(Arc::downgrade(&segment));
        Ok(segment)
    }

    /// A body of `len` bytes already at `offset` of a reopened `segment`.
    pub(crate) fn adopt(segment: &Arc<Segment>, offset: u64, len: u64) -> Arc<OverflowBody> {
        OverflowBody::placed(
            Place {
                segment: segment.clone(),
                offset,
            },
            len,
        )
    }

    /// Durable mode: the compactor moves bodies through `log` from now on.
    pub(crate) fn log_moves(&self, log: Arc<dyn MoveLog>) {
        let _ = self.move_log.set(log);
    }

    /// Starts the compactor task, which ends with `closing` or the store.
    /// It looks at once: segments reopened at restart may be due already.
    pub fn start_compactor(self: &Arc<Overflow>, closing: CancellationToken) {
        self.compactor.notify_one();
        tokio::spawn(compactor::run(
            Arc::downgrade(self),
            self.compactor.clone(),
            closing,
        ));
    }

    /// Appends a body, answering once its bytes are written (through the
    /// page cache, unsynced: they die with the process anyway), so that a
    /// write that fails (a full disk) fails this append and no other.
    pub async fn append(&self, bytes: Bytes) -> io::Result<Arc<OverflowBody>> {
        let len = bytes.len() as u64;
        let place = self.write(bytes).await?;
        Ok(OverflowBody::placed(place, len))
    }

    /// Writes `bytes` at the end of the current segment, with the bytes
    /// queued alongside, and says where they are. The room is taken even
    /// if this future is dropped: the write goes ahead, its room unused.
    async fn write(&self, bytes: Bytes) -> io::Result<Place> {
        // A body larger than the whole queue waits for it to be empty.
        let permits = bytes.len().min(queue_room(&self.config));
        let permits = u32::try_from(permits).unwrap_or(u32::MAX);
        let room = self
            .queue_room
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(io::Error::other)?;
        let (place, written) = self.enqueue(bytes, room)?;
        match written.await {
            Ok(result) => result.map(|()| place),
            Err(_) => Err(io::Error::other("the overflow writer stopped")),
        }
    }

    /// The writer moved on from `segment`: it is removed as soon as nothing
    /// in it is live, or compacted once little is.
    fn seal(&self, segment: Arc<Segment>) {
        let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.retain(|s| s.strong_count() > 0);
        sealed.push(Arc::downgrade(&segment));
        drop(sealed);
        segment.seal();
    }

    /// Sealed segments whose live bytes are below `percent` of their size.
    fn compaction_candidates(&self, percent: u8) -> Vec<Arc<Segment>> {
        let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.retain(|s| s.strong_count() > 0);
        sealed
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.worth_compacting_below(percent))
            .collect()
    }

    /// Writes to segment files so far (one for many bodies when they
    /// queue up together).
    #[cfg(test)]
    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads from segment files so far (one for many bodies when they are
    /// read ahead).
    #[cfg(test)]
    fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes the next `count` writes fail as a full disk would.
    #[cfg(test)]
    fn fail_next_writes(&self, count: u64) {
        self.fail_writes
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }

    /// A write failing on purpose, if one is due.
    #[cfg(test)]
    fn injected_fault(&self) -> io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        match self
            .fail_writes
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        {
            Ok(_) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Err(_) => Ok(()),
        }
    }

    /// How many segment files exist (sealed ones still held, and the
    /// current one).
    #[cfg(test)]
    fn segment_count(&self) -> usize {
        let current = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .has_current();
        let sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.iter().filter(|s| s.strong_count() > 0).count() + usize::from(current)
    }
}

/// Permits of the write queue: one a byte, as many as the semaphore holds.
fn queue_room(config: &OverflowConfig) -> usize {
    usize::try_from(config.write_queue_bytes)
        .unwrap_or(usize::MAX)
        .clamp(1, Semaphore::MAX_PERMITS)
}
