//! The embedded engine behind the storage seam: each operation receives its
//! body, runs under the namespace lock, and waits until its change is as
//! durable as the configured fsync mode promises before it returns.
//!
//! When the disk is full an operation that needs a write answers `507`
//! having changed nothing: `Store::writable` refuses it up front while the
//! log is behind, and a change whose own records could not be written is
//! taken back (`withdraw`).

use async_trait::async_trait;
use futures_util::StreamExt as _;

use crate::backend::ids::BlobId;
use crate::backend::name::Name;
use crate::backend::{Acked, BatchElement, BatchPush};
use crate::backend::{
    Backend, BackendError, BlobRead, IncomingBody, MarkedBlob, NameFilter, NamespaceStats, Page,
    PopOptions, Popped, PushOptions, Pushed, QueueStats, ServerStats, StorageFault, StoredBlob,
    TotalsSnapshot,
};

use super::blob::BlobContent;
use super::clock::saturating_millis;
use super::ingest::IngestError;
use super::journal::Commit;
use super::{PopMode, Store};

impl Store {
    /// Receives a body chunk by chunk into memory or a body file. Dropped
    /// on any error, the writer removes whatever it wrote. A file that
    /// cannot be written is `507`, its path only in the server log.
    pub(super) async fn receive(
        &self,
        body: IncomingBody,
    ) -> Result<(BlobContent, u64), BackendError> {
        let health = &self.shared.file_health;
        let unwritable = |e: IngestError| match e {
            IngestError::TooLarge { limit } => BackendError::TooLarge { limit },
            IngestError::Unwritable(e) => BackendError::Unwritable(health.failed(&e)),
        };
        let mut writer = self.blob_writer(body.announced).map_err(unwritable)?;
        let mut chunks = body.chunks;
        while let Some(chunk) = chunks.next().await {
            writer.write(chunk?).await.map_err(unwritable)?;
        }
        let (content, size) = writer.finish().await.map_err(unwritable)?;
        if content.is_spilled() {
            health.succeeded();
        }
        Ok((content, size))
    }
}

#[async_trait]
impl Backend for Store {
    async fn push(
        &self,
        ns: &Name,
        queue: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        self.writable(Commit::Accepted).await?;
        // A large body announced past the quota is refused before it is read.
        self.precheck_quota(ns, 1, body.announced)?;
        let data = self.receive(body).await?;
        let pushed = self.push_received(ns, queue, Some(data), opts.meta, opts.lifetime)?;
        if let Err(e) = self.durable(Commit::Accepted).await {
            self.withdraw_push(ns, queue, pushed.id).await;
            return Err(e);
        }
        Ok(pushed)
    }

    async fn push_reference(
        &self,
        ns: &Name,
        queue: &Name,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        let blob = match blob {
            None => None,
            Some(raw) => Some(
                raw.parse::<BlobId>()
                    .map_err(|_| BackendError::BlobNotFound {
                        namespace: ns.clone(),
                        id: raw.to_owned(),
                    })?,
            ),
        };
        self.writable(Commit::Accepted).await?;
        let pushed = self.reference_push(ns, queue, blob, opts.meta, opts.lifetime)?;
        if let Err(e) = self.durable(Commit::Accepted).await {
            self.withdraw_push(ns, queue, pushed.id).await;
            return Err(e);
        }
        Ok(pushed)
    }

    async fn pop(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
    ) -> Result<Option<Popped>, BackendError> {
        let mode = PopMode {
            with_data: opts.with_data,
            lease_ms: opts.lease.map(saturating_millis),
        };
        // In `always` mode a pop is logged before it is answered: refused
        // while the log cannot be written, the element staying in its queue.
        self.writable(Commit::Consumed).await?;
        // Made durable (Commit::Consumed) before the element is delivered.
        self.pop_waiting(ns, queue, mode, opts.wait).await
    }

