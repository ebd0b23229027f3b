//! The storage seam: every operation the HTTP layer asks of a storage
//! engine, as one async trait, and the types that cross it.
//!
//! The HTTP layer parses and validates a request into these types, calls
//! the [`Backend`] and shapes the answer; it never sees how an engine keeps
//! its bytes. An engine never sees HTTP. Bodies cross the seam as streams
//! ([`IncomingBody`] in, [`Payload`] out), so an engine may keep bytes in
//! memory, in files, in its log or in a remote store. Each operation returns
//! once its change is as durable as the engine promises: there is no
//! separate commit for a caller to forget.
//!
//! The embedded engine (`crate::store::Store`: memory, spill files and an
//! optional log) is the first implementation. [`suite`] holds the tests
//! every engine must pass, run with the `backend_suite!` macro.

pub mod batch;
pub mod body;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod meta;
pub mod name;
pub mod nats;
pub mod stats;
#[doc(hidden)]
pub mod suite;

use std::time::Duration;

use async_trait::async_trait;

pub use batch::{Acked, BatchElement, BatchPush, PartError};
pub use body::{BodyError, BodyStream, IncomingBody, Payload};
pub use error::{BackendError, StorageFault, StoragePlace};
use ids::{BlobId, ElementId, Receipt};
use meta::{CustomPair, SharedMeta};
use name::Name;
use smol_str::SmolStr;
pub use stats::{
    Counts, NameFilter, NamespaceStats, NamespaceSummary, Page, PageToken, QueueStats, ServerStats,
    TotalsSnapshot,
};

/// Metadata a client gave for a new element or blob; `None` / empty where it
/// gave none, so a reference push can inherit from its blob.
#[derive(Debug, Default, Clone)]
pub struct MetaInput {
    pub content_type: Option<SmolStr>,
    pub custom: Vec<CustomPair>,
}

/// What a push or a stored blob carries besides its bytes.
#[derive(Debug, Default, Clone)]
pub struct PushOptions {
    pub meta: MetaInput,
    /// Seconds the element or blob lives (already checked against the
    /// configured maximum).
    pub lifetime: u64,
}

/// How to pop.
#[derive(Debug, Clone, Copy, Default)]
pub struct PopOptions {
    /// `false` for a header-only pop: the blob stays readable by id.
    pub with_data: bool,
    /// Pop under a lease of this long instead of removing the element.
    pub lease: Option<Duration>,
    /// Wait up to this long for an element when the queue is empty.
    pub wait: Duration,
}

/// Answer to a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub id: ElementId,
    pub blob_id: Option<BlobId>,
    pub size: u64,
    pub lifetime: u64,
}

/// A popped element, ready to be sent.
#[derive(Debug)]
pub struct Popped {
    pub id: ElementId,
    pub meta: SharedMeta,
    pub blob_id: Option<BlobId>,
    /// Data size, also reported on header-only pops.
    pub size: u64,
    pub seconds_left: u64,
    /// The bytes, on a data pop of an element that has data.
    pub body: Option<Payload>,
    /// The lease the element is out under, on a leased pop.
    pub lease: Option<LeaseGrant>,
}

/// A lease as the consumer learns it.
#[derive(Debug, Clone, Copy)]
pub struct LeaseGrant {
    pub receipt: Receipt,
    /// Times the element has been delivered under a lease, this one included.
    pub deliveries: u32,
    pub seconds_left: u64,
}

/// A blob found by a custom-data mark (`Backend::marked_blobs`).
#[derive(Debug, Clone)]
pub struct MarkedBlob {
    pub namespace: Name,
    pub id: BlobId,
    /// The value of the mark's key.
    pub value: Box<str>,
}

/// A blob stored through `/tbs`.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub id: BlobId,
    pub size: u64,
    pub lifetime: u64,
    pub meta: SharedMeta,
}

/// A blob as read through `/tbs`.
#[derive(Debug)]
pub struct BlobRead {
    pub id: BlobId,
    pub meta: SharedMeta,
    pub size: u64,
    pub seconds_left: u64,
    pub body: Payload,
}

