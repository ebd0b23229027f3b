//! The client side of the seam: submit (with idempotency keys), reading a
//! job, its result and its log, long polls on a key-value watch, cancel,
//! delete, listings and counts.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use bytes::Bytes;
use futures_util::StreamExt as _;
use smol_str::SmolStr;
use tokio::time::Instant;

use super::super::queues::nats_error;
use super::claim::new_ticket;
use super::doc::{now_ms, now_ns, Body, Failure, StoredJob};
use super::kv::{read_entry, scan, Step};
use super::names::{self, Lane};
use super::NatsJobs;
use crate::backend::jobs::{
    codes, JobError, JobId, JobPage, JobState, JobView, ListOptions, QueueJobCounts, Seen,
    SubmitOptions, Submitted,
};
use crate::backend::meta::DEFAULT_CONTENT_TYPE;
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, MetaInput, Payload, PushOptions};

/// The lifetime given to a job's blobs: longer than any job can last,
/// since the job's removal deletes them.
const HELD_BY_JOB: u64 = u32::MAX as u64;
/// Times a submit tries to take over an idempotency key left by a job
/// that is gone, against other submits doing the same.
const KEY_ATTEMPTS: usize = 10;

impl NatsJobs {
    /// Stores a body as a blob of the namespace; an empty one is no blob.
    pub(super) async fn store_body(
        &self,
        ns: &Name,
        body: IncomingBody,
        content_type: Option<SmolStr>,
    ) -> Result<Body, JobError> {
        let type_or_default = || {
            content_type
                .as_deref()
                .unwrap_or(DEFAULT_CONTENT_TYPE)
                .to_owned()
        };
        if body.announced == Some(0) {
            return Ok(Body {
                blob: None,
                size: 0,
                content_type: type_or_default(),
            });
        }
        let opts = PushOptions {
            meta: MetaInput {
                content_type: content_type.clone(),
                custom: Vec::new(),
            },
            lifetime: HELD_BY_JOB,
        };
        let stored = self.shared.inner.store_blob(ns, body, opts).await?;
        let mut body = Body {
            blob: Some(stored.id.to_string()),
            size: stored.size,
            content_type: stored.meta.content_type.to_string(),
        };
        if stored.size == 0 {
            self.delete_blobs(ns, [body.blob.take()]).await;
        }
        Ok(body)
    }

    /// Deletes blobs of a job; one already gone is fine.
    pub(super) async fn delete_blobs(
        &self,
        ns: &Name,
        blobs: impl IntoIterator<Item = Option<String>>,
    ) {
        for blob in blobs.into_iter().flatten() {
            if let Err(e) = self.shared.inner.delete_blob(ns, &blob).await {
                tracing::debug!(error = %e, %blob, "a removed job's blob was already gone");
            }
        }
    }

    /// Removes a job's entry, its idempotency key (if still its) and blobs.
    pub(super) async fn remove(
        &self,
        store: &Store,
        ns: &Name,
        queue: &Name,
        job: &StoredJob,
    ) -> Result<(), BackendError> {
        self.purge_key(store, &names::job_key(queue, job.job_id()))
            .await?;
        if let Some(key) = &job.idempotency_key {
            let key = names::idempotency_key(queue, key);
            let entry = store
                .entry(&key)
                .await
                .map_err(|e| nats_error("reading an idempotency key", e))?;
            if entry.is_some_and(|e| e.value == job.id.to_string().as_bytes()) {
                self.purge_key(store, &key).await?;
            }
        }
        let blobs = [
            job.input.blob.clone(),
            job.result.as_ref().and_then(|r| r.body.blob.clone()),
        ];
        self.delete_blobs(ns, blobs).await;
        Ok(())
    }