    async fn ack(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError> {
        self.writable(Commit::Consumed).await?;
        let acked = self.ack_lease(ns, queue, receipt)?;
        if let Err(e) = self.durable(Commit::Consumed).await {
            self.give_back_ack(ns, queue, acked).await;
            return Err(e);
        }
        Ok(())
    }

    async fn purge(&self, ns: &Name, queue: &Name) -> Result<u64, BackendError> {
        // Like a deletion, a purge whose records then fail stands: its
        // elements are gone from memory and their records are written with
        // the next round.
        self.writable(Commit::Consumed).await?;
        let purged = self.purge_queue(ns, queue);
        self.durable(Commit::Consumed).await?;
        Ok(purged)
    }

    async fn release(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError> {
        // A release may dead-letter the element, which the log records.
        // Should that record fail to be written the release stands: the
        // element is in one queue or the other, never lost.
        self.writable(Commit::Consumed).await?;
        self.release_lease(ns, queue, receipt)?;
        self.durable(Commit::Consumed).await
    }

    async fn extend(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        lease: std::time::Duration,
    ) -> Result<u64, BackendError> {
        // Leases are not logged: after a restart a leased element is ready.
        self.extend_lease(ns, queue, receipt, lease)
    }

    async fn store_blob(
        &self,
        ns: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<StoredBlob, BackendError> {
        self.writable(Commit::Accepted).await?;
        self.precheck_quota(ns, 0, body.announced)?;
        let (content, size) = self.receive(body).await?;
        let blob = self.store_received(ns, content, size, opts.meta, opts.lifetime)?;
        if let Err(e) = self.durable(Commit::Accepted).await {
            self.withdraw_blob(ns, blob.id()).await;
            return Err(e);
        }
        Ok(StoredBlob {
            id: blob.id(),
            size,
            lifetime: opts.lifetime,
            meta: blob.meta().clone(),
        })
    }

    async fn read_blob(
        &self,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError> {
        if delete_after {
            self.writable(Commit::Consumed).await?;
        }
        let read = self.open_blob(ns, id, delete_after).await?;
        if delete_after {
            self.durable(Commit::Consumed).await?;
        }
        Ok(read)
    }

    async fn delete_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError> {
        // A deletion whose record then fails stands (its blob is marked
        // deleted already): the record is written with the next round.
        self.writable(Commit::Consumed).await?;
        self.remove_blob(ns, id)?;
        self.durable(Commit::Consumed).await
    }

    // Held in memory only: what holds them (the jobs engine) does not
    // outlive the process either.
    async fn hold_elements(&self, ns: &Name, n: u64) -> Result<(), BackendError> {
        self.change(ns, |st, _| st.hold_elements(n))
            .map_err(|quota| self.over(ns, quota))
    }

    async fn release_elements(&self, ns: &Name, n: u64) {
        self.change_existing(ns, |st, _| st.release_elements(n));
    }

    async fn hold_elements_restored(&self, ns: &Name, n: u64) {
        self.change(ns, |st, _| st.hold_elements_restored(n));
    }

    async fn marked_blobs(&self, key: &str) -> Result<Vec<MarkedBlob>, BackendError> {
        let mut found = Vec::new();
        for namespace in self.all_namespaces() {
            let st = namespace.lock();
            found.extend(
                st.marked_blobs(key)
                    .into_iter()
                    .map(|(id, value)| MarkedBlob {
                        namespace: namespace.name.clone(),
                        id,
                        value,
                    }),
            );
        }
        Ok(found)
    }

    async fn queue_stats(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Option<QueueStats>, BackendError> {
        Ok(Store::queue_stats(self, ns, queue))
    }

    async fn namespace_stats(
        &self,
        ns: &Name,
        page: &Page,
    ) -> Result<Option<NamespaceStats>, BackendError> {
        Ok(Store::namespace_stats(self, ns, page))
    }

    async fn server_stats(
        &self,
        page: &Page,
        listed: NameFilter<'_>,
    ) -> Result<ServerStats, BackendError> {
        Ok(Store::server_stats(self, page, listed))
    }

    // Batches: `store/batch.rs`.

    async fn push_batch(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Box<dyn BatchPush>, BackendError> {
        Ok(Box::new(self.begin_batch(ns, queue).await?))
    }

    async fn pop_batch(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
        count: usize,
    ) -> Result<Vec<BatchElement>, BackendError> {
        let mode = PopMode {
            with_data: opts.with_data,
            lease_ms: opts.lease.map(saturating_millis),
        };
        self.writable(Commit::Consumed).await?;
        self.pop_batch_waiting(ns, queue, mode, opts.wait, count)
            .await
    }

    async fn ack_batch(
        &self,
        ns: &Name,
        queue: &Name,
        receipts: &[String],
    ) -> Result<Acked, BackendError> {
        self.ack_many(ns, queue, receipts).await
    }

    fn totals(&self) -> TotalsSnapshot {
        Store::totals(self)
    }

    async fn write_fault(&self) -> Option<StorageFault> {
        Store::write_fault(self)
    }

    fn begin_shutdown(&self) {
        Store::begin_shutdown(self)
    }

    async fn close(&self) {
        self.purge()
    }
}

/// The generic backend suite, run against the store in memory mode and in
/// durable mode.
#[cfg(test)]
mod suite {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::backend::suite::{
        Fresh, LIMITED_MAX_BYTES, LIMITED_MAX_ELEMENTS, LIMITED_NAMESPACE, MAX_DELIVERIES,
    };
    use crate::store::{DurabilityConfig, FsyncMode, Quota, Store, StoreConfig};

    /// A store configured as the suite asks, its files under a new
    /// temporary directory; durable with a log there if `durable`.
    fn store(durable: bool) -> Fresh {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let limited = Quota {
            max_elements: LIMITED_MAX_ELEMENTS,
            max_bytes: LIMITED_MAX_BYTES,
        };
        let store = Store::new(StoreConfig {
            spill_dir: dir.path().join("spill"),
            // Small, so that the suite's larger bodies go to files.
            spill_threshold: 16,
            max_element_size: 1 << 20,
            queue_idle_timeout: Duration::from_secs(60),
            max_deliveries: MAX_DELIVERIES,
            namespace_quota: Quota::default(),
            namespace_quotas: HashMap::from([(LIMITED_NAMESPACE.to_owned(), limited)]),
            quota_retry_after: 1,
            memory_limit: 0,
            overflow: Default::default(),
            names: crate::store::NameLimits::default(),
            durability: durable.then(|| DurabilityConfig {
                dir: dir.path().join("data"),
                fsync: FsyncMode::Batch,
                fsync_interval: Duration::from_millis(50),
                segment_bytes: 1 << 20,
                repair: false,
            }),
        })
        .expect("a store");
        Fresh {
            backend: Arc::new(store),
            guard: Box::new(dir),
        }
    }

    async fn in_memory() -> Fresh {
        store(false)
    }

    async fn durable() -> Fresh {
        store(true)
    }

    mod memory {
        crate::backend_suite!(super::in_memory);
    }

    mod durable {
        crate::backend_suite!(super::durable);
    }
}
