//! The [`Store`] handle: what it shares between clones, how it starts and
//! stops, and how an operation finds and locks a namespace.
//!
//! An operation looks its namespace up in the map, clones the `Arc`, lets
//! go of the map's guard and locks the namespace (so no map shard is held
//! while a namespace is locked). A namespace can leave the map between the
//! lookup and the lock (the sweeper drops idle ones, shutdown purges them):
//! it is marked `removed` under its lock first, and an operation that finds
//! the mark looks the name up again.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::clock::Millis;
use super::config::{NameLimits, StoreConfig};
use super::health::FileHealth;
use super::ingest::{BlobWriter, IngestError, IngestLimits};
use super::journal::{self, FsyncMode, Journal};
use super::namespace::{Graveyard, Locked, Namespace, NsState, Quota, QuotaExceeded};
use super::overflow::{Overflow, SpillFolder};
use super::stats::Totals;
use super::{recovery, sweeper};
use crate::backend::name::Name;
use crate::backend::stats::TotalsSnapshot;
use crate::backend::{BackendError, StoragePlace};

/// The namespaces by name. Looked up on every request: hashed with foldhash
/// (hashbrown's default, seeded per map) rather than SipHash.
pub(crate) type Namespaces = DashMap<Name, Arc<Namespace>, hashbrown::DefaultHashBuilder>;

/// A cheap-to-clone handle on the store.
#[derive(Clone)]
pub struct Store {
    pub(super) shared: Arc<Shared>,
}

/// What every clone of a [`Store`] shares.
pub(super) struct Shared {
    pub namespaces: Namespaces,
    pub totals: Arc<Totals>,
    pub limits: IngestLimits,
    pub queue_idle_timeout: Duration,
    max_deliveries: u32,
    namespace_quota: Quota,
    namespace_quotas: HashMap<String, Quota>,
    quota_retry_after: u64,
    /// How many namespaces and queues clients may make.
    names: NameLimits,
    /// Held while a client's request makes a namespace, so that two made at
    /// once cannot both pass the limit. Only making one takes it.
    making_namespace: std::sync::Mutex<()>,
    /// This process's spill folder, removed with everything in it on drop.
    spill_dir: SpillFolder,
    /// (deadline, namespace) pairs the sweeper must look at, earliest first.
    pub wakeups: std::sync::Mutex<BTreeSet<(Millis, Name)>>,
    /// Tells the sweeper its next wake-up moved earlier.
    sweeper: Arc<Notify>,
    /// Cancelled when shutdown begins: waiting consumers give up.
    pub closing: CancellationToken,
    /// Numbers waiting consumers, so a wait ticket finds its own waiter.
    pub next_waiter: AtomicU64,
    pub started: Instant,
    /// Durable mode: the log every change is appended to.
    pub journal: Option<Arc<Journal>>,
    /// Whether body files can be written where `limits.spill_dir` says.
    pub file_health: FileHealth,
    /// Durable mode: held so no second server uses the data directory.
    _dir_lock: Option<journal::files::DirLock>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closing.cancel();
        self.sweeper.notify_one();
        // A store dropped without `purge` must not leave its log's threads
        // removing files or compacting after the directory lock is gone and
        // another store may have opened it. Closing twice is harmless.
        if let Some(journal) = &self.journal {
            journal.close();
        }
    }
}

impl Store {
    /// Creates the store and starts its sweeper; call inside a tokio runtime.
    pub fn new(config: StoreConfig) -> std::io::Result<Store> {
        let spill_dir = SpillFolder::create(&config.spill_dir)?;
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
                    overflow: config.overflow,
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
        let file_place = match durable_sync {
            Some(_) => StoragePlace::Data,
            None => StoragePlace::Spill,
        };
        let file_health = FileHealth::new(file_place, file_dir.clone());
        // Small bodies past the memory limit share segments: the spill
        // folder's, or the data directory's in durable mode.
        let (overflow, journal, dir_lock) = match opened {
            Some(o) => (o.overflow, Some(o.journal), Some(o.lock)),
            None => (
                Overflow::new(spill_dir.path().to_owned(), config.overflow),
                None,
                None,
            ),
        };
        let overflow = Some(overflow);
        let shared = Arc::new(Shared {
            namespaces,
            totals: totals.clone(),
            limits: IngestLimits {
                spill_threshold: config.spill_threshold,
                max_element_size: config.max_element_size,
                spill_dir: file_dir,
                memory_limit: config.memory_limit,
                totals: totals.clone(),
                durable_sync,
                overflow: overflow.clone(),
            },
            queue_idle_timeout: config.queue_idle_timeout,
            max_deliveries: config.max_deliveries,
            namespace_quota: config.namespace_quota,
            namespace_quotas: config.namespace_quotas,
            quota_retry_after: config.quota_retry_after,
            names: config.names,
            making_namespace: std::sync::Mutex::new(()),
            spill_dir,
            wakeups: std::sync::Mutex::new(wakeups.into_iter().collect()),
            sweeper: Arc::new(Notify::new()),
            closing: CancellationToken::new(),
            next_waiter: AtomicU64::new(0),
            started: Instant::now(),
            journal,
            file_health,
            _dir_lock: dir_lock,
        });
        tokio::spawn(sweeper::run(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
            shared.closing.clone(),
        ));
        if let Some(overflow) = &overflow {
            if shared.journal.is_some() {
                overflow.log_moves(super::segment_body::LoggedMoves::new(&shared));
            }
            overflow.start_compactor(shared.closing.clone());
        }
        Ok(Store { shared })
    }

