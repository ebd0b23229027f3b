//! The spill folder and what memory mode keeps in it past the memory
//! budget: small bodies appended to shared overflow segments instead of a
//! file each, read back by (segment, offset, length).
//!
//! - [`Overflow`] (here): the one writer, which hands out room in the
//!   current segment and starts the next when it is full.
//! - `segment`: a segment's file, live bytes and bodies; it is removed when
//!   nothing in it is live any more.
//! - `body`: a body's place, changed by the compactor, read by anyone.
//! - `compactor`: copies the live bodies of mostly dead segments forward.
//! - `folder`: this process's spill folder, and the removal at start-up of
//!   those left behind by dead processes.
//!
//! Large bodies (at or above the spill threshold) keep a file of their own
//! (`ingest`). Durable mode keeps its segments in the data directory
//! ([`Overflow::durable`]): their files outlive the process, are removed
//! through the log ([`Removal::Deferred`]) and reopened at restart.

mod body;
mod compactor;
mod folder;
mod segment;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use body::OverflowBody;
pub(crate) use folder::SpillFolder;
pub(crate) use segment::Segment;

use body::Place;

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
}

impl Default for OverflowConfig {
    fn default() -> OverflowConfig {
        OverflowConfig {
            segment_bytes: 64 << 20,
            compact_percent: 25,
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
    /// Sealed segments, for the compactor to look through; a segment
    /// nothing holds any more is gone from here too.
    sealed: Mutex<Vec<Weak<Segment>>>,
    compactor: Arc<Notify>,
    removal: Removal,
}

/// The segment being written and where its next body goes. Held only to
/// hand out room (and to create a file when a segment fills), never while
/// bytes are written, so appends run side by side.
#[derive(Debug)]
struct Writer {
    current: Option<Arc<Segment>>,
    next_offset: u64,
    next_number: u64,
}

impl Overflow {
    /// Segments in `dir`, created as they are needed.
    pub fn new(dir: PathBuf, config: OverflowConfig) -> Arc<Overflow> {
        Overflow::build(dir, config, 0, Removal::Now)
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
        Overflow::build(dir, config, first_number, removal)
    }

    fn build(
        dir: PathBuf,
        config: OverflowConfig,
        first_number: u64,
        removal: Removal,
    ) -> Arc<Overflow> {
        Arc::new_cyclic(|me| Overflow {
            me: me.clone(),
            dir,
            config,
            writer: Mutex::new(Writer {
                current: None,
                next_offset: 0,
                next_number: first_number,
            }),
            sealed: Mutex::new(Vec::new()),
            compactor: Arc::new(Notify::new()),
            removal,
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

    /// Starts the compactor task, which ends with `closing` or the store.
    pub fn start_compactor(self: &Arc<Overflow>, closing: CancellationToken) {
        tokio::spawn(compactor::run(
            Arc::downgrade(self),
            self.compactor.clone(),
            closing,
        ));
    }

    /// Appends a body. The write goes through the page cache, unsynced (the
    /// bytes die with the process anyway), on a blocking thread: a write
    /// can wait while the kernel flushes dirty pages.
    pub async fn append(&self, bytes: Bytes) -> io::Result<Arc<OverflowBody>> {
        let len = bytes.len() as u64;
        let place = self.reserve(len)?;
        let written = {
            let place = place.clone();
            tokio::task::spawn_blocking(move || place.segment.write_at(&bytes, place.offset))
        };
        match written.await {
            Ok(result) => result?,
            Err(e) => return Err(io::Error::other(e)),
        }
        Ok(OverflowBody::placed(place, len))
    }

    /// Room for `len` bytes in the current segment, sealing it and
    /// starting the next if they do not fit (an empty segment takes any
    /// body, so one larger than a segment still fits somewhere).
    fn reserve(&self, len: u64) -> io::Result<Place> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let full = writer.next_offset > 0 && writer.next_offset + len > self.config.segment_bytes;
        if writer.current.is_none() || full {
            let number = writer.next_number;
            let segment = Arc::new(Segment::create(
                self.dir.join(segment_name(number)),
                self.config.compact_percent,
                self.me.clone(),
                self.removal.clone(),
            )?);
            writer.next_number += 1;
            writer.next_offset = 0;
            if let Some(old) = writer.current.replace(segment) {
                self.seal(old);
            }
        }
        let offset = writer.next_offset;
        writer.next_offset += len;
        let segment = writer.current.clone().ok_or(io::ErrorKind::NotFound)?;
        segment.extend_to(writer.next_offset);
        Ok(Place { segment, offset })
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

    /// Seals `segment` if it is the one being written and nothing in it is
    /// live any more, so its file goes now rather than at the next
    /// rollover. A body whose room was handed out but not yet written keeps
    /// the segment until it is written, as in any sealed segment.
    fn retire_if_empty(&self, segment: &Segment) {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = writer
            .current
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), segment));
        if !current || segment.live_bytes() > 0 {
            return;
        }
        let Some(old) = writer.current.take() else {
            return;
        };
        writer.next_offset = 0;
        drop(writer);
        self.seal(old);
    }

    /// Sealed segments worth compacting now.
    fn compaction_candidates(&self) -> Vec<Arc<Segment>> {
        let mut sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.retain(|s| s.strong_count() > 0);
        sealed
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.worth_compacting())
            .collect()
    }

    /// How many segment files exist (sealed ones still held, and the
    /// current one).
    #[cfg(test)]
    fn segment_count(&self) -> usize {
        let current = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .is_some();
        let sealed = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        sealed.iter().filter(|s| s.strong_count() > 0).count() + usize::from(current)
    }
}
