//! The life of a job, as changes of its queue's state: claim and its undo,
//! progress, the worker's result or failure, cancellation, and what happens
//! when a deadline passes. Each keeps the counts, the deadline index and
//! the version in step, and runs under the queue's lock.

use std::time::Duration;

use uuid::Uuid;

use super::job::{Job, Outcome, NEVER};
use super::queue::{Effects, Offer, QueueState};
use crate::backend::ids::BlobId;
use crate::backend::jobs::{
    codes, FailureReport, Heartbeat, JobError, JobFailure, JobState, JobView, ResultInfo,
};
use crate::store::clock::{saturating_millis, Millis};

impl QueueState {
    /// Hands a pending job to the oldest waiting worker still there, or
    /// puts it in the FIFO (at the head when it comes back).
    pub(super) fn make_available(&mut self, seq: u64, at_head: bool, now: Millis) {
        while let Some(claimer) = self.claimers.pop_front() {
            let offer = self.start_lease(seq, claimer.lease_ms, now);
            match claimer.tx.send(offer) {
                Ok(()) => return,
                // That worker has gone: take the claim back, try the next.
                Err(offer) => self.revert_lease(&offer),
            }
        }
        if at_head {
            self.put_at_head(seq);
        } else {
            self.pending.push_back(seq);
        }
    }

    /// Claims the oldest pending job for a worker asking for `lease_ms`.
    /// A job whose lifetime has passed, not yet swept, expires instead.
    pub fn take_next(&mut self, lease_ms: u64, now: Millis, fx: &mut Effects) -> Option<Offer> {
        while let Some(seq) = self.pending.pop_front() {
            let Some(job) = self.jobs.get(&seq) else {
                continue;
            };
            if job.state != JobState::Pending {
                continue;
            }
            if job.pending_until.has_passed(now) {
                self.expire_pending(seq, now, fx);
                continue;
            }
            return Some(self.start_lease(seq, lease_ms, now));
        }
        None
    }

    /// Puts a pending job under a new lease: `running`, one more attempt.
    fn start_lease(&mut self, seq: u64, lease_ms: u64, now: Millis) -> Offer {
        self.set_state(seq, JobState::Running);
        let until = Millis(now.0.saturating_add(lease_ms));
        let receipt = Uuid::new_v4().as_u128();
        let job = self.job_mut(seq);
        job.attempt += 1;
        let previous_started = job.started;
        if job.started == NEVER {
            job.started = now;
        }
        job.lease.receipt = receipt;
        job.lease.until = until;
        job.lease.length_ms = lease_ms;
        let input = job.input;
        self.set_deadline(seq, until);
        self.changed(seq);
        Offer {
            seq,
            receipt,
            lease_until: until,
            previous_started,
            input,
            view: self.view(seq),
        }
    }

    /// Takes back a lease that never reached its worker: the job is pending
    /// again as if never claimed this time (not yet back in the FIFO).
    fn revert_lease(&mut self, offer: &Offer) {
        let seq = offer.seq;
        self.set_state(seq, JobState::Pending);
        let job = self.job_mut(seq);
        job.attempt -= 1;
        job.started = offer.previous_started;
        job.lease.until = NEVER;
        let until = job.pending_until;
        self.set_deadline(seq, until);
        self.changed(seq);
    }

    /// Undoes a claim whose worker went away before its answer was made;
    /// the job goes back to the head. Nothing if the lease already ended
    /// some other way.
    pub fn undo_claim(&mut self, offer: &Offer, now: Millis) {
        let held = self
            .jobs
            .get(&offer.seq)
            .is_some_and(|j| j.state == JobState::Running && j.lease.receipt == offer.receipt);
        if held {
            self.revert_lease(offer);
            self.make_available(offer.seq, true, now);
        }
    }

    /// Ends a job in terminal `state` with `outcome`; its retention starts.
    fn finish(
        &mut self,
        seq: u64,
        state: JobState,
        outcome: Outcome,
        now: Millis,
        fx: &mut Effects,
    ) {
        self.set_state(seq, state);
        match state {
            JobState::Succeeded => fx.completions += 1,
            JobState::Failed => fx.failures += 1,
            _ => fx.cancellations += 1,
        }
        let job = self.job_mut(seq);
        job.finished = now;
        job.lease.until = NEVER;
        if state == JobState::Succeeded {
            job.progress = Some(100);
        }
        job.outcome = Some(Box::new(outcome));
        let removal = job.removal();
        let callback: Option<Box<str>> = job.callback().map(Into::into);
        self.set_deadline(seq, removal);
        self.changed(seq);
        if let Some(url) = callback {
            fx.callbacks.push((url, self.view(seq)));
        }
    }

    fn fail_with(&mut self, seq: u64, code: &str, message: String, now: Millis, fx: &mut Effects) {
        let failure = JobFailure {
            code: code.into(),
            message: message.into(),
            details: None,
        };
        self.finish(seq, JobState::Failed, Outcome::Error(failure), now, fx);
    }

    fn expire_pending(&mut self, seq: u64, now: Millis, fx: &mut Effects) {
        let message = "the job's lifetime passed while it was pending".to_owned();
        self.fail_with(seq, codes::EXPIRED, message, now, fx);
    }

