//! Receiving a body: buffered in memory while it is small, streamed to a spill
//! file as soon as it reaches the threshold, refused once it passes the
//! maximum. A small body that would take the memory held past the memory
//! limit is appended to an overflow segment: the spill folder's in memory
//! mode, the data directory's in durable mode. The caller feeds chunks as
//! they arrive from the network, so a large body is never held whole in
//! memory. A body's CRC32C is computed on the way in; a blob file or a
//! segment body of the data directory keeps it, so that damage is found
//! when the bytes are read back.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tempfile::TempPath;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::blob::{BlobContent, StoredFile};
use super::overflow::Overflow;
use super::segment_body::SegmentBody;
use super::stats::Totals;

/// How much of a spilled body is gathered before one write to the file: large
/// enough that a gigabyte is a few thousand writes, small enough per upload.
const SPILL_WRITE_BUFFER: usize = 256 * 1024;

/// Why a body could not be stored. Whatever was written is removed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body is larger than the maximum element size of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Its file could not be created or written (a full disk, most often).
    /// The error may name the file: it is for the server log only.
    #[error("body file: {0}")]
    Unwritable(#[from] io::Error),
}

/// The size rules a body is received under.
#[derive(Clone, Debug)]
pub struct IngestLimits {
    /// Bodies of this many bytes or more go to a file.
    pub spill_threshold: u64,
    /// Bodies larger than this are refused.
    pub max_element_size: u64,
    /// Where spill files are created.
    pub spill_dir: PathBuf,
    /// Bytes of bodies held in memory (store-wide) beyond which a small body
    /// goes to a spill file too; 0 for no limit.
    pub memory_limit: u64,
    /// Where the bytes held in memory are counted.
    pub totals: Arc<Totals>,
    /// In durable mode, files are blob files of the data directory that
    /// outlive the process; `Some(true)` when each must reach stable storage
    /// before the push is answered (`--fsync always`).
    pub durable_sync: Option<bool>,
    /// The segments small bodies past the memory limit are appended to:
    /// the spill folder's, or in durable mode the data directory's.
    pub overflow: Option<Arc<Overflow>>,
}

enum Sink {
    Memory(BytesMut),
    /// Boxed, like the file half of `write` and `finish`: most bodies stay in
    /// memory, and a request's future should not carry a file's state.
    File(Box<SpillFile>),
}

struct SpillFile {
    file: BufWriter<tokio::fs::File>,
    path: TempPath,
}

/// Receives one body chunk by chunk. Dropping it before `finish` removes any
/// spill file, which is how a refused or interrupted push leaves nothing.
pub struct BlobWriter<'a> {
    /// Borrowed from the store: a clone per push copied the spill path, and
    /// an `Arc` clone would touch one shared count from every worker.
    limits: &'a IngestLimits,
    size: u64,
    /// CRC32C of the bytes written to the file so far (only a file body
    /// needs one: a body in memory is in the log, under its checksum).
    crc32c: u32,
    sink: Sink,
}

