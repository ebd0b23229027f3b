//! The store's operations other than the pop (in `pop`): pushes, blobs
//! stored, read and deleted through `/tbs`, and lease acknowledgements,
//! releases and extensions. Each takes validated input, runs under its
//! namespace's lock and returns; `backend_impl` makes it durable.

use std::sync::Arc;
use std::time::Duration;

use super::blob::{Blob, BlobContent};
use super::clock::{self, Millis};
use super::element::Element;
use super::namespace::{element_meta, Arrival, Graveyard, NsState};
use super::Store;
use crate::backend::ids::{BlobId, Receipt};
use crate::backend::name::Name;
use crate::backend::{BackendError, BlobRead, MetaInput, Pushed};

impl Store {
    /// Pushes a new element at the tail of `queue`, with its data if any.
    pub fn push_received(
        &self,
        ns: &Name,
        queue: &Name,
        data: Option<(BlobContent, u64)>,
        meta: MetaInput,
        lifetime: u64,
    ) -> Result<Pushed, BackendError> {
        let meta = element_meta(None, meta.content_type, meta.custom);
        let now = Millis::now();
        let deadline = now.plus_secs(lifetime);
        let blob = data.map(|(content, size)| {
            Blob::new(content, size, meta.clone(), self.shared.totals.clone())
        });
        let element = Element::new(blob.clone(), meta, deadline);
        let pushed = Pushed {
            id: element.id,
            blob_id: blob.as_ref().map(|b| b.id()),
            size: element.size(),
            lifetime,
        };
        let bytes = pushed.size;
        self.change_new(ns, Some(queue), |st, grave| {
            st.check_quota(1, bytes).map_err(|q| self.over(ns, q))?;
            if let Some(blob) = blob {
                st.insert_blob(blob, 1, deadline);
            }
            st.enqueue(queue, element, Arrival::Push, now, grave);
            Ok(pushed)
        })
    }

    /// Pushes a header-only element, referencing blob `blob_id` of the
    /// namespace if given (its bytes are what a data pop returns).
    pub fn reference_push(
        &self,
        ns: &Name,
        queue: &Name,
        blob_id: Option<BlobId>,
        meta: MetaInput,
        lifetime: u64,
    ) -> Result<Pushed, BackendError> {
        let now = Millis::now();
        let deadline = now.plus_secs(lifetime);
        self.change_new(ns, Some(queue), |st, grave| {
            st.check_quota(1, 0).map_err(|q| self.over(ns, q))?;
            let blob =
                match blob_id {
                    None => None,
                    Some(id) => Some(st.reference_blob(id, now).ok_or_else(|| {
                        BackendError::BlobNotFound {
                            namespace: ns.clone(),
                            id: id.to_string(),
                        }
                    })?),
                };
            let meta = element_meta(blob.as_ref(), meta.content_type, meta.custom);
            let element = Element::new(blob, meta, deadline);
            let pushed = Pushed {
                id: element.id,
                blob_id,
                size: element.size(),
                lifetime,
            };
            st.enqueue(queue, element, Arrival::Push, now, grave);
            Ok(pushed)
        })
    }

    /// Refuses early a body that could not be stored in `ns` anyway: the
    /// `announced` bytes more and, for a push, one more element. The check
    /// that counts is made again under the lock when the body is in; a body
    /// announced below the spill threshold is cheap to take in, and is left
    /// to that check alone.
    pub fn precheck_quota(
        &self,
        ns: &Name,
        elements: u64,
        announced: Option<u64>,
    ) -> Result<(), BackendError> {
        if announced.is_some_and(|n| n < self.shared.limits.spill_threshold) {
            return Ok(());
        }
        let bytes = announced.unwrap_or(0);
        let checked = self
            .change_existing(ns, |st, _| st.check_quota(elements, bytes))
            // An empty namespace: only a limit below this one push can refuse it.
            .unwrap_or_else(|| self.quota_of(ns).check((0, 0), (elements, bytes)));
        checked.map_err(|quota| self.over(ns, quota))
    }

