//! The store: namespaces, queues, blobs, spill files and expiry. It knows
//! nothing of HTTP; the HTTP layer calls the operations of [`Store`] with
//! validated inputs and maps the [`BackendError`]s to responses.

mod at_hand;
mod backend_impl;
pub mod blob;
mod blob_table;
pub mod clock;
mod config;
pub mod element;
mod file_body;
pub mod ingest;
pub mod journal;
mod namespace;
mod queue;
mod recovery;
pub mod stats;
mod sweeper;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::backend::ids::{BlobId, ElementId, Receipt};
use crate::backend::name::Name;
use crate::backend::{BackendError, BlobRead, LeaseGrant, MetaInput, Payload, Popped, Pushed};
use blob::{Blob, BlobContent};
use clock::Millis;
pub use config::{StoreConfig, UnknownFsyncMode};
use element::Element;
use ingest::{BlobWriter, IngestError, IngestLimits};
use journal::Journal;
pub use journal::{Commit, DurabilityConfig, FsyncMode};
pub use namespace::PopMode;
use namespace::{Arrival, Graveyard, Namespace, NsState, Taken};
pub use namespace::{Quota, QuotaExceeded};
use queue::Waiter;

/// The namespaces by name. Looked up on every request: hashed with foldhash
/// (hashbrown's default, seeded per map) rather than SipHash, a few percent
/// of a request's instructions.
pub(crate) type Namespaces = DashMap<Name, Arc<Namespace>, hashbrown::DefaultHashBuilder>;
use crate::backend::stats::{NamespaceStats, QueueStats, ServerStats, TotalsSnapshot};
use stats::Totals;

/// A cheap-to-clone handle on the store.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// Numbers stores (from 1), so that a thread's namespaces at hand
/// (`at_hand`) are never taken for another store's in the same process.
static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

struct Shared {
    /// From [`NEXT_STORE_ID`].
    id: u64,
    namespaces: Namespaces,
    totals: Arc<Totals>,
    limits: IngestLimits,
    queue_idle_timeout: Duration,
    max_deliveries: u32,
    namespace_quota: Quota,
    namespace_quotas: HashMap<String, Quota>,
    quota_retry_after: u64,
    /// This process's spill folder, removed with everything in it on drop.
    spill_dir: tempfile::TempDir,
    /// (deadline, namespace) pairs the sweeper must look at, earliest first.
    wakeups: Mutex<BTreeSet<(Millis, Name)>>,
    /// Tells the sweeper its next wake-up moved earlier.
    sweeper: Arc<Notify>,
    /// Cancelled when shutdown begins: waiting consumers give up.
    closing: CancellationToken,
    next_waiter: AtomicU64,
    started: Instant,
    /// Durable mode: the log every change is appended to.
    journal: Option<Arc<Journal>>,
    /// Durable mode: held so no second server uses the data directory.
    _dir_lock: Option<journal::files::DirLock>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closing.cancel();
        self.sweeper.notify_one();
    }
}

