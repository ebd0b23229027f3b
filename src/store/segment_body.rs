//! A body in one of durable mode's overflow segments (`DIR/segments/`):
//! the overflow body (its place and its share of the segment's live bytes,
//! as in memory mode) and the CRC32C of its bytes, computed as they were
//! received. The log names it by segment number, offset and checksum
//! instead of holding its bytes; a read checks it, so a damaged body is
//! found before its answer starts and takes the dead-letter path a
//! damaged blob file takes (`damage`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::file_body::Damage;
use super::journal::record::BlobData;
use super::journal::SyncedWithLog;
use super::overflow::{OverflowBody, Segment};

/// The bytes of a blob in a segment of the data directory.
#[derive(Debug)]
pub struct SegmentBody {
    body: Arc<OverflowBody>,
    crc32c: u32,
    /// The log names the body: from its `Blob` record to its `BlobGone`.
    /// Dropped while named (the store dropped with the process), the body
    /// keeps its segment's file, which the next start reopens.
    logged: AtomicBool,
}

/// What a checked read of a segment body found.
pub enum SegmentRead {
    Intact(Bytes),
    Damaged(Damage),
}

impl SegmentBody {
    /// A body just received, not yet named by the log.
    pub fn new(body: Arc<OverflowBody>, crc32c: u32) -> SegmentBody {
        SegmentBody {
            body,
            crc32c,
            logged: AtomicBool::new(false),
        }
    }

    /// A body the log names, read back at start-up.
    pub fn restored(body: Arc<OverflowBody>, crc32c: u32) -> SegmentBody {
        let restored = SegmentBody::new(body, crc32c);
        restored.set_logged(true);
        restored
    }

    /// Whether the log now names the body (its `Blob` record appended) or
    /// no longer does (its `BlobGone`).
    pub fn set_logged(&self, logged: bool) {
        self.logged.store(logged, Ordering::Release);
    }

    pub fn crc32c(&self) -> u32 {
        self.crc32c
    }

    /// The segment the bytes are in.
    pub(crate) fn segment(&self) -> Arc<Segment> {
        self.body.place().segment
    }

    /// How the log names the bytes. Durable segments are never compacted,
    /// so the place logged stays the body's place for its whole life.
    pub fn log_data(&self) -> BlobData<'static> {
        let place = self.body.place();
        BlobData::Segment {
            number: segment_number(&place.segment).unwrap_or(u64::MAX),
            offset: place.offset,
            crc32c: self.crc32c,
        }
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
        if *self.logged.get_mut() {
            self.body.place().segment.keep_file();
        }
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
            compact_percent: 0,
            ..Default::default()
        };
        let overflow = Overflow::durable(dir.path().to_owned(), config, 0, removal);
        let gone = SegmentBody::new(
            overflow.append(Bytes::from_static(b"abcd")).await.unwrap(),
            0,
        );
        gone.set_logged(true);
        let named = SegmentBody::new(
            overflow.append(Bytes::from_static(b"efgh")).await.unwrap(),
            0,
        );
        named.set_logged(true);
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
