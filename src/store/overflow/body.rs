//! A body kept in an overflow segment: where it is now, which the compactor
//! may change while it is read, and its share of the segment's live bytes.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::read_ahead::read_range;
use super::segment::Segment;

/// The bytes of one blob, `len` of them at `offset` of a segment.
#[derive(Debug)]
pub struct OverflowBody {
    len: u64,
    /// Changed only by the compactor; a reader copies it out and lets go
    /// before reading, so neither waits on the other's I/O.
    place: Mutex<Place>,
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
        });
        segment.adopt(&body, len);
        body
    }

    pub fn size(&self) -> u64 {
        self.len
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
