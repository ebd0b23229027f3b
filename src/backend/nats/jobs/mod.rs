//! Jobs on NATS JetStream: the second implementation of the jobs seam
//! (`backend::jobs::JobStore`), so that every blobq node on one cluster
//! serves the same jobs.
//!
//! - `names`: buckets, keys, the pending streams and their consumers.
//! - `doc`: a job as its key-value entry keeps it.
//! - `kv`: reading entries, compare-and-set changes, scans.
//! - `pending`: the queues of pending jobs (publish, the next delivery).
//! - `submit`, `client` and `worker`: the operations of the seam.
//! - `claim`: taking the next pending job under a lease.
//! - `seam`: `impl JobStore`, handing each operation to the above.
//! - `sweeper`: passed deadlines (lifetimes, leases, retention), and the
//!   counts `/metrics` reads.
//!
//! Every state change is an `update` of the job's entry with the revision
//! read, retried on a conflict, so two nodes never both move a job. The
//! lease is a deadline in the entry that any node may act on once it has
//! passed (docs/SCALE-OUT.md says why).

mod claim;
mod client;
mod doc;
mod kv;
mod names;
mod pending;
mod seam;
mod submit;
mod sweeper;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::kv::Store;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use super::{Inner, NatsBackend};
use crate::backend::jobs::{JobError, JobTotals, QueueJobCounts};
use crate::backend::name::Name;
use crate::jobs::callback::Callbacks;
use crate::jobs::counters::JobCounters;
use crate::jobs::JobConfig;
use pending::PendingQueue;

/// The jobs of a NATS backend: cheap to share, its state behind one `Arc`.
#[derive(Clone)]
pub struct NatsJobs {
    shared: Arc<Shared>,
}

struct Shared {
    /// The backend: its connection, and its blobs for inputs and results.
    inner: Arc<Inner>,
    config: JobConfig,
    /// Buckets found or made, by namespace.
    buckets: DashMap<Name, Store>,
    /// Pending queues found or made, by namespace and queue.
    queues: DashMap<(Name, Name), PendingQueue>,
    /// Workers waiting in a claim on this node, by namespace and queue.
    waiting: DashMap<(Name, Name), u64>,
    /// Jobs by state as the last sweep counted them, for `/metrics`.
    counted: Mutex<Vec<QueueJobCounts>>,
    totals: JobCounters,
    /// Delivers finished jobs' documents; absent when none are allowed.
    callbacks: Option<Callbacks>,
    closing: CancellationToken,
}

impl NatsBackend {
    /// The jobs served on this backend; starts their sweeper, so call it
    /// inside a tokio runtime.
    pub fn job_store(&self, config: JobConfig) -> NatsJobs {
        let callbacks = (!config.callbacks.allow.is_empty())
            .then(|| Callbacks::start(config.callbacks.clone(), None));
        let jobs = NatsJobs {
            shared: Arc::new(Shared {
                inner: self.inner.clone(),
                config,
                buckets: DashMap::new(),
                queues: DashMap::new(),
                waiting: DashMap::new(),
                counted: Mutex::new(Vec::new()),
                totals: JobCounters::default(),
                callbacks,
                closing: CancellationToken::new(),
            }),
        };
        tokio::spawn(sweeper::run(jobs.clone()));
        jobs
    }
}

/// Counts a worker waiting on this node while it lives.
struct WaitingWorker<'a> {
    jobs: &'a NatsJobs,
    key: (Name, Name),
}

impl<'a> WaitingWorker<'a> {
    fn new(jobs: &'a NatsJobs, ns: &Name, queue: &Name) -> WaitingWorker<'a> {
        let key = (ns.clone(), queue.clone());
        *jobs.shared.waiting.entry(key.clone()).or_default() += 1;
        WaitingWorker { jobs, key }
    }
}

impl Drop for WaitingWorker<'_> {
    fn drop(&mut self) {
        self.jobs.shared.waiting.remove_if_mut(&self.key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

impl NatsJobs {
    fn not_found(ns: &Name, queue: &Name, id: &str) -> JobError {
        JobError::JobNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            id: id.to_owned(),
        }
    }

    fn waiting_workers(&self, ns: &Name, queue: &Name) -> u64 {
        self.shared
            .waiting
            .get(&(ns.clone(), queue.clone()))
            .map_or(0, |n| *n)
    }

    /// Counts what a change did, and sends the callback of a job it
    /// finished.
    fn finished(&self, job: &doc::StoredJob, ns: &Name, queue: &Name) {
        let t = &self.shared.totals;
        let counter = match job.state {
            crate::backend::jobs::JobState::Succeeded => &t.completions,
            crate::backend::jobs::JobState::Failed => &t.failures,
            crate::backend::jobs::JobState::Cancelled => &t.cancellations,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let (Some(callbacks), Some(url)) = (&self.shared.callbacks, &job.callback) {
            callbacks.send(url, &job.view(ns, queue));
        }
    }

    fn totals(&self) -> JobTotals {
        self.shared.totals.totals(self.shared.callbacks.as_ref())
    }

    /// The last sweep's counts, with this node's waiting workers.
    fn counted(&self) -> Vec<QueueJobCounts> {
        let mut counts = self
            .shared
            .counted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for c in &mut counts {
            c.waiting_workers = self.waiting_workers(&c.namespace, &c.queue);
        }
        counts
    }

    fn set_counted(&self, counts: HashMap<(Name, Name), [u64; 5]>) {
        let mut out: Vec<QueueJobCounts> = counts
            .into_iter()
            .map(|((namespace, queue), counts)| QueueJobCounts {
                namespace,
                queue,
                counts,
                waiting_workers: 0,
            })
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.queue).cmp(&(&b.namespace, &b.queue)));
        *self
            .shared
            .counted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = out;
    }
}
