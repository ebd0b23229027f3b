//! `impl JobStore for Jobs`: each operation finds its queue, changes it
//! under the lock, and does the I/O (storing, opening and deleting blobs)
//! outside it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use uuid::Uuid;

use super::claim::{ClaimWait, Claiming};
use super::job::{system_time, Extras, Job, JobLog, Lease, NEVER};
use super::queue::{Claimer, JobQueue, Leftovers};
use super::Jobs;
use crate::backend::jobs::{
    ClaimOptions, Claimed, FailureReport, Heartbeat, JobError, JobId, JobPage, JobState, JobStore,
    JobTotals, JobView, ListOptions, LogEntry, QueueJobCounts, ResultInfo, ResultMeta, Seen,
    SubmitOptions, Submitted,
};
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, MetaInput, Payload};
use crate::store::clock::saturating_millis;

/// Most jobs one listing page looks at under the queue's lock, so that a
/// filter matching few jobs cannot hold the lock for a whole queue.
const LIST_SCAN_BUDGET: usize = 10_000;

#[async_trait]
impl JobStore for Jobs {
    async fn submit(
        &self,
        ns: &Name,
        queue: &Name,
        input: IncomingBody,
        opts: SubmitOptions,
    ) -> Result<Submitted, JobError> {
        if let Some(key) = &opts.idempotency_key {
            if let Some(q) = self.queue(ns, queue) {
                let st = q.lock();
                if let Some(seq) = st.keyed(key).filter(|_| !st.removed) {
                    let job = st.view(seq);
                    return Ok(Submitted {
                        job,
                        created: false,
                    });
                }
            }
        }
        let SubmitOptions {
            meta: MetaInput {
                content_type,
                custom,
            },
            lifetime,
            max_attempts,
            retention,
            idempotency_key,
            callback,
        } = opts;
        // The input counts as an element of the namespace while the job is
        // kept: its place is taken before any byte is read, so a submit
        // over the quota stores nothing.
        self.shared.blobs.hold_elements(ns, 1).await?;
        let id = JobId::random();
        let (input_blob, input) = match self.store_body(ns, id, input, content_type).await {
            Ok(stored) => stored,
            Err(e) => {
                self.shared.blobs.release_elements(ns, 1).await;
                return Err(e);
            }
        };
        let mut job = Some(Job {
            id,
            state: JobState::Pending,
            progress: None,
            attempt: 0,
            max_attempts,
            version: 1,
            rank: 0,
            created: NEVER,
            started: NEVER,
            finished: NEVER,
            pending_until: NEVER,
            deadline: NEVER,
            retention,
            lease: Lease::NONE,
            input: input_blob,
            input_size: input.size,
            input_type: input.content_type,
            message: None,
            metadata: custom.into_boxed_slice(),
            extras: Extras::of(idempotency_key, callback),
            outcome: None,
            log: JobLog::default(),
        });
        let inserted = self.change(ns, queue, true, |st, now, fx| {
            let key = job.as_ref().and_then(|j| j.idempotency_key());
            if let Some(seq) = key.and_then(|k| st.keyed(k)) {
                return (st.view(seq), false);
            }
            let mut new = job.take().expect("inserted once");
            new.created = now;
            new.pending_until = now.plus_secs(lifetime);
            let seq = st.insert(new, now, fx);
            (st.view(seq), true)
        });
        let (view, created) = match inserted {
            Ok((_, answer, _)) => answer,
            Err(e) => {
                self.clean_up(
                    ns,
                    Leftovers {
                        blobs: input_blob.into_iter().collect(),
                        removed: 1,
                    },
                )
                .await;
                return Err(e);
            }
        };
        if !created {
            // A concurrent submit with the same key won.
            let leftovers = Leftovers {
                blobs: input_blob.into_iter().collect(),
                removed: 1,
            };
            self.clean_up(ns, leftovers).await;
        }
        if let Err(e) = self.commit().await {
            if created {
                self.take_back_submit(ns, queue, id).await;
            }
            return Err(e);
        }
        Ok(Submitted { job: view, created })
    }