impl Store {
    /// Creates the store and starts its sweeper; call inside a tokio runtime.
    pub fn new(config: StoreConfig) -> std::io::Result<Store> {
        std::fs::create_dir_all(&config.spill_dir)?;
        let spill_dir = tempfile::Builder::new()
            .prefix("blobq-")
            .tempdir_in(&config.spill_dir)?;
        let totals = Arc::new(Totals::default());
        let namespaces = Namespaces::default();
        let quota_of = |ns: &Name| {
            config
                .namespace_quotas
                .get(ns.as_str())
                .copied()
                .unwrap_or(config.namespace_quota)
        };
        let (opened, wakeups) = match &config.durability {
            None => (None, Vec::new()),
            Some(durability) => {
                let rebuild = recovery::Rebuild {
                    namespaces: &namespaces,
                    totals: &totals,
                    max_deliveries: config.max_deliveries,
                    quota_of: &quota_of,
                };
                let (opened, wakeups) = recovery::open(durability, &rebuild)?;
                (Some(opened), wakeups)
            }
        };
        // In durable mode, large bodies are written straight into the data
        // directory, where they stay: no copy when the push is accepted.
        let (file_dir, durable_sync) = match (&opened, &config.durability) {
            (Some(o), Some(d)) => (o.dir.blob_dir(), Some(d.fsync == FsyncMode::Always)),
            _ => (spill_dir.path().to_owned(), None),
        };
        let (journal, dir_lock) = match opened {
            Some(o) => (Some(o.journal), Some(o.lock)),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            namespaces,
            totals: totals.clone(),
            limits: IngestLimits {
                spill_threshold: config.spill_threshold,
                max_element_size: config.max_element_size,
                spill_dir: file_dir,
                memory_limit: config.memory_limit,
                totals: totals.clone(),
                durable_sync,
            },
            queue_idle_timeout: config.queue_idle_timeout,
            max_deliveries: config.max_deliveries,
            namespace_quota: config.namespace_quota,
            namespace_quotas: config.namespace_quotas,
            quota_retry_after: config.quota_retry_after,
            spill_dir,
            wakeups: Mutex::new(wakeups.into_iter().collect()),
            sweeper: Arc::new(Notify::new()),
            closing: CancellationToken::new(),
            next_waiter: AtomicU64::new(0),
            started: Instant::now(),
            journal,
            _dir_lock: dir_lock,
        });
        tokio::spawn(sweeper::run(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
            shared.closing.clone(),
        ));
        Ok(Store { shared })
    }

    /// Waits until the changes made so far are as durable as `commit` asks
    /// (at once when the store is not durable). Call before answering.
    pub async fn durable(&self, commit: Commit) -> Result<(), BackendError> {
        // Boxed, as the durable mode's wait is about 200 bytes of every
        // push's and pop's future, and an allocation is nothing beside it.
        match &self.shared.journal {
            Some(journal) => Ok(Box::pin(journal.wait(commit)).await?),
            None => Ok(()),
        }
    }

    /// The folder holding this process's spill files.
    pub fn spill_dir(&self) -> &Path {
        self.shared.spill_dir.path()
    }

    /// Starts receiving a body of `expected` bytes (if announced).
    pub fn blob_writer(&self, expected: Option<u64>) -> Result<BlobWriter<'_>, IngestError> {
        BlobWriter::new(&self.shared.limits, expected)
    }

    /// Pushes a new element at the tail of `queue`, with its data if any.
    pub fn push_received(
        &self,
        ns: &Name,
        queue: &Name,
        data: Option<(BlobContent, u64)>,
        meta: MetaInput,
        lifetime: u64,
    ) -> Result<Pushed, BackendError> {
        let meta = NsState::reference_meta(None, meta.content_type, meta.custom);
        let now = Millis::now();
        let deadline = now.plus_secs(lifetime);
        let blob = data.map(|(content, size)| {
            Blob::new(content, size, meta.clone(), self.shared.totals.clone())
        });
        let element = Element {
            id: ElementId::random(),
            blob: blob.clone(),
            meta,
            deadline,
            deliveries: 0,
            indexed: false,
        };
        let pushed = Pushed {
            id: element.id,
            blob_id: blob.as_ref().map(|b| b.id()),
            size: element.size(),
            lifetime,
        };
        let bytes = pushed.size;
        self.with_namespace(ns, |st, grave| {
            st.check_quota(1, bytes).map_err(|q| self.over(ns, q))?;
            let w1 = blob.and_then(|b| st.insert_blob(b, 1, deadline));
            let w2 = st.enqueue(queue, element, Arrival::Push, now, grave);
            Ok::<_, BackendError>(((), w1.into_iter().chain(w2).min()))
        })?;
        Ok(pushed)
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
        self.with_namespace(ns, |st, grave| {
            st.check_quota(1, 0).map_err(|q| self.over(ns, q))?;
            let blob =
                match blob_id {
                    Some(id) => Some(st.reference_blob(id, now).ok_or_else(|| {
                        BackendError::BlobNotFound {
                            namespace: ns.clone(),
                            id: id.to_string(),
                        }
                    })?),
                    None => None,
                };
            let meta = NsState::reference_meta(blob.as_ref(), meta.content_type, meta.custom);
            let element = Element {
                id: ElementId::random(),
                blob,
                meta,
                deadline,
                deliveries: 0,
                indexed: false,
            };
            let pushed = Pushed {
                id: element.id,
                blob_id,
                size: element.size(),
                lifetime,
            };
            let wake = st.enqueue(queue, element, Arrival::Push, now, grave);
            Ok((pushed, wake))
        })
    }

    /// Pops the head of `queue`, waiting up to `wait` for one to arrive.
    /// `Ok(None)` when nothing came in time.
    pub async fn pop_waiting(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
    ) -> Result<Option<Popped>, BackendError> {
        if mode.lease_ms.is_some() && queue.dead_letter().is_none() {
            return Err(BackendError::NoDeadLetterQueue(queue.clone()));
        }
        let now = Millis::now();
        let mut ticket = match self.take_or_wait(ns, queue, mode, wait, now)? {
            PopStart::Taken(taken) => return self.deliver(taken, now).await.map(Some),
            PopStart::Empty => return Ok(None),
            PopStart::Wait(ticket) => ticket,
        };
        let element = tokio::select! {
            received = &mut ticket.rx => match received {
                Ok(element) => element,
                // The sender is dropped only when the store is purged.
                Err(_) => return Err(BackendError::ShuttingDown),
            },
            () = tokio::time::sleep(wait) => return Ok(None),
            () = self.shared.closing.cancelled() => return Err(BackendError::ShuttingDown),
        };
        let now = Millis::now();
        let taken = self.with_namespace(ns, |st, grave| {
            st.count_handed_pop(queue);
            st.finish_pop(queue, element, mode, now, grave)
        });
        self.deliver(taken, now).await.map(Some)
    }

    /// The locked part of a pop: takes the head if there is one, else
    /// registers a waiter (when `wait` is not zero).
    fn take_or_wait(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
        now: Millis,
    ) -> Result<PopStart, BackendError> {
        if wait.is_zero() {
            let taken =
                self.with_existing_namespace(ns, |st, grave| st.pop_head(queue, mode, now, grave));
            return Ok(taken.flatten().map_or(PopStart::Empty, PopStart::Taken));
        }
        self.with_namespace(ns, |st, grave| {
            if let (Some(taken), wake) = st.pop_head(queue, mode, now, grave) {
                return Ok((PopStart::Taken(taken), wake));
            }
            if self.shared.closing.is_cancelled() {
                return Err(BackendError::ShuttingDown);
            }
            let (tx, rx) = oneshot::channel();
            let id = self.shared.next_waiter.fetch_add(1, Ordering::Relaxed);
            st.add_waiter(queue, Waiter { id, tx }, now);
            let ticket = WaitTicket {
                store: self.clone(),
                ns: ns.clone(),
                queue: queue.clone(),
                id,
                rx,
            };
            Ok((PopStart::Wait(ticket), None))
        })
    }

    /// Turns an element taken at `now` into what the client receives,
    /// opening its data.
    async fn deliver(&self, taken: Taken, now: Millis) -> Result<Popped, BackendError> {
        self.durable(Commit::Consumed).await?;
        let (element, with_data, lease) = match taken {
            Taken::Element {
                element,
                with_data,
                lease,
            } => (element, with_data, lease),
            Taken::Gone => return Err(BackendError::BlobGone),
        };
        let (blob_id, size) = (element.blob.as_ref().map(|b| b.id()), element.size());
        let Element {
            id,
            blob,
            meta,
            deadline,
            ..
        } = element;
        let body = match (blob, with_data) {
            (Some(blob), true) => match Blob::take_memory(blob) {
                Ok(bytes) => Some(Payload::Bytes(bytes)),
                Err(blob) => match blob.open().await {
                    Ok(body) => Some(body.into_payload(size)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BackendError::BlobGone)
                    }
                    Err(e) => return Err(BackendError::Io(e)),
                },
            },
            _ => None,
        };
        Ok(Popped {
            id,
            meta,
            blob_id,
            size,
            seconds_left: deadline.seconds_left(now),
            body,
            lease: lease.map(|l| LeaseGrant {
                receipt: l.receipt,
                deliveries: l.deliveries,
                seconds_left: l.deadline.seconds_left(now),
            }),
        })
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
        let meta = NsState::reference_meta(None, meta.content_type, meta.custom);
        let blob = Blob::new(content, size, meta, self.shared.totals.clone());
        let deadline = Millis::now().plus_secs(lifetime);
        let stored = blob.clone();
        self.with_namespace(ns, |st, _| {
            st.check_quota(0, size).map_err(|q| self.over(ns, q))?;
            Ok::<_, BackendError>(((), st.insert_blob(stored, 0, deadline)))
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
        let not_found = || BackendError::BlobNotFound {
            namespace: ns.clone(),
            id: id.to_owned(),
        };
        let blob_id: BlobId = id.parse().map_err(|_| not_found())?;
        let namespace = self.existing_namespace(ns).ok_or_else(not_found)?;
        let found = namespace.lock().readable_blob(blob_id, Millis::now());
        let (blob, seconds_left) = found.ok_or_else(not_found)?;
        let body = blob.open().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(),
            _ => BackendError::Io(e),
        })?;
        let body = body.into_payload(blob.size());
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
        let not_found = || BackendError::BlobNotFound {
            namespace: ns.clone(),
            id: id.to_owned(),
        };
        let blob_id: BlobId = id.parse().map_err(|_| not_found())?;
        let namespace = self.existing_namespace(ns).ok_or_else(not_found)?;
        let removed = namespace.lock().remove_blob(blob_id, Millis::now());
        let blob = removed.ok_or_else(not_found)?;
        blob.delete();
        Ok(())
    }

    /// Acknowledges lease `receipt` of `queue`: the element is gone.
    pub fn ack_lease(&self, ns: &Name, queue: &Name, receipt: &str) -> Result<(), BackendError> {
        self.on_lease(ns, queue, receipt, |st, r, now, grave| {
            let (ok, wake) = st.ack(queue, r, now, grave);
            (ok.then_some(()), wake)
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
            let (ok, wake) = st.release(queue, r, now, grave);
            (ok.then_some(()), wake)
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
            let (deadline, wake) = st.extend(queue, r, lease_ms, now, grave);
            (deadline.map(|d| d.seconds_left(now)), wake)
        })
    }

    /// Runs a lease operation; `None` from `op` means the lease is unknown.
    fn on_lease<T>(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        op: impl FnOnce(&mut NsState, Receipt, Millis, &mut Graveyard) -> (Option<T>, Option<Millis>),
    ) -> Result<T, BackendError> {
        let not_found = || BackendError::LeaseNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            receipt: receipt.to_owned(),
        };
        let r: Receipt = receipt.parse().map_err(|_| not_found())?;
        if self.existing_namespace(ns).is_none() {
            return Err(not_found());
        }
        let now = Millis::now();
        self.with_namespace(ns, |st, grave| {
            let (out, wake) = op(st, r, now, grave);
            (out.ok_or_else(not_found), wake)
        })
    }

    pub fn queue_stats(&self, ns: &Name, queue: &Name) -> Option<QueueStats> {
        self.existing_namespace(ns)?.lock().queue_stats(ns, queue)
    }

    pub fn namespace_stats(&self, ns: &Name) -> Option<NamespaceStats> {
        Some(self.existing_namespace(ns)?.lock().stats(ns))
    }

    pub fn server_stats(&self) -> ServerStats {
        let mut namespaces: Vec<_> = self
            .all_namespaces()
            .iter()
            .map(|n| n.lock().summary(&n.name))
            .collect();
        namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        ServerStats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.shared.started.elapsed().as_secs(),
            namespace_count: namespaces.len() as u64,
            totals: self.totals(),
            namespaces,
        }
    }

    pub fn totals(&self) -> TotalsSnapshot {
        self.shared.totals.snapshot()
    }

    /// Starts shutdown: every waiting consumer gets `ShuttingDown`, and so
    /// does any pop that would wait from now on.
    pub fn begin_shutdown(&self) {
        self.shared.closing.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shared.closing.is_cancelled()
    }

    /// Drops every element and blob and removes the spill folder. The last
    /// step of shutdown: whatever is still streaming keeps its open file.
    pub fn purge(&self) {
        self.begin_shutdown();
        for namespace in self.all_namespaces() {
            let mut grave = Graveyard::default();
            let mut st = namespace.lock();
            st.purge(&mut grave);
            // Out of the map while still locked, so a late writer that finds
            // it removed looks it up afresh instead of spinning on it.
            self.shared
                .namespaces
                .remove_if(&namespace.name, |_, n| Arc::ptr_eq(n, &namespace));
            drop(st);
            drop(grave);
        }
        if let Some(journal) = &self.shared.journal {
            journal.close();
        }
        if let Err(e) = std::fs::remove_dir_all(self.spill_dir()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.spill_dir().display(), error = %e, "could not remove spill folder");
            }
        }
    }

    // --- namespace plumbing ---

    fn existing_namespace(&self, ns: &Name) -> Option<Arc<Namespace>> {
        self.shared.namespaces.get(ns).map(|n| n.clone())
    }

    fn namespace_for_write(&self, ns: &Name) -> Arc<Namespace> {
        if let Some(n) = self.existing_namespace(ns) {
            return n;
        }
        let totals = self.shared.totals.clone();
        let max_deliveries = self.shared.max_deliveries;
        self.shared
            .namespaces
            .entry(ns.clone())
            .or_insert_with(|| {
                let quota = self.quota_of(ns);
                let journal = self.shared.journal.clone();
                Arc::new(Namespace::new(
                    ns.clone(),
                    totals,
                    max_deliveries,
                    quota,
                    journal,
                ))
            })
            .clone()
    }

    fn over(&self, ns: &Name, quota: QuotaExceeded) -> BackendError {
        BackendError::OverQuota {
            namespace: ns.clone(),
            reason: quota.to_string(),
            retry_after: self.shared.quota_retry_after,
        }
    }

    /// The quota of namespace `ns`.
    fn quota_of(&self, ns: &Name) -> Quota {
        let shared = &self.shared;
        shared
            .namespace_quotas
            .get(ns.as_str())
            .copied()
            .unwrap_or(shared.namespace_quota)
    }

    /// Refuses early a body that could not be stored in `ns` anyway: the
    /// `announced` bytes more and, for a push, one more element. The check
    /// that counts is made again under the lock when the body is in; a body
    /// announced below the spill threshold is cheap to take in, and is left
    /// to that check alone (one lookup and lock less on the hot path).
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
        let Some(namespace) = self.existing_namespace(ns) else {
            // An empty namespace: only a limit below this one push can refuse it.
            let quota = self.quota_of(ns);
            let empty = Namespace::new(ns.clone(), Arc::new(Totals::default()), 1, quota, None);
            return empty
                .lock()
                .check_quota(elements, bytes)
                .map_err(|quota| self.over(ns, quota));
        };
        let checked = namespace.lock().check_quota(elements, bytes);
        checked.map_err(|quota| self.over(ns, quota))
    }

    /// Every namespace, collected first so no map guard is held while a
    /// namespace is locked.
    fn all_namespaces(&self) -> Vec<Arc<Namespace>> {
        self.shared
            .namespaces
            .iter()
            .map(|e| e.value().clone())
            .collect()
    }

    /// Runs `f` on the state of namespace `ns` (created if needed), then
    /// registers any earlier wake-up it asks for and drops what it removed.
    fn with_namespace<T, R: Scheduled<T>>(
        &self,
        ns: &Name,
        f: impl FnOnce(&mut NsState, &mut Graveyard) -> R,
    ) -> T {
        let mut f = match self.run_at_hand(ns, f) {
            Ok(out) => return out,
            Err(f) => f,
        };
        loop {
            match self.run_looked_up(ns, self.namespace_for_write(ns), f) {
                Ok(out) => return out,
                Err(back) => f = back,
            }
        }
    }

    /// `with_namespace` for a namespace that exists already: `None`, and `f`
    /// not run, when there is none. What a pop that will not wait uses: it
    /// creates nothing, and looks the namespace up once.
    fn with_existing_namespace<T, R: Scheduled<T>>(
        &self,
        ns: &Name,
        f: impl FnOnce(&mut NsState, &mut Graveyard) -> R,
    ) -> Option<T> {
        let mut f = match self.run_at_hand(ns, f) {
            Ok(out) => return Some(out),
            Err(f) => f,
        };
        loop {
            match self.run_looked_up(ns, self.existing_namespace(ns)?, f) {
                Ok(out) => return Some(out),
                Err(back) => f = back,
            }
        }
    }

    /// `run_locked` on namespace `ns` if this thread has it at hand (see
    /// `at_hand`); gives `f` back, unrun, if not (or if it was removed).
    fn run_at_hand<T, R: Scheduled<T>, F: FnOnce(&mut NsState, &mut Graveyard) -> R>(
        &self,
        ns: &Name,
        f: F,
    ) -> Result<T, F> {
        let id = self.shared.id;
        match at_hand::with(id, ns, f, |namespace, f| self.run_locked(ns, namespace, f)) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(f)) => {
                at_hand::forget(id, ns);
                Err(f)
            }
            Err(f) => Err(f),
        }
    }

    /// `run_locked` on a namespace just found in the map, kept at hand for
    /// this thread's next requests once `f` ran.
    fn run_looked_up<T, R: Scheduled<T>, F: FnOnce(&mut NsState, &mut Graveyard) -> R>(
        &self,
        ns: &Name,
        namespace: Arc<Namespace>,
        f: F,
    ) -> Result<T, F> {
        let out = self.run_locked(ns, &namespace, f)?;
        at_hand::keep(self.shared.id, namespace);
        Ok(out)
    }

    /// Runs `f` under `namespace`'s lock; gives `f` back, unrun, when the
    /// namespace was removed before the lock was had (look it up again).
    fn run_locked<T, R: Scheduled<T>, F: FnOnce(&mut NsState, &mut Graveyard) -> R>(
        &self,
        ns: &Name,
        namespace: &Namespace,
        f: F,
    ) -> Result<T, F> {
        let mut grave = Graveyard::default();
        let mut st = namespace.lock();
        if st.removed {
            return Err(f);
        }
        let (out, wake) = f(&mut st, &mut grave).split();
        drop(st);
        self.schedule(ns, wake);
        drop(grave);
        Ok(out)
    }

    /// Tells the sweeper about a new, earlier deadline of namespace `ns`.
    fn schedule(&self, ns: &Name, wake: Option<Millis>) {
        let Some(at) = wake else { return };
        let mut wakeups = self
            .shared
            .wakeups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let earliest = wakeups.first().is_none_or(|(first, _)| at < *first);
        wakeups.insert((at, ns.clone()));
        drop(wakeups);
        if earliest {
            self.shared.sweeper.notify_one();
        }
    }
}

