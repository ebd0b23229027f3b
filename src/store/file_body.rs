//! Streaming a blob's file back out, so a large element is never read whole
//! into memory, and checking it on the way (a segment body is checked whole
//! as it is read: `segment_body`). A file whose size is not its
//! blob's is found before the answer starts ([`BlobBody::check_size`]); one
//! whose bytes do not match their CRC32C by the end of the stream, which
//! then fails instead of ending: its last chunk is held back until the
//! checksum is confirmed, so damaged bytes never pass for a complete body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::io::ReaderStream;

use crate::backend::Payload;

use super::blob::{BlobBody, BlobContent, BlobFile, OnDisk};
use super::journal::record::BlobData;

/// Size of the reads that stream a file back to a client.
const FILE_CHUNK: usize = 256 * 1024;

/// How a blob's file was found damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Its length is not the blob's size (cut short, or grown).
    Size,
    /// Its bytes do not match the checksum recorded when they were received.
    Checksum,
}

impl Damage {
    /// The word an element moved to its dead-letter queue carries.
    pub fn reason(self) -> &'static str {
        match self {
            Damage::Size => "size",
            Damage::Checksum => "checksum",
        }
    }
}

/// Told, once, when a stream finds its file damaged.
pub type DamageHook = Box<dyn FnOnce(Damage) + Send>;

impl BlobFile {
    /// The CRC32C its bytes must have, when known (blob files of the data
    /// directory written since checksums were recorded).
    pub fn crc32c(&self) -> Option<u32> {
        match self {
            BlobFile::Stored(file) => file.crc32c(),
            BlobFile::Spilled(_) => None,
        }
    }

    /// How the log names the file: by its name in `blobs/`, with its
    /// checksum when it has one.
    pub fn log_data(&self) -> BlobData<'_> {
        let name = self
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match self.crc32c() {
            Some(crc32c) => BlobData::CheckedFile { name, crc32c },
            None => BlobData::File(name),
        }
    }
}

impl BlobContent {
    /// How the log records the bytes: inline when in memory, by name when
    /// in a file of the data directory, by place in a segment of it.
    pub fn log_data(&self) -> BlobData<'_> {
        match self {
            BlobContent::Memory(bytes) => BlobData::Inline(bytes),
            // Durable mode only makes stored files and segment bodies; a
            // spill file cannot be named relative to the data directory, so
            // it is recorded by its name too and would be found missing at
            // replay. A stored file is logged with its checksum.
            BlobContent::Disk(disk) => match &**disk {
                OnDisk::File(file) => file.log_data(),
                OnDisk::Segment(body) => body.log_data(),
                // Memory mode's segments are never logged (the store gives
                // durable mode its own); were one, it would name no file
                // and be found missing at replay, like a spill file.
                OnDisk::Overflow(_) => BlobData::File(""),
            },
        }
    }

    /// Whether reads of the bytes are checked against a checksum the log
    /// keeps, so damage moves the element to its dead-letter queue: blob
    /// files and segment bodies of the data directory.
    pub fn is_checked(&self) -> bool {
        self.stored_file().is_some() || self.segment().is_some()
    }

    /// The file the bytes are in, to keep a copy of when they are found
    /// damaged: a blob file or a segment of the data directory.
    pub fn damaged_file(&self) -> Option<std::path::PathBuf> {
        match (self.stored_file(), self.segment()) {
            (Some(file), _) => Some(file.path().to_owned()),
            (None, Some(body)) => Some(body.segment().path().to_owned()),
            (None, None) => None,
        }
    }
}

impl BlobBody {
    /// Whether the bytes are still `size` long: checked before an answer
    /// starts, so a file cut short is never announced whole.
    pub async fn check_size(&self, size: u64) -> Result<(), Damage> {
        match self {
            BlobBody::Memory(_) => Ok(()),
            BlobBody::Damaged(damage) => Err(*damage),
            BlobBody::File { file, .. } => match file.metadata().await {
                Ok(m) if m.len() != size => Err(Damage::Size),
                // A file that cannot be inspected is left to the stream.
                _ => Ok(()),
            },
        }
    }

    /// The bytes of a blob of `size` bytes as they cross the seam.
    pub fn into_payload(self, size: u64) -> Payload {
        self.into_checked_payload(size, None)
    }

