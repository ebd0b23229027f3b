//! A namespace's blobs: stored, referenced by elements, exposed to clients
//! by id, released and forgotten.
//!
//! A blob lives while an element references it or, once exposed (stored
//! through `/tbs`, or its id handed out by a header-only pop), until its
//! own deadline.

use std::sync::Arc;

use smol_str::SmolStr;

use super::{ExpiryKey, Graveyard, NsState};
use crate::backend::ids::BlobId;
use crate::backend::meta::{CustomPair, Metadata, SharedMeta, DEFAULT_CONTENT_TYPE};
use crate::store::blob::Blob;
use crate::store::blob_table::BlobEntry;
use crate::store::clock::Millis;

impl NsState {
    /// Puts back a blob read from the log; elements then take references.
    pub fn restore_blob(&mut self, blob: Arc<Blob>, exposed: bool, deadline: Millis) {
        self.add_blob(BlobEntry::new(blob, 0, exposed, deadline));
    }

    /// The blob `id` as restored, taking a reference for an element.
    pub fn restored_blob(&mut self, id: BlobId) -> Option<Arc<Blob>> {
        let entry = self.blobs.get_mut(id)?;
        entry.add_ref();
        Some(entry.blob.clone())
    }

    /// Registers a blob just made. `refs` is 1 for a blob pushed with its
    /// element and 0 for one stored through `/tbs` (which is exposed from
    /// the start).
    pub fn insert_blob(&mut self, blob: Arc<Blob>, refs: u32, deadline: Millis) {
        let exposed = refs == 0;
        self.log.blob_stored(&blob, deadline, exposed);
        self.add_blob(BlobEntry::new(blob, refs, exposed, deadline));
    }

    /// Puts `entry` in the table, and an exposed blob's deadline in the index.
    fn add_blob(&mut self, entry: BlobEntry) {
        let id = entry.blob.id();
        let (exposed, deadline) = (entry.exposed(), entry.deadline);
        self.blob_bytes += entry.blob.size();
        self.blobs.insert(entry);
        if exposed {
            self.index(deadline, ExpiryKey::Blob(id));
        }
    }

    /// The blobs whose custom data has `key`: their ids and the values.
    pub fn marked_blobs(&self, key: &str) -> Vec<(BlobId, Box<str>)> {
        self.blobs
            .iter()
            .filter_map(|e| {
                let pair = e.blob.meta().custom.iter().find(|p| &*p.key == key)?;
                Some((e.blob.id(), pair.value.clone()))
            })
            .collect()
    }

    /// Takes a new reference on a readable blob, for a reference push.
    pub fn reference_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get_mut(id).filter(|e| e.is_readable(now))?;
        entry.add_ref();
        Some(entry.blob.clone())
    }

    /// The blob `id` with its seconds left, if it is readable.
    pub fn readable_blob(&self, id: BlobId, now: Millis) -> Option<(Arc<Blob>, u64)> {
        let entry = self.blobs.get(id).filter(|e| e.is_readable(now))?;
        Some((entry.blob.clone(), entry.deadline.seconds_left(now)))
    }

    /// Forgets blob `id` at a client's request. The caller calls
    /// [`Blob::delete`] after unlocking; elements still referencing it then
    /// answer `410 Gone`.
    pub fn remove_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get(id).filter(|e| e.is_readable(now))?;
        if entry.exposed() {
            let key = (entry.deadline, ExpiryKey::Blob(id));
            self.expiry.remove(&key);
        }
        self.forget_blob(id)
    }

    /// Takes blob `id` out of the table.
    pub(super) fn forget_blob(&mut self, id: BlobId) -> Option<Arc<Blob>> {
        let entry = self.blobs.remove(id)?;
        Some(self.forget_entry(entry))
    }

    /// Accounts for a blob entry taken out of the table.
    fn forget_entry(&mut self, entry: BlobEntry) -> Arc<Blob> {
        self.blob_bytes -= entry.blob.size();
        self.log.blob_gone(&entry.blob);
        entry.blob
    }

    /// An element lets go of its blob; `expose` when a header-only pop
    /// hands the blob id to a client. A blob nothing keeps any more goes to
    /// the graveyard.
    pub(super) fn release_blob(
        &mut self,
        blob: &Blob,
        expose: bool,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        if expose {
            self.expose_blob(blob.id());
        }
        if let Some(Some(entry)) = self.blobs.release(blob, now) {
            let blob = self.forget_entry(entry);
            grave.blobs.push(blob);
        }
    }

    /// A header-only delivery handed the blob's id to a client: from now on
    /// the blob lives to its own deadline.
    pub(super) fn expose_blob(&mut self, id: BlobId) {
        let Some(entry) = self.blobs.get_mut(id) else {
            return;
        };
        if entry.exposed() {
            return;
        }
        entry.expose();
        let deadline = entry.deadline;
        self.log.blob_exposed(&entry.blob);
        self.index(deadline, ExpiryKey::Blob(id));
    }
}

/// The metadata of a new element: what the client gave, else for a
/// reference push the blob's. Elements with the default metadata share one
/// record rather than allocating their own.
pub(crate) fn element_meta(
    blob: Option<&Arc<Blob>>,
    content_type: Option<SmolStr>,
    custom: Vec<CustomPair>,
) -> SharedMeta {
    match blob {
        Some(b) if content_type.is_none() && custom.is_empty() => b.meta().clone(),
        Some(b) => SharedMeta::new(Metadata {
            content_type: content_type.unwrap_or_else(|| b.meta().content_type.clone()),
            custom: if custom.is_empty() {
                b.meta().custom.clone()
            } else {
                custom.into_boxed_slice()
            },
        }),
        // The default type named explicitly is the same record.
        None if custom.is_empty()
            && content_type
                .as_deref()
                .is_none_or(|t| t == DEFAULT_CONTENT_TYPE) =>
        {
            Metadata::plain()
        }
        None => SharedMeta::new(Metadata::with_default_type(content_type, custom)),
    }
}
