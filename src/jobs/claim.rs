//! Claims that clean up after a worker that went away. A claim puts a job
//! under a lease before its answer (with the input's bytes) is made; if the
//! worker's request is dropped in between, while it waits or while the
//! input is opened, the guard here undoes the claim and the job goes back
//! to the head of its queue, to the next worker, with its attempt count as
//! it was.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::queue::{JobQueue, Offer};
use super::Jobs;
use crate::backend::jobs::JobError;

/// A worker registered as waiting in a claim.
pub(super) struct ClaimWait {
    jobs: Jobs,
    queue: Arc<JobQueue>,
    id: u64,
    rx: Option<oneshot::Receiver<Offer>>,
}

impl ClaimWait {
    pub fn new(jobs: &Jobs, queue: Arc<JobQueue>, id: u64, rx: oneshot::Receiver<Offer>) -> Self {
        ClaimWait {
            jobs: jobs.clone(),
            queue,
            id,
            rx: Some(rx),
        }
    }

    /// Waits up to `wait` for a job; `None` if none came.
    pub async fn until(mut self, wait: Duration) -> Result<Option<Offer>, JobError> {
        let closing = self.jobs.shared.closing.clone();
        let woke = {
            let Some(rx) = self.rx.as_mut() else {
                return Ok(None);
            };
            tokio::select! {
                offer = rx => Some(offer),
                () = tokio::time::sleep(wait) => None,
                () = closing.cancelled() => return Err(JobError::ShuttingDown),
            }
        };
        match woke {
            Some(offer) => {
                self.rx = None;
                // A closed channel: the queue let go of its waiters.
                Ok(offer.ok())
            }
            None => Ok(self.take_back(true)),
        }
    }

    /// Leaves the queue's waiters; a job offered in the meantime is taken
    /// if `keep`, else handed back.
    fn take_back(&mut self, keep: bool) -> Option<Offer> {
        let mut rx = self.rx.take()?;
        let id = self.id;
        let (offer, leftovers) = self.jobs.change_queue(&self.queue, |st, now, _| {
            st.remove_claimer(id);
            let offer = rx.try_recv().ok()?;
            if keep {
                return Some(offer);
            }
            st.undo_claim(&offer, now);
            None
        })?;
        self.jobs.clean_up_later(&self.queue.ns, leftovers);
        offer
    }
}

impl Drop for ClaimWait {
    fn drop(&mut self) {
        self.take_back(false);
    }
}

/// A claimed job whose answer is being made: dropped before `keep`, the
/// claim is undone.
pub(super) struct Claiming {
    jobs: Jobs,
    queue: Arc<JobQueue>,
    offer: Option<Offer>,
}

impl Claiming {
    pub fn new(jobs: &Jobs, queue: Arc<JobQueue>, offer: Offer) -> Claiming {
        Claiming {
            jobs: jobs.clone(),
            queue,
            offer: Some(offer),
        }
    }

    pub fn offer(&self) -> &Offer {
        self.offer.as_ref().expect("held until kept")
    }

    /// The answer is made: the claim stands and is counted.
    pub fn keep(mut self) -> Offer {
        self.jobs
            .shared
            .totals
            .claims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.offer.take().expect("held until kept")
    }
}

impl Drop for Claiming {
    fn drop(&mut self) {
        let Some(offer) = self.offer.take() else {
            return;
        };
        if let Some(((), leftovers)) = self
            .jobs
            .change_queue(&self.queue, |st, now, _| st.undo_claim(&offer, now))
        {
            self.jobs.clean_up_later(&self.queue.ns, leftovers);
        }
    }
}
