//! A body in one of durable mode's overflow segments (`DIR/segments/`):
//! the overflow body (its place and its share of the segment's live bytes,
//! as in memory mode) and the CRC32C of its bytes, computed as they were
//! received. The log names it by segment number, offset and checksum
//! instead of holding its bytes; a read checks it, so a damaged body is
//! found before its answer starts and takes the dead-letter path a
//! damaged blob file takes (`damage`).
//!
//! The overflow compactor moves such a body through [`LoggedMoves`]: under
//! its namespace's lock, as every record naming the body is staged and
//! handed to the journal under that lock, a move and its `BlobMoved`
//! record always come after the `Blob` record that named the old place,
//! and a `Blob` record staged later names the new one.

use std::io;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::file_body::Damage;
use super::handle::Shared;
use super::journal::record::{BlobData, Record};
use super::journal::{Commit, SyncedWithLog};
use super::overflow::{MoveLog, OverflowBody, Place, Segment};
use super::Store;
use crate::backend::ids::BlobId;
use crate::backend::name::Name;

/// The bytes of a blob in a segment of the data directory.
#[derive(Debug)]
pub struct SegmentBody {
    body: Arc<OverflowBody>,
    crc32c: u32,
}

/// What a checked read of a segment body found.
pub enum SegmentRead {
    Intact(Bytes),
    Damaged(Damage),
}

impl SegmentBody {
    /// A body just received, not yet named by the log.
    pub fn new(body: Arc<OverflowBody>, crc32c: u32) -> SegmentBody {
        SegmentBody { body, crc32c }
    }

    /// A body the log names as blob `blob` of `ns`, read back at start-up.
    pub fn restored(body: Arc<OverflowBody>, crc32c: u32, ns: &Name, blob: BlobId) -> SegmentBody {
        let restored = SegmentBody::new(body, crc32c);
        restored.logged_as(ns, blob);
        restored
    }

    /// The log now names the body (its blob's `Blob` record is staged, under
    /// the namespace's lock): from here on the compactor may move it.
    pub fn logged_as(&self, ns: &Name, blob: BlobId) {
        self.body
            .name_in_log(ns, blob, self.crc32c)
            .set_logged(true);
    }

    /// The log no longer names the body (its `BlobGone` is staged).
    pub fn set_logged(&self, logged: bool) {
        if let Some(name) = self.body.log_name() {
            name.set_logged(logged);
        }
    }

    fn is_logged(&self) -> bool {
        self.body.log_name().is_some_and(|n| n.is_logged())
    }

    pub fn crc32c(&self) -> u32 {
        self.crc32c
    }

    /// The segment the bytes are in.
    pub(crate) fn segment(&self) -> Arc<Segment> {
        self.body.place().segment
    }

    /// How the log names the bytes: their place now. Read under the
    /// namespace's lock, under which the compactor moves them too.
    pub fn log_data(&self) -> BlobData<'static> {
        place_data(&self.body.place(), self.crc32c)
    }

    /// Reads the bytes back and checks them: a segment cut short is
    /// `Damage::Size`, bytes that do not match their checksum
    /// `Damage::Checksum`.
    pub async fn read_checked(&self) -> io::Result<SegmentRead> {
        match self.body.read().await {
            Ok(bytes) if crc32c::crc32c(&bytes) == self.crc32c => Ok(SegmentRead::Intact(bytes)),
            Ok(_) => Ok(SegmentRead::Damaged(Damage::Checksum)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Ok(SegmentRead::Damaged(Damage::Size))
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for SegmentBody {
    fn drop(&mut self) {
        // Dropped while named (the store dropped with the process), the
        // body keeps its segment's file, which the next start reopens.
        if self.is_logged() {
            self.body.place().segment.keep_file();
        }
    }
}

/// A segment place as a record names it.
fn place_data(place: &Place, crc32c: u32) -> BlobData<'static> {
    BlobData::Segment {
        number: segment_number(&place.segment).unwrap_or(u64::MAX),
        offset: place.offset,
        crc32c,
    }
}

/// The number in a segment's file name (`segment-NNNNNNNN`).
fn segment_number(segment: &Segment) -> Option<u64> {
    segment
        .path()
        .file_name()?
        .to_str()?
        .strip_prefix("segment-")?
        .parse()
        .ok()
}

impl SyncedWithLog for Segment {
    fn sync_data(&self) -> io::Result<()> {
        Segment::sync_data(self)
    }
}

/// The store's side of durable compaction: each move is made and logged
/// under the body's namespace's lock. Holds the store weakly: a move the
/// compactor finishes after the store closed is not made.
pub(crate) struct LoggedMoves {
    store: Weak<Shared>,
}

impl std::fmt::Debug for LoggedMoves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoggedMoves")
    }
}

impl LoggedMoves {
    pub(crate) fn new(store: &Arc<Shared>) -> Arc<LoggedMoves> {
        Arc::new(LoggedMoves {
            store: Arc::downgrade(store),
        })
    }
}

