//! One job queue behind its lock: the jobs in submission order, the FIFO of
//! pending ones, the workers waiting in a claim, the deadline index, the
//! idempotency keys and the long polls waiting on a job. The transitions of
//! a job's life are in `transitions.rs`; everything here is a few map
//! operations, never I/O or an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

use super::job::{Job, NEVER};
use crate::backend::ids::BlobId;
use crate::backend::jobs::{JobCounts, JobError, JobId, JobState, JobView};
use crate::backend::name::Name;
use crate::store::clock::Millis;

/// A queue and its lock. The names are kept outside the lock for the
/// sweeper's wake list and for errors.
pub(super) struct JobQueue {
    pub ns: Name,
    pub name: Name,
    state: Mutex<QueueState>,
}

impl JobQueue {
    pub fn new(ns: Name, name: Name, max_log: usize) -> JobQueue {
        JobQueue {
            state: Mutex::new(QueueState::new(ns.clone(), name.clone(), max_log)),
            ns,
            name,
        }
    }

    /// The state; a lock whose holder panicked is taken over (every change
    /// leaves the maps consistent before anything that could panic).
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker blocked in a claim.
pub(super) struct Claimer {
    pub id: u64,
    pub lease_ms: u64,
    pub tx: oneshot::Sender<Offer>,
}

/// A job just put under a lease for a worker, not yet answered to it. If
/// the worker has gone by the time the answer is made, the claim is undone
/// (`undo_claim`), so nothing is handed to a worker that has gone.
#[derive(Debug)]
pub(super) struct Offer {
    pub seq: u64,
    pub receipt: u128,
    pub lease_until: Millis,
    /// `started` before this claim, restored if it is undone.
    pub previous_started: Millis,
    pub input: Option<BlobId>,
    pub view: JobView,
}

/// What a change leaves to do once the lock is released: blobs to delete,
/// callbacks to send and events to count.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub blobs: Vec<BlobId>,
    /// Jobs that finished with a callback: its URL and the final document.
    pub callbacks: Vec<(Box<str>, JobView)>,
    pub submitted: u64,
    pub claims: u64,
    pub completions: u64,
    pub failures: u64,
    pub cancellations: u64,
    /// Jobs removed: their element slots go back to the namespace.
    pub removed: u64,
}

/// What a change leaves to undo in the backend once the lock is released:
/// the removed jobs' blobs and their element slots.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    pub blobs: Vec<BlobId>,
    pub removed: u64,
}

/// The long polls waiting on one job.
struct Watchers {
    notify: Arc<Notify>,
    count: u32,
}

pub(super) struct QueueState {
    pub ns: Name,
    pub name: Name,
    /// Set, under the lock, when the queue leaves the registry: whoever
    /// finds it set looks the queue up again.
    pub removed: bool,
    /// Jobs by submission number: listing order, and the paging token.
    /// Boxed: B-tree nodes filled by appends are about half empty, and
    /// empty slots of a pointer cost far less than empty slots of a job.
    pub(super) jobs: BTreeMap<u64, Box<Job>>,
    pub(super) ids: HashMap<JobId, u64>,
    /// Pending jobs in claim order. A job that leaves `pending` another way
    /// (cancelled, expired, deleted) leaves a stale number behind, skipped
    /// when met and swept out when they pile up.
    pub(super) pending: VecDeque<u64>,
    pub(super) claimers: VecDeque<Claimer>,
    pub(super) keys: HashMap<Box<str>, u64>,
    /// One entry per job with a deadline: its pending lifetime, its lease,
    /// or its retention, whichever its state has.
    deadlines: BTreeSet<(Millis, u64)>,
    /// The earliest wake-up the sweeper knows of for this queue.
    pub scheduled: Option<Millis>,
    /// An earlier wake-up the sweeper must learn of after this change.
    pub wakeup: Option<Millis>,
    watchers: HashMap<u64, Watchers>,
    pub(super) counts: JobCounts,
    next_seq: u64,
    pub(super) max_log: usize,
    /// The rank the next job put back at the head takes (durable mode).
    head_rank: i64,
    /// Durable mode: the changes of the current change, for its records.
    pub(super) journal: Option<Box<Dirty>>,
}

/// What a change did that the jobs log must record.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    /// Jobs whose document changed, and whether their log grew.
    pub changed: Vec<(u64, bool)>,
    pub removed: Vec<JobId>,
}