    /// The job an idempotency key names, if both are still there.
    async fn keyed(
        &self,
        ns: &Name,
        queue: &Name,
        key: &str,
    ) -> Result<Option<(JobView, String, u64)>, JobError> {
        let Some(store) = self.bucket(ns, false).await? else {
            return Ok(None);
        };
        let key = names::idempotency_key(queue, key);
        let entry = store
            .entry(&key)
            .await
            .map_err(|e| nats_error("reading an idempotency key", e))?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&entry.value).into_owned();
        match self.read(ns, queue, &id).await {
            Ok((_, read)) => Ok(Some((read.job.view(ns, queue), id, entry.revision))),
            Err(JobError::JobNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn submit_job(
        &self,
        ns: &Name,
        queue: &Name,
        input: IncomingBody,
        opts: SubmitOptions,
    ) -> Result<Submitted, JobError> {
        if let Some(key) = &opts.idempotency_key {
            if let Some((job, ..)) = self.keyed(ns, queue, key).await? {
                return Ok(Submitted {
                    job,
                    created: false,
                });
            }
        }
        let store = self
            .bucket(ns, true)
            .await?
            .ok_or_else(|| nats_error("making the jobs bucket", "missing"))?;
        self.pending(ns, queue, true).await?;
        let id = JobId::random();
        let SubmitOptions {
            meta,
            lifetime,
            max_attempts,
            retention,
            idempotency_key,
            callback,
        } = opts;
        let input = self.store_body(ns, input, meta.content_type).await?;
        let now = now_ms();
        let job = StoredJob {
            id: id.uuid(),
            state: JobState::Pending,
            progress: None,
            message: None,
            attempt: 0,
            max_attempts,
            version: 1,
            order: now_ns(),
            created: now,
            started: None,
            finished: None,
            pending_until: now.saturating_add(lifetime.saturating_mul(1000)),
            retention,
            receipt: None,
            lease_until: 0,
            lease_ms: 0,
            ticket: new_ticket(),
            input,
            result: None,
            error: None,
            metadata: meta
                .custom
                .iter()
                .map(|p| (p.key.to_string(), p.value.to_string()))
                .collect(),
            idempotency_key: idempotency_key.map(String::from),
            callback: callback.map(String::from),
            log: Vec::new(),
            log_dropped: 0,
        };
        let key = names::job_key(queue, id);
        if let Err(e) = store.create(&key, job.encode()).await {
            self.delete_blobs(ns, [job.input.blob.clone()]).await;
            return Err(nats_error("storing the job", e).into());
        }
        if let Some(idem) = &job.idempotency_key {
            match self.take_key(&store, ns, queue, idem, id).await {
                Ok(None) => {}
                Ok(Some(first)) => {
                    // Another submit with the key won: keep nothing of this one.
                    self.remove(&store, ns, queue, &job).await?;
                    return Ok(Submitted {
                        job: first,
                        created: false,
                    });
                }
                Err(e) => {
                    let _ = self.remove(&store, ns, queue, &job).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.enqueue(ns, queue, Lane::New, id, job.ticket).await {
            let _ = self.remove(&store, ns, queue, &job).await;
            return Err(e.into());
        }
        self.shared
            .totals
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Submitted {
            job: job.view(ns, queue),
            created: true,
        })
    }

    /// Makes idempotency key `key` name job `id`; `Some(first job)` if it
    /// names a job that is still kept.
    async fn take_key(
        &self,
        store: &Store,
        ns: &Name,
        queue: &Name,
        key: &str,
        id: JobId,
    ) -> Result<Option<JobView>, JobError> {
        let entry_key = names::idempotency_key(queue, key);
        let value = Bytes::from(id.to_string());
        for _ in 0..KEY_ATTEMPTS {
            match store.create(&entry_key, value.clone()).await {
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(nats_error("storing the idempotency key", e).into()),
            };
            match self.keyed(ns, queue, key).await? {
                Some((first, ..)) => return Ok(Some(first)),
                None => {
                    // Left by a job that is gone: take it over, unless
                    // another submit does first.
                    let Some(entry) = store
                        .entry(&entry_key)
                        .await
                        .map_err(|e| nats_error("reading an idempotency key", e))?
                    else {
                        continue;
                    };
                    match store
                        .update(&entry_key, value.clone(), entry.revision)
                        .await
                    {
                        Ok(_) => return Ok(None),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(nats_error("storing the idempotency key", e).into()),
                    }
                }
            }
        }
        Err(nats_error(
            "storing the idempotency key",
            "other submits kept taking it",
        )
        .into())
    }

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