/// What a closure passed to `with_namespace` may return: a value and maybe an
/// earlier wake-up for the sweeper.
trait Scheduled<T> {
    fn split(self) -> (T, Option<Millis>);
}

impl Scheduled<()> for Option<Millis> {
    fn split(self) -> ((), Option<Millis>) {
        ((), self)
    }
}

impl<T> Scheduled<T> for (T, Option<Millis>) {
    fn split(self) -> (T, Option<Millis>) {
        self
    }
}

impl<T, E> Scheduled<Result<T, E>> for Result<(T, Option<Millis>), E> {
    fn split(self) -> (Result<T, E>, Option<Millis>) {
        match self {
            Ok((v, w)) => (Ok(v), w),
            Err(e) => (Err(e), None),
        }
    }
}

/// How the locked part of a pop ended.
enum PopStart {
    Taken(Taken),
    Empty,
    Wait(WaitTicket),
}

/// A consumer's place among a queue's waiters. Dropping it (timeout, the
/// client went away, shutdown) removes the waiter and, if an element was
/// handed over in the meantime, puts it back at the head of the queue so it
/// goes to the next consumer instead of to a connection that is gone.
struct WaitTicket {
    store: Store,
    ns: Name,
    queue: Name,
    id: u64,
    rx: oneshot::Receiver<Element>,
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.rx.close();
        let orphan = self.rx.try_recv().ok();
        let now = Millis::now();
        let (queue, id) = (&self.queue, self.id);
        self.store.with_namespace(&self.ns, |st, grave| {
            st.remove_waiter(queue, id, now);
            orphan.and_then(|element| st.enqueue(queue, element, Arrival::Return, now, grave))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn store(dir: &Path) -> Store {
        Store::new(StoreConfig {
            spill_dir: dir.to_owned(),
            spill_threshold: 16,
            max_element_size: 1 << 20,
            queue_idle_timeout: Duration::from_secs(60),
            max_deliveries: 3,
            namespace_quota: Quota::default(),
            namespace_quotas: HashMap::new(),
            quota_retry_after: 1,
            memory_limit: 0,
            durability: None,
        })
        .unwrap()
    }

    const DATA: PopMode = PopMode {
        with_data: true,
        lease_ms: None,
    };
    const HEADER: PopMode = PopMode {
        with_data: false,
        lease_ms: None,
    };

    fn names() -> (Name, Name) {
        (Name::parse("ns").unwrap(), Name::parse("q").unwrap())
    }

    async fn body_of(p: Popped) -> Vec<u8> {
        use futures_util::StreamExt;
        match p.body.expect("data") {
            Payload::Bytes(b) => b.to_vec(),
            Payload::Stream { mut chunks, .. } => {
                let mut v = Vec::new();
                while let Some(chunk) = chunks.next().await {
                    v.extend_from_slice(&chunk.unwrap());
                }
                v
            }
        }
    }

    async fn push_bytes(s: &Store, ns: &Name, q: &Name, bytes: &[u8]) -> Pushed {
        let mut w = s.blob_writer(Some(bytes.len() as u64)).unwrap();
        w.write(Bytes::copy_from_slice(bytes)).await.unwrap();
        let data = w.finish().await.unwrap();
        s.push_received(ns, q, Some(data), MetaInput::default(), 60)
            .unwrap()
    }

    fn ready(s: &Store, ns: &Name, q: &Name) -> Option<u64> {
        s.queue_stats(ns, q).map(|st| st.counts.elements)
    }

    #[tokio::test]
    async fn a_namespace_at_hand_that_was_dropped_is_looked_up_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        push_bytes(&s, &ns, &q, b"one").await;
        assert_eq!(at_hand::held(s.shared.id), 1, "kept at hand");
        let popped = s.pop_waiting(&ns, &q, DATA, Duration::ZERO).await.unwrap();
        assert_eq!(body_of(popped.unwrap()).await, b"one");
        // The idle namespace leaves the map, but not this thread's hand.
        sweeper::drop_idle(&s.shared, Millis(Millis::now().0 + 3_600_000));
        assert!(s.namespace_stats(&ns).is_none(), "dropped");
        assert_eq!(at_hand::held(s.shared.id), 1);
        // A pop that will not wait finds nothing, and creates nothing.
        assert!(s
            .pop_waiting(&ns, &q, DATA, Duration::ZERO)
            .await
            .unwrap()
            .is_none());
        assert!(s.namespace_stats(&ns).is_none());
        // A push goes to a new namespace in the map, not to the dropped one.
        push_bytes(&s, &ns, &q, b"two").await;
        assert_eq!(ready(&s, &ns, &q), Some(1));
        let popped = s.pop_waiting(&ns, &q, DATA, Duration::ZERO).await.unwrap();
        assert_eq!(body_of(popped.unwrap()).await, b"two");
        assert_eq!(ready(&s, &ns, &q), Some(0));
    }

    #[tokio::test]
    async fn two_stores_on_one_thread_never_share_a_namespace_at_hand() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (store(dir.path()), store(dir.path()));
        let (ns, q) = names();
        for _ in 0..3 {
            push_bytes(&a, &ns, &q, b"a").await;
        }
        push_bytes(&b, &ns, &q, b"b").await;
        assert_eq!((ready(&a, &ns, &q), ready(&b, &ns, &q)), (Some(3), Some(1)));
        let popped = b.pop_waiting(&ns, &q, DATA, Duration::ZERO).await.unwrap();
        assert_eq!(body_of(popped.unwrap()).await, b"b");
        assert_eq!((ready(&a, &ns, &q), ready(&b, &ns, &q)), (Some(3), Some(0)));
        // More namespaces than a thread keeps: the oldest go, nothing is lost.
        let names: Vec<Name> = (0..20)
            .map(|i| Name::parse(&format!("n{i}")).unwrap())
            .collect();
        for n in names.iter().chain(names.iter()) {
            push_bytes(&a, n, &q, b"x").await;
        }
        assert!(at_hand::held(a.shared.id) <= 8);
        assert!(names.iter().all(|n| ready(&a, n, &q) == Some(2)));
    }

