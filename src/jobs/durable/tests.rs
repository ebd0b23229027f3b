//! The jobs log's failure path: a submit whose record cannot be written
//! answers `507` and is taken back, in memory and after a restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::JobDurability;
use crate::backend::jobs::{JobError, JobStore, SubmitOptions};
use crate::backend::name::Name;
use crate::backend::{BackendError, IncomingBody, MetaInput};
use crate::jobs::{JobConfig, Jobs};
use crate::store::journal::FsyncMode;

fn options(key: &str) -> SubmitOptions {
    SubmitOptions {
        meta: MetaInput::default(),
        lifetime: 3600,
        max_attempts: 3,
        retention: 3600,
        idempotency_key: Some(key.into()),
        callback: None,
    }
}

async fn listed(jobs: &Jobs) -> Vec<crate::backend::jobs::JobId> {
    let (ns, q) = (Name::parse("ns").unwrap(), Name::parse("q").unwrap());
    let options = crate::backend::jobs::ListOptions {
        state: None,
        limit: 10,
        page_token: None,
    };
    let page = jobs.list(&ns, &q, options).await.unwrap();
    page.jobs.iter().map(|j| j.id).collect()
}

#[tokio::test]
async fn a_submit_whose_record_cannot_be_written_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::test_store(&dir.path().join("store")));
    let durability = JobDurability {
        dir: dir.path().join("jobs"),
        fsync: FsyncMode::Always,
        fsync_interval: Duration::from_secs(3600),
        segment_bytes: 1 << 20,
        repair: false,
    };
    let (ns, q) = (Name::parse("ns").unwrap(), Name::parse("q").unwrap());
    let jobs = Jobs::open(
        store.clone(),
        JobConfig::default(),
        Some(durability.clone()),
    )
    .await
    .unwrap();
    let kept = jobs
        .submit(&ns, &q, IncomingBody::from_bytes("kept"), options("a"))
        .await
        .unwrap();
    let log = jobs.shared.log.clone().unwrap();
    log.fail_writes.store(1, Ordering::Release);
    let refused = jobs
        .submit(&ns, &q, IncomingBody::from_bytes("lost"), options("b"))
        .await;
    assert!(
        matches!(refused, Err(JobError::Bytes(BackendError::Unwritable(ref f))) if f.full),
        "{refused:?}"
    );
    assert_eq!(listed(&jobs).await, [kept.job.id], "taken back at once");
    // The key is free again, and the next submit is written with the
    // records the failed round kept.
    let again = jobs
        .submit(&ns, &q, IncomingBody::from_bytes("again"), options("b"))
        .await
        .unwrap();
    assert!(again.created);
    jobs.close().await;
    let reopened = Jobs::open(store, JobConfig::default(), Some(durability))
        .await
        .unwrap();
    assert_eq!(listed(&reopened).await, [kept.job.id, again.job.id]);
}
