//! The NATS JetStream backend (`--backend nats://...`): several blobq
//! nodes share one set of queues kept in a JetStream cluster.
//!
//! A namespace is a stream with work-queue retention, a queue a subject of
//! it and a durable pull consumer; a push is a publish, a pop a fetch, a
//! lease an unacknowledged delivery that the node which granted it keeps
//! alive (`+WPI`) until it is acknowledged (`+ACK`), released (`-NAK`) or
//! runs out; other nodes forward settlements of it to that node. A blob by
//! id is a message on a subject of its own; a batch push is an atomic
//! batch publish; jobs are key-value entries (`jobs`). docs/SCALE-OUT.md
//! has the whole mapping and how it differs from the embedded store.

mod batch;
mod blobs;
mod bursts;
mod connection;
mod forward;
mod holders;
mod jobs;
mod leases;
mod message;
mod names;
mod objects;
mod pop;
mod queues;
mod settings;
mod stats;
mod store_config;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_trait::async_trait;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

pub use jobs::NatsJobs;
pub use settings::{BlobStore, NatsAuth, NatsConfig, NatsSettings};

use super::name::Name;
use super::{
    Acked, Backend, BackendError, BatchElement, BatchPush, BlobRead, IncomingBody, NameFilter,
    NamespaceStats, Page, PopOptions, Popped, PushOptions, Pushed, QueueStats, ServerStats,
    StorageFault, StoredBlob, TotalsSnapshot,
};
use crate::store::Quota;
use connection::Link;
use forward::Settle;
use leases::Leases;
use pop::Settling;
use stats::Counters;

/// What this backend is called in its refusals.
const ENGINE: &str = "NATS";

/// What the backend needs of the server's settings besides `[nats]`.
#[derive(Debug, Clone)]
pub struct NatsLimits {
    pub max_deliveries: u32,
    pub max_element_size: u64,
    pub namespace_quota: Quota,
    pub namespace_quotas: HashMap<String, Quota>,
    pub quota_retry_after: u64,
}

/// The backend: cheap to share, its state behind one `Arc`.
pub struct NatsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    config: NatsConfig,
    max_deliveries: u32,
    max_element_size: u64,
    quota: Quota,
    quotas: HashMap<String, Quota>,
    quota_retry_after: u64,
    /// Consumers this process has made or found, by namespace and queue.
    consumers: DashMap<(Name, Name), PullConsumer>,
    /// The leases this node granted and keeps alive.
    leases: Leases,
    /// Deliveries being handed back (`-NAK`) after their waiter left.
    settling: Arc<Settling>,
    counters: Counters,
    /// Publishes of single pushes, passed to the connection in bursts.
    bursts: bursts::Bursts,
    /// Cancelled when shutdown begins: waiting pops answer `ShuttingDown`.
    closing: CancellationToken,
}

impl NatsBackend {
    /// Starts connecting to the cluster in the background and answers at
    /// once: until connected, operations answer `503` and
    /// [`Backend::write_fault`] says why. Call inside a tokio runtime.
    pub fn start(config: NatsConfig, limits: NatsLimits) -> NatsBackend {
        store_config::choose_tls_provider();
        let closing = CancellationToken::new();
        let link = Link::start(&config, closing.clone());
        let inner = Arc::new(Inner {
            link,
            max_deliveries: limits.max_deliveries,
            max_element_size: limits.max_element_size,
            quota: limits.namespace_quota,
            quotas: limits.namespace_quotas,
            quota_retry_after: limits.quota_retry_after,
            consumers: DashMap::new(),
            leases: Leases::new(config.ack_wait),
            settling: Arc::new(Settling::default()),
            counters: Counters::default(),
            bursts: bursts::Bursts::start(),
            closing,
            config,
        });
        tokio::spawn(inner.clone().serve_forwarded());
        tokio::spawn(inner.clone().sweep_objects());
        NatsBackend { inner }
    }