    /// [`BlobBody::into_payload`], telling `on_damage` if the stream finds
    /// the file damaged.
    pub fn into_checked_payload(self, size: u64, on_damage: Option<DamageHook>) -> Payload {
        match self {
            BlobBody::Memory(bytes) => Payload::Bytes(bytes),
            // Not answered by the damage path (a batch pop): a stream that
            // fails at once, so the bytes never pass for a complete body.
            BlobBody::Damaged(damage) => {
                let mut hook = on_damage;
                let failed = futures_util::stream::once(async move {
                    match hook.take() {
                        Some(hook) => hook(damage),
                        None => tracing::error!(
                            damage = damage.reason(),
                            "a stored body is damaged; its answer was cut off"
                        ),
                    }
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "stored body damaged",
                    ))
                });
                Payload::Stream {
                    len: size,
                    chunks: Box::pin(failed),
                }
            }
            BlobBody::File { file, crc32c } => Payload::Stream {
                len: size,
                chunks: Box::pin(FileChunks {
                    stream: ReaderStream::with_capacity(file, FILE_CHUNK),
                    remaining: size,
                    check: crc32c.map(|want| (want, 0)),
                    on_damage,
                    failed: false,
                }),
            },
        }
    }
}

/// Exactly `remaining` bytes of a file whose checksum matches, or an error:
/// a file that ends early or whose bytes are wrong must never pass for a
/// complete body.
struct FileChunks {
    stream: ReaderStream<tokio::fs::File>,
    remaining: u64,
    /// The CRC32C wanted and that of the bytes read so far.
    check: Option<(u32, u32)>,
    on_damage: Option<DamageHook>,
    failed: bool,
}

impl FileChunks {
    fn checksum_matches(&self) -> bool {
        self.check.is_none_or(|(want, got)| want == got)
    }

    /// Ends the stream with an error, so the answer is cut off, never
    /// completed.
    fn damaged(&mut self, damage: Damage) -> Poll<Option<io::Result<Bytes>>> {
        self.failed = true;
        match self.on_damage.take() {
            Some(hook) => hook(damage),
            None => tracing::error!(
                damage = damage.reason(),
                "a blob's file is damaged; its answer was cut off"
            ),
        }
        let (kind, what) = match damage {
            Damage::Size => (
                io::ErrorKind::UnexpectedEof,
                "blob file shorter than its blob",
            ),
            Damage::Checksum => (io::ErrorKind::InvalidData, "blob file checksum mismatch"),
        };
        Poll::Ready(Some(Err(io::Error::new(kind, what))))
    }
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        if this.remaining == 0 {
            if !this.checksum_matches() {
                return this.damaged(Damage::Checksum);
            }
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if chunk.len() as u64 > this.remaining {
                    chunk.truncate(this.remaining as usize);
                }
                this.remaining -= chunk.len() as u64;
                if let Some((_, got)) = &mut this.check {
                    *got = crc32c::crc32c_append(*got, &chunk);
                }
                // The last chunk goes out only once the whole is confirmed.
                if this.remaining == 0 && !this.checksum_matches() {
                    return this.damaged(Damage::Checksum);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => this.damaged(Damage::Size),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::StreamExt as _;

    use super::*;

    /// Streams `content` as a blob of `size` bytes whose checksum is that
    /// of `good`: the bytes received, whether the stream ended cleanly,
    /// and the damage reported.
    async fn read(content: &[u8], good: &[u8]) -> (Vec<u8>, bool, Option<Damage>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, content).unwrap();
        let body = BlobBody::File {
            file: tokio::fs::File::open(&path).await.unwrap(),
            crc32c: Some(crc32c::crc32c(good)),
        };
        let seen = Arc::new(Mutex::new(None));
        let hook = {
            let seen = seen.clone();
            Box::new(move |d| *seen.lock().unwrap() = Some(d))
        };
        let Payload::Stream { mut chunks, .. } =
            body.into_checked_payload(good.len() as u64, Some(hook))
        else {
            panic!("a file streams")
        };
        let (mut got, mut clean) = (Vec::new(), true);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(c) => got.extend_from_slice(&c),
                Err(_) => clean = false,
            }
        }
        let damage = *seen.lock().unwrap();
        (got, clean, damage)
    }

    #[tokio::test]
    async fn intact_bytes_stream_whole_and_damaged_ones_never_complete() {
        let good: Vec<u8> = (0..FILE_CHUNK * 2 + 100).map(|i| (i % 251) as u8).collect();
        assert_eq!(read(&good, &good).await, (good.clone(), true, None));

        for at in [0, FILE_CHUNK + 7, good.len() - 1] {
            let mut flipped = good.clone();
            flipped[at] ^= 0x20;
            let (got, clean, damage) = read(&flipped, &good).await;
            assert!(!clean && got.len() < good.len(), "flip at {at}");
            assert_eq!(damage, Some(Damage::Checksum));
        }

        let (got, clean, damage) = read(&good[..good.len() - 10], &good).await;
        assert!(!clean && got.len() < good.len());
        assert_eq!(damage, Some(Damage::Size));
    }
}