    /// The log, in durable mode (for tests that make it fail).
    #[cfg(test)]
    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.shared.journal.as_deref()
    }

    /// The folder holding this process's spill files.
    pub fn spill_dir(&self) -> &Path {
        self.shared.spill_dir.path()
    }

    /// Starts receiving a body of `expected` bytes (if announced).
    pub fn blob_writer(&self, expected: Option<u64>) -> Result<BlobWriter<'_>, IngestError> {
        BlobWriter::new(&self.shared.limits, expected)
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
        self.shared.spill_dir.remove();
    }

    /// Runs `change` on the state of namespace `ns`, created if needed,
    /// under its lock; then tells the sweeper of any earlier deadline the
    /// change added, and drops what it removed, both after unlocking.
    pub(super) fn change<T>(
        &self,
        ns: &Name,
        change: impl FnOnce(&mut NsState, &mut Graveyard) -> T,
    ) -> T {
        loop {
            let namespace = self.namespace_for_write(ns);
            let st = namespace.lock();
            if !st.removed {
                return self.apply(ns, st, change);
            }
        }
    }

    /// [`Store::change`] for a client's request, which may make namespace
    /// `ns` and queue `queue` only within the limits of `--max-namespaces`
    /// and `--max-queues-per-namespace`: past them it changes nothing and
    /// answers `TooManyNamespaces` or `TooManyQueues`.
    pub(super) fn change_new<T>(
        &self,
        ns: &Name,
        queue: Option<&Name>,
        change: impl FnOnce(&mut NsState, &mut Graveyard) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        loop {
            let namespace = match self.existing_namespace(ns) {
                Some(n) => n,
                None => self.make_namespace(ns)?,
            };
            let st = namespace.lock();
            if st.removed {
                continue;
            }
            let limit = self.shared.names.max_queues_per_namespace;
            if let Some(queue) = queue.filter(|q| !st.may_make_queue(q, limit)) {
                return Err(BackendError::TooManyQueues {
                    namespace: ns.clone(),
                    queue: queue.clone(),
                    limit,
                    retry_after: self.shared.quota_retry_after,
                });
            }
            return self.apply(ns, st, change);
        }
    }

    /// [`Store::change`] on a namespace that exists already: `None`, and
    /// `change` not run, when there is none. Reads, and changes that must
    /// not create a namespace (a pop that will not wait), use it.
    pub(super) fn change_existing<T>(
        &self,
        ns: &Name,
        change: impl FnOnce(&mut NsState, &mut Graveyard) -> T,
    ) -> Option<T> {
        loop {
            let namespace = self.existing_namespace(ns)?;
            let st = namespace.lock();
            if !st.removed {
                return Some(self.apply(ns, st, change));
            }
        }
    }

    fn apply<T>(
        &self,
        ns: &Name,
        mut st: Locked<'_>,
        change: impl FnOnce(&mut NsState, &mut Graveyard) -> T,
    ) -> T {
        let mut grave = Graveyard::default();
        let out = change(&mut st, &mut grave);
        let wakeup = st.take_earlier_wakeup();
        drop(st);
        if let Some(at) = wakeup {
            self.schedule(ns, at);
        }
        drop(grave);
        out
    }

    fn existing_namespace(&self, ns: &Name) -> Option<Arc<Namespace>> {
        self.shared.namespaces.get(ns).map(|n| n.clone())
    }

    fn namespace_for_write(&self, ns: &Name) -> Arc<Namespace> {
        if let Some(n) = self.existing_namespace(ns) {
            return n;
        }
        let shared = &self.shared;
        shared
            .namespaces
            .entry(ns.clone())
            .or_insert_with(|| {
                Arc::new(Namespace::new(
                    ns.clone(),
                    shared.totals.clone(),
                    shared.max_deliveries,
                    self.quota_of(ns),
                    shared.journal.clone(),
                ))
            })
            .clone()
    }

    /// Namespace `ns`, made unless the store holds `--max-namespaces`.
    fn make_namespace(&self, ns: &Name) -> Result<Arc<Namespace>, BackendError> {
        let shared = &self.shared;
        let _making = shared
            .making_namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = self.existing_namespace(ns) {
            return Ok(n);
        }
        let limit = shared.names.max_namespaces;
        if shared.namespaces.len() >= limit {
            return Err(BackendError::TooManyNamespaces {
                namespace: ns.clone(),
                limit,
                retry_after: shared.quota_retry_after,
            });
        }
        Ok(self.namespace_for_write(ns))
    }

    /// Every namespace, collected first so no map guard is held while a
    /// namespace is locked.
    pub(super) fn all_namespaces(&self) -> Vec<Arc<Namespace>> {
        self.shared
            .namespaces
            .iter()
            .map(|e| e.value().clone())
            .collect()
    }

    /// Tells the sweeper about a new, earlier deadline of namespace `ns`.
    fn schedule(&self, ns: &Name, at: Millis) {
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

    /// The quota of namespace `ns`.
    pub(super) fn quota_of(&self, ns: &Name) -> Quota {
        let shared = &self.shared;
        shared
            .namespace_quotas
            .get(ns.as_str())
            .copied()
            .unwrap_or(shared.namespace_quota)
    }

    /// The error a client gets for a change that would break `quota`.
    pub(super) fn over(&self, ns: &Name, quota: QuotaExceeded) -> BackendError {
        BackendError::OverQuota {
            namespace: ns.clone(),
            reason: quota.to_string(),
            retry_after: self.shared.quota_retry_after,
        }
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
