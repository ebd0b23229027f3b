//! `impl JobStore for NatsJobs`: each operation of the seam, handed to
//! the module that does it.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::NatsJobs;
use crate::backend::jobs::{
    ClaimOptions, Claimed, FailureReport, Heartbeat, JobError, JobPage, JobStore, JobTotals,
    JobView, ListOptions, LogEntry, QueueJobCounts, ResultMeta, Seen, SubmitOptions, Submitted,
};
use crate::backend::name::Name;
use crate::backend::{IncomingBody, Payload};

#[async_trait]
impl JobStore for NatsJobs {
    async fn submit(
        &self,
        ns: &Name,
        queue: &Name,
        input: IncomingBody,
        opts: SubmitOptions,
    ) -> Result<Submitted, JobError> {
        self.submit_job(ns, queue, input, opts).await
    }

    async fn get(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError> {
        let (_, read) = self.read(ns, queue, id).await?;
        Ok(read.job.view(ns, queue))
    }

    async fn watch(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        seen: &Seen,
        wait: Duration,
    ) -> Result<JobView, JobError> {
        self.watch_job(ns, queue, id, seen, wait).await
    }

    async fn read_result(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
    ) -> Result<(JobView, Payload), JobError> {
        self.result_of(ns, queue, id).await
    }

    async fn log(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        after: u64,
    ) -> Result<Vec<LogEntry>, JobError> {
        let (_, read) = self.read(ns, queue, id).await?;
        Ok(read.job.log_since(after))
    }

    async fn cancel(&self, ns: &Name, queue: &Name, id: &str) -> Result<JobView, JobError> {
        self.cancel_job(ns, queue, id).await
    }

    async fn delete(&self, ns: &Name, queue: &Name, id: &str) -> Result<(), JobError> {
        self.delete_job(ns, queue, id).await
    }

    async fn list(&self, ns: &Name, queue: &Name, opts: ListOptions) -> Result<JobPage, JobError> {
        self.list_jobs(ns, queue, opts).await
    }

    async fn counts(&self, ns: &Name) -> Result<Option<Vec<QueueJobCounts>>, JobError> {
        self.count_jobs(ns).await
    }

    async fn claim(
        &self,
        ns: &Name,
        queue: &Name,
        opts: ClaimOptions,
    ) -> Result<Option<Claimed>, JobError> {
        self.claim_next(ns, queue, opts).await
    }

    async fn heartbeat(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: Heartbeat,
    ) -> Result<SystemTime, JobError> {
        self.heartbeat_job(ns, queue, id, receipt, report).await
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
        self.complete_job(ns, queue, id, receipt, body, meta).await
    }

    async fn fail(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        receipt: &str,
        report: FailureReport,
    ) -> Result<JobView, JobError> {
        self.fail_job(ns, queue, id, receipt, report).await
    }

    /// As the last sweep counted them (the cluster's), with this node's
    /// waiting workers.
    fn job_counts(&self) -> Vec<QueueJobCounts> {
        self.counted()
    }

    /// This node's counts since it started.
    fn job_totals(&self) -> JobTotals {
        self.totals()
    }

    fn begin_shutdown(&self) {
        self.shared.closing.cancel();
    }

    async fn close(&self) {
        self.shared.closing.cancel();
        if let Some(callbacks) = &self.shared.callbacks {
            callbacks.close();
        }
    }
}
