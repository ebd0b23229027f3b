//! Long polls: a request waiting for a job to finish or to change from
//! the version its client has. It registers on the job's `Notify` under
//! the queue's lock, so no change between its check and its wait is
//! missed, and unregisters when it ends or its request is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::queue::JobQueue;
use super::Jobs;
use crate::backend::jobs::{JobError, JobView, Seen};
use crate::backend::name::Name;

impl Jobs {
    /// Waits for the job to answer `seen` (see `Seen::answers`).
    pub(super) async fn wait_for(
        &self,
        ns: &Name,
        queue: &Name,
        id: &str,
        seen: &Seen,
        wait: Duration,
    ) -> Result<JobView, JobError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (q, (view, watch), _) = self.with_job(ns, queue, id, |st, seq, _, _| {
                let job = st.job(seq);
                if seen.answers(job.state.is_done(), job.version)
                    || tokio::time::Instant::now() >= deadline
                {
                    return Ok((st.view(seq), None));
                }
                let notify = st.watch(seq);
                let mut notified = Box::pin(notify.notified_owned());
                notified.as_mut().enable();
                Ok((st.view(seq), Some((seq, notified))))
            })?;
            let Some((seq, notified)) = watch else {
                return Ok(view);
            };
            let _watching = Watching {
                jobs: self,
                queue: q,
                seq,
            };
            if self.shared.closing.is_cancelled() {
                return Err(JobError::ShuttingDown);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = self.shared.closing.cancelled() => return Err(JobError::ShuttingDown),
            }
        }
    }
}

/// A long poll registered on a job; dropped, it is forgotten.
struct Watching<'a> {
    jobs: &'a Jobs,
    queue: Arc<JobQueue>,
    seq: u64,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let seq = self.seq;
        self.jobs
            .change_queue(&self.queue, |st, _, _| st.unwatch(seq));
    }
}
