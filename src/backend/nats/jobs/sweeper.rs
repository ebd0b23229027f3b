//! The sweeper: every [`SWEEP_EVERY`], each node reads every job of every
//! jobs bucket and acts on the deadlines that have passed (a pending job's
//! lifetime, a running job's lease, a finished job's retention). Nodes
//! sweep independently: each action is a compare-and-set that re-checks
//! the deadline, so the first node to act wins and the others find the job
//! moved on. The same pass counts jobs by state for `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::super::queues::nats_error;
use super::doc::{now_ms, Due, StoredJob};
use super::kv::scan;
use super::{names, NatsJobs};
use crate::backend::jobs::JobError;
use crate::backend::name::Name;
use crate::backend::BackendError;

/// How often a node sweeps: a lease that runs out is noticed within this.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub async fn run(jobs: NatsJobs) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = jobs.shared.closing.cancelled() => return,
        }
        if jobs.shared.inner.link.js().is_err() {
            continue;
        }
        match jobs.sweep().await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "sweeping the jobs' deadlines failed; trying again every second");
                }
                failing = true;
            }
        }
    }
}

impl NatsJobs {
    async fn sweep(&self) -> Result<(), JobError> {
        let js = self.shared.inner.link.js()?.clone();
        let mut streams = js.stream_names();
        let mut namespaces = Vec::new();
        while let Some(name) = streams.next().await {
            let name = name.map_err(|e| nats_error("listing the jobs buckets", e))?;
            if let Some(ns) = names::namespace_of_bucket_stream(&name) {
                namespaces.push(ns);
            }
        }
        let mut counts: HashMap<(Name, Name), [u64; 5]> = HashMap::new();
        for ns in namespaces {
            self.sweep_namespace(&ns, &mut counts).await?;
        }
        self.set_counted(counts);
        Ok(())
    }

    async fn sweep_namespace(
        &self,
        ns: &Name,
        counts: &mut HashMap<(Name, Name), [u64; 5]>,
    ) -> Result<(), JobError> {
        let Some(store) = self.bucket(ns, false).await? else {
            return Ok(());
        };
        let now = now_ms();
        for (key, value) in scan(&store, ">").await? {
            let (Some((queue, id)), Some(job)) =
                (names::parse_job_key(&key), StoredJob::decode(&value))
            else {
                continue;
            };
            let due = job.due();
            if due.at() > now {
                counts.entry((ns.clone(), queue)).or_default()[job.state.index()] += 1;
                continue;
            }
            let id = id.to_string();
            let acted = match due {
                Due::Expire(_) => self.lifetime_passed(ns, &queue, &id).await,
                Due::LeaseEnd(_) => self.lease_ran_out(ns, &queue, &id).await,
                Due::Remove(_) => self
                    .remove(&store, ns, &queue, &job)
                    .await
                    .map_err(Into::into),
            };
            match acted {
                Ok(()) | Err(JobError::JobNotFound { .. }) => {}
                Err(JobError::Bytes(e @ BackendError::Unavailable { .. })) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(namespace = %ns, queue = %queue, job = %id, error = %e, "a job's passed deadline could not be acted on");
                }
            }
        }
        Ok(())
    }
}
