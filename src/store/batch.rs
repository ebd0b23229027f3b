//! Batches in the embedded engine: a batch push received part by part and
//! stored in one change; a batch pop that takes what is ready (waiting for
//! the first element only); a batch acknowledgement in one change. Each is
//! made durable once, as one group commit, and taken back whole if the log
//! cannot record it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::blob::Blob;
use super::clock::Millis;
use super::journal::Commit;
use super::namespace::{element_meta, Delivery, PopMode, Prepared, Refusal, Taken};
use super::queue::Waiter;
use super::wait_ticket::WaitTicket;
use super::Store;
use crate::backend::ids::{BlobId, Receipt};
use crate::backend::name::Name;
use crate::backend::{
    Acked, BackendError, BatchElement, BatchPush, IncomingBody, LeaseGrant, PartError, Payload,
    Popped, PushOptions, Pushed,
};

/// A batch push being received: its parts, made but in no queue yet.
pub(super) struct StoreBatch {
    store: Store,
    ns: Name,
    queue: Name,
    parts: Vec<Prepared>,
    /// Bytes of the parts' bodies so far.
    bytes: u64,
}

impl Store {
    /// Starts a batch push to `queue`; refused at once while the log
    /// cannot be written.
    pub(super) async fn begin_batch(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<StoreBatch, BackendError> {
        self.writable(Commit::Accepted).await?;
        Ok(StoreBatch {
            store: self.clone(),
            ns: ns.clone(),
            queue: queue.clone(),
            parts: Vec::new(),
            bytes: 0,
        })
    }
}

#[async_trait]
impl BatchPush for StoreBatch {
    async fn add(&mut self, body: IncomingBody, opts: PushOptions) -> Result<(), BackendError> {
        // As a push does, a batch whose bodies reach the spill threshold
        // asks the quota before reading on; the check that counts is the
        // commit's.
        let so_far = self.bytes + body.announced.unwrap_or(0);
        if so_far >= self.store.shared.limits.spill_threshold {
            let elements = self.parts.len() as u64 + 1;
            self.store
                .precheck_quota(&self.ns, elements, Some(so_far))?;
        }
        let (content, size) = self.store.receive(body).await?;
        let meta = element_meta(None, opts.meta.content_type, opts.meta.custom);
        let blob = Blob::new(content, size, meta, self.store.shared.totals.clone());
        self.bytes += size;
        self.parts.push(Prepared::Body {
            blob,
            lifetime: opts.lifetime,
        });
        Ok(())
    }

