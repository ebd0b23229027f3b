//! Blobs: the bytes of an element, in memory, in an overflow segment (of
//! the spill folder, or of the data directory in durable mode) or in a file
//! of their own.
//!
//! A `Blob` is immutable once stored and shared by `Arc` between the
//! namespace's blob table, the elements that reference it and the responses
//! that are streaming it. Its file is removed when the last of them lets go,
//! or at once when a client deletes the blob.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempPath;

use super::file_body::Damage;
use super::journal::Journal;
use super::overflow::OverflowBody;
use super::segment_body::{SegmentBody, SegmentRead};
use super::stats::Totals;
use crate::backend::ids::BlobId;
use crate::backend::meta::SharedMeta;

/// Where a blob's bytes live.
#[derive(Debug)]
pub enum BlobContent {
    /// Small bodies, held in an allocation of their exact size.
    Memory(Bytes),
    /// Bodies on disk. Boxed, and one variant for both places on disk, so
    /// that the enum is no larger than a `Bytes` (a second boxed variant
    /// would need a tag of its own): every queued element with data holds
    /// a blob.
    Disk(Box<OnDisk>),
}

/// Where on disk a blob's bytes are.
#[derive(Debug)]
pub enum OnDisk {
    /// In a file of their own.
    File(BlobFile),
    /// Small bodies past the memory budget, in a shared overflow segment
    /// (memory mode only). An `Arc`, as the segment keeps a weak reference
    /// so that its compactor can move the body.
    Overflow(Arc<OverflowBody>),
    /// Small bodies past the memory budget in durable mode: in an overflow
    /// segment of the data directory, named by the log, checked on read.
    Segment(SegmentBody),
}

/// The file a blob's bytes are in.
#[derive(Debug)]
pub enum BlobFile {
    /// Bodies at or above the spill threshold.
    Spilled(TempPath),
    /// A file of the data directory, in durable mode.
    Stored(StoredFile),
}

impl BlobFile {
    pub fn path(&self) -> &std::path::Path {
        match self {
            BlobFile::Spilled(path) => path,
            BlobFile::Stored(file) => file.path(),
        }
    }
}

/// A blob file of the data directory. Until the log records the blob
/// ([`StoredFile::keep`]) the file is removed on drop, like a spill file, so a
/// refused push leaves nothing. Once recorded it outlives the process; when
/// the log says the blob is gone ([`StoredFile::remove_when_dropped`]) the
/// journal removes it after the last reader lets go and the record is durable.
#[derive(Debug)]
pub struct StoredFile {
    path: std::path::PathBuf,
    /// The CRC32C of its bytes, computed as they were received; `None` for
    /// a file logged before blob files had checksums.
    crc32c: Option<u32>,
    kept: AtomicBool,
    /// Set when the log recorded the blob as gone: the journal removes the file.
    gone: std::sync::Mutex<Option<Arc<Journal>>>,
}

impl StoredFile {
    pub fn new(path: std::path::PathBuf, kept: bool, crc32c: Option<u32>) -> StoredFile {
        StoredFile {
            path,
            crc32c,
            kept: AtomicBool::new(kept),
            gone: std::sync::Mutex::new(None),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn crc32c(&self) -> Option<u32> {
        self.crc32c
    }

    /// The log now refers to the file: it outlives this process. Also
    /// when a blob recorded as gone is recorded again (a pop taken back).
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Release);
        *self.gone_journal() = None;
    }

    fn gone_journal(&self) -> std::sync::MutexGuard<'_, Option<Arc<Journal>>> {
        self.gone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The log recorded the blob as gone: `journal` removes the file once
    /// nothing holds the blob any more.
    pub(crate) fn remove_when_dropped(&self, journal: Arc<Journal>) {
        *self.gone_journal() = Some(journal);
    }
}

