//! The engine through the `JobStore` seam, with the embedded store keeping
//! the bytes: the life of a job, claims (FIFO, waiting, dropped), deadlines
//! and the long poll.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{JobConfig, Jobs};
use crate::backend::jobs::{
    codes, ClaimOptions, Claimed, FailureReport, Heartbeat, JobError, JobFailure, JobState,
    JobStore, ListOptions, ResultMeta, Seen, SubmitOptions,
};
use crate::backend::name::Name;
use crate::backend::{BodyError, IncomingBody, MetaInput, Payload};
use crate::store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    jobs: Jobs,
    ns: Name,
    q: Name,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::test_store(dir.path()));
    let jobs = Jobs::new(store.clone(), JobConfig::default());
    Fixture {
        _dir: dir,
        store,
        jobs,
        ns: Name::parse("acme").unwrap(),
        q: Name::parse("export").unwrap(),
    }
}

fn options() -> SubmitOptions {
    SubmitOptions {
        meta: MetaInput::default(),
        lifetime: 3600,
        max_attempts: 3,
        retention: 3600,
        idempotency_key: None,
        callback: None,
    }
}

const NOW: ClaimOptions = ClaimOptions {
    lease: Duration::from_secs(60),
    wait: Duration::ZERO,
};

async fn bytes(p: Payload) -> Vec<u8> {
    match p {
        Payload::Bytes(b) => b.to_vec(),
        Payload::Stream { mut chunks, .. } => {
            let mut out = Vec::new();
            while let Some(c) = chunks.next().await {
                out.extend_from_slice(&c.unwrap());
            }
            out
        }
    }
}

impl Fixture {
    async fn submit(&self, input: &'static [u8], opts: SubmitOptions) -> String {
        let body = IncomingBody::from_bytes(input);
        let s = self
            .jobs
            .submit(&self.ns, &self.q, body, opts)
            .await
            .unwrap();
        assert!(s.created);
        s.job.id.to_string()
    }

    async fn claim(&self, opts: ClaimOptions) -> Option<Claimed> {
        self.jobs.claim(&self.ns, &self.q, opts).await.unwrap()
    }

    async fn state(&self, id: &str) -> JobState {
        self.jobs.get(&self.ns, &self.q, id).await.unwrap().state
    }

    fn blobs_held(&self) -> u64 {
        self.store.totals().memory_bytes + self.store.totals().disk_bytes
    }
}

#[tokio::test]
async fn a_job_runs_from_submit_to_its_downloaded_result() {
    let f = fixture();
    let id = f.submit(b"input bytes", options()).await;
    let claimed = f.claim(NOW).await.expect("a pending job");
    assert_eq!(claimed.job.id.to_string(), id);
    assert_eq!(claimed.job.attempt, 1);
    assert_eq!(bytes(claimed.input).await, b"input bytes");
    let receipt = claimed.receipt.to_string();
    let report = Heartbeat {
        progress: Some(40),
        message: Some("zipping".into()),
        lease: None,
    };
    let (ns, q) = (&f.ns, &f.q);
    f.jobs
        .heartbeat(ns, q, &id, &receipt, report)
        .await
        .unwrap();
    let running = f.jobs.get(ns, q, &id).await.unwrap();
    assert_eq!(
        (running.progress, running.message.as_deref()),
        (Some(40), Some("zipping"))
    );
    let meta = ResultMeta {
        content_type: "application/zip".into(),
        status: 201,
    };
    let body = IncomingBody::from_bytes("the zip");
    let done = f
        .jobs
        .complete(ns, q, &id, &receipt, body, meta)
        .await
        .unwrap();
    assert_eq!(
        (done.state, done.progress),
        (JobState::Succeeded, Some(100))
    );
    let result = done.result.as_ref().unwrap();
    assert_eq!((result.status, result.body.size), (201, 7));
    let (_, payload) = f.jobs.read_result(ns, q, &id).await.unwrap();
    assert_eq!(bytes(payload).await, b"the zip");
    let log = f.jobs.log(ns, q, &id, 0).await.unwrap();
    assert_eq!(log.len(), 1);
    assert!(f.blobs_held() > 0);
    f.jobs.delete(ns, q, &id).await.unwrap();
    assert_eq!(f.blobs_held(), 0, "the input and result went with the job");
    assert!(matches!(
        f.jobs.get(ns, q, &id).await,
        Err(JobError::JobNotFound { .. })
    ));
}

