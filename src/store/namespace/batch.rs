//! A namespace's side of batches: many elements in or out in one change,
//! so that no consumer sees part of a batch push and the log receives its
//! records in one piece (see `changes.rs`).

use std::sync::Arc;

use super::{element_meta, Arrival, Delivery, Graveyard, NsState, PopMode, QuotaExceeded};
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;
use crate::backend::{MetaInput, Pushed};
use crate::store::blob::Blob;
use crate::store::clock::Millis;
use crate::store::element::Element;

/// One part of a batch push, received and waiting for the commit.
pub(crate) enum Prepared {
    /// A part with a body, its blob made (and counted in the byte gauges)
    /// already; dropped, it removes its file.
    Body { blob: Arc<Blob>, lifetime: u64 },
    /// A reference push, or an element of metadata only.
    Reference {
        blob: Option<BlobId>,
        meta: MetaInput,
        lifetime: u64,
    },
}

/// Why the commit refused the part at an index.
#[derive(Debug)]
pub(crate) enum Refusal {
    Quota(QuotaExceeded),
    /// The referenced blob is unknown, deleted or past its lifetime.
    NoBlob(BlobId),
}

/// An element a batch pop took, by id: a `Delivery::BlobGone` names none.
pub(crate) struct Taken {
    pub id: ElementId,
    pub delivery: Delivery,
}

impl NsState {
    /// Pushes every part of `parts` at the tail of `queue`, in order, or
    /// none: each part is checked first (its blob readable, the quota
    /// counted up to it), then all are enqueued. On success `parts` is left
    /// empty; on a refusal it is untouched, for the caller to drop after
    /// unlocking (a spilled part's file is removed then).
    pub fn push_many(
        &mut self,
        queue: &Name,
        parts: &mut Vec<Prepared>,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Result<Vec<Pushed>, (usize, Refusal)> {
        let mut bytes = 0;
        for (i, part) in parts.iter().enumerate() {
            match part {
                Prepared::Body { blob, .. } => bytes += blob.size(),
                Prepared::Reference { blob: Some(id), .. } => {
                    if self.readable_blob(*id, now).is_none() {
                        return Err((i, Refusal::NoBlob(*id)));
                    }
                }
                Prepared::Reference { blob: None, .. } => {}
            }
            self.check_quota(i as u64 + 1, bytes)
                .map_err(|q| (i, Refusal::Quota(q)))?;
        }
        let mut pushed = Vec::with_capacity(parts.len());
        for part in parts.drain(..) {
            let (element, lifetime) = match part {
                Prepared::Body { blob, lifetime } => {
                    let deadline = now.plus_secs(lifetime);
                    self.insert_blob(blob.clone(), 1, deadline);
                    let meta = blob.meta().clone();
                    (Element::new(Some(blob), meta, deadline), lifetime)
                }
                Prepared::Reference {
                    blob,
                    meta,
                    lifetime,
                } => {
                    // Checked readable above, under this same lock.
                    let blob = blob.and_then(|id| self.reference_blob(id, now));
                    let meta = element_meta(blob.as_ref(), meta.content_type, meta.custom);
                    (Element::new(blob, meta, now.plus_secs(lifetime)), lifetime)
                }
            };
            pushed.push(Pushed {
                id: element.id,
                blob_id: element.blob.as_ref().map(|b| b.id()),
                size: element.size(),
                lifetime,
            });
            self.enqueue(queue, element, Arrival::Push, now, grave);
        }
        Ok(pushed)
    }

    /// Pops live elements of `queue` into `out` until it holds `count`
    /// or the queue is empty.
    pub fn pop_many(
        &mut self,
        queue: &Name,
        count: usize,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
        out: &mut Vec<Taken>,
    ) {
        while out.len() < count {
            let Some(element) = self.take_head(queue, now, grave) else {
                return;
            };
            out.push(self.finish_taken(queue, element, mode, now, grave));
        }
    }

    /// `finish_pop`, keeping the element's id.
    pub fn finish_taken(
        &mut self,
        queue: &Name,
        element: Element,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Taken {
        let id = element.id;
        let delivery = self.finish_pop(queue, element, mode, now, grave);
        Taken { id, delivery }
    }
}
