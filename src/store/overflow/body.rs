//! A body kept in an overflow segment: where it is now, which the compactor
//! may change while it is read, its share of the segment's live bytes, and
//! in durable mode how the log names it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;

use super::read_ahead::read_range;
use super::segment::Segment;
use crate::backend::ids::BlobId;
use crate::backend::name::Name;

/// The bytes of one blob, `len` of them at `offset` of a segment.
#[derive(Debug)]
pub struct OverflowBody {
    len: u64,
    /// Changed only by the compactor; a reader copies it out and lets go
    /// before reading, so neither waits on the other's I/O.
    place: Mutex<Place>,
    /// Durable mode: set when its blob's record is first staged. The
    /// compactor moves only a body the log names, and logs the move by
    /// this name.
    name: OnceLock<Box<LogName>>,
}

/// How durable mode's log names a body: by its blob, in its namespace.
#[derive(Debug)]
pub struct LogName {
    pub ns: Name,
    pub blob: BlobId,
    /// Of the body's bytes, as received: a copy is checked against it.
    pub crc32c: u32,
    /// The log names the body: from its `Blob` record to its `BlobGone`.
    /// Changed, and read by a move, only under the namespace's lock, which
    /// orders the records of both.
    logged: AtomicBool,
    /// A copy found the bytes damaged: the body stays where it is, for the
    /// pop that reads it to move its element to the dead-letter queue.
    damaged: AtomicBool,
}

impl LogName {
    pub fn is_logged(&self) -> bool {
        self.logged.load(Ordering::Acquire)
    }

    pub fn set_logged(&self, logged: bool) {
        self.logged.store(logged, Ordering::Release);
    }

    pub fn is_damaged(&self) -> bool {
        self.damaged.load(Ordering::Acquire)
    }

    /// Marks the body damaged; whether it was not already.
    pub fn mark_damaged(&self) -> bool {
        !self.damaged.swap(true, Ordering::AcqRel)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub segment: Arc<Segment>,
    pub offset: u64,
}

impl OverflowBody {
    /// A body just written at `place`, counted live there.
    pub(crate) fn placed(place: Place, len: u64) -> Arc<OverflowBody> {
        let segment = place.segment.clone();
        let body = Arc::new(OverflowBody {
            len,
            place: Mutex::new(place),
            name: OnceLock::new(),
        });
        segment.adopt(&body, len);
        body
    }

    pub fn size(&self) -> u64 {
        self.len
    }

    /// How the log names the body, once it does (durable mode).
    pub fn log_name(&self) -> Option<&LogName> {
        self.name.get().map(|n| &**n)
    }

    /// Names the body as the log does (its blob's record is being staged):
    /// the first name given stays, as a blob keeps its id and namespace.
    pub fn name_in_log(&self, ns: &Name, blob: BlobId, crc32c: u32) -> &LogName {
        self.name.get_or_init(|| {
            Box::new(LogName {
                ns: ns.clone(),
                blob,
                crc32c,
                logged: AtomicBool::new(false),
                damaged: AtomicBool::new(false),
            })
        })
    }

    pub(crate) fn place(&self) -> Place {
        self.place
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the bytes: from a window read ahead if one covers them (its
    /// overflow's), else with one positioned read of them and what follows,
    /// off the runtime's threads. The segment read from is held until the
    /// read ends, so a body moved meanwhile still reads whole.
    pub async fn read(&self) -> io::Result<Bytes> {
        let place = self.place();
        match place.segment.owner() {
            Some(overflow) => overflow.read(place, self.len).await,
            // The store is going away: no read-ahead to share.
            None => read_range(place.segment, place.offset, self.len).await,
        }
    }

    /// Moves the body to `to`, where its bytes were just copied, if it is
    /// still at `from` of the same segment. Counted live at `to` before it
    /// leaves `from`, so neither segment is ever thought empty too early.
    pub(crate) fn move_to(self: &Arc<OverflowBody>, from: &Place, to: Place) -> bool {
        let mut place = self.place.lock().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&place.segment, &from.segment) || place.offset != from.offset {
            return false;
        }
        to.segment.adopt(self, self.len);
        let old = std::mem::replace(&mut *place, to);
        drop(place);
        old.segment.release(self.len);
        true
    }
}

impl Drop for OverflowBody {
    fn drop(&mut self) {
        let place = self.place.get_mut().unwrap_or_else(PoisonError::into_inner);
        place.segment.release(self.len);
    }
}
