//! The element record: one entry of a queue.

use std::sync::Arc;

use super::blob::Blob;
use super::clock::Millis;
use crate::backend::ids::ElementId;
use crate::backend::meta::SharedMeta;

/// One queue entry. It is a value that moves: from the producer into a queue's
/// ready list, from there (or straight from the producer) to a consumer. The
/// record knows nothing of where it sits, so an element can later be held "in
/// flight" under a lease without changing it.
///
/// `Clone` only makes a view for a response (two reference counts); the store
/// never keeps two copies of one element.
#[derive(Debug, Clone)]
pub struct Element {
    pub id: ElementId,
    /// The bytes, shared with the namespace's blob table and with other
    /// elements that reference the same blob. `None` for metadata-only elements.
    pub blob: Option<Arc<Blob>>,
    pub meta: SharedMeta,
    /// When the element stops being served.
    pub deadline: Millis,
    /// How many times the element was handed out under a lease.
    pub deliveries: u32,
    /// Whether the namespace's expiry index has an entry of its own for it,
    /// or it expires as part of its queue's deadline chain. Set by the queue.
    pub(crate) indexed: bool,
}

impl Element {
    /// A new element, with a fresh random id, never delivered yet.
    pub fn new(blob: Option<Arc<Blob>>, meta: SharedMeta, deadline: Millis) -> Element {
        Element {
            id: ElementId::random(),
            blob,
            meta,
            deadline,
            deliveries: 0,
            indexed: false,
        }
    }

    /// Size of the element's data in bytes (0 without data).
    pub fn size(&self) -> u64 {
        self.blob.as_ref().map_or(0, |b| b.size())
    }
}
