//! What the jobs log holds, and how a record is framed: the store's framing
//! (`[length u32][CRC-32 u32][postcard payload]`) over the jobs' own record
//! type. Records are upserts carrying a job's whole state (its progress log
//! aside) and version, so that replay can apply them in any order that
//! keeps one job's records in order, and a record read twice is harmless.

use serde::{Deserialize, Serialize};

/// Bytes before a frame's payload: its length and its CRC-32.
const FRAME_HEADER: usize = 8;

/// Larger is damage, not a record: a record holds a job's strings, each
/// bounded by the jobs settings, and a snapshot's record its whole log.
const MAX_PAYLOAD: usize = 64 << 20;

/// One change of the jobs log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobRecord {
    /// A job as it is after a change.
    Upsert(Box<StoredJob>),
    /// The job was removed (deleted, or past its retention).
    Removed { place: Place, id: u128 },
    /// The job's callback was delivered: not to be sent again.
    Delivered { place: Place, id: u128 },
}

/// A job queue: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Place {
    pub ns: String,
    pub queue: String,
}

/// A job's whole state except its lease, which a restart does not keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    pub place: Place,
    pub id: u128,
    /// Its number in the queue: listing order and page tokens.
    pub seq: u64,
    /// Its place among pending jobs: the submit's number, or a number below
    /// every other for a job put back at the head.
    pub rank: i64,
    pub version: u64,
    /// `JobState::index`.
    pub state: u8,
    pub progress: Option<u8>,
    pub message: Option<String>,
    pub attempt: u32,
    pub max_attempts: u32,
    /// Milliseconds since the Unix epoch; zero for "not yet".
    pub created: u64,
    pub started: u64,
    pub finished: u64,
    pub pending_until: u64,
    pub retention: u64,
    pub input: Option<u128>,
    pub input_size: u64,
    pub input_type: String,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub callback: Option<String>,
    pub callback_delivered: bool,
    pub outcome: Option<StoredOutcome>,
    pub log: LogPart,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoredOutcome {
    Result {
        blob: Option<u128>,
        size: u64,
        content_type: String,
        status: u16,
    },
    Error {
        code: String,
        message: String,
        /// The worker's JSON, as its text.
        details: Option<String>,
    },
}

/// One progress log entry; progress 255 stands for none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub time: u64,
    pub progress: u8,
    pub message: Option<String>,
}

/// What an upsert says of the job's progress log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogPart {
    /// Unchanged by this change.
    Same,
    /// This change appended one entry.
    Append(StoredEntry),
    /// The whole log (in a snapshot): entries dropped past the cap, and
    /// the ones kept.
    Whole {
        dropped: u64,
        entries: Vec<StoredEntry>,
    },
}

/// Appends `record`, framed, to `buf`.
pub fn encode(record: &JobRecord, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    let body = std::mem::take(buf);
    // Serialising into a Vec cannot fail: every field type is supported.
    *buf = postcard::to_extend(record, body).expect("job records always serialise");
    let len = buf.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why the frames of a file stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The data ends inside a frame: a write a crash cut short.
    Truncated,
    /// A whole frame whose checksum or content is wrong.
    Corrupt(&'static str),
}

/// Reads the frame at the start of `buf`: its record and the frame's length.
pub fn decode(buf: &[u8]) -> Result<(JobRecord, usize), FrameError> {
    let header = buf.get(..FRAME_HEADER).ok_or(FrameError::Truncated)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::Corrupt("impossible record length"));
    }
    let payload = buf
        .get(FRAME_HEADER..FRAME_HEADER + len)
        .ok_or(FrameError::Truncated)?;
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Corrupt("checksum mismatch"));
    }
    let record = postcard::from_bytes(payload).map_err(|_| FrameError::Corrupt("bad record"))?;
    Ok((record, FRAME_HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(id: u128) -> JobRecord {
        JobRecord::Removed {
            place: Place {
                ns: "acme".into(),
                queue: "export".into(),
            },
            id,
        }
    }

    #[test]
    fn frames_read_back_and_a_cut_or_flipped_one_is_told_apart() {
        let mut buf = Vec::new();
        encode(&removed(7), &mut buf);
        encode(&removed(8), &mut buf);
        let (first, n) = decode(&buf).unwrap();
        assert_eq!(first, removed(7));
        assert_eq!(decode(&buf[n..]).unwrap().0, removed(8));
        assert_eq!(decode(&buf[n..buf.len() - 1]), Err(FrameError::Truncated));
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(decode(&flipped[n..]), Err(FrameError::Corrupt(_))));
    }
}
