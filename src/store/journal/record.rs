//! What the log holds: one [`Record`] per change of the durable state, each
//! framed as `[payload length u32 LE][CRC-32 of payload u32 LE][payload]`.
//!
//! Records are logical (by element and blob id), not positional, so replay
//! needs no queue positions and compaction can rewrite the live state as the
//! same kinds of records. The payload is postcard: compact, schema-free and
//! borrowing on decode, so replaying a segment allocates little.

use serde::{Deserialize, Serialize};

/// Bytes before each payload: its length and its checksum.
pub const FRAME_HEADER: usize = 8;

/// Largest payload accepted on replay: bigger lengths are corruption, not
/// records (an inline body is below the spill threshold, far smaller).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// One change of the durable state of a namespace.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
pub enum Record<'a> {
    /// A blob was stored: pushed with an element or through `/tbs`.
    Blob {
        ns: &'a str,
        id: u128,
        size: u64,
        #[serde(borrow)]
        meta: MetaRecord<'a>,
        deadline: u64,
        /// Stored through `/tbs` (it lives to its deadline with no element).
        exposed: bool,
        #[serde(borrow)]
        data: BlobData<'a>,
    },
    /// A header-only pop handed the blob's id out: it now lives to its deadline.
    Expose { ns: &'a str, id: u128 },
    /// The blob is gone (last reference, deleted or expired).
    BlobGone { ns: &'a str, id: u128 },
    /// An element entered `queue` at its tail (a push or a dead-letter move).
    Put {
        ns: &'a str,
        queue: &'a str,
        id: u128,
        blob: Option<u128>,
        #[serde(borrow)]
        meta: MetaRecord<'a>,
        deadline: u64,
        deliveries: u32,
    },
    /// The element left its queue for good (popped, acknowledged, expired,
    /// or moved to a dead-letter queue, which a `Put` then records).
    Take { ns: &'a str, id: u128 },
    /// The framed records of one change of several (a push's blob and
    /// element, a batch), in one frame: a write cut short by a crash leaves
    /// all of them or none, never the first few.
    Change(#[serde(with = "serde_bytes")] &'a [u8]),
    /// The overflow compactor copied blob `id`'s bytes (its `size`, this
    /// CRC32C) to `offset` of segment `number`: its record (an earlier
    /// `Blob`) now names that place. Appended under the namespace's lock,
    /// so it always follows the `Blob` record that named the old place.
    BlobMoved {
        ns: &'a str,
        id: u128,
        number: u64,
        offset: u64,
        crc32c: u32,
    },
}

/// An element's or blob's metadata.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
pub struct MetaRecord<'a> {
    pub content_type: &'a str,
    #[serde(borrow)]
    pub custom: Vec<(&'a str, &'a str)>,
}

/// Where a blob's bytes are.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
pub enum BlobData<'a> {
    /// Small bodies live in the log itself.
    Inline(#[serde(with = "serde_bytes")] &'a [u8]),
    /// Large ones are a file of the data directory's `blobs/` folder.
    /// Written by earlier versions; its bytes are read unchecked.
    File(&'a str),
    /// A file of `blobs/` whose bytes have this CRC32C (its size is the
    /// blob's): checked as it is read back.
    CheckedFile { name: &'a str, crc32c: u32 },
    /// A small body past the memory budget: `size` bytes at `offset` of
    /// overflow segment `number` in the data directory's `segments/`, with
    /// this CRC32C, checked as it is read back.
    Segment {
        number: u64,
        offset: u64,
        crc32c: u32,
    },
}

/// The body of a [`Record::Change`] made of `frames` (records framed by
/// [`encode`]): each record's length and payload without its checksum, so
/// that no record inside a change looks like an intact frame of its own to
/// a resync scan (the change's own checksum covers them all).
pub fn change_body(frames: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(frames.len());
    let mut rest = frames;
    while rest.len() >= FRAME_HEADER {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            break;
        };
        body.extend_from_slice(&rest[..4]);
        body.extend_from_slice(payload);
        rest = &rest[FRAME_HEADER + len..];
    }
    body
}

/// The records of a [`Record::Change`]'s body, in order; stops at the first
/// that does not decode, which the change's checksum makes a bug, not damage.
pub fn records_of(body: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let payload = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        postcard::from_bytes(payload).ok()
    })
}

/// Appends `record`, framed, to `buf`.
pub fn encode(record: &Record<'_>, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    let buf2 = std::mem::take(buf);
    // Serialising into a Vec cannot fail: every field type is supported.
    *buf = postcard::to_extend(record, buf2).expect("records always serialise");
    let payload_len = buf.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why the frames of a buffer stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside a frame: a write cut short by a crash.
    Truncated,
    /// A whole frame whose checksum or content is wrong.
    Corrupt(&'static str),
}

/// Reads the frame at the start of `buf`: its record and the frame's length.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::Corrupt("impossible record length"));
    }
    let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Err(FrameError::Truncated);
    };
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Corrupt("checksum mismatch"));
    }
    let record = postcard::from_bytes(payload).map_err(|_| FrameError::Corrupt("bad record"))?;
    Ok((record, FRAME_HEADER + len))
}