    async fn get(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError> {
        let (_, view, _) = self.with_job(ns, queue, id, |st, seq, _, _| Ok(st.view(seq)))?;
        Ok(view)
    }

    async fn watch(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        seen: &Seen,
        wait: Duration,
    ) -> Result<JobView, JobError> {
        self.wait_for(ns, queue, id, seen, wait).await
    }

    async fn read_result(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(JobView, Payload), JobError> {
        let (_, (view, blob), _) = self.with_job(ns, queue, id, |st, seq, _, _| {
            let job = st.job(seq);
            match job.result() {
                Some((blob, _)) => Ok((st.view(seq), blob)),
                None => Err(JobError::NoResult {
                    id: job.id,
                    state: job.state,
                    error: job.error().cloned(),
                }),
            }
        })?;
        let Some(blob) = blob else {
            return Ok((view, Payload::Bytes(Bytes::new())));
        };
        match self
            .shared
            .blobs
            .read_blob(ns, &blob.to_string(), false)
            .await
        {
            Ok(read) => Ok((view, read.body)),
            // Removed with its job since the lookup.
            Err(BackendError::BlobNotFound { .. } | BackendError::BlobGone) => {
                Err(JobError::JobNotFound {
                    namespace: ns.clone(),
                    queue: queue.clone(),
                    id: id.to_owned(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn log(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        after: u64,
    ) -> Result<Vec<LogEntry>, JobError> {
        let (_, log, _) = self.with_job(ns, queue, id, |st, seq, _, _| {
            Ok(st.job(seq).log.since(after))
        })?;
        Ok(log)
    }

    async fn cancel(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError> {
        let (_, view, _) =
            self.with_job(
                ns,
                queue,
                id,
                |st, seq, now, fx| Ok(st.cancel(seq, now, fx)),
            )?;
        self.commit().await?;
        Ok(view)
    }

    async fn delete(&self, ns: &Name, queue: &Name, id: &str) -> Result<(), JobError> {
        let (_, (), leftovers) =
            self.with_job(ns, queue, id, |st, seq, _, fx| st.delete(seq, fx))?;
        self.commit().await?;
        self.clean_up(ns, leftovers).await;
        Ok(())
    }

    async fn list(&self, ns: &Name, queue: &Name, opts: ListOptions) -> Result<JobPage, JobError> {
        let start = match &opts.page_token {
            None => 0,
            Some(token) => token
                .parse::<u64>()
                .ok()
                .filter(|_| token.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| JobError::BadPageToken(token.clone()))?,
        };
        let not_found = || JobError::QueueNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
        };
        let q = self.queue(ns, queue).ok_or_else(not_found)?;
        let st = q.lock();
        if st.removed || st.job_count() == 0 {
            return Err(not_found());
        }
        let (jobs, next) = st.page(start, opts.state, opts.limit, LIST_SCAN_BUDGET);
        Ok(JobPage {
            jobs,
            next_page_token: next.map(|n| n.to_string()),
        })
    }

    async fn counts(&self, ns: &Name) -> Result<Option<Vec<QueueJobCounts>>, JobError> {
        let mut out: Vec<QueueJobCounts> = self
            .namespace_queues(ns)
            .iter()
            .filter_map(queue_counts)
            .collect();
        if out.iter().all(|c| c.counts.iter().sum::<u64>() == 0) {
            return Ok(None);
        }
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(Some(out))
    }

    async fn claim(
        &self,
        ns: &Name,
        queue: &Name,
        opts: ClaimOptions,
    ) -> Result<Option<Claimed>, JobError> {
        let lease_ms = saturating_millis(opts.lease).max(1);
        let waits = !opts.wait.is_zero();
        if waits && self.shared.closing.is_cancelled() {
            return Err(JobError::ShuttingDown);
        }
        enum Step {
            Got(Box<super::queue::Offer>),
            Wait(u64, tokio::sync::oneshot::Receiver<super::queue::Offer>),
            Nothing,
        }
        let (q, step, _) = self.change(ns, queue, true, |st, now, fx| {
            if let Some(offer) = st.take_next(lease_ms, now, fx) {
                return Step::Got(Box::new(offer));
            }
            if !waits {
                return Step::Nothing;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let id = self
                .shared
                .next_claimer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            st.claimers.push_back(Claimer { id, lease_ms, tx });
            Step::Wait(id, rx)
        })?;
        let offer = match step {
            Step::Got(offer) => *offer,
            Step::Nothing => return Ok(None),
            Step::Wait(id, rx) => {
                let wait = ClaimWait::new(self, q.clone(), id, rx);
                match wait.until(opts.wait).await? {
                    Some(offer) => offer,
                    None => return Ok(None),
                }
            }
        };
        let claiming = Claiming::new(self, q, offer);
        let input = match claiming.offer().input {
            None => Payload::Bytes(Bytes::new()),
            Some(blob) => {
                let blob = blob.to_string();
                self.shared.blobs.read_blob(ns, &blob, false).await?.body
            }
        };
        // Waited for outside every lock; a claim whose record is lost in a
        // crash only leaves the job pending with one attempt fewer.
        self.commit().await?;
        let offer = claiming.keep();
        Ok(Some(Claimed {
            job: offer.view,
            receipt: Uuid::from_u128(offer.receipt),
            lease_expires: system_time(offer.lease_until),
            input,
        }))
    }

    async fn heartbeat(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: Heartbeat,
    ) -> Result<SystemTime, JobError> {
        let (_, until, _) = self.with_job(ns, queue, id, |st, seq, now, fx| {
            st.heartbeat(seq, receipt, report.clone(), now, fx)
        })?;
        self.commit().await?;
        Ok(system_time(until))
    }

    async fn complete(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        body: IncomingBody,
        meta: ResultMeta,
    ) -> Result<JobView, JobError> {
        // Checked first, so a worker without the lease uploads nothing.
        self.with_job(ns, queue, id, |st, seq, now, fx| {
            st.check_lease(seq, receipt, now, fx)
        })?;
        let job_id = JobId::parse(id).ok_or_else(|| JobError::JobNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
            id: id.to_owned(),
        })?;
        let (blob, body) = self
            .store_body(ns, job_id, body, Some(meta.content_type.clone()))
            .await?;
        let info = ResultInfo {
            body,
            status: meta.status,
        };
        let done = self.with_job(ns, queue, id, |st, seq, now, fx| {
            st.complete(seq, receipt, blob, info.clone(), now, fx)
        });
        match done {
            Ok((_, view, _)) => {
                self.commit().await?;
                Ok(view)
            }
            Err(e) => {
                // The lease ended while the bytes arrived: keep nothing.
                self.delete_blobs(ns, blob.into_iter().collect()).await;
                Err(e)
            }
        }
    }

    async fn fail(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: FailureReport,
    ) -> Result<JobView, JobError> {
        let (_, view, _) = self.with_job(ns, queue, id, |st, seq, now, fx| {
            st.fail(seq, receipt, report.clone(), now, fx)
        })?;
        self.commit().await?;
        Ok(view)
    }

    fn job_counts(&self) -> Vec<QueueJobCounts> {
        let mut out: Vec<QueueJobCounts> =
            self.all_queues().iter().filter_map(queue_counts).collect();
        out.sort_by(|a, b| (&a.namespace, &a.queue).cmp(&(&b.namespace, &b.queue)));
        out
    }

    fn job_totals(&self) -> JobTotals {
        self.totals()
    }

    fn begin_shutdown(&self) {
        self.shared.closing.cancel();
    }

    async fn close(&self) {
        self.shared.closing.cancel();
        if let Some(log) = self.shared.log.clone() {
            let flushed = tokio::task::spawn_blocking(move || log.flush_all()).await;
            if let Ok(Err(e)) = flushed {
                tracing::error!(error = %e.0, "the jobs log's last records could not be written at shutdown");
            }
        }
        if let Some(callbacks) = &self.shared.callbacks {
            callbacks.close();
        }
    }
}

/// One queue's counts, `None` if it was retired.
fn queue_counts(q: &Arc<JobQueue>) -> Option<QueueJobCounts> {
    let st = q.lock();
    (!st.removed).then(|| QueueJobCounts {
        namespace: q.ns.clone(),
        queue: q.name.clone(),
        counts: st.counts,
        waiting_workers: st.claimers.len() as u64,
    })
}
