//! Read-ahead for pops. Queues are FIFO, so pops read a segment from front
//! to back: a body not in a window is read with the bytes after it, up to
//! `read_ahead_bytes`, in one positioned read, and the bodies that follow
//! are answered as slices of that window. Pops of neighbouring bodies that
//! arrive while the window is being read wait for that one read.
//!
//! Segment bytes never change once written (the writer only appends, the
//! compactor copies bodies forward into the current segment), so a window
//! stays right for every body it covers, even one the compactor has moved
//! since (the body's new place is looked up the next time it is read). A
//! window holds its segment weakly: the file still goes once nothing in it
//! is live, and its windows with it. At most `read_ahead_windows` are kept,
//! the least recently used dropped first; a window's bytes are freed once
//! no answer holds a slice of it either, and its buffer goes back to be
//! read into again: a fresh buffer costs the kernel a page fault and a
//! zeroed page for every page read into it, more than the read itself.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::OnceCell;

use super::body::Place;
use super::segment::Segment;
use super::Overflow;

#[derive(Debug)]
pub(super) struct ReadAhead {
    window_bytes: u64,
    max_windows: usize,
    /// The most recently used last.
    windows: Mutex<VecDeque<Window>>,
    buffers: Arc<Buffers>,
}

/// Buffers of `window_bytes` that no window or answer uses any more, at
/// most `keep` of them (as many as windows are kept).
#[derive(Debug)]
struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

/// A window's bytes: the first `len` of a buffer that goes back to its
/// pool once the last slice of it is dropped.
struct Pooled {
    buffer: Vec<u8>,
    len: usize,
    pool: Weak<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut free = pool.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < pool.keep {
            free.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// Bytes `start..end` of a segment, read once by whichever pop needs them
/// first (another takes over if that pop goes away before the read ends).
#[derive(Debug)]
struct Window {
    segment: Weak<Segment>,
    start: u64,
    end: u64,
    bytes: Arc<OnceCell<Bytes>>,
}

impl Window {
    fn covers(&self, segment: &Arc<Segment>, offset: u64, len: u64) -> bool {
        std::ptr::eq(self.segment.as_ptr(), Arc::as_ptr(segment))
            && self.start <= offset
            && offset + len <= self.end
    }
}

impl ReadAhead {
    pub fn new(window_bytes: u64, max_windows: usize) -> ReadAhead {
        ReadAhead {
            window_bytes,
            max_windows,
            windows: Mutex::new(VecDeque::new()),
            buffers: Arc::new(Buffers {
                free: Mutex::new(Vec::new()),
                keep: max_windows,
            }),
        }
    }

    /// A buffer of `window_bytes` to read a window into: a free one, or a
    /// new one.
    fn buffer(&self) -> io::Result<Vec<u8>> {
        let free = self
            .buffers
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match free {
            Some(buffer) => Ok(buffer),
            None => Ok(vec![
                0;
                usize::try_from(self.window_bytes)
                    .map_err(|_| io::ErrorKind::InvalidInput)?
            ]),
        }
    }

    /// The window covering `len` bytes at `place`, made if none does.
    /// `None` when the body is read alone (no read-ahead, or a body at
    /// least as large as a window).
    fn window_for(&self, place: &Place, len: u64) -> Option<(u64, u64, Arc<OnceCell<Bytes>>)> {
        if self.max_windows == 0 || len >= self.window_bytes {
            return None;
        }
        let Place { segment, offset } = place;
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        // Windows of removed segments serve nobody any more.
        windows.retain(|w| w.segment.strong_count() > 0);
        let found = windows.iter().position(|w| w.covers(segment, *offset, len));
        let window = match found.and_then(|i| windows.remove(i)) {
            Some(window) => window,
            None => {
                // Only bytes already written: room still being written
                // would read as whatever the file held before.
                let end = (offset + self.window_bytes)
                    .min(segment.written_end())
                    .max(offset + len);
                if windows.len() >= self.max_windows {
                    windows.pop_front();
                }
                Window {
                    segment: Arc::downgrade(segment),
                    start: *offset,
                    end,
                    bytes: Arc::new(OnceCell::new()),
                }
            }
        };
        let found = (window.start, window.end, window.bytes.clone());
        windows.push_back(window);
        Some(found)
    }
}

impl Overflow {
    /// Reads `len` bytes at `place`, from a window if one covers them.
    pub(super) async fn read(&self, place: Place, len: u64) -> io::Result<Bytes> {
        let Some((start, end, window)) = self.read_ahead.window_for(&place, len) else {
            return self.read_counted(place.segment, place.offset, len).await;
        };
        let read = window
            .get_or_try_init(|| self.read_window(place.segment.clone(), start, end - start))
            .await;
        let bytes = match read {
            Ok(bytes) => bytes,
            // A file cut short (damaged under a durable store) fails the
            // window's read; the body's own bytes may still be there.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return self.read_counted(place.segment, place.offset, len).await;
            }
            Err(e) => return Err(e),
        };
        let from =
            usize::try_from(place.offset - start).map_err(|_| io::ErrorKind::InvalidInput)?;
        let to = from + usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        Ok(bytes.slice(from..to))
    }

    /// Reads a window of `len` bytes (at most `read_ahead_bytes`) at
    /// `offset` into a buffer from the pool, off the runtime's threads.
    async fn read_window(&self, segment: Arc<Segment>, offset: u64, len: u64) -> io::Result<Bytes> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut buffer = self.read_ahead.buffer()?;
        if len > buffer.len() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let read = tokio::task::spawn_blocking(move || {
            segment
                .read_exact_at(&mut buffer[..len], offset)
                .map(|()| buffer)
        });
        let buffer = read.await.map_err(io::Error::other)??;
        Ok(Bytes::from_owner(Pooled {
            buffer,
            len,
            pool: Arc::downgrade(&self.read_ahead.buffers),
        }))
    }

    /// [`read_range`], counted.
    async fn read_counted(
        &self,
        segment: Arc<Segment>,
        offset: u64,
        len: u64,
    ) -> io::Result<Bytes> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        read_range(segment, offset, len).await
    }
}

/// One positioned read, off the runtime's threads (a segment evicted from
/// the page cache is a disk read). The segment is held until the read
/// ends, so a body moved meanwhile still reads whole.
pub(super) async fn read_range(segment: Arc<Segment>, offset: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    let read = tokio::task::spawn_blocking(move || segment.read_at(len, offset));
    match read.await {
        Ok(bytes) => bytes.map(Bytes::from),
        Err(e) => Err(io::Error::other(e)),
    }
}