impl MoveLog for LoggedMoves {
    fn commit_move(&self, body: &Arc<OverflowBody>, from: &Place, to: Place) -> bool {
        let (Some(shared), Some(name)) = (self.store.upgrade(), body.log_name()) else {
            return false;
        };
        let Some(journal) = shared.journal.clone() else {
            return false;
        };
        let store = Store { shared };
        let (number, offset) = (segment_number(&to.segment).unwrap_or(u64::MAX), to.offset);
        let moved = store.change_existing(&name.ns, |_, _| {
            // Under the lock: the log names the body now exactly when this
            // says so, and any record naming its place is already handed
            // to the journal.
            if !name.is_logged() || !body.move_to(from, to) {
                return false;
            }
            journal.append(&Record::BlobMoved {
                ns: name.ns.as_str(),
                id: name.blob.to_u128(),
                number,
                offset,
                crc32c: name.crc32c,
            });
            true
        });
        moved == Some(true)
    }
}

impl Store {
    /// Seals the overflow segment being written, compacts now every sealed
    /// segment whose live bytes are below `percent` of its size (as the
    /// background compactor does at `[overflow] compact_percent`), and in
    /// durable mode waits until the moves are written (synced in `always`
    /// mode). For tests that need a compaction at a known point.
    pub async fn compact_overflow(&self, percent: u8) -> io::Result<()> {
        if let Some(overflow) = &self.shared.limits.overflow {
            overflow.seal_current();
            overflow.compact_below(percent).await?;
        }
        if self.shared.journal.is_some() {
            self.durable(Commit::Accepted)
                .await
                .map_err(|_| io::Error::other("the log could not be written"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "segment_moves_tests.rs"]
mod moves_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::overflow::{Overflow, OverflowConfig, Removal};

    #[tokio::test]
    async fn a_segment_body_is_named_by_number_and_offset_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        // Each body read alone, so every read sees the file as it is now
        // (a read-ahead window would keep what an earlier read found).
        let config = OverflowConfig {
            read_ahead_bytes: 0,
            ..Default::default()
        };
        let overflow = Overflow::durable(dir.path().to_owned(), config, 7, Removal::Now);
        let first = overflow.append(Bytes::from_static(b"first")).await.unwrap();
        let second = overflow
            .append(Bytes::from_static(b"second"))
            .await
            .unwrap();
        let body = SegmentBody::new(second, crc32c::crc32c(b"second"));
        assert_eq!(
            body.log_data(),
            BlobData::Segment {
                number: 7,
                offset: 5,
                crc32c: crc32c::crc32c(b"second")
            }
        );
        assert!(
            matches!(body.read_checked().await.unwrap(), SegmentRead::Intact(b) if &b[..] == b"second")
        );

        let path = dir.path().join("segment-00000007");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[7] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            body.read_checked().await.unwrap(),
            SegmentRead::Damaged(Damage::Checksum)
        ));
        std::fs::write(&path, &bytes[..8]).unwrap();
        assert!(matches!(
            body.read_checked().await.unwrap(),
            SegmentRead::Damaged(Damage::Size)
        ));
        drop(first);
    }

    #[tokio::test]
    async fn damage_is_found_through_a_read_ahead_window() {
        let dir = tempfile::tempdir().unwrap();
        let overflow =
            Overflow::durable(dir.path().to_owned(), Default::default(), 0, Removal::Now);
        let mut bodies = Vec::new();
        for text in [&b"one"[..], b"two", b"three"] {
            let body = overflow.append(Bytes::from_static(text)).await.unwrap();
            bodies.push(SegmentBody::new(body, crc32c::crc32c(text)));
        }
        let path = dir.path().join("segment-00000000");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4] ^= 1;
        // The last body cut short too: the window over all three cannot be
        // read whole, and each body is then read alone.
        std::fs::write(&path, &bytes[..9]).unwrap();
        assert!(matches!(
            bodies[0].read_checked().await.unwrap(),
            SegmentRead::Intact(b) if &b[..] == b"one"
        ));
        assert!(matches!(
            bodies[1].read_checked().await.unwrap(),
            SegmentRead::Damaged(Damage::Checksum)
        ));
        assert!(matches!(
            bodies[2].read_checked().await.unwrap(),
            SegmentRead::Damaged(Damage::Size)
        ));
    }

    /// A body dropped while the log names it (the store stopping) keeps
    /// its segment's file; one whose end was logged lets it go.
    #[tokio::test]
    async fn a_segment_whose_named_body_is_dropped_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let removed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let removal = {
            let removed = removed.clone();
            Removal::Deferred(Arc::new(move |path| removed.lock().unwrap().push(path)))
        };
        let config = crate::store::overflow::OverflowConfig {
            segment_bytes: 4,
            ..Default::default()
        };
        let overflow = Overflow::durable(dir.path().to_owned(), config, 0, removal);
        let ns = Name::parse("ns").unwrap();
        let gone = SegmentBody::new(
            overflow.append(Bytes::from_static(b"abcd")).await.unwrap(),
            0,
        );
        gone.logged_as(&ns, BlobId::from_u128(1));
        let named = SegmentBody::new(
            overflow.append(Bytes::from_static(b"efgh")).await.unwrap(),
            0,
        );
        named.logged_as(&ns, BlobId::from_u128(2));
        // A third segment, so that the first two are sealed.
        let last = overflow.append(Bytes::from_static(b"ijkl")).await.unwrap();
        gone.set_logged(false);
        drop(gone);
        drop(named);
        let removed = removed.lock().unwrap().clone();
        assert_eq!(removed, vec![dir.path().join("segment-00000000")]);
        drop(last);
    }
}