    /// Stores a blob through `/tbs`; it lives `lifetime` seconds.
    pub fn store_received(
        &self,
        ns: &Name,
        content: BlobContent,
        size: u64,
        meta: MetaInput,
        lifetime: u64,
    ) -> Result<Arc<Blob>, BackendError> {
        let meta = element_meta(None, meta.content_type, meta.custom);
        let blob = Blob::new(content, size, meta, self.shared.totals.clone());
        let deadline = Millis::now().plus_secs(lifetime);
        let stored = blob.clone();
        self.change_new(ns, None, |st, _| {
            st.check_quota(0, size).map_err(|q| self.over(ns, q))?;
            st.insert_blob(stored, 0, deadline);
            Ok(())
        })?;
        Ok(blob)
    }

    /// Reads blob `id` without consuming it; with `delete_after`, deletes it
    /// once its bytes are open.
    pub async fn open_blob(
        &self,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError> {
        let not_found = || blob_not_found(ns, id);
        let blob_id: BlobId = id.parse().map_err(|_| not_found())?;
        let found = self.change_existing(ns, |st, _| st.readable_blob(blob_id, Millis::now()));
        let (blob, seconds_left) = found.flatten().ok_or_else(not_found)?;
        let body = blob.open().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(),
            _ => BackendError::Io(e),
        })?;
        let body = self.checked_blob_read(ns, blob.clone(), body).await?;
        if delete_after {
            self.remove_blob(ns, id)?;
        }
        Ok(BlobRead {
            id: blob_id,
            meta: blob.meta().clone(),
            size: blob.size(),
            seconds_left,
            body,
        })
    }

    /// Deletes blob `id`. Elements still referencing it answer `410` on pop.
    pub fn remove_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError> {
        let blob_id: BlobId = id.parse().map_err(|_| blob_not_found(ns, id))?;
        let removed = self.change_existing(ns, |st, _| st.remove_blob(blob_id, Millis::now()));
        let blob = removed.flatten().ok_or_else(|| blob_not_found(ns, id))?;
        // Its spill file, if any, is unlinked here, outside the lock.
        blob.delete();
        Ok(())
    }

    /// Removes every ready element of `queue`; how many.
    pub fn purge_queue(&self, ns: &Name, queue: &Name) -> u64 {
        self.change_existing(ns, |st, grave| st.purge_queue(queue, Millis::now(), grave))
            .unwrap_or(0)
    }

    /// Acknowledges lease `receipt` of `queue`: the element is gone. Its
    /// view is returned, to give back if the log cannot record it.
    pub fn ack_lease(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
    ) -> Result<Element, BackendError> {
        self.on_lease(ns, queue, receipt, |st, r, now, grave| {
            st.ack(queue, r, now, grave)
        })
    }

    /// Hands the element of lease `receipt` back to the head of `queue` now.
    pub fn release_lease(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
    ) -> Result<(), BackendError> {
        self.on_lease(ns, queue, receipt, |st, r, now, grave| {
            st.release(queue, r, now, grave).then_some(())
        })
    }

    /// Restarts lease `receipt` with `lease` from now; the seconds it now has.
    pub fn extend_lease(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        lease: Duration,
    ) -> Result<u64, BackendError> {
        let lease_ms = clock::saturating_millis(lease);
        self.on_lease(ns, queue, receipt, |st, r, now, grave| {
            let deadline = st.extend(queue, r, lease_ms, now, grave)?;
            Some(deadline.seconds_left(now))
        })
    }

    /// Runs a lease operation; `None` from `op` means the lease is unknown.
    fn on_lease<T>(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        op: impl FnOnce(&mut NsState, Receipt, Millis, &mut Graveyard) -> Option<T>,
    ) -> Result<T, BackendError> {
        let not_found = || BackendError::LeaseNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            receipt: receipt.to_owned(),
        };
        let r: Receipt = receipt.parse().map_err(|_| not_found())?;
        let now = Millis::now();
        let out = self.change_existing(ns, |st, grave| op(st, r, now, grave));
        out.flatten().ok_or_else(not_found)
    }
}

fn blob_not_found(ns: &Name, id: &str) -> BackendError {
    BackendError::BlobNotFound {
        namespace: ns.clone(),
        id: id.to_owned(),
    }
}