/// Whether an intact frame starts `buf`, as a resync scan asks at every
/// byte of damaged data: its length fits, its payload decodes as a record
/// of exactly that length (a cheap test that random bytes fail at once,
/// before any checksum is computed), and its checksum matches. Its length
/// if so.
pub fn intact_frame(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = buf.get(FRAME_HEADER..FRAME_HEADER + len)?;
    if !matches!(
        postcard::take_from_bytes::<Record<'_>>(payload),
        Ok((_, []))
    ) {
        return None;
    }
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    (crc32fast::hash(payload) == crc).then_some(FRAME_HEADER + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record<'static>> {
        let meta = MetaRecord {
            content_type: "image/png",
            custom: vec![("k", "v=1"), ("a", "")],
        };
        vec![
            Record::Blob {
                ns: "ns",
                id: u128::MAX - 3,
                size: 4,
                meta: meta.clone(),
                deadline: 1_700_000_000_000,
                exposed: false,
                data: BlobData::Inline(b"a\0\xffb"),
            },
            Record::Put {
                ns: "ns",
                queue: "q.dead",
                id: 7,
                blob: Some(u128::MAX - 3),
                meta,
                deadline: 5,
                deliveries: 3,
            },
            Record::Expose { ns: "ns", id: 1 },
            Record::Blob {
                ns: "ns",
                id: 9,
                size: 300_000,
                meta: MetaRecord {
                    content_type: "application/octet-stream",
                    custom: vec![],
                },
                deadline: 5,
                exposed: true,
                data: BlobData::CheckedFile {
                    name: "blob-x",
                    crc32c: 0xdead_beef,
                },
            },
            Record::BlobGone { ns: "ns", id: 1 },
            Record::Take { ns: "x", id: 7 },
            Record::BlobMoved {
                ns: "ns",
                id: 10,
                number: 4,
                offset: 77,
                crc32c: 7,
            },
            Record::Blob {
                ns: "ns",
                id: 10,
                size: 10_240,
                meta: MetaRecord {
                    content_type: "application/octet-stream",
                    custom: vec![],
                },
                deadline: 5,
                exposed: false,
                data: BlobData::Segment {
                    number: 3,
                    offset: 1 << 40,
                    crc32c: 7,
                },
            },
        ]
    }

    #[test]
    fn records_round_trip_through_frames() {
        let mut buf = Vec::new();
        for r in sample() {
            encode(&r, &mut buf);
        }
        let mut rest = &buf[..];
        for expected in sample() {
            let (record, used) = decode(rest).unwrap();
            assert_eq!(record, expected);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
    }

    /// A `File` record written before blob files had checksums still reads
    /// back, as a file with none: new variants only come after it.
    #[test]
    fn a_file_record_without_a_checksum_still_decodes() {
        let record = Record::Blob {
            ns: "ns",
            id: 1,
            size: 2,
            meta: MetaRecord {
                content_type: "a/b",
                custom: vec![],
            },
            deadline: 3,
            exposed: false,
            data: BlobData::File("blob-old"),
        };
        let mut buf = Vec::new();
        encode(&record, &mut buf);
        // The variant index of `File` is 1, as it always was: the last byte
        // before the name's length and bytes.
        let payload = &buf[FRAME_HEADER..];
        assert_eq!(payload[payload.len() - 1 - 8 - 1], 1);
        assert_eq!(decode(&buf).unwrap().0, record);
    }

    #[test]
    fn a_cut_frame_is_truncated_and_a_flipped_byte_is_corrupt() {
        let mut buf = Vec::new();
        encode(&sample()[0], &mut buf);
        for cut in [0, 3, FRAME_HEADER, buf.len() - 1] {
            assert_eq!(decode(&buf[..cut]).unwrap_err(), FrameError::Truncated);
        }
        for i in FRAME_HEADER..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                matches!(decode(&bad), Err(FrameError::Corrupt(_))),
                "byte {i}"
            );
        }
    }
}
