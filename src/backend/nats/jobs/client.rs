//! The client side of the seam besides submits (`submit`): reading a job
//! and its result, long polls on a key-value watch, cancel, delete,
//! listings and counts.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::super::queues::nats_error;
use super::doc::{Failure, StoredJob};
use super::kv::{read_entry, scan, Step};
use super::names;
use super::NatsJobs;
use crate::backend::jobs::{
    codes, JobError, JobPage, JobState, JobView, ListOptions, QueueJobCounts, Seen,
};
use crate::backend::name::Name;
use crate::backend::{BackendError, Payload};

impl NatsJobs {
    /// Waits up to `wait` for job `id` to be done or to differ from `seen`,
    /// watching its entry, so that a change made through any node ends it.
    pub(super) async fn watch_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        seen: &Seen,
        wait: Duration,
    ) -> Result<JobView, JobError> {
        let deadline = Instant::now() + wait;
        let (store, read) = self.read(ns, queue, id).await?;
        let answers = |job: &StoredJob| seen.answers(job.state.is_done(), job.version);
        if wait.is_zero() || answers(&read.job) {
            return Ok(read.job.view(ns, queue));
        }
        if self.shared.closing.is_cancelled() {
            return Err(JobError::ShuttingDown);
        }
        let key = names::job_key(queue, read.job.job_id());
        let mut watch = store
            .watch(&key)
            .await
            .map_err(|e| nats_error("watching the job", e))?;
        // Read again now that the watch is on, so no change is missed.
        let mut current = read_entry(&store, &key)
            .await?
            .ok_or_else(|| Self::not_found(ns, queue, id))?
            .job;
        loop {
            if answers(&current) {
                return Ok(current.view(ns, queue));
            }
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(e)) if e.operation == Operation::Put => {
                        if let Some(job) = StoredJob::decode(&e.value) {
                            current = job;
                        }
                    }
                    Some(Ok(_)) => return Err(Self::not_found(ns, queue, id)),
                    Some(Err(e)) => return Err(nats_error("watching the job", e).into()),
                    None => return Err(nats_error("watching the job", "the watch ended").into()),
                },
                () = tokio::time::sleep_until(deadline) => return Ok(current.view(ns, queue)),
                () = self.shared.closing.cancelled() => return Err(JobError::ShuttingDown),
            }
        }
    }

    pub(super) async fn result_of(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(JobView, Payload), JobError> {
        let (_, read) = self.read(ns, queue, id).await?;
        let job = read.job;
        let Some(result) = job
            .result
            .as_ref()
            .filter(|_| job.state == JobState::Succeeded)
        else {
            return Err(JobError::NoResult {
                id: job.job_id(),
                state: job.state,
                error: job.view(ns, queue).error,
            });
        };
        let view = job.view(ns, queue);
        let Some(blob) = &result.body.blob else {
            return Ok((view, Payload::Bytes(Bytes::new())));
        };
        match self.shared.inner.read_blob(ns, blob, false).await {
            Ok(read) => Ok((view, read.body)),
            // Removed with its job since the lookup.
            Err(BackendError::BlobNotFound { .. } | BackendError::BlobGone) => {
                Err(Self::not_found(ns, queue, id))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn cancel_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<JobView, JobError> {
        let (cancelled, job) = self
            .change(ns, queue, id, |job, now| {
                if job.state.is_done() {
                    return Ok(Step::Keep(false));
                }
                job.error = Some(Failure::server(codes::CANCELLED, "cancelled by a client"));
                job.finish(JobState::Cancelled, now);
                Ok(Step::Write(true))
            })
            .await?;
        if cancelled {
            self.finished(&job, ns, queue);
        }
        Ok(job.view(ns, queue))
    }

    pub(super) async fn delete_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(), JobError> {
        let (store, read) = self.read(ns, queue, id).await?;
        if !read.job.state.is_done() {
            return Err(JobError::NotDone {
                id: read.job.job_id(),
                state: read.job.state,
            });
        }
        self.remove(&store, ns, queue, &read.job).await?;
        Ok(())
    }

    pub(super) async fn list_jobs(
        &self,
        ns: &Name,
        queue: &Name,
        opts: ListOptions,
    ) -> Result<JobPage, JobError> {
        let after = match &opts.page_token {
            None => None,
            Some(token) => {
                Some(parse_token(token).ok_or_else(|| JobError::BadPageToken(token.clone()))?)
            }
        };
        let not_found = || JobError::QueueNotFound {
            namespace: ns.clone(),
            queue: queue.clone(),
        };
        let store = self.bucket(ns, false).await?.ok_or_else(not_found)?;
        let mut jobs: Vec<StoredJob> = scan(&store, &names::queue_jobs(queue))
            .await?
            .into_iter()
            .filter_map(|(_, value)| StoredJob::decode(&value))
            .filter(StoredJob::is_kept)
            .collect();
        if jobs.is_empty() {
            return Err(not_found());
        }
        jobs.sort_by_key(|j| (j.order, j.id));
        let mut page: Vec<&StoredJob> = jobs
            .iter()
            .filter(|j| after.is_none_or(|a| (j.order, j.id.as_u128()) > a))
            .filter(|j| opts.state.is_none_or(|s| j.state == s))
            .take(opts.limit.saturating_add(1))
            .collect();
        let more = page.len() > opts.limit;
        page.truncate(opts.limit);
        let next_page_token = more
            .then(|| {
                page.last()
                    .map(|j| format!("{}-{}", j.order, j.id.simple()))
            })
            .flatten();
        Ok(JobPage {
            jobs: page.iter().map(|j| j.view(ns, queue)).collect(),
            next_page_token,
        })
    }

    pub(super) async fn count_jobs(
        &self,
        ns: &Name,
    ) -> Result<Option<Vec<QueueJobCounts>>, JobError> {
        let Some(store) = self.bucket(ns, false).await? else {
            return Ok(None);
        };
        let mut by_queue: HashMap<Name, [u64; 5]> = HashMap::new();
        for (key, value) in scan(&store, ">").await? {
            let (Some((queue, _)), Some(job)) =
                (names::parse_job_key(&key), StoredJob::decode(&value))
            else {
                continue;
            };
            by_queue.entry(queue).or_default()[job.state.index()] += 1;
        }
        if by_queue.is_empty() {
            return Ok(None);
        }
        // A queue with workers waiting on this node and no jobs yet.
        for waiting in self.shared.waiting.iter() {
            let (wns, queue) = waiting.key();
            if wns == ns {
                by_queue.entry(queue.clone()).or_default();
            }
        }
        let mut out: Vec<QueueJobCounts> = by_queue
            .into_iter()
            .map(|(queue, counts)| QueueJobCounts {
                waiting_workers: self.waiting_workers(ns, &queue),
                namespace: ns.clone(),
                queue,
                counts,
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(Some(out))
    }
}

/// A page token: `{order}-{id without hyphens}` of the page's last job.
fn parse_token(token: &str) -> Option<(u64, u128)> {
    let (order, id) = token.split_once('-')?;
    if !order.bytes().all(|b| b.is_ascii_digit()) || id.len() != 32 {
        return None;
    }
    Some((
        order.parse().ok()?,
        uuid::Uuid::try_parse(id).ok()?.as_u128(),
    ))
}
