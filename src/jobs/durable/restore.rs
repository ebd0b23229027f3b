//! Start-up in durable mode, after the store's own replay: the jobs log is
//! read back into the queues, and then what the time the server was down
//! changed is applied as the sweeper would have: a running job's lease is
//! gone (back to `pending` at the head with its attempt count, or
//! `ABANDONED` after its last attempt), a pending job past its lifetime
//! fails `EXPIRED`, a finished job past its retention goes with its blobs.
//! Each job takes its place in its namespace's element quota again,
//! undelivered callbacks are queued again, and the blobs a crash left
//! without their job are deleted.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::Arc;

use super::convert::restored;
use super::log::JobLog;
use super::replay::{replay, Replayed};
use super::{JobDurability, JOB_MARK};
use crate::backend::ids::BlobId;
use crate::backend::name::Name;
use crate::backend::Backend;
use crate::jobs::{JobConfig, Jobs};

impl Jobs {
    /// The engine for a server: with `durability`, its jobs come back from
    /// the jobs log and every change is recorded there; without, it keeps
    /// jobs in memory ([`Jobs::new`]). Call inside a tokio runtime.
    pub async fn open(
        blobs: Arc<dyn Backend>,
        config: JobConfig,
        durability: Option<JobDurability>,
    ) -> io::Result<Jobs> {
        let Some(d) = durability else {
            return Ok(Jobs::new(blobs, config));
        };
        std::fs::create_dir_all(&d.dir)?;
        let replayed = replay(&d.dir, config.max_log_entries, d.repair)?;
        let log = Arc::new(JobLog::start(
            &d.dir,
            d.fsync,
            d.segment_bytes,
            replayed.next_segment,
        )?);
        if replayed.files_read > 0 {
            log.request_snapshot();
        }
        let jobs = Jobs::start(blobs, config, Some(log.clone()));
        tokio::spawn(jobs.clone().run_log(log, d.fsync_interval));
        jobs.restore(replayed).await;
        jobs.commit()
            .await
            .map_err(|e| io::Error::other(format!("the jobs log cannot be written: {e}")))?;
        Ok(jobs)
    }

    async fn restore(&self, replayed: Replayed) {
        let mut per_namespace: BTreeMap<Name, u64> = BTreeMap::new();
        let mut queues = Vec::new();
        for (place, jobs) in replayed.queues {
            let (Ok(ns), Ok(name)) = (Name::parse(&place.ns), Name::parse(&place.queue)) else {
                tracing::warn!(
                    namespace = place.ns,
                    queue = place.queue,
                    "a job queue with an invalid name in the jobs log was skipped"
                );
                continue;
            };
            *per_namespace.entry(ns.clone()).or_default() += jobs.len() as u64;
            queues.push((ns, name, jobs));
        }
        let total: u64 = per_namespace.values().sum();
        for (ns, n) in &per_namespace {
            self.shared.blobs.hold_elements_restored(ns, *n).await;
        }
        for (ns, name, jobs) in queues {
            let q = self.queue_or_new(&ns, &name);
            let mut jobs = Some(jobs);
            let restored_queue = self.change_queue(&q, |st, now, fx| {
                // Restoring is no change: only what follows is recorded.
                let dirty = st.journal.take();
                let mut undelivered = Vec::new();
                for (_, stored) in jobs.take().unwrap_or_default() {
                    let seq = stored.seq;
                    let job = restored(stored, now);
                    let delivered = job.extras.as_ref().is_some_and(|e| e.callback_delivered);
                    if job.state.is_done() && job.callback().is_some() && !delivered {
                        undelivered.push(seq);
                    }
                    st.restore(seq, job);
                }
                st.restore_pending();
                st.journal = dirty;
                while let Some(seq) = st.next_due(now) {
                    st.deadline_passed(seq, now, fx);
                }
                st.wakeup = st.reschedule();
                for seq in undelivered {
                    if let Some(url) = st.jobs.get(&seq).and_then(|j| j.callback()) {
                        fx.callbacks.push((url.into(), st.view(seq)));
                    }
                }
            });
            if let Some(((), leftovers)) = restored_queue {
                self.clean_up(&ns, leftovers).await;
            }
        }
        let orphans = self.delete_orphans().await;
        tracing::info!(
            jobs = total,
            orphan_blobs = orphans,
            "jobs restored from the jobs log"
        );
    }

    /// Deletes the job blobs no job names: a submit's input or a result
    /// stored before a crash kept its record from being written. How many.
    async fn delete_orphans(&self) -> usize {
        let marked = match self.shared.blobs.marked_blobs(JOB_MARK).await {
            Ok(marked) => marked,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the job blobs to find those a crash left");
                return 0;
            }
        };
        if marked.is_empty() {
            return 0;
        }
        let named: HashSet<BlobId> = self
            .all_queues()
            .iter()
            .flat_map(|q| {
                let st = q.lock();
                st.jobs.values().flat_map(|j| j.blobs()).collect::<Vec<_>>()
            })
            .collect();
        let mut deleted = 0;
        for blob in marked {
            if !named.contains(&blob.id) {
                self.delete_blobs(&blob.namespace, vec![blob.id]).await;
                deleted += 1;
            }
        }
        deleted
    }
}