    #[tokio::test]
    async fn an_element_handed_to_a_waiter_that_vanished_goes_back_to_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        let PopStart::Wait(ticket) = s
            .take_or_wait(&ns, &q, DATA, Duration::from_secs(5), Millis::now())
            .unwrap()
        else {
            panic!("empty queue: the pop must wait")
        };
        let first = push_bytes(&s, &ns, &q, b"first").await;
        push_bytes(&s, &ns, &q, b"second").await;
        assert_eq!(
            s.queue_stats(&ns, &q).unwrap().counts.elements,
            1,
            "first went to the waiter"
        );
        drop(ticket); // the consumer disconnected before reading it
        let stats = s.queue_stats(&ns, &q).unwrap().counts;
        assert_eq!((stats.elements, stats.waiting), (2, 0));
        let p = s
            .pop_waiting(&ns, &q, DATA, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.id, first.id, "handed back at the head, before 'second'");
        assert_eq!(body_of(p).await, b"first");
    }

    #[tokio::test]
    async fn a_waiting_pop_receives_a_push_and_a_spilled_body_streams_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        let waiter = {
            let (s, ns, q) = (s.clone(), ns.clone(), q.clone());
            tokio::spawn(async move { s.pop_waiting(&ns, &q, DATA, Duration::from_secs(10)).await })
        };
        while s.totals().waiting == 0 {
            tokio::task::yield_now().await;
        }
        let big = vec![7u8; 100];
        push_bytes(&s, &ns, &q, &big).await;
        let p = waiter.await.unwrap().unwrap().unwrap();
        assert_eq!(body_of(p).await, big);
        assert_eq!(
            s.totals().disk_bytes,
            0,
            "the last reference freed the spill file"
        );
        assert_eq!(std::fs::read_dir(s.spill_dir()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn shutdown_releases_waiters_and_purge_removes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        push_bytes(&s, &ns, &Name::parse("other").unwrap(), &[1u8; 64]).await;
        let waiter = {
            let (s, ns, q) = (s.clone(), ns.clone(), q.clone());
            tokio::spawn(async move { s.pop_waiting(&ns, &q, DATA, Duration::from_secs(30)).await })
        };
        while s.totals().waiting == 0 {
            tokio::task::yield_now().await;
        }
        s.begin_shutdown();
        assert!(matches!(
            waiter.await.unwrap(),
            Err(BackendError::ShuttingDown)
        ));
        assert!(matches!(
            s.pop_waiting(&ns, &q, DATA, Duration::from_secs(1)).await,
            Err(BackendError::ShuttingDown)
        ));
        s.purge();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "spill folder removed"
        );
        let t = s.totals();
        assert_eq!(
            (t.elements, t.memory_bytes, t.disk_bytes, t.waiting),
            (0, 0, 0, 0),
            "every gauge back to zero"
        );
    }

    #[tokio::test]
    async fn an_in_memory_blob_held_elsewhere_is_shared_and_its_last_pop_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        let (a, b) = (Name::parse("a").unwrap(), Name::parse("b").unwrap());
        let bytes = b"8 bytes!";
        let blob = push_bytes(&s, &ns, &q, bytes).await.blob_id.unwrap();
        for target in [&a, &b] {
            s.reference_push(&ns, target, Some(blob), MetaInput::default(), 60)
                .unwrap();
        }
        let pop = |queue: &Name, mode| {
            let (s, ns, queue) = (s.clone(), ns.clone(), queue.clone());
            async move {
                s.pop_waiting(&ns, &queue, mode, Duration::ZERO)
                    .await
                    .unwrap()
            }
        };
        // Under a lease the element stays in flight, holding the blob.
        let leased = PopMode {
            with_data: true,
            lease_ms: Some(60_000),
        };
        let first = pop(&q, leased).await.unwrap();
        let receipt = first.lease.unwrap().receipt.to_string();
        assert_eq!(body_of(first).await, bytes);
        s.release_lease(&ns, &q, &receipt).unwrap();
        for queue in [&q, &a] {
            let p = pop(queue, DATA).await.unwrap();
            assert_eq!(
                body_of(p).await,
                bytes,
                "{queue}: the blob is still referenced"
            );
            assert_eq!(s.namespace_stats(&ns).unwrap().blob_bytes, 8);
        }
        let last = pop(&b, DATA).await.unwrap();
        assert_eq!(body_of(last).await, bytes, "the last reference's pop");
        let after = s.namespace_stats(&ns).unwrap();
        assert_eq!((after.blobs, after.blob_bytes), (0, 0), "{after:?}");
        assert_eq!(s.server_stats().totals.memory_bytes, 0);
    }

    #[tokio::test]
    async fn reference_pushes_share_one_blob_and_deleting_it_makes_pops_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ns, q) = names();
        let pushed = push_bytes(&s, &ns, &q, &[3u8; 40]).await;
        let blob = pushed.blob_id.unwrap();
        let header = s
            .pop_waiting(&ns, &q, HEADER, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert!(header.body.is_none() && header.size == 40);
        for target in ["a", "b"] {
            let target = Name::parse(target).unwrap();
            s.reference_push(&ns, &target, Some(blob), MetaInput::default(), 60)
                .unwrap();
        }
        assert_eq!(s.namespace_stats(&ns).unwrap().blobs, 1, "stored once");
        let a = s
            .pop_waiting(&ns, &Name::parse("a").unwrap(), DATA, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body_of(a).await, vec![3u8; 40]);
        s.remove_blob(&ns, &blob.to_string()).unwrap();
        assert!(matches!(
            s.pop_waiting(&ns, &Name::parse("b").unwrap(), DATA, Duration::ZERO)
                .await,
            Err(BackendError::BlobGone)
        ));
        assert!(
            s.pop_waiting(&ns, &Name::parse("b").unwrap(), DATA, Duration::ZERO)
                .await
                .unwrap()
                .is_none(),
            "consumed"
        );
        assert!(matches!(
            s.reference_push(&ns, &q, Some(blob), MetaInput::default(), 60),
            Err(BackendError::BlobNotFound { .. })
        ));
    }
}
