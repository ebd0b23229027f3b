//! Durable jobs (`--data-dir`): the jobs engine's own log under
//! `DIR/jobs/`, beside the store's journal, which keeps the jobs' bytes
//! (inputs and results are blobs).
//!
//! - `record`: what the log holds and its framing.
//! - `log`: the writing end, its files, rotation and snapshots' files.
//! - `replay`: reading the files back into each job's last state.
//! - `convert`: a job to and from its record.
//! - here: what the engine does with them: records for every change
//!   (`record_changes`), waiting for them before an answer (`Jobs::commit`),
//!   the periodic flush and snapshots, and the start-up that restores jobs.

mod convert;
pub mod log;
pub mod record;
pub mod replay;
mod restore;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use convert::{place, stored, LogWith};
use log::{JobLog, LogFailed};
use record::JobRecord;

use super::queue::{Dirty, QueueState};
use super::Jobs;
use crate::backend::jobs::{JobError, JobId};
use crate::backend::name::Name;
use crate::backend::{BackendError, StorageFault, StoragePlace};
use crate::store::journal::FsyncMode;

/// The custom-data key a job's blobs carry, with the job's id as value: a
/// blob stored before a crash kept its job's record from being written is
/// found by it and deleted at the next start.
pub const JOB_MARK: &str = "blobq-job";

/// Where and how the jobs log is kept: the store's durability settings.
#[derive(Clone, Debug)]
pub struct JobDurability {
    /// `DIR/jobs`.
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    pub fsync_interval: Duration,
    pub segment_bytes: u64,
    pub repair: bool,
}

impl JobDurability {
    /// The jobs log of a server started with `--data-dir`, if it was.
    pub fn of(config: &crate::config::Config) -> Option<JobDurability> {
        let durability = config.store().durability?;
        Some(JobDurability {
            dir: durability.dir.join("jobs"),
            fsync: durability.fsync,
            fsync_interval: durability.fsync_interval,
            segment_bytes: durability.segment_bytes,
            repair: durability.repair,
        })
    }
}

/// Appends the records of what a change did to queue `st`, under its lock.
pub(super) fn record_changes(log: &JobLog, st: &QueueState, dirty: &Dirty) {
    if dirty.changed.is_empty() && dirty.removed.is_empty() {
        return;
    }
    let at = place(&st.ns, &st.name);
    let mut changed = dirty.changed.clone();
    // One record a job, carrying its new log entry if any change made one.
    changed.sort_unstable_by_key(|&(seq, _)| seq);
    changed.dedup_by(|later, first| {
        first.1 |= later.1;
        later.0 == first.0
    });
    for (seq, grew) in changed {
        let Some(job) = st.jobs.get(&seq) else {
            continue;
        };
        let with = if grew {
            LogWith::Last
        } else {
            LogWith::Nothing
        };
        log.append(&JobRecord::Upsert(Box::new(stored(&at, seq, job, with))));
    }
    for id in &dirty.removed {
        log.append(&JobRecord::Removed {
            place: at.clone(),
            id: id.0,
        });
    }
}

/// A write of the log that failed, as the seam reports it: `507`.
fn unwritable(e: &LogFailed) -> JobError {
    JobError::Bytes(BackendError::Unwritable(StorageFault::new(
        StoragePlace::Data,
        &e.0,
    )))
}

impl Jobs {
    /// Waits until the records of every change made so far are as durable
    /// as the `--fsync` mode promises an answer: written, or synced with
    /// `always`. Called after the change, outside every lock.
    pub(super) async fn commit(&self) -> Result<(), JobError> {
        let Some(log) = self.shared.log.clone() else {
            return Ok(());
        };
        let target = log.appended();
        let sync = log.syncs_each_answer();
        if log.reached(target, sync) {
            return Ok(());
        }
        let flushed = tokio::task::spawn_blocking(move || log.flush(target, sync)).await;
        match flushed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e.0, "the jobs log could not be written");
                Err(unwritable(&e))
            }
            Err(_) => Err(JobError::ShuttingDown),
        }
    }

    /// Undoes a submit whose record could not be written: the job goes
    /// (a removal record follows its upsert, so whichever of them a later
    /// write saves, the job is not there after a restart) with its input.
    pub(super) async fn take_back_submit(&self, ns: &Name, queue: &Name, id: JobId) {
        let id = id.to_string();
        let taken = self.with_job(ns, queue, &id, |st, seq, _, fx| {
            st.remove(seq, fx);
            Ok(())
        });
        if let Ok((_, (), leftovers)) = taken {
            self.clean_up(ns, leftovers).await;
        }
    }

    /// The callback of job `id` was delivered: recorded, so that a restart
    /// does not send it again.
    pub(super) fn callback_delivered(&self, ns: &Name, queue: &Name, id: JobId) {
        let (Some(log), Some(q)) = (&self.shared.log, self.queue(ns, queue)) else {
            return;
        };
        let mut st = q.lock();
        let Some(&seq) = st.ids.get(&id) else {
            return;
        };
        if let Some(extras) = st.jobs.get_mut(&seq).and_then(|j| j.extras.as_mut()) {
            extras.callback_delivered = true;
            log.append(&JobRecord::Delivered {
                place: place(ns, queue),
                id: id.0,
            });
        }
    }

    /// Writes the log every `interval` (synced unless `never`), and once
    /// the open segment is full, starts a new one and snapshots every job
    /// into it, which lets the older files go.
    pub(super) async fn run_log(self, log: Arc<JobLog>, interval: Duration) {
        loop {
            tokio::select! {
                () = self.shared.closing.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let flushing = log.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || flushing.flush_all()).await {
                tracing::warn!(error = %e.0, "the jobs log could not be written; retrying");
                continue;
            }
            if log.is_full() {
                if let Err(e) = self.snapshot(&log).await {
                    tracing::warn!(error = %e, "a snapshot of the jobs log failed; retrying later");
                }
            }
        }
    }

    /// Starts a new segment and writes every live job, whole, as its
    /// snapshot, one queue's lock at a time. Changes made meanwhile land in
    /// the new segment; replay's version rule makes their order against
    /// the snapshot irrelevant.
    async fn snapshot(&self, log: &Arc<JobLog>) -> std::io::Result<()> {
        let rotating = log.clone();
        let seq = tokio::task::spawn_blocking(move || rotating.rotate())
            .await
            .map_err(std::io::Error::other)??;
        let mut buf = Vec::new();
        for q in self.all_queues() {
            {
                let st = q.lock();
                if !st.removed {
                    let at = place(&st.ns, &st.name);
                    for (&seq, job) in &st.jobs {
                        let whole = stored(&at, seq, job, LogWith::Whole);
                        record::encode(&JobRecord::Upsert(Box::new(whole)), &mut buf);
                    }
                }
            }
            tokio::task::yield_now().await;
        }
        let installing = log.clone();
        tokio::task::spawn_blocking(move || installing.install_snapshot(seq, &buf))
            .await
            .map_err(std::io::Error::other)??;
        tracing::info!(segment = seq, "jobs log snapshot written");
        Ok(())
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
