//! Blobs: the bytes of an element, in memory or in a spill file.
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

use super::ids::BlobId;
use super::meta::Metadata;
use super::stats::Totals;

/// Where a blob's bytes live.
#[derive(Debug)]
pub enum BlobContent {
    /// Small bodies, held in an allocation of their exact size.
    Memory(Bytes),
    /// Bodies at or above the spill threshold.
    Spilled(TempPath),
}

/// A readable handle on a blob's bytes, opened when a response starts.
///
/// Opening the file before answering matters: on Unix an open file stays
/// readable after it is unlinked, so a response that has started completes even
/// if the blob is deleted or its last element popped meanwhile.
#[derive(Debug)]
pub enum BlobBody {
    Memory(Bytes),
    File(tokio::fs::File),
}

#[derive(Debug)]
pub struct Blob {
    id: BlobId,
    size: u64,
    meta: Arc<Metadata>,
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
        meta: Arc<Metadata>,
        totals: Arc<Totals>,
    ) -> Arc<Blob> {
        totals.add_blob_bytes(content.is_spilled(), size);
        Arc::new(Blob {
            id: BlobId::random(),
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

    pub fn meta(&self) -> &Arc<Metadata> {
        &self.meta
    }

    pub fn is_spilled(&self) -> bool {
        self.content.is_spilled()
    }

    /// The spill file, if the blob has one (for tests and diagnostics).
    pub fn spill_path(&self) -> Option<&std::path::Path> {
        match &self.content {
            BlobContent::Spilled(path) => Some(path),
            BlobContent::Memory(_) => None,
        }
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Marks the blob deleted and frees its disk space now rather than when
    /// the last referencing element is consumed. Call without locks held.
    pub(crate) fn delete(&self) {
        self.deleted.store(true, Ordering::Release);
        if let BlobContent::Spilled(path) = &self.content {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove spill file");
                }
            }
        }
    }

    /// Opens the bytes for reading. Fails with `NotFound` if the blob was
    /// deleted in the meantime.
    pub async fn open(&self) -> io::Result<BlobBody> {
        if self.is_deleted() {
            return Err(io::ErrorKind::NotFound.into());
        }
        match &self.content {
            BlobContent::Memory(bytes) => Ok(BlobBody::Memory(bytes.clone())),
            BlobContent::Spilled(path) => Ok(BlobBody::File(tokio::fs::File::open(path).await?)),
        }
    }
}

impl BlobContent {
    pub fn is_spilled(&self) -> bool {
        matches!(self, BlobContent::Spilled(_))
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // The TempPath in `content` removes the file right after this.
        self.totals
            .remove_blob_bytes(self.content.is_spilled(), self.size);
    }
}