impl<'a> BlobWriter<'a> {
    /// Starts a body whose length is `expected` if the client announced one.
    pub fn new(
        limits: &'a IngestLimits,
        expected: Option<u64>,
    ) -> Result<BlobWriter<'a>, IngestError> {
        if let Some(len) = expected {
            if len > limits.max_element_size {
                return Err(IngestError::TooLarge {
                    limit: limits.max_element_size,
                });
            }
        }
        let sink = match expected {
            Some(len) if len >= limits.spill_threshold => Sink::File(create_spill_file(limits)?),
            // An announced small length gives the buffer its exact size.
            Some(len) => Sink::Memory(BytesMut::with_capacity(len as usize)),
            None => Sink::Memory(BytesMut::new()),
        };
        Ok(BlobWriter {
            limits,
            size: 0,
            crc32c: 0,
            sink,
        })
    }

    /// Appends a chunk, moving to a file when the threshold is reached.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), IngestError> {
        self.size += chunk.len() as u64;
        if self.size > self.limits.max_element_size {
            return Err(IngestError::TooLarge {
                limit: self.limits.max_element_size,
            });
        }
        if let Sink::Memory(buf) = &mut self.sink {
            if self.size < self.limits.spill_threshold {
                buf.extend_from_slice(&chunk);
                return Ok(());
            }
        }
        Box::pin(self.write_to_file(chunk)).await
    }

    async fn write_to_file(&mut self, chunk: Bytes) -> Result<(), IngestError> {
        if let Sink::Memory(buf) = &mut self.sink {
            let buffered = std::mem::take(buf);
            let mut spill = create_spill_file(self.limits)?;
            spill.file.write_all(&buffered).await?;
            self.crc32c = crc32c::crc32c(&buffered);
            self.sink = Sink::File(spill);
        }
        if let Sink::File(spill) = &mut self.sink {
            spill.file.write_all(&chunk).await?;
            self.crc32c = crc32c::crc32c_append(self.crc32c, &chunk);
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the body. A small body goes to an overflow segment if
    /// keeping it would take the memory held past the memory limit.
    pub async fn finish(self) -> Result<(BlobContent, u64), IngestError> {
        let (size, crc32c) = (self.size, self.crc32c);
        let content = match self.sink {
            Sink::Memory(buf) if !self.limits.over_memory_budget(buf.len() as u64) => {
                // A chunked body grew the buffer by doubling; do not keep the slack.
                let bytes = if buf.capacity() > buf.len() + buf.len() / 8 + 64 {
                    Bytes::copy_from_slice(&buf)
                } else {
                    buf.freeze()
                };
                BlobContent::Memory(bytes)
            }
            Sink::Memory(buf) => match &self.limits.overflow {
                Some(overflow) if self.limits.durable_sync.is_some() => {
                    let crc32c = crc32c::crc32c(&buf);
                    let body = Box::pin(overflow.append(buf.freeze())).await?;
                    BlobContent::in_segment(SegmentBody::new(body, crc32c))
                }
                Some(overflow) => {
                    BlobContent::overflowed(Box::pin(overflow.append(buf.freeze())).await?)
                }
                None => Box::pin(self.limits.spill_whole(buf)).await?,
            },
            Sink::File(spill) => Box::pin(self.limits.seal(*spill, crc32c)).await?,
        };
        Ok((content, size))
    }
}

impl IngestLimits {
    /// Completes a file body. A spill file gets no fsync: it is temporary and
    /// dies with the process, and filesystems reserve space at write time, so
    /// a full disk already failed a write. In durable mode the file becomes a
    /// blob file the log can refer to, with the CRC32C of its bytes, synced
    /// first if asked.
    async fn seal(&self, spill: SpillFile, crc32c: u32) -> Result<BlobContent, IngestError> {
        let SpillFile { mut file, path } = spill;
        file.flush().await?;
        let Some(sync) = self.durable_sync else {
            return Ok(BlobContent::spilled(path));
        };
        if sync {
            file.get_ref().sync_data().await?;
        }
        let path = path.keep().map_err(|e| IngestError::Unwritable(e.error))?;
        Ok(BlobContent::stored(StoredFile::new(
            path,
            false,
            Some(crc32c),
        )))
    }

    /// A body received in memory that must go to a file after all (a store
    /// given no overflow segments: the unit tests').
    async fn spill_whole(&self, body: BytesMut) -> Result<BlobContent, IngestError> {
        let mut spill = create_spill_file(self)?;
        spill.file.write_all(&body).await?;
        self.seal(*spill, crc32c::crc32c(&body)).await
    }

    fn over_memory_budget(&self, more: u64) -> bool {
        self.memory_limit > 0 && self.totals.snapshot().memory_bytes + more > self.memory_limit
    }
}

fn create_spill_file(limits: &IngestLimits) -> Result<Box<SpillFile>, IngestError> {
    let (file, path) = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(&limits.spill_dir)?
        .into_parts();
    let file = BufWriter::with_capacity(SPILL_WRITE_BUFFER, tokio::fs::File::from_std(file));
    Ok(Box::new(SpillFile { file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &std::path::Path) -> IngestLimits {
        IngestLimits {
            spill_threshold: 10,
            max_element_size: 25,
            spill_dir: dir.to_owned(),
            memory_limit: 0,
            totals: Arc::new(Totals::default()),
            durable_sync: None,
            overflow: None,
        }
    }

    fn files_in(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_with_exact_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let mut w = BlobWriter::new(&limits, None).unwrap();
        for part in [&b"ab"[..], b"\0c", b"d"] {
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
        }
        let (content, size) = w.finish().await.unwrap();
        assert_eq!(size, 5);
        match content {
            BlobContent::Memory(b) => assert_eq!(&b[..], b"ab\0cd"),
            _ => panic!("spilled a small body"),
        }
        assert_eq!(files_in(dir.path()), 0);
    }

    #[tokio::test]
    async fn a_body_reaching_the_threshold_spills_with_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        let mut w = BlobWriter::new(&limits, None).unwrap();
        w.write(Bytes::from_static(b"0123456")).await.unwrap();
        w.write(Bytes::from_static(b"789")).await.unwrap();
        let (content, size) = w.finish().await.unwrap();
        assert_eq!(size, 10);
        let Some(path) = content.spill_file() else {
            panic!("a body at the threshold must spill")
        };
        assert_eq!(std::fs::read(path).unwrap(), b"0123456789");
        drop(content);
        assert_eq!(files_in(dir.path()), 0, "TempPath removes the file");
    }

    /// A blob file of the data directory carries the CRC32C of every byte
    /// received, those buffered before it spilled included.
    #[tokio::test]
    async fn a_durable_file_knows_the_checksum_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(dir.path());
        l.durable_sync = Some(false);
        let mut w = BlobWriter::new(&l, None).unwrap();
        for part in [&b"0123"[..], b"45678", b"9abcdef"] {
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
        }
        let (content, size) = w.finish().await.unwrap();
        assert_eq!(size, 16);
        let stored = content.stored_file().expect("a blob file");
        assert_eq!(std::fs::read(stored.path()).unwrap(), b"0123456789abcdef");
        assert_eq!(stored.crc32c(), Some(crc32c::crc32c(b"0123456789abcdef")));
        let _ = std::fs::remove_file(stored.path());

        // A small body moved to a file by the memory limit has one too.
        l.memory_limit = 1;
        let mut w = BlobWriter::new(&l, Some(3)).unwrap();
        w.write(Bytes::from_static(b"xyz")).await.unwrap();
        let (content, _) = w.finish().await.unwrap();
        let stored = content.stored_file().expect("a blob file");
        assert_eq!(stored.crc32c(), Some(crc32c::crc32c(b"xyz")));
        let _ = std::fs::remove_file(stored.path());
    }

    #[tokio::test]
    async fn small_bodies_spill_once_the_memory_limit_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(dir.path());
        l.memory_limit = 8;
        l.totals.add_blob_bytes(false, 5); // 5 bytes already held in memory
        let mut w = BlobWriter::new(&l, Some(3)).unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(
            matches!(w.finish().await.unwrap().0, BlobContent::Memory(_)),
            "5 + 3 fits"
        );
        l.totals.add_blob_bytes(false, 3);
        let mut w = BlobWriter::new(&l, Some(1)).unwrap();
        w.write(Bytes::from_static(b"d")).await.unwrap();
        let (content, _) = w.finish().await.unwrap();
        let Some(path) = content.spill_file() else {
            panic!("over the memory limit, a small body spills")
        };
        assert_eq!(std::fs::read(path).unwrap(), b"d");
    }

    /// In memory mode the small bodies past the limit share a segment
    /// instead of a file each; a large one still gets its own file.
    #[tokio::test]
    async fn past_the_memory_limit_small_bodies_go_to_one_overflow_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(dir.path());
        l.memory_limit = 1;
        l.overflow = Some(Overflow::new(dir.path().to_owned(), Default::default()));
        let mut bodies = Vec::new();
        for part in [&b"abc"[..], b"\0\xff", b"123456789"] {
            let mut w = BlobWriter::new(&l, None).unwrap();
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
            let (content, size) = w.finish().await.unwrap();
            assert_eq!(size, part.len() as u64);
            let body = content.overflow().expect("an overflow body").clone();
            assert_eq!(&body.read().await.unwrap()[..], part);
            bodies.push(content);
        }
        assert_eq!(files_in(dir.path()), 1, "one segment for them all");
        let mut w = BlobWriter::new(&l, None).unwrap();
        w.write(Bytes::from_static(b"0123456789")).await.unwrap();
        let (large, _) = w.finish().await.unwrap();
        assert!(large.spill_file().is_some(), "at the threshold: a file");
        assert_eq!(files_in(dir.path()), 2);
    }

    /// In durable mode too the small bodies past the limit share a segment,
    /// each knowing the CRC32C of its bytes for the log and for reads.
    #[tokio::test]
    async fn past_the_memory_limit_durable_bodies_go_to_a_segment_with_their_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let segments = dir.path().join("segments");
        std::fs::create_dir(&segments).unwrap();
        let mut l = limits(dir.path());
        l.memory_limit = 1;
        l.durable_sync = Some(true);
        l.overflow = Some(Overflow::durable(
            segments.clone(),
            Default::default(),
            4,
            crate::store::overflow::Removal::Now,
        ));
        let mut kept = Vec::new();
        for part in [&b"abc"[..], b"\0\xff", b"123456789"] {
            let mut w = BlobWriter::new(&l, None).unwrap();
            w.write(Bytes::copy_from_slice(part)).await.unwrap();
            let (content, _) = w.finish().await.unwrap();
            let body = content.segment().expect("a segment body");
            assert_eq!(body.crc32c(), crc32c::crc32c(part));
            kept.push(content);
        }
        assert_eq!(files_in(&segments), 1, "one segment for them all");
        assert_eq!(files_in(dir.path()), 1, "no file of their own");
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(dir.path());
        assert!(matches!(
            BlobWriter::new(&limits, Some(26)),
            Err(IngestError::TooLarge { limit: 25 })
        ));
        let mut w = BlobWriter::new(&limits, None).unwrap();
        w.write(Bytes::from(vec![1; 20])).await.unwrap();
        assert_eq!(files_in(dir.path()), 1);
        let err = w.write(Bytes::from(vec![1; 6])).await.unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
        drop(w);
        assert_eq!(files_in(dir.path()), 0);
    }
}
