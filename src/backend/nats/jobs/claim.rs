//! Claims: the next pending message of the queue, then the job's entry
//! moved from `pending` to `running` under a new lease (compare-and-set,
//! so one node wins), then the message acknowledged. A message whose job
//! is no longer pending under its ticket (cancelled, expired, claimed
//! through an earlier message) is stale and is dropped. A claim whose
//! worker goes away before its answer is made is taken back.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::doc::{system_time, Failure, StoredJob};
use super::kv::Step;
use super::names::Lane;
use super::pending::parse_payload;
use super::{NatsJobs, WaitingWorker};
use crate::backend::jobs::{codes, ClaimOptions, Claimed, JobError, JobId, JobState};
use crate::backend::name::Name;
use crate::backend::Payload;

/// What a claim found in a job's entry.
enum Found {
    /// Claimed: the lease's receipt, and `started` before this claim.
    Claimed(Uuid, Option<u64>),
    /// Its lifetime had passed: now `failed` (`EXPIRED`).
    Expired,
    /// Not this message's to claim.
    Stale,
}

/// Takes a claim back if dropped while armed: the job returns to the
/// head of its queue with its attempt count restored.
struct ClaimGuard {
    jobs: NatsJobs,
    ns: Name,
    queue: Name,
    id: JobId,
    receipt: Uuid,
    started: Option<u64>,
    armed: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (jobs, ns, queue, id) = (
            self.jobs.clone(),
            self.ns.clone(),
            self.queue.clone(),
            self.id,
        );
        let (receipt, started) = (self.receipt, self.started);
        tokio::spawn(async move { jobs.undo_claim(&ns, &queue, id, receipt, started).await });
    }
}

impl NatsJobs {
    pub(super) async fn claim_next(
        &self,
        ns: &Name,
        queue: &Name,
        opts: ClaimOptions,
    ) -> Result<Option<Claimed>, JobError> {
        let waits = !opts.wait.is_zero();
        if waits && self.shared.closing.is_cancelled() {
            return Err(JobError::ShuttingDown);
        }
        let Some(q) = self.pending(ns, queue, waits).await? else {
            return Ok(None);
        };
        let deadline = Instant::now() + opts.wait;
        let _waiting = waits.then(|| WaitingWorker::new(self, ns, queue));
        loop {
            let next = async {
                tokio::select! {
                    got = self.next_delivery(&q, deadline) => got,
                    () = self.shared.closing.cancelled() => Err(crate::backend::BackendError::ShuttingDown),
                }
            };
            let Some(delivery) = next.await.map_err(|e| match e {
                crate::backend::BackendError::ShuttingDown => JobError::ShuttingDown,
                e => e.into(),
            })?
            else {
                return Ok(None);
            };
            let parsed = parse_payload(&delivery.message().payload);
            let msg = delivery.into_message();
            let Some((id, ticket)) = parsed else {
                tracing::warn!(namespace = %ns, queue = %queue, "a message that is no job was dropped from a job queue");
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            };
            let found = self.take(ns, queue, id, ticket, lease_ms(opts.lease)).await;
            // The entry is decided either way (or gone): the message is
            // done with. One not acknowledged comes back, stale, later.
            if let Err(e) = msg.double_ack_with(AckKind::Ack).await {
                tracing::debug!(error = %e, "a claimed job's message was not acknowledged");
            }
            let (found, job) = match found {
                Ok(found) => found,
                Err(JobError::JobNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let (receipt, started) = match found {
                Found::Claimed(receipt, started) => (receipt, started),
                Found::Expired => {
                    self.finished(&job, ns, queue);
                    continue;
                }
                Found::Stale => continue,
            };
            self.shared
                .totals
                .claims
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut guard = ClaimGuard {
                jobs: self.clone(),
                ns: ns.clone(),
                queue: queue.clone(),
                id,
                receipt,
                started,
                armed: true,
            };
            let input = match &job.input.blob {
                None => Payload::Bytes(Bytes::new()),
                Some(blob) => self.shared.inner.read_blob(ns, blob, false).await?.body,
            };
            guard.armed = false;
            return Ok(Some(Claimed {
                job: job.view(ns, queue),
                receipt,
                lease_expires: system_time(job.lease_until),
                input,
            }));
        }
    }

    /// Moves job `id` to `running` if message `ticket` is its current one.
    async fn take(
        &self,
        ns: &Name,
        queue: &Name,
        id: JobId,
        ticket: u64,
        lease_ms: u64,
    ) -> Result<(Found, StoredJob), JobError> {
        self.change(ns, queue, &id.to_string(), |job, now| {
            if job.state != JobState::Pending || job.ticket != ticket {
                return Ok(Step::Keep(Found::Stale));
            }
            if job.pending_until <= now {
                let message = "the job's lifetime passed while it was pending";
                job.fail_with(Failure::server(codes::EXPIRED, message), now);
                return Ok(Step::Write(Found::Expired));
            }
            let receipt = Uuid::new_v4();
            let started = job.started;
            job.state = JobState::Running;
            job.attempt += 1;
            job.started.get_or_insert(now);
            job.receipt = Some(receipt);
            job.lease_until = now.saturating_add(lease_ms);
            job.lease_ms = lease_ms;
            job.changed();
            Ok(Step::Write(Found::Claimed(receipt, started)))
        })
        .await
    }

    /// Takes back a claim that never reached its worker.
    async fn undo_claim(
        &self,
        ns: &Name,
        queue: &Name,
        id: JobId,
        receipt: Uuid,
        started: Option<u64>,
    ) {
        let ticket = new_ticket();
        let undone = self
            .change(ns, queue, &id.to_string(), |job, _| {
                if job.state != JobState::Running || job.receipt != Some(receipt) {
                    return Ok(Step::Keep(false));
                }
                job.attempt = job.attempt.saturating_sub(1);
                job.started = started;
                job.requeue(ticket);
                Ok(Step::Write(true))
            })
            .await;
        let queued = match undone {
            Ok((true, _)) => self.enqueue(ns, queue, Lane::Again, id, ticket).await,
            Ok((false, _)) => Ok(()),
            Err(e) => Err(match e {
                JobError::Bytes(e) => e,
                e => crate::backend::BackendError::Unavailable {
                    reason: e.to_string(),
                    retry_after: 1,
                },
            }),
        };
        if let Err(e) = queued {
            tracing::warn!(namespace = %ns, queue = %queue, job = %id, error = %e, "a claim whose worker left could not be taken back; its lease runs out instead");
        }
    }
}

/// A lease of `lease` as milliseconds, at least one.
fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A fresh ticket for a job's place in a queue.
pub fn new_ticket() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}