/// A storage engine behind the HTTP layer. Names are already valid; ids and
/// receipts arrive as the client spelled them, and an unknown or malformed
/// one is the engine's `BlobNotFound` / `LeaseNotFound`.
///
/// `async_trait` boxes each call's future, so the HTTP layer can hold any
/// engine as `Arc<dyn Backend>`, chosen at start-up.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Pushes a new element at the tail of `queue`, its data read from
    /// `body`. A push that fails stores nothing.
    async fn push(
        &self,
        ns: &Name,
        queue: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError>;

    /// Pushes a header-only element, referencing blob `blob` of the
    /// namespace if given (its bytes are what a data pop returns).
    async fn push_reference(
        &self,
        ns: &Name,
        queue: &Name,
        blob: Option<&str>,
        opts: PushOptions,
    ) -> Result<Pushed, BackendError>;

    /// Pops the head of `queue`, waiting up to `opts.wait` for one to
    /// arrive. `Ok(None)` when nothing came in time. A caller that drops the
    /// future while it waits is forgotten: no element is handed to it.
    async fn pop(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
    ) -> Result<Option<Popped>, BackendError>;

    /// Acknowledges lease `receipt` of `queue`: the element is gone.
    async fn ack(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError>;

    /// Removes every ready element of `queue`; leased ones stay with their
    /// consumers. How many were removed (`0` for a queue that does not
    /// exist).
    async fn purge(&self, ns: &Name, queue: &Name) -> Result<u64, BackendError>;

    /// Hands the element of lease `receipt` back to the head of `queue` now.
    async fn release(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError>;

    /// Restarts lease `receipt` with `lease` from now; the seconds it now has.
    async fn extend(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        lease: Duration,
    ) -> Result<u64, BackendError>;

    /// Stores a blob of the namespace, readable by id until its lifetime ends.
    async fn store_blob(
        &self,
        ns: &Name,
        body: IncomingBody,
        opts: PushOptions,
    ) -> Result<StoredBlob, BackendError>;

    /// Reads blob `id` without consuming it; with `delete_after`, deletes it
    /// once its bytes are open.
    async fn read_blob(
        &self,
        ns: &Name,
        id: &str,
        delete_after: bool,
    ) -> Result<BlobRead, BackendError>;

    /// Deletes blob `id`. Elements still referencing it answer `BlobGone`.
    async fn delete_blob(&self, ns: &Name, id: &str) -> Result<(), BackendError>;

    /// Counts `n` elements held outside the namespace's queues (the inputs
    /// of jobs) against its element quota, as pushes count theirs: refused
    /// with `OverQuota`, changing nothing, if they would take it past the
    /// quota. The namespace is kept while any are held.
    async fn hold_elements(&self, ns: &Name, n: u64) -> Result<(), BackendError>;

    /// Gives back `n` elements taken with `hold_elements`.
    async fn release_elements(&self, ns: &Name, n: u64);

    /// `hold_elements` for jobs read back at start-up: they were accepted,
    /// so a quota lowered meanwhile does not refuse them.
    async fn hold_elements_restored(&self, ns: &Name, n: u64) {
        if let Err(e) = self.hold_elements(ns, n).await {
            tracing::warn!(namespace = %ns, error = %e, "restored jobs are over their namespace's element quota");
        }
    }

    /// The blobs of every namespace whose custom data has key `key`: the
    /// jobs engine marks its blobs so that it finds those a crash left
    /// without their job.
    async fn marked_blobs(&self, key: &str) -> Result<Vec<MarkedBlob>, BackendError> {
        let _ = key;
        Ok(Vec::new())
    }

    /// Statistics of one queue; `None` if it does not exist.
    async fn queue_stats(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Option<QueueStats>, BackendError>;

    /// Statistics of a namespace, with `page` of its queues (its figures
    /// are those of every queue); `None` if it does not exist.
    async fn namespace_stats(
        &self,
        ns: &Name,
        page: &Page,
    ) -> Result<Option<NamespaceStats>, BackendError>;

    /// Server-wide statistics, with `page` of the namespaces `listed`
    /// accepts (`namespace_count` counts those, on every page). An engine
    /// filters while it pages, so that a page is full unless it is the last.
    async fn server_stats(
        &self,
        page: &Page,
        listed: NameFilter<'_>,
    ) -> Result<ServerStats, BackendError>;

    /// The engine's gauges and counters, read without locks by `/metrics`.
    fn totals(&self) -> TotalsSnapshot;

    /// Why the engine cannot store anything now (a full disk), if so:
    /// `/healthz` answers `503` with it. Looked at afresh on each call, so
    /// it clears by itself once writes succeed again.
    async fn write_fault(&self) -> Option<StorageFault> {
        None
    }

    // Batches (docs/API.md, "Batches"; `batch.rs`).

    /// Starts a batch push to `queue`: parts are added one by one and stored
    /// together by the commit, or not at all.
    async fn push_batch(&self, ns: &Name, queue: &Name)
        -> Result<Box<dyn BatchPush>, BackendError>;

    /// Pops up to `count` elements of `queue`: as many as are ready, at
    /// least one. With `opts.wait` it waits for the first only. Empty when
    /// nothing came in time.
    async fn pop_batch(
        &self,
        ns: &Name,
        queue: &Name,
        opts: PopOptions,
        count: usize,
    ) -> Result<Vec<BatchElement>, BackendError>;

    /// Acknowledges each lease of `receipts` on `queue`, together.
    async fn ack_batch(
        &self,
        ns: &Name,
        queue: &Name,
        receipts: &[String],
    ) -> Result<Acked, BackendError>;

    /// Starts shutdown: every waiting consumer gets `ShuttingDown`, and so
    /// does any pop that would wait from now on.
    fn begin_shutdown(&self);

    /// The last step of shutdown: lets go of everything held for this
    /// process (temporary files, connections). Whatever is still streaming
    /// keeps its open handle.
    async fn close(&self);
}
