//! A body in one of durable mode's overflow segments (`DIR/segments/`):
//! the overflow body (its place and its share of the segment's live bytes,
//! as in memory mode) and the CRC32C of its bytes, computed as they were
//! received. The log names it by segment number, offset and checksum
//! instead of holding its bytes; a read checks it, so a damaged body is
//! found before its answer starts and takes the dead-letter path a
//! damaged blob file takes (`damage`).

use std::io;
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
}

/// What a checked read of a segment body found.
pub enum SegmentRead {
    Intact(Bytes),
    Damaged(Damage),
}

impl SegmentBody {
    pub fn new(body: Arc<OverflowBody>, crc32c: u32) -> SegmentBody {
        SegmentBody { body, crc32c }
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
    use crate::store::overflow::{Overflow, Removal};

    #[tokio::test]
    async fn a_segment_body_is_named_by_number_and_offset_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let overflow =
            Overflow::durable(dir.path().to_owned(), Default::default(), 7, Removal::Now);
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
}