    /// Whether the cluster has been reached and the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.link.fault().is_none()
    }
}

fn not_supported(operation: &'static str) -> BackendError {
    BackendError::NotSupported {
        operation,
        engine: ENGINE,
    }
}

#[async_trait]
impl Backend for NatsBackend {
    async fn push(
        &self,
        ns: &Name,
        queue: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        self.inner.push(ns, queue, body, opts).await
    }

    async fn push_reference(
        &self,
        ns: &Name,
        queue: &Name,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError> {
        self.inner.push_reference(ns, queue, blob, opts).await
    }

    async fn pop(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
    ) -> Result<Option<Popped>, BackendError> {
        self.inner.clone().pop(ns, queue, opts).await
    }

    async fn ack(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError> {
        self.inner.settle(ns, queue, receipt, Settle::Ack).await?;
        Ok(())
    }

    async fn purge(&self, ns: &Name, queue: &Name) -> Result<u64, BackendError> {
        self.inner.settling.wait().await;
        self.inner.purge(ns, queue).await
    }

    async fn release(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError> {
        self.inner
            .settle(ns, queue, receipt, Settle::Release)
            .await?;
        Ok(())
    }

    async fn extend(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        lease: Duration,
    ) -> Result<u64, BackendError> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .settle(ns, queue, receipt, Settle::Extend(ms))
            .await
    }

    async fn store_blob(
        &self,
        ns: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<StoredBlob, BackendError> {
        self.inner.store_blob(ns, body, opts).await
    }

    async fn read_blob(
        &self,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError> {
        self.inner.read_blob(ns, id, delete_after).await
    }

    async fn delete_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError> {
        self.inner.delete_blob(ns, id).await
    }

    async fn hold_elements(&self, _: &Name, _: u64) -> Result<(), BackendError> {
        Err(not_supported("holding elements for jobs"))
    }

    async fn release_elements(&self, _: &Name, _: u64) {}

    async fn queue_stats(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Option<QueueStats>, BackendError> {
        self.inner.settling.wait().await;
        self.inner.queue_stats(ns, queue).await
    }

    async fn namespace_stats(
        &self,
        ns: &Name,
        page: &Page,
    ) -> Result<Option<NamespaceStats>, BackendError> {
        self.inner.settling.wait().await;
        self.inner.namespace_stats(ns, page).await
    }

    async fn server_stats(
        &self,
        page: &Page,
        listed: NameFilter<'_>,
    ) -> Result<ServerStats, BackendError> {
        self.inner.settling.wait().await;
        self.inner.server_stats(page, listed).await
    }

    fn totals(&self) -> TotalsSnapshot {
        self.inner.totals()
    }

    async fn write_fault(&self) -> Option<StorageFault> {
        self.inner.link.fault()
    }

    async fn push_batch(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Box<dyn BatchPush>, BackendError> {
        self.inner.link.js()?;
        Ok(Box::new(batch::NatsBatchPush::new(
            self.inner.clone(),
            ns,
            queue,
        )))
    }

    async fn pop_batch(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
        count: usize,
    ) -> Result<Vec<BatchElement>, BackendError> {
        self.inner.clone().pop_batch(ns, queue, opts, count).await
    }

    async fn ack_batch(
        &self,
        ns: &Name,
        queue: &Name,
        receipts: &[String],
    ) -> Result<Acked, BackendError> {
        self.inner.ack_batch(ns, queue, receipts).await
    }

    fn begin_shutdown(&self) {
        self.inner.closing.cancel();
    }

    /// Stops keeping this node's leases alive (their elements come back
    /// after `--nats-ack-wait`) and flushes what is still to be sent.
    async fn close(&self) {
        self.inner.closing.cancel();
        self.inner.leases.abandon();
        self.inner.settling.wait().await;
        if let Some(client) = self.inner.link.client() {
            let _ = tokio::time::timeout(self.inner.config.request_timeout, client.flush()).await;
        }
    }
}