    async fn add_reference(
        &mut self,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<(), BackendError> {
        let blob = match blob {
            None => None,
            Some(raw) => Some(
                raw.parse::<BlobId>()
                    .map_err(|_| BackendError::BlobNotFound {
                        namespace: self.ns.clone(),
                        id: raw.to_owned(),
                    })?,
            ),
        };
        self.parts.push(Prepared::Reference {
            blob,
            meta: opts.meta,
            lifetime: opts.lifetime,
        });
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<Vec<Pushed>, PartError> {
        let StoreBatch {
            store,
            ns,
            queue,
            mut parts,
            ..
        } = *self;
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        store
            .writable(Commit::Accepted)
            .await
            .map_err(PartError::whole)?;
        let now = Millis::now();
        let result = store.change(&ns, |st, grave| {
            st.push_many(&queue, &mut parts, now, grave)
        });
        // A refused batch's parts (and their files) go here, unlocked.
        drop(parts);
        let pushed = result.map_err(|(part, refusal)| {
            let error = match refusal {
                Refusal::Quota(quota) => store.over(&ns, quota),
                Refusal::NoBlob(id) => BackendError::BlobNotFound {
                    namespace: ns.clone(),
                    id: id.to_string(),
                },
            };
            PartError::at(part, error)
        })?;
        if let Err(e) = store.durable(Commit::Accepted).await {
            store.withdraw_batch(&ns, &queue, &pushed).await;
            return Err(PartError::whole(e));
        }
        Ok(pushed)
    }
}

impl Store {
    /// Takes back a batch the log could not record, every element of it.
    async fn withdraw_batch(&self, ns: &Name, queue: &Name, pushed: &[Pushed]) {
        let now = Millis::now();
        self.change_existing(ns, |st, grave| {
            for p in pushed {
                st.withdraw_push(queue, p.id, now, grave);
            }
        });
        // The undo's records follow what they undo as soon as they can.
        let _ = self.durable(Commit::Accepted).await;
    }

    /// Pops up to `count` elements of `queue`, waiting up to `wait` for the
    /// first. Empty when nothing came in time.
    pub(super) async fn pop_batch_waiting(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
        count: usize,
    ) -> Result<Vec<BatchElement>, BackendError> {
        if mode.lease_ms.is_some() && queue.dead_letter().is_none() {
            return Err(BackendError::NoDeadLetterQueue(queue.clone()));
        }
        let now = Millis::now();
        // Grown as elements come: a large `count` on a short queue costs nothing.
        let mut taken = Vec::new();
        let Some(mut ticket) = self.first_batch(ns, queue, mode, wait, count, now, &mut taken)?
        else {
            return self.deliver_batch(ns, queue, taken, now).await;
        };
        let element = tokio::select! {
            received = ticket.receive() => match received {
                Some(element) => element,
                None => return Err(BackendError::ShuttingDown),
            },
            () = tokio::time::sleep(wait) => return Ok(Vec::new()),
            () = self.shared.closing.cancelled() => return Err(BackendError::ShuttingDown),
        };
        let now = Millis::now();
        self.change(ns, |st, grave| {
            taken.push(st.finish_taken(queue, element, mode, now, grave));
            st.pop_many(queue, count, mode, now, grave, &mut taken);
        });
        drop(ticket);
        self.deliver_batch(ns, queue, taken, now).await
    }

    /// The locked part of a batch pop: takes what is ready, else registers
    /// a waiter (when `wait` is not zero) and returns its ticket.
    #[allow(clippy::too_many_arguments)]
    fn first_batch(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
        count: usize,
        now: Millis,
        taken: &mut Vec<Taken>,
    ) -> Result<Option<WaitTicket>, BackendError> {
        if wait.is_zero() {
            // A pop that will not wait creates no namespace.
            self.change_existing(ns, |st, grave| {
                st.pop_many(queue, count, mode, now, grave, taken)
            });
            return Ok(None);
        }
        self.change(ns, |st, grave| {
            st.pop_many(queue, count, mode, now, grave, taken);
            if !taken.is_empty() {
                return Ok(None);
            }
            if self.shared.closing.is_cancelled() {
                return Err(BackendError::ShuttingDown);
            }
            let (tx, rx) = oneshot::channel();
            let id = self.shared.next_waiter.fetch_add(1, Ordering::Relaxed);
            st.add_waiter(queue, Waiter { id, tx }, now);
            Ok(Some(WaitTicket::new(self, ns, queue, id, rx)))
        })
    }

    /// Once the pops are durable, turns what was taken into what the client
    /// receives, opening spilled bodies. Pops the log could not record are
    /// given back, in their order, at the head of `queue`.
    async fn deliver_batch(
        &self,
        ns: &Name,
        queue: &Name,
        taken: Vec<Taken>,
        now: Millis,
    ) -> Result<Vec<BatchElement>, BackendError> {
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.durable(Commit::Consumed).await {
            for t in taken.into_iter().rev() {
                self.give_back_pop(ns, queue, t.delivery).await;
            }
            return Err(e);
        }
        let mut out = Vec::with_capacity(taken.len());
        for t in taken {
            out.push(open_taken(t, now).await?);
        }
        Ok(out)
    }

    /// Acknowledges each receipt of `receipts` on `queue` in one change,
    /// durable once; all given back if the log cannot record them.
    pub(super) async fn ack_many(
        &self,
        ns: &Name,
        queue: &Name,
        receipts: &[String],
    ) -> Result<Acked, BackendError> {
        self.writable(Commit::Consumed).await?;
        let now = Millis::now();
        let mut out = Acked::default();
        let mut elements = Vec::new();
        let found = self.change_existing(ns, |st, grave| {
            for raw in receipts {
                let acked = raw
                    .parse::<Receipt>()
                    .ok()
                    .and_then(|r| st.ack(queue, r, now, grave));
                match acked {
                    Some(element) => {
                        elements.push(element);
                        out.acked.push(raw.clone());
                    }
                    None => out.unknown.push(raw.clone()),
                }
            }
        });
        if found.is_none() {
            // A namespace that does not exist knows none of them.
            out.unknown = receipts.to_vec();
        }
        if elements.is_empty() {
            return Ok(out);
        }
        if let Err(e) = self.durable(Commit::Consumed).await {
            for element in elements.into_iter().rev() {
                self.give_back_ack(ns, queue, element).await;
            }
            return Err(e);
        }
        Ok(out)
    }
}

/// What the consumer of a batch receives for one element: its headers and,
/// on a data pop, its bytes (a spilled body opened now, so it stays
/// readable however the blob fares meanwhile).
async fn open_taken(taken: Taken, now: Millis) -> Result<BatchElement, BackendError> {
    let (element, with_data, lease) = match taken.delivery {
        Delivery::Element {
            element,
            with_data,
            lease,
        } => (element, with_data, lease),
        Delivery::BlobGone => return Ok(BatchElement::Gone(taken.id)),
    };
    let (blob_id, size) = (element.blob.as_ref().map(|b| b.id()), element.size());
    let body = match element.blob {
        Some(blob) if with_data => match Blob::take_memory(blob) {
            Ok(bytes) => Some(Payload::Bytes(bytes)),
            Err(blob) => match blob.open().await {
                Ok(body) => Some(body.into_payload(size)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(BatchElement::Gone(taken.id))
                }
                Err(e) => return Err(BackendError::Io(e)),
            },
        },
        _ => None,
    };
    Ok(BatchElement::Popped(Popped {
        id: element.id,
        meta: element.meta,
        blob_id,
        size,
        seconds_left: element.deadline.seconds_left(now),
        body,
        lease: lease.map(|l| LeaseGrant {
            receipt: l.receipt,
            deliveries: l.deliveries,
            seconds_left: l.deadline.seconds_left(now),
        }),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::backend::name::Name;
    use crate::backend::{
        Backend, BackendError, IncomingBody, PopOptions, PushOptions, StoragePlace,
    };
    use crate::store::{FsyncMode, Store};

    fn durable(dir: &std::path::Path) -> Store {
        Store::new(crate::store::tests_durable_config(dir, FsyncMode::Always)).unwrap()
    }

    fn names() -> (Name, Name) {
        (Name::parse("ns").unwrap(), Name::parse("q").unwrap())
    }

    async fn push_batch(s: &Store, bodies: &[&[u8]]) -> Result<usize, BackendError> {
        let (ns, q) = names();
        let mut batch = Backend::push_batch(s, &ns, &q).await?;
        for body in bodies {
            let opts = PushOptions {
                lifetime: 600,
                ..PushOptions::default()
            };
            batch
                .add(IncomingBody::from_bytes(body.to_vec()), opts)
                .await?;
        }
        batch.commit().await.map(|p| p.len()).map_err(|e| e.error)
    }

    async fn pop_count(s: &Store, count: usize) -> Result<usize, BackendError> {
        let (ns, q) = names();
        let opts = PopOptions {
            with_data: true,
            lease: None,
            wait: Duration::ZERO,
        };
        Ok(Backend::pop_batch(s, &ns, &q, opts, count).await?.len())
    }

    fn is_507(r: Result<usize, BackendError>) -> bool {
        matches!(r, Err(BackendError::Unwritable(f)) if f.place == StoragePlace::Data)
    }

    #[tokio::test]
    async fn a_batch_the_log_cannot_record_is_taken_back_whole_and_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let s = durable(dir.path());
        assert_eq!(push_batch(&s, &[b"a", b"b"]).await.unwrap(), 2);
        // Small and large bodies: the large ones are files of the data directory.
        s.journal().unwrap().fail_writes(1);
        assert!(is_507(push_batch(&s, &[b"c", &[7u8; 100], b"d"]).await));
        let (ns, q) = names();
        let counts = s.queue_stats(&ns, &q).unwrap().counts;
        assert_eq!(
            (counts.elements, counts.pushed),
            (2, 2),
            "nothing of it left"
        );
        // A batch pop the log cannot record gives its elements back, in order.
        s.journal().unwrap().fail_writes(1);
        assert!(is_507(pop_count(&s, 5).await));
        assert_eq!(s.queue_stats(&ns, &q).unwrap().counts.elements, 2);
        assert_eq!(push_batch(&s, &[b"e"]).await.unwrap(), 1);
        s.purge();
        drop(s);
        let s = durable(dir.path());
        assert_eq!(pop_count(&s, 10).await.unwrap(), 3, "a, b and e only");
        let blobs = std::fs::read_dir(dir.path().join("data/blobs")).unwrap();
        assert_eq!(blobs.count(), 0, "the withdrawn part's file is gone");
        s.purge();
    }
}