    /// A running job's lease ran out: back to the head of the queue, or
    /// `ABANDONED` after its last attempt.
    fn expire_lease(&mut self, seq: u64, now: Millis, fx: &mut Effects) {
        let job = self.job(seq);
        if job.attempt >= job.max_attempts {
            let message = format!("the lease of each of its {} attempts ran out", job.attempt);
            self.fail_with(seq, codes::ABANDONED, message, now, fx);
        } else {
            self.requeue(seq, now);
        }
    }

    /// A running job goes back to `pending` at the head of the queue.
    fn requeue(&mut self, seq: u64, now: Millis) {
        self.set_state(seq, JobState::Pending);
        let job = self.job_mut(seq);
        job.lease.until = NEVER;
        let until = job.pending_until;
        self.set_deadline(seq, until);
        self.changed(seq);
        self.make_available(seq, true, now);
    }

    /// Acts on a job whose deadline passed (taken by `next_due`).
    pub fn deadline_passed(&mut self, seq: u64, now: Millis, fx: &mut Effects) {
        match self.job(seq).state {
            JobState::Pending => self.expire_pending(seq, now, fx),
            JobState::Running => self.expire_lease(seq, now, fx),
            _ => self.remove(seq, fx),
        }
    }

    /// Checks that `receipt` is the running lease of job `seq`, ending a
    /// lease that ran out first, as the sweeper would.
    fn held(
        &mut self,
        seq: u64,
        receipt: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<(), JobError> {
        let job = self.job(seq);
        let given = Uuid::try_parse(receipt).ok().map(|u| u.as_u128());
        let is_latest = given.is_some_and(|r| r != 0 && r == job.lease.receipt);
        if is_latest && job.state == JobState::Cancelled {
            return Err(JobError::Cancelled { id: job.id });
        }
        let not_held = || JobError::LeaseNotHeld {
            id: job.id,
            receipt: receipt.to_owned(),
        };
        if !is_latest || job.state != JobState::Running {
            return Err(not_held());
        }
        if job.lease.until.has_passed(now) {
            let err = not_held();
            self.expire_lease(seq, now, fx);
            return Err(err);
        }
        Ok(())
    }

    /// Records a worker's progress report and extends its lease; when the
    /// lease now ends.
    pub fn heartbeat(
        &mut self,
        seq: u64,
        receipt: &str,
        report: Heartbeat,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<Millis, JobError> {
        self.held(seq, receipt, now, fx)?;
        let cap = self.max_log;
        let job = self.job_mut(seq);
        let new_progress = report.progress.filter(|&p| job.progress != Some(p));
        if let Some(p) = new_progress {
            job.progress = Some(p);
        }
        let changed = new_progress.is_some() || report.message.is_some();
        if changed {
            if let Some(message) = &report.message {
                job.message = Some(message.clone());
            }
            let progress = job.progress;
            job.log.push(now, progress, report.message, cap);
        }
        let length = report
            .lease
            .map_or(job.lease.length_ms, |d: Duration| saturating_millis(d));
        let until = Millis(now.0.saturating_add(length));
        job.lease.until = until;
        self.set_deadline(seq, until);
        if changed {
            self.changed(seq);
            self.log_grew(seq);
        }
        Ok(until)
    }

    /// Checks a worker's lease before its result is uploaded.
    pub fn check_lease(
        &mut self,
        seq: u64,
        receipt: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<(), JobError> {
        self.held(seq, receipt, now, fx)
    }

    /// The worker's result: the job succeeds. Refused (and the caller then
    /// deletes the blob) if the lease is no longer held.
    pub fn complete(
        &mut self,
        seq: u64,
        receipt: &str,
        blob: Option<BlobId>,
        info: ResultInfo,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<JobView, JobError> {
        self.held(seq, receipt, now, fx)?;
        let outcome = Outcome::Result { blob, info };
        self.finish(seq, JobState::Succeeded, outcome, now, fx);
        Ok(self.view(seq))
    }

    /// The worker's failure: back to the head with `retry` and attempts
    /// left, else `failed` with its error.
    pub fn fail(
        &mut self,
        seq: u64,
        receipt: &str,
        report: FailureReport,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<JobView, JobError> {
        self.held(seq, receipt, now, fx)?;
        let job = self.job(seq);
        if report.retry && job.attempt < job.max_attempts {
            self.requeue(seq, now);
        } else {
            let outcome = Outcome::Error(report.failure);
            self.finish(seq, JobState::Failed, outcome, now, fx);
        }
        Ok(self.view(seq))
    }

    /// Cancels a pending or running job (a running one's lease is revoked:
    /// its receipt now answers `Cancelled`); a finished one is left.
    pub fn cancel(&mut self, seq: u64, now: Millis, fx: &mut Effects) -> JobView {
        if !self.job(seq).state.is_done() {
            let failure = JobFailure {
                code: codes::CANCELLED.into(),
                message: "cancelled by a client".into(),
                details: None,
            };
            self.finish(seq, JobState::Cancelled, Outcome::Error(failure), now, fx);
            self.compact_pending();
        }
        self.view(seq)
    }

    /// Removes a finished job; a job not done is refused.
    pub fn delete(&mut self, seq: u64, fx: &mut Effects) -> Result<(), JobError> {
        let job: &Job = self.job(seq);
        if !job.state.is_done() {
            return Err(JobError::NotDone {
                id: job.id,
                state: job.state,
            });
        }
        self.remove(seq, fx);
        Ok(())
    }
}
