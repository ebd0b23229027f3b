//! The embedded jobs engine: job documents, per-queue FIFOs of pending
//! jobs, leases and long polls, in memory, with the jobs' input and result
//! bytes kept as blobs of the storage [`Backend`] (so they stream, spill to
//! disk and count against the namespace's byte quota). It implements the
//! jobs seam, [`crate::backend::jobs::JobStore`] (in `store_impl`).
//!
//! - [`Jobs`] (here): the cheap-to-clone handle, the registry of queues
//!   and how an operation finds and locks one.
//! - `queue` and `transitions`: one queue's state and the life of a job.
//! - `job`: one job, kept small.
//! - `claim`: the guards that make a claim undo itself if its worker goes.
//! - `watch`: long polls on a job.
//! - `sweeper`: the task that acts on passed deadlines.
//! - `callback`: delivering finished jobs' documents to their callbacks.
//! - `config`: the `[jobs]` settings.
//!
//! - `durable`: in durable mode (`--data-dir`), the jobs log that brings
//!   jobs back after a restart.

pub mod callback;
mod claim;
pub mod config;
pub mod counters;
pub mod durable;
mod job;
mod queue;
mod store_impl;
mod store_support;
mod sweeper;
mod transitions;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{JobConfig, JobSettings};
use queue::{Effects, JobQueue, Leftovers, QueueState};

use crate::backend::ids::BlobId;
use crate::backend::jobs::{JobError, JobTotals};
use crate::backend::name::Name;
use crate::backend::Backend;
use crate::store::clock::Millis;
use callback::{Callbacks, OnDelivered};
use counters::JobCounters;
use durable::log::JobLog;

/// Queues by namespace, then by name.
type Registry = HashMap<Name, HashMap<Name, Arc<JobQueue>>>;

