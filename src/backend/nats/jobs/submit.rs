//! Submits: the input stored as a blob, the job's entry made with
//! `create`, its idempotency key claimed with `create` (or taken over from
//! a job that is gone), then its id queued; and removing a job with its
//! key and blobs.

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store, UpdateErrorKind};
use bytes::Bytes;
use smol_str::SmolStr;

use super::super::queues::nats_error;
use super::claim::new_ticket;
use super::doc::{now_ms, now_ns, Body, StoredJob};
use super::names::{self, Lane};
use super::NatsJobs;
use crate::backend::jobs::{JobError, JobId, JobState, JobView, SubmitOptions, Submitted};
use crate::backend::meta::DEFAULT_CONTENT_TYPE;
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, MetaInput, PushOptions};

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
}
