//! The worker side of the seam: heartbeats, results and failures, each a
//! compare-and-set that first checks the worker's receipt is the job's
//! current lease; and what happens when a lease runs out.

use std::time::SystemTime;

use super::claim::new_ticket;
use super::doc::{system_time, Failure, LogLine, Outcome, StoredJob};
use super::kv::Step;
use super::names::Lane;
use super::NatsJobs;
use crate::backend::jobs::{
    codes, FailureReport, Heartbeat, JobError, JobState, JobView, ResultMeta,
};
use crate::backend::name::Name;
use crate::backend::IncomingBody;

/// Checks that `receipt` is the running lease of `job` at `now`.
fn held(job: &StoredJob, receipt: &str, now: u64) -> Result<(), JobError> {
    let latest = job.is_receipt(receipt);
    if latest && job.state == JobState::Cancelled {
        return Err(JobError::Cancelled { id: job.job_id() });
    }
    if !latest || job.state != JobState::Running || job.lease_until <= now {
        return Err(JobError::LeaseNotHeld {
            id: job.job_id(),
            receipt: receipt.to_owned(),
        });
    }
    Ok(())
}

/// What a change that may end a job did.
enum Ended {
    /// Back to pending under this ticket, to be queued again.
    Requeued(u64),
    /// Finished.
    Finished,
    /// Nothing (another node got there first).
    Nothing,
}

impl NatsJobs {
    pub(super) async fn heartbeat_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: Heartbeat,
    ) -> Result<SystemTime, JobError> {
        let cap = self.shared.config.max_log_entries;
        let (until, _) = self
            .change(ns, queue, id, |job, now| {
                held(job, receipt, now)?;
                let new_progress = report.progress.filter(|&p| job.progress != Some(p));
                if let Some(p) = new_progress {
                    job.progress = Some(p);
                }
                if new_progress.is_some() || report.message.is_some() {
                    if let Some(message) = &report.message {
                        job.message = Some(message.to_string());
                    }
                    let line = LogLine {
                        time: now,
                        progress: job.progress,
                        message: report.message.as_deref().map(str::to_owned),
                    };
                    job.push_log(line, cap);
                    job.changed();
                }
                let length = report.lease.map_or(job.lease_ms, |d| {
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
                });
                job.lease_until = now.saturating_add(length);
                Ok(Step::Write(job.lease_until))
            })
            .await?;
        Ok(system_time(until))
    }

    pub(super) async fn complete_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        body: IncomingBody,
        meta: ResultMeta,
    ) -> Result<JobView, JobError> {
        // Checked first, so a worker without the lease uploads nothing.
        let (_, read) = self.read(ns, queue, id).await?;
        held(&read.job, receipt, super::doc::now_ms())?;
        let stored = self
            .store_body(ns, body, Some(meta.content_type.clone()))
            .await?;
        let blob = stored.blob.clone();
        let outcome = Outcome {
            body: stored,
            status: meta.status,
        };
        let done = self
            .change(ns, queue, id, |job, now| {
                held(job, receipt, now)?;
                job.result = Some(outcome.clone());
                job.finish(JobState::Succeeded, now);
                Ok(Step::Write(()))
            })
            .await;
        match done {
            Ok(((), job)) => {
                self.finished(&job, ns, queue);
                Ok(job.view(ns, queue))
            }
            Err(e) => {
                // The lease ended while the bytes arrived: keep nothing.
                self.delete_blobs(ns, [blob]).await;
                Err(e)
            }
        }
    }

    pub(super) async fn fail_job(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: FailureReport,
    ) -> Result<JobView, JobError> {
        let (ended, job) = self
            .change(ns, queue, id, |job, now| {
                held(job, receipt, now)?;
                if report.retry && job.attempt < job.max_attempts {
                    let ticket = new_ticket();
                    job.requeue(ticket);
                    return Ok(Step::Write(Ended::Requeued(ticket)));
                }
                job.fail_with(Failure::of(&report.failure), now);
                Ok(Step::Write(Ended::Finished))
            })
            .await?;
        self.after(ns, queue, &job, ended).await?;
        Ok(job.view(ns, queue))
    }

    /// Ends a lease that ran out: back to the head of the queue, or
    /// `ABANDONED` after the last attempt. Nothing if the job moved on.
    pub(super) async fn lease_ran_out(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(), JobError> {
        let (ended, job) = self
            .change(ns, queue, id, |job, now| {
                if job.state != JobState::Running || job.lease_until > now {
                    return Ok(Step::Keep(Ended::Nothing));
                }
                if job.attempt >= job.max_attempts {
                    let message =
                        format!("the lease of each of its {} attempts ran out", job.attempt);
                    job.fail_with(Failure::server(codes::ABANDONED, message), now);
                    return Ok(Step::Write(Ended::Finished));
                }
                let ticket = new_ticket();
                job.requeue(ticket);
                Ok(Step::Write(Ended::Requeued(ticket)))
            })
            .await?;
        self.after(ns, queue, &job, ended).await
    }

    /// Fails a pending job whose lifetime has passed. Nothing if it moved on.
    pub(super) async fn lifetime_passed(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(), JobError> {
        let (ended, job) = self
            .change(ns, queue, id, |job, now| {
                if job.state != JobState::Pending || job.pending_until > now {
                    return Ok(Step::Keep(Ended::Nothing));
                }
                let message = "the job's lifetime passed while it was pending";
                job.fail_with(Failure::server(codes::EXPIRED, message), now);
                Ok(Step::Write(Ended::Finished))
            })
            .await?;
        self.after(ns, queue, &job, ended).await
    }

    /// What follows a change that may end a job: queue it again, or count
    /// it and send its callback.
    async fn after(
        &self,
        ns: &Name,
        queue: &Name,
        job: &StoredJob,
        ended: Ended,
    ) -> Result<(), JobError> {
        match ended {
            Ended::Requeued(ticket) => {
                self.enqueue(ns, queue, Lane::Again, job.job_id(), ticket)
                    .await?;
            }
            Ended::Finished => self.finished(job, ns, queue),
            Ended::Nothing => {}
        }
        Ok(())
    }
}