/// The handle: a clone of `Arc<Shared>`.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where inputs and results are kept.
    blobs: Arc<dyn Backend>,
    config: JobConfig,
    /// Read to find a queue, written to add or retire one. Never held while
    /// a queue is locked by the same caller, except to retire that queue.
    registry: RwLock<Registry>,
    /// When each queue next needs the sweeper: `(time, namespace, queue)`.
    /// A leaf lock.
    wakeups: Mutex<BTreeSet<(Millis, Name, Name)>>,
    /// Wakes the sweeper when a wake-up earlier than all others arrives.
    sweeper_wake: Notify,
    closing: CancellationToken,
    totals: JobCounters,
    next_claimer: AtomicU64,
    /// Delivers finished jobs' callbacks; absent when none are allowed.
    callbacks: Option<Callbacks>,
    /// The jobs log, in durable mode.
    log: Option<Arc<JobLog>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    /// A new engine keeping bytes in `blobs`, its jobs in memory only;
    /// starts its sweeper, so call it inside a tokio runtime.
    pub fn new(blobs: Arc<dyn Backend>, config: JobConfig) -> Jobs {
        Jobs::start(blobs, config, None)
    }

    fn start(blobs: Arc<dyn Backend>, config: JobConfig, log: Option<Arc<JobLog>>) -> Jobs {
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let on_delivered = log.is_some().then(|| {
                let weak = weak.clone();
                let told: OnDelivered = Arc::new(move |ns, queue, id| {
                    if let Some(shared) = weak.upgrade() {
                        Jobs { shared }.callback_delivered(ns, queue, id);
                    }
                });
                told
            });
            let callbacks = (!config.callbacks.allow.is_empty())
                .then(|| Callbacks::start(config.callbacks.clone(), on_delivered));
            Shared {
                blobs,
                config,
                registry: RwLock::new(HashMap::new()),
                wakeups: Mutex::new(BTreeSet::new()),
                sweeper_wake: Notify::new(),
                closing: CancellationToken::new(),
                totals: JobCounters::default(),
                next_claimer: AtomicU64::new(0),
                callbacks,
                log,
            }
        });
        let jobs = Jobs { shared };
        tokio::spawn(sweeper::run(jobs.clone()));
        jobs
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.shared
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.shared
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, ns: &Name, queue: &Name) -> Option<Arc<JobQueue>> {
        self.registry().get(ns)?.get(queue).cloned()
    }

    fn queue_or_new(&self, ns: &Name, queue: &Name) -> Arc<JobQueue> {
        if let Some(q) = self.queue(ns, queue) {
            return q;
        }
        let max_log = self.shared.config.max_log_entries;
        self.registry_mut()
            .entry(ns.clone())
            .or_default()
            .entry(queue.clone())
            .or_insert_with(|| Arc::new(JobQueue::new(ns.clone(), queue.clone(), max_log)))
            .clone()
    }

    /// Every queue of every namespace, for walks that lock them one by one.
    fn all_queues(&self) -> Vec<Arc<JobQueue>> {
        self.registry()
            .values()
            .flat_map(|queues| queues.values().cloned())
            .collect()
    }

    fn namespace_queues(&self, ns: &Name) -> Vec<Arc<JobQueue>> {
        self.registry()
            .get(ns)
            .map(|queues| queues.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs `f` on queue `ns/queue` under its lock (made first if
    /// `create`), then does what the change left: schedule the sweeper,
    /// count events, retire an idle queue. Returns `f`'s answer and what
    /// to clean up in the backend.
    fn change<R>(
        &self,
        ns: &Name,
        queue: &Name,
        create: bool,
        mut f: impl FnMut(&mut QueueState, Millis, &mut Effects) -> R,
    ) -> Result<(Arc<JobQueue>, R, Leftovers), JobError> {
        loop {
            let q = if create {
                self.queue_or_new(ns, queue)
            } else {
                self.queue(ns, queue)
                    .ok_or_else(|| JobError::QueueNotFound {
                        namespace: ns.clone(),
                        queue: queue.clone(),
                    })?
            };
            let Some((answer, leftovers)) = self.change_queue(&q, &mut f) else {
                // Retired meanwhile: look it up again.
                continue;
            };
            return Ok((q, answer, leftovers));
        }
    }

    /// `change` on a queue already in hand; `None` if it was retired.
    fn change_queue<R>(
        &self,
        q: &Arc<JobQueue>,
        f: impl FnOnce(&mut QueueState, Millis, &mut Effects) -> R,
    ) -> Option<(R, Leftovers)> {
        let mut st = q.lock();
        if st.removed {
            return None;
        }
        let mut fx = Effects::default();
        if self.shared.log.is_some() {
            st.journal = Some(Box::default());
        }
        let answer = f(&mut st, Millis::now(), &mut fx);
        if let (Some(log), Some(dirty)) = (&self.shared.log, st.journal.take()) {
            durable::record_changes(log, &st, &dirty);
        }
        self.settle(q, &mut st, &fx);
        drop(st);
        if let Some(callbacks) = &self.shared.callbacks {
            for (url, job) in &fx.callbacks {
                callbacks.send(url, job);
            }
        }
        let leftovers = Leftovers {
            blobs: fx.blobs,
            removed: fx.removed,
        };
        Some((answer, leftovers))
    }

    /// What every change ends with, still under the queue's lock.
    fn settle(&self, q: &Arc<JobQueue>, st: &mut QueueState, fx: &Effects) {
        if let Some(at) = st.wakeup.take() {
            self.schedule(at, &q.ns, &q.name);
        }
        let t = &self.shared.totals;
        for (counter, n) in [
            (&t.submitted, fx.submitted),
            (&t.claims, fx.claims),
            (&t.completions, fx.completions),
            (&t.failures, fx.failures),
            (&t.cancellations, fx.cancellations),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if st.is_idle() {
            st.removed = true;
            let mut registry = self.registry_mut();
            if let Some(queues) = registry.get_mut(&q.ns) {
                if queues.get(&q.name).is_some_and(|kept| Arc::ptr_eq(kept, q)) {
                    queues.remove(&q.name);
                }
                if queues.is_empty() {
                    registry.remove(&q.ns);
                }
            }
        }
    }

    /// Tells the sweeper that queue `ns/queue` has a deadline at `at`.
    fn schedule(&self, at: Millis, ns: &Name, queue: &Name) {
        let mut wakeups = locked(&self.shared.wakeups);
        let entry = (at, ns.clone(), queue.clone());
        let earliest = wakeups.first().is_none_or(|first| entry < *first);
        wakeups.insert(entry);
        drop(wakeups);
        if earliest {
            self.shared.sweeper_wake.notify_one();
        }
    }

    /// Deletes the blobs of removed jobs. A blob already gone is fine.
    async fn delete_blobs(&self, ns: &Name, blobs: Vec<BlobId>) {
        for blob in blobs {
            if let Err(e) = self.shared.blobs.delete_blob(ns, &blob.to_string()).await {
                tracing::debug!(error = %e, %blob, "a removed job's blob was already gone");
            }
        }
    }

    /// Gives the backend back what removed jobs held: their blobs, and
    /// their inputs' places in the namespace's element quota.
    async fn clean_up(&self, ns: &Name, leftovers: Leftovers) {
        self.delete_blobs(ns, leftovers.blobs).await;
        if leftovers.removed > 0 {
            self.shared
                .blobs
                .release_elements(ns, leftovers.removed)
                .await;
        }
    }

    /// `clean_up` from where no `.await` is possible (a `Drop`).
    fn clean_up_later(&self, ns: &Name, leftovers: Leftovers) {
        if leftovers.blobs.is_empty() && leftovers.removed == 0 {
            return;
        }
        let (jobs, ns) = (self.clone(), ns.clone());
        tokio::spawn(async move { jobs.clean_up(&ns, leftovers).await });
    }

    fn totals(&self) -> JobTotals {
        self.shared.totals.totals(self.shared.callbacks.as_ref())
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