#[tokio::test]
async fn claims_take_jobs_in_order_and_a_waiting_worker_gets_the_next() {
    let f = fixture();
    let a = f.submit(b"a", options()).await;
    let b = f.submit(b"b", options()).await;
    assert_eq!(f.claim(NOW).await.unwrap().job.id.to_string(), a);
    assert_eq!(f.claim(NOW).await.unwrap().job.id.to_string(), b);
    assert!(f.claim(NOW).await.is_none());
    let waiting = {
        let (jobs, ns, q) = (f.jobs.clone(), f.ns.clone(), f.q.clone());
        let opts = ClaimOptions {
            lease: Duration::from_secs(60),
            wait: Duration::from_secs(10),
        };
        tokio::spawn(async move { jobs.claim(&ns, &q, opts).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = f.submit(b"c", options()).await;
    let got = waiting.await.unwrap().unwrap().expect("handed the new job");
    assert_eq!(got.job.id.to_string(), c);
}

#[tokio::test]
async fn a_claim_dropped_while_waiting_is_handed_nothing() {
    let f = fixture();
    let opts = ClaimOptions {
        lease: Duration::from_secs(60),
        wait: Duration::from_secs(10),
    };
    let gone = {
        let (jobs, ns, q) = (f.jobs.clone(), f.ns.clone(), f.q.clone());
        tokio::spawn(async move { jobs.claim(&ns, &q, opts).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    gone.abort();
    let _ = gone.await;
    let id = f.submit(b"x", options()).await;
    assert_eq!(f.state(&id).await, JobState::Pending);
    let claimed = f.claim(NOW).await.unwrap();
    assert_eq!(claimed.job.attempt, 1, "the dropped claim cost no attempt");
}

#[tokio::test]
async fn a_lease_that_runs_out_returns_the_job_then_abandons_it() {
    let f = fixture();
    let mut opts = options();
    opts.max_attempts = 2;
    let id = f.submit(b"x", opts).await;
    let short = ClaimOptions {
        lease: Duration::from_millis(100),
        wait: Duration::ZERO,
    };
    let first = f.claim(short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        f.state(&id).await,
        JobState::Pending,
        "back after its lease"
    );
    let receipt = first.receipt.to_string();
    let late = f
        .jobs
        .heartbeat(&f.ns, &f.q, &id, &receipt, Heartbeat::default());
    assert!(matches!(late.await, Err(JobError::LeaseNotHeld { .. })));
    let second = f.claim(short).await.unwrap();
    assert_eq!(second.job.attempt, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = f.jobs.get(&f.ns, &f.q, &id).await.unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert_eq!(&*view.error.unwrap().code, codes::ABANDONED);
}

#[tokio::test]
async fn pending_jobs_expire_and_finished_ones_go_after_their_retention() {
    let f = fixture();
    let mut opts = options();
    opts.lifetime = 1;
    opts.retention = 1;
    let id = f.submit(b"expiring", opts).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let view = f.jobs.get(&f.ns, &f.q, &id).await.unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert_eq!(&*view.error.unwrap().code, codes::EXPIRED);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(f.jobs.get(&f.ns, &f.q, &id).await.is_err(), "removed");
    assert_eq!(f.blobs_held(), 0);
    assert!(f.jobs.counts(&f.ns).await.unwrap().is_none());
}

#[tokio::test]
async fn cancel_revokes_a_running_lease_and_fail_retries_at_the_head() {
    let f = fixture();
    let (ns, q) = (&f.ns, &f.q);
    let a = f.submit(b"a", options()).await;
    let b = f.submit(b"b", options()).await;
    let claimed = f.claim(NOW).await.unwrap();
    let receipt = claimed.receipt.to_string();
    let retry = FailureReport {
        failure: JobFailure {
            code: "BUSY".into(),
            message: "later".into(),
            details: None,
        },
        retry: true,
    };
    let again = f
        .jobs
        .fail(ns, q, &a, &receipt, retry.clone())
        .await
        .unwrap();
    assert_eq!(again.state, JobState::Pending);
    let claimed = f.claim(NOW).await.unwrap();
    assert_eq!(
        claimed.job.id.to_string(),
        a,
        "a retried job goes to the head"
    );
    let receipt = claimed.receipt.to_string();
    let cancelled = f.jobs.cancel(ns, q, &a).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let refused = f.jobs.fail(ns, q, &a, &receipt, retry).await;
    assert!(matches!(refused, Err(JobError::Cancelled { .. })));
    let pending = f.jobs.cancel(ns, q, &b).await.unwrap();
    assert_eq!(&*pending.error.unwrap().code, codes::CANCELLED);
    assert!(
        f.claim(NOW).await.is_none(),
        "a cancelled pending job is out of the queue"
    );
}

#[tokio::test]
async fn a_watch_wakes_on_a_change_and_idempotent_submits_create_nothing() {
    let f = fixture();
    let mut opts = options();
    opts.idempotency_key = Some("k1".into());
    let id = f.submit(b"x", opts.clone()).await;
    let again = f
        .jobs
        .submit(&f.ns, &f.q, IncomingBody::from_bytes("y"), opts);
    let again = again.await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id.to_string(), id);
    let version = again.job.version;
    let watcher = {
        let (jobs, ns, q, id) = (f.jobs.clone(), f.ns.clone(), f.q.clone(), id.clone());
        let seen = Seen::Versions([version].into_iter().collect());
        tokio::spawn(async move {
            jobs.watch(&ns, &q, &id, &seen, Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!watcher.is_finished());
    f.claim(NOW).await.unwrap();
    let seen = watcher.await.unwrap().unwrap();
    assert_eq!(seen.state, JobState::Running);
    let unchanged = Seen::Versions([seen.version].into_iter().collect());
    let short = Duration::from_millis(100);
    let same = f
        .jobs
        .watch(&f.ns, &f.q, &id, &unchanged, short)
        .await
        .unwrap();
    assert_eq!(same.version, seen.version);
}

#[tokio::test]
async fn listing_pages_through_the_queue_oldest_first() {
    let f = fixture();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(f.submit(b"", options()).await);
    }
    f.claim(NOW).await.unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let opts = ListOptions {
            state: None,
            limit: 2,
            page_token: token,
        };
        let page = f.jobs.list(&f.ns, &f.q, opts).await.unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id.to_string()));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ids);
    let running = ListOptions {
        state: Some(JobState::Running),
        limit: 100,
        page_token: None,
    };
    let page = f.jobs.list(&f.ns, &f.q, running).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    let bad = ListOptions {
        page_token: Some("x".into()),
        ..ListOptions::default()
    };
    assert!(matches!(
        f.jobs.list(&f.ns, &f.q, bad).await,
        Err(JobError::BadPageToken(_))
    ));
}

#[tokio::test]
async fn a_result_upload_cut_off_stores_nothing_and_the_job_keeps_running() {
    let f = fixture();
    let id = f.submit(b"x", options()).await;
    let claimed = f.claim(NOW).await.unwrap();
    let receipt = claimed.receipt.to_string();
    let held = f.blobs_held();
    let chunks = futures_util::stream::iter([
        Ok(Bytes::from_static(b"half of it")),
        Err(BodyError::Read("connection reset".into())),
    ]);
    let body = IncomingBody {
        announced: Some(100),
        chunks: Box::pin(chunks),
    };
    let meta = ResultMeta {
        content_type: "text/plain".into(),
        status: 200,
    };
    let cut = f
        .jobs
        .complete(&f.ns, &f.q, &id, &receipt, body, meta)
        .await;
    assert!(matches!(cut, Err(JobError::Bytes(_))));
    assert_eq!(f.state(&id).await, JobState::Running);
    assert_eq!(
        f.blobs_held(),
        held,
        "nothing of the cut-off result was kept"
    );
}