impl QueueState {
    fn new(ns: Name, name: Name, max_log: usize) -> QueueState {
        QueueState {
            ns,
            name,
            removed: false,
            jobs: BTreeMap::new(),
            ids: HashMap::new(),
            pending: VecDeque::new(),
            claimers: VecDeque::new(),
            keys: HashMap::new(),
            deadlines: BTreeSet::new(),
            scheduled: None,
            wakeup: None,
            watchers: HashMap::new(),
            counts: [0; 5],
            next_seq: 0,
            max_log,
            head_rank: 0,
            journal: None,
        }
    }

    /// Adds a job read back from the jobs log under its own number; the
    /// caller then rebuilds the pending FIFO (`restore_pending`).
    pub(super) fn restore(&mut self, seq: u64, mut job: Job) {
        self.next_seq = self.next_seq.max(seq + 1);
        self.head_rank = self.head_rank.min(job.rank);
        self.ids.insert(job.id, seq);
        if let Some(key) = job.idempotency_key() {
            self.keys.insert(key.into(), seq);
        }
        self.counts[job.state.index()] += 1;
        let deadline = std::mem::replace(&mut job.deadline, NEVER);
        self.jobs.insert(seq, Box::new(job));
        self.set_deadline(seq, deadline);
    }

    /// After `restore`: the pending jobs in their recorded order.
    pub(super) fn restore_pending(&mut self) {
        let mut pending: Vec<(i64, u64)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Pending)
            .map(|(&seq, j)| (j.rank, seq))
            .collect();
        pending.sort_unstable();
        self.pending = pending.into_iter().map(|(_, seq)| seq).collect();
    }

    /// Puts a pending job at the head of the FIFO, ranked before all.
    pub(super) fn put_at_head(&mut self, seq: u64) {
        self.head_rank -= 1;
        let rank = self.head_rank;
        self.job_mut(seq).rank = rank;
        self.pending.push_front(seq);
    }

    /// Records that the job's log grew in this change (durable mode).
    pub(super) fn log_grew(&mut self, seq: u64) {
        if let Some(dirty) = &mut self.journal {
            dirty.changed.push((seq, true));
        }
    }

    /// Adds a new pending job (already holding its input blob) and offers
    /// it to a waiting worker or queues it.
    pub fn insert(&mut self, mut job: Job, now: Millis, fx: &mut Effects) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ids.insert(job.id, seq);
        if let Some(key) = job.idempotency_key() {
            self.keys.insert(key.into(), seq);
        }
        self.counts[JobState::Pending.index()] += 1;
        job.rank = i64::try_from(seq).unwrap_or(i64::MAX);
        if let Some(dirty) = &mut self.journal {
            dirty.changed.push((seq, false));
        }
        let until = job.pending_until;
        job.deadline = NEVER;
        self.jobs.insert(seq, Box::new(job));
        self.set_deadline(seq, until);
        fx.submitted += 1;
        self.make_available(seq, false, now);
        seq
    }

    /// The job a client's id names, if the queue holds it.
    pub fn find(&self, id: &str) -> Result<u64, JobError> {
        JobId::parse(id)
            .and_then(|id| self.ids.get(&id).copied())
            .ok_or_else(|| JobError::JobNotFound {
                namespace: self.ns.clone(),
                queue: self.name.clone(),
                id: id.to_owned(),
            })
    }

    pub fn job(&self, seq: u64) -> &Job {
        &self.jobs[&seq]
    }

    pub(super) fn job_mut(&mut self, seq: u64) -> &mut Job {
        self.jobs
            .get_mut(&seq)
            .expect("a job found under this lock")
    }

    pub fn view(&self, seq: u64) -> JobView {
        self.job(seq).view(&self.ns, &self.name)
    }

    /// The job that used idempotency key `key`, if it is still kept.
    pub fn keyed(&self, key: &str) -> Option<u64> {
        self.keys.get(key).copied()
    }

    /// Moves the job's deadline entry to `at` (`NEVER`: none), noting an
    /// earlier wake-up for the sweeper.
    pub(super) fn set_deadline(&mut self, seq: u64, at: Millis) {
        let job = self
            .jobs
            .get_mut(&seq)
            .expect("a job found under this lock");
        if job.deadline != NEVER {
            self.deadlines.remove(&(job.deadline, seq));
        }
        job.deadline = at;
        if at == NEVER {
            return;
        }
        self.deadlines.insert((at, seq));
        if self.scheduled.is_none_or(|s| at < s) {
            self.scheduled = Some(at);
            self.wakeup = Some(at);
        }
    }

    /// Takes the earliest deadline that has passed, if any.
    pub fn next_due(&mut self, now: Millis) -> Option<u64> {
        let &(at, seq) = self.deadlines.first()?;
        if at > now {
            return None;
        }
        self.deadlines.pop_first();
        self.job_mut(seq).deadline = NEVER;
        Some(seq)
    }

    /// After a sweep: the next deadline becomes the scheduled wake-up.
    pub fn reschedule(&mut self) -> Option<Millis> {
        self.scheduled = self.deadlines.first().map(|&(at, _)| at);
        self.scheduled
    }

    /// Bumps the job's version and wakes its long polls.
    pub(super) fn changed(&mut self, seq: u64) {
        self.job_mut(seq).version += 1;
        if let Some(dirty) = &mut self.journal {
            dirty.changed.push((seq, false));
        }
        self.wake_watchers(seq);
    }

    fn wake_watchers(&self, seq: u64) {
        if let Some(w) = self.watchers.get(&seq) {
            w.notify.notify_waiters();
        }
    }

    /// Moves the job to `state`, keeping the counts.
    pub(super) fn set_state(&mut self, seq: u64, state: JobState) {
        let job = self.job_mut(seq);
        let old = std::mem::replace(&mut job.state, state);
        self.counts[old.index()] -= 1;
        self.counts[state.index()] += 1;
    }

    /// Removes a job and its keys; its blobs go into `fx`. Its long polls
    /// wake to find it gone.
    pub fn remove(&mut self, seq: u64, fx: &mut Effects) {
        let Some(job) = self.jobs.remove(&seq) else {
            return;
        };
        if job.deadline != NEVER {
            self.deadlines.remove(&(job.deadline, seq));
        }
        self.ids.remove(&job.id);
        if let Some(key) = job.idempotency_key() {
            self.keys.remove(key);
        }
        if let Some(dirty) = &mut self.journal {
            dirty.removed.push(job.id);
        }
        self.counts[job.state.index()] -= 1;
        fx.blobs.extend(job.blobs());
        fx.removed += 1;
        self.wake_watchers(seq);
        self.compact_pending();
    }

    /// Drops stale numbers from the pending FIFO once they outnumber the
    /// pending jobs, keeping the order of the rest.
    pub(super) fn compact_pending(&mut self) {
        let live = self.counts[JobState::Pending.index()] as usize;
        if self.pending.len() > 2 * live + 32 {
            let jobs = &self.jobs;
            self.pending
                .retain(|seq| jobs.get(seq).is_some_and(|j| j.state == JobState::Pending));
        }
    }

    /// Registers a long poll on the job; the `Notify` wakes it on a change.
    pub fn watch(&mut self, seq: u64) -> Arc<Notify> {
        let w = self.watchers.entry(seq).or_insert_with(|| Watchers {
            notify: Arc::new(Notify::new()),
            count: 0,
        });
        w.count += 1;
        w.notify.clone()
    }

    /// A long poll on the job has ended.
    pub fn unwatch(&mut self, seq: u64) {
        if let Some(w) = self.watchers.get_mut(&seq) {
            w.count -= 1;
            if w.count == 0 {
                self.watchers.remove(&seq);
            }
        }
    }

    pub fn remove_claimer(&mut self, id: u64) {
        self.claimers.retain(|c| c.id != id);
    }

    /// Nothing left: no job, no waiting worker, no long poll.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty() && self.claimers.is_empty() && self.watchers.is_empty()
    }

    pub fn job_count(&self) -> u64 {
        self.jobs.len() as u64
    }

    /// A page of jobs from `start` on, oldest first, looking at no more
    /// than `budget` jobs (a page may come back short when a filter skips
    /// many); the number to continue from, if any job is left.
    pub fn page(
        &self,
        start: u64,
        state: Option<JobState>,
        limit: usize,
        budget: usize,
    ) -> (Vec<JobView>, Option<u64>) {
        let mut out = Vec::new();
        for (looked, (&seq, job)) in self.jobs.range(start..).enumerate() {
            if out.len() == limit || looked == budget {
                return (out, Some(seq));
            }
            if state.is_none_or(|s| s == job.state) {
                out.push(job.view(&self.ns, &self.name));
            }
        }
        (out, None)
    }
}