impl Drop for StoredFile {
    fn drop(&mut self) {
        let gone = self
            .gone
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(journal) = gone {
            journal.unlink_later(std::mem::take(&mut self.path));
        } else if !self.kept.load(Ordering::Acquire) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A readable handle on a blob's bytes, opened when a response starts.
///
/// Opening the file before answering matters: on Unix an open file stays
/// readable after it is unlinked, so a response that has started completes even
/// if the blob is deleted or its last element popped meanwhile.
#[derive(Debug)]
pub enum BlobBody {
    Memory(Bytes),
    /// An open file, and the CRC32C its bytes must have, when known.
    File {
        file: tokio::fs::File,
        crc32c: Option<u32>,
    },
    /// Bytes found damaged as they were read whole (a segment body): the
    /// answer never starts.
    Damaged(Damage),
}

#[derive(Debug)]
pub struct Blob {
    id: BlobId,
    size: u64,
    meta: SharedMeta,
    content: BlobContent,
    /// Set when a client deleted the blob; elements still holding it answer
    /// `410 Gone` instead of data.
    deleted: AtomicBool,
    /// Store-wide byte gauges, decremented when the blob is dropped.
    totals: Arc<Totals>,
}

impl Blob {
    pub(crate) fn new(
        content: BlobContent,
        size: u64,
        meta: SharedMeta,
        totals: Arc<Totals>,
    ) -> Arc<Blob> {
        Blob::with_id(BlobId::random(), content, size, meta, totals)
    }

    /// A blob with a known id: one read back from the log.
    pub(crate) fn with_id(
        id: BlobId,
        content: BlobContent,
        size: u64,
        meta: SharedMeta,
        totals: Arc<Totals>,
    ) -> Arc<Blob> {
        totals.add_blob_bytes(content.is_spilled(), size);
        Arc::new(Blob {
            id,
            size,
            meta,
            content,
            deleted: AtomicBool::new(false),
            totals,
        })
    }

    pub fn id(&self) -> BlobId {
        self.id
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn meta(&self) -> &SharedMeta {
        &self.meta
    }

    pub fn is_spilled(&self) -> bool {
        self.content.is_spilled()
    }

    pub(crate) fn content(&self) -> &BlobContent {
        &self.content
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Marks the blob deleted and frees a spill file's disk space now rather
    /// than when the last referencing element is consumed (bytes in an
    /// overflow segment stop counting as live only then). Call without
    /// locks held.
    pub(crate) fn delete(&self) {
        self.deleted.store(true, Ordering::Release);
        if let Some(path) = self.content.spill_file() {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove spill file");
                }
            }
        }
    }

    /// The bytes of an in-memory blob that nothing else holds any more (the
    /// usual data pop: its element was the blob's only reference), taken
    /// over rather than shared: a clone of the `Bytes` would allocate a
    /// shared reference count on the way out, only to free it after the
    /// answer.
    /// `Err` gives the blob back when it is still held elsewhere, is
    /// deleted, or lives in a file.
    pub(crate) fn take_memory(blob: Arc<Blob>) -> Result<Bytes, Arc<Blob>> {
        if !matches!(blob.content, BlobContent::Memory(_)) || blob.is_deleted() {
            return Err(blob);
        }
        let mut only = Arc::try_unwrap(blob)?;
        // `Drop` still takes the blob's bytes off the totals: its content was
        // and stays in memory, and `size` is unchanged.
        match std::mem::replace(&mut only.content, BlobContent::Memory(Bytes::new())) {
            BlobContent::Memory(bytes) => Ok(bytes),
            other => {
                only.content = other;
                Err(Arc::new(only))
            }
        }
    }

    /// Opens the bytes for reading. Fails with `NotFound` if the blob was
    /// deleted in the meantime.
    pub async fn open(&self) -> io::Result<BlobBody> {
        if self.is_deleted() {
            return Err(io::ErrorKind::NotFound.into());
        }
        // The file case waits boxed: opening a file is a large future, which
        // would otherwise sit in the future of every pop, in memory or not.
        match &self.content {
            BlobContent::Memory(bytes) => Ok(BlobBody::Memory(bytes.clone())),
            BlobContent::Disk(disk) => match &**disk {
                // Below the spill threshold: read whole, answered from memory.
                OnDisk::Overflow(body) => match Box::pin(body.read()).await {
                    Ok(bytes) => Ok(BlobBody::Memory(bytes)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a body from its overflow segment");
                        Err(e)
                    }
                },
                OnDisk::Segment(body) => match Box::pin(body.read_checked()).await {
                    Ok(SegmentRead::Intact(bytes)) => Ok(BlobBody::Memory(bytes)),
                    Ok(SegmentRead::Damaged(damage)) => Ok(BlobBody::Damaged(damage)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a body from its segment");
                        Err(e)
                    }
                },
                OnDisk::File(file) => match Box::pin(tokio::fs::File::open(file.path())).await {
                    Ok(opened) => Ok(BlobBody::File {
                        file: opened,
                        crc32c: file.crc32c(),
                    }),
                    Err(e) => {
                        // The client learns only the kind: the path stays here.
                        if e.kind() != io::ErrorKind::NotFound {
                            tracing::warn!(path = %file.path().display(), error = %e, "cannot open a blob's file");
                        }
                        Err(e)
                    }
                },
            },
        }
    }
}

impl BlobContent {
    pub fn spilled(path: TempPath) -> BlobContent {
        BlobContent::Disk(Box::new(OnDisk::File(BlobFile::Spilled(path))))
    }

    pub fn stored(file: StoredFile) -> BlobContent {
        BlobContent::Disk(Box::new(OnDisk::File(BlobFile::Stored(file))))
    }

    pub fn overflowed(body: Arc<OverflowBody>) -> BlobContent {
        BlobContent::Disk(Box::new(OnDisk::Overflow(body)))
    }

    pub fn in_segment(body: SegmentBody) -> BlobContent {
        BlobContent::Disk(Box::new(OnDisk::Segment(body)))
    }

    /// The durable segment body, if the bytes are in one.
    pub fn segment(&self) -> Option<&SegmentBody> {
        match self {
            BlobContent::Disk(disk) => match &**disk {
                OnDisk::Segment(body) => Some(body),
                OnDisk::Overflow(_) | OnDisk::File(_) => None,
            },
            BlobContent::Memory(_) => None,
        }
    }

    /// Whether the bytes are on disk (a segment, a spill file or a stored
    /// file): they count as disk bytes, not memory.
    pub fn is_spilled(&self) -> bool {
        !matches!(self, BlobContent::Memory(_))
    }

    /// The file the bytes are in, if they are in one of their own.
    pub fn file(&self) -> Option<&BlobFile> {
        match self {
            BlobContent::Disk(disk) => match &**disk {
                OnDisk::File(file) => Some(file),
                OnDisk::Overflow(_) | OnDisk::Segment(_) => None,
            },
            BlobContent::Memory(_) => None,
        }
    }

    /// The overflow segment body, if the bytes are in one.
    pub fn overflow(&self) -> Option<&Arc<OverflowBody>> {
        match self {
            BlobContent::Disk(disk) => match &**disk {
                OnDisk::Overflow(body) => Some(body),
                OnDisk::File(_) | OnDisk::Segment(_) => None,
            },
            BlobContent::Memory(_) => None,
        }
    }

    /// The spill file, if the bytes are in one.
    pub fn spill_file(&self) -> Option<&TempPath> {
        match self.file()? {
            BlobFile::Spilled(path) => Some(path),
            BlobFile::Stored(_) => None,
        }
    }

    /// The data directory's file, if the bytes are in one.
    pub fn stored_file(&self) -> Option<&StoredFile> {
        match self.file()? {
            BlobFile::Stored(stored) => Some(stored),
            BlobFile::Spilled(_) => None,
        }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // The TempPath in `content` removes the file right after this.
        self.totals
            .remove_blob_bytes(self.content.is_spilled(), self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::meta::Metadata;

    fn in_memory(totals: &Arc<Totals>) -> Arc<Blob> {
        let content = BlobContent::Memory(Bytes::from_static(b"abc"));
        Blob::new(content, 3, Metadata::plain(), totals.clone())
    }

    #[test]
    fn the_only_holder_of_an_in_memory_blob_takes_its_bytes_and_frees_it() {
        let totals = Arc::new(Totals::default());
        let blob = in_memory(&totals);
        assert_eq!(totals.snapshot().memory_bytes, 3);
        let bytes = Blob::take_memory(blob).unwrap();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(totals.snapshot().memory_bytes, 0, "the blob is gone");
    }

    #[test]
    fn a_blob_held_elsewhere_or_deleted_is_given_back_whole() {
        let totals = Arc::new(Totals::default());
        let blob = in_memory(&totals);
        let other = blob.clone();
        let back = Blob::take_memory(blob).unwrap_err();
        assert!(matches!(back.content(), BlobContent::Memory(b) if &b[..] == b"abc"));
        drop(other);
        back.delete();
        let back = Blob::take_memory(back).unwrap_err();
        assert!(matches!(back.content(), BlobContent::Memory(b) if &b[..] == b"abc"));
        assert_eq!(totals.snapshot().memory_bytes, 3);
    }
}
