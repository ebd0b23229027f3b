//! The one overflow writer: room handed out in the current segment, and the
//! bodies queued to be written there, written many at a time.
//!
//! An append takes its room and joins the queue under one mutex, so the
//! queue is in offset order. One flusher at a time, on a blocking thread
//! started by the append that finds none running, takes everything queued
//! and writes each segment's run of bodies with one `pwritev`, then tells
//! each append how its own write went: group commit, so the more pushes
//! arrive together, the fewer writes they take, and a write that fails (a
//! full disk) fails only the appends whose bytes it held.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::body::Place;
use super::segment::Segment;
use super::{segment_name, Overflow};

/// The segment being written, where its next body goes, and what waits to
/// be written. Held only to hand out room and to queue or take bodies
/// (and to create a file when a segment fills), never while bytes are
/// written.
#[derive(Debug, Default)]
pub(super) struct Writer {
    current: Option<Arc<Segment>>,
    next_offset: u64,
    next_number: u64,
    pub(super) queue: Vec<Queued>,
    /// A flusher is running: it takes whatever is queued until the queue
    /// is empty, then clears this.
    pub(super) flushing: bool,
}

/// A body whose room is handed out, waiting to be written.
#[derive(Debug)]
pub(super) struct Queued {
    place: Place,
    bytes: Bytes,
    /// How the write went, for the append waiting on it.
    done: oneshot::Sender<io::Result<()>>,
    /// Its share of `write_queue_bytes`, given back once written.
    _room: OwnedSemaphorePermit,
}

impl Writer {
    /// A writer whose first segment is numbered `first`.
    pub fn numbered_from(first: u64) -> Writer {
        Writer {
            next_number: first,
            ..Writer::default()
        }
    }

    #[cfg(test)]
    pub fn has_current(&self) -> bool {
        self.current.is_some()
    }
}

impl Overflow {
    /// Hands out room for `bytes` and queues them, starting a flusher if
    /// none runs. The receiver says how their write went.
    pub(super) fn enqueue(
        &self,
        bytes: Bytes,
        room: OwnedSemaphorePermit,
    ) -> io::Result<(Place, oneshot::Receiver<io::Result<()>>)> {
        let (done, written) = oneshot::channel();
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let place = self.reserve(&mut writer, bytes.len() as u64)?;
        writer.queue.push(Queued {
            place: place.clone(),
            bytes,
            done,
            _room: room,
        });
        let start = !std::mem::replace(&mut writer.flushing, true);
        drop(writer);
        if start {
            if let Some(me) = self.me.upgrade() {
                tokio::task::spawn_blocking(move || me.flush_queued());
            }
        }
        Ok((place, written))
    }

    /// Room for `len` bytes in the current segment, sealing it and
    /// starting the next if they do not fit (an empty segment takes any
    /// body, so one larger than a segment still fits somewhere).
    fn reserve(&self, writer: &mut Writer, len: u64) -> io::Result<Place> {
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

    /// Seals `segment` if it is the one being written and nothing in it is
    /// live any more, so its file goes now rather than at the next
    /// rollover. A body whose room was handed out but not yet written keeps
    /// the segment until it is written, as in any sealed segment.
    pub(super) fn retire_if_empty(&self, segment: &Segment) {
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

    /// Seals the segment being written, so that the next body starts the
    /// next one and a compaction may take this one too.
    pub(crate) fn seal_current(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(old) = writer.current.take() else {
            return;
        };
        writer.next_offset = 0;
        drop(writer);
        self.seal(old);
    }

    /// The flusher: writes what is queued until nothing is.
    pub(super) fn flush_queued(&self) {
        let mut batch = Vec::new();
        loop {
            {
                let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                if writer.queue.is_empty() {
                    writer.flushing = false;
                    return;
                }
                // The emptied vector becomes the next queue, its capacity kept.
                std::mem::swap(&mut writer.queue, &mut batch);
            }
            self.write_batch(&mut batch);
        }
    }

    /// Writes `batch` (in offset order) one run of adjacent bodies of one
    /// segment at a time, answering each body's append, and empties it.
    fn write_batch(&self, batch: &mut Vec<Queued>) {
        while !batch.is_empty() {
            let mut end = 1;
            while end < batch.len() && follows(&batch[end - 1], &batch[end]) {
                end += 1;
            }
            let result = self.write_run(&batch[..end]);
            for queued in batch.drain(..end) {
                let Queued {
                    place, bytes, done, ..
                } = queued;
                // Let go of the segment and the room first: an append
                // answered may be dropped at once, and its segment's file
                // should go with it, not when this thread gets round to it.
                drop((place, bytes));
                let answer = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy_error(e)),
                };
                // An append that went away leaves its room unused.
                let _ = done.send(answer);
            }
        }
    }

    /// Writes adjacent bodies of one segment with one `pwritev`.
    fn write_run(&self, run: &[Queued]) -> io::Result<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let bufs: Vec<&[u8]> = run.iter().map(|q| &q.bytes[..]).collect();
        let segment = &first.place.segment;
        let result = segment.write_vectored_at(&bufs, first.place.offset);
        self.writes.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        let result = result.and(self.injected_fault());
        if result.is_ok() {
            segment.written_to(last.place.offset + last.bytes.len() as u64);
        }
        result
    }
}

/// Whether `next` is written right after `prev` in the same segment.
fn follows(prev: &Queued, next: &Queued) -> bool {
    Arc::ptr_eq(&prev.place.segment, &next.place.segment)
        && prev.place.offset + prev.bytes.len() as u64 == next.place.offset
}

/// The same error for another waiter (`io::Error` is not `Clone`), keeping
/// the OS code that tells a full disk from other failures.
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
