//! The engine against a plain model: random submits, claims, heartbeats,
//! results, failures (retried or not), cancels and deletes on one queue,
//! through the `JobStore` seam, and on a list of jobs with a `VecDeque` of
//! pending ones. After every step each job's state and attempt, and each
//! answer, must agree. Deadlines are far away, so time plays no part.

use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;
use uuid::Uuid;

use super::{JobConfig, Jobs};
use crate::backend::jobs::{
    ClaimOptions, FailureReport, Heartbeat, JobError, JobFailure, JobState, JobStore, ResultMeta,
    SubmitOptions,
};
use crate::backend::name::Name;
use crate::backend::{IncomingBody, MetaInput};

#[derive(Debug, Clone)]
enum Op {
    Submit {
        max_attempts: u32,
    },
    Claim,
    /// On job `n` (modulo the jobs made), with its latest receipt or a
    /// stranger's.
    Heartbeat {
        n: usize,
        own: bool,
    },
    Complete {
        n: usize,
        own: bool,
    },
    Fail {
        n: usize,
        own: bool,
        retry: bool,
    },
    Cancel {
        n: usize,
    },
    Delete {
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..4).prop_map(|max_attempts| Op::Submit { max_attempts }),
        3 => Just(Op::Claim),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, own)| Op::Heartbeat { n, own }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, own)| Op::Complete { n, own }),
        2 => (any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(n, own, retry)| Op::Fail { n, own, retry }),
        1 => any::<usize>().prop_map(|n| Op::Cancel { n }),
        1 => any::<usize>().prop_map(|n| Op::Delete { n }),
    ]
}

/// One job as the model sees it.
#[derive(Debug)]
struct Model {
    id: String,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    receipt: Option<String>,
    deleted: bool,
}

/// What a worker call on job `m` with `receipt` must answer.
fn expected(m: &Model, own: bool) -> Result<(), &'static str> {
    if m.deleted {
        return Err("not found");
    }
    match (own && m.receipt.is_some(), m.state) {
        (true, JobState::Running) => Ok(()),
        (true, JobState::Cancelled) => Err("cancelled"),
        _ => Err("not held"),
    }
}

fn kind<T>(r: &Result<T, JobError>) -> Result<(), &'static str> {
    match r {
        Ok(_) => Ok(()),
        Err(JobError::JobNotFound { .. }) => Err("not found"),
        Err(JobError::Cancelled { .. }) => Err("cancelled"),
        Err(JobError::LeaseNotHeld { .. }) => Err("not held"),
        Err(JobError::NotDone { .. }) => Err("not done"),
        Err(e) => panic!("unexpected {e}"),
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::test_store(dir.path()));
    let jobs = Jobs::new(store, JobConfig::default());
    let (ns, q) = (Name::parse("m").unwrap(), Name::parse("q").unwrap());
    let mut model: Vec<Model> = Vec::new();
    let mut pending: VecDeque<usize> = VecDeque::new();
    let stranger = Uuid::new_v4().to_string();
    let claim_now = ClaimOptions {
        lease: std::time::Duration::from_secs(600),
        wait: std::time::Duration::ZERO,
    };
    for op in ops {
        let pick = |n: usize| (!model.is_empty()).then(|| n % model.len());
        match op {
            Op::Submit { max_attempts } => {
                let opts = SubmitOptions {
                    meta: MetaInput::default(),
                    lifetime: 3600,
                    max_attempts,
                    retention: 3600,
                    idempotency_key: None,
                    callback: None,
                };
                let body = IncomingBody::from_bytes("in");
                let s = jobs.submit(&ns, &q, body, opts).await.unwrap();
                pending.push_back(model.len());
                model.push(Model {
                    id: s.job.id.to_string(),
                    state: JobState::Pending,
                    attempt: 0,
                    max_attempts,
                    receipt: None,
                    deleted: false,
                });
            }
            Op::Claim => {
                while pending
                    .front()
                    .is_some_and(|&i| model[i].state != JobState::Pending)
                {
                    pending.pop_front();
                }
                let got = jobs.claim(&ns, &q, claim_now).await.unwrap();
                match (pending.pop_front(), got) {
                    (None, None) => {}
                    (Some(i), Some(c)) => {
                        assert_eq!(c.job.id.to_string(), model[i].id, "FIFO order");
                        let m = &mut model[i];
                        m.state = JobState::Running;
                        m.attempt += 1;
                        m.receipt = Some(c.receipt.to_string());
                    }
                    (want, got) => panic!("claim: model {want:?}, engine {got:?}"),
                }
            }
            Op::Heartbeat { n, own } | Op::Complete { n, own } | Op::Fail { n, own, .. } => {
                let Some(i) = pick(n) else { continue };
                let m = &model[i];
                let receipt = match (&m.receipt, own) {
                    (Some(r), true) => r.clone(),
                    _ => stranger.clone(),
                };
                let want = expected(m, own);
                let id = m.id.clone();
                let got = match &op {
                    Op::Heartbeat { .. } => {
                        let report = Heartbeat {
                            progress: Some(5),
                            ..Heartbeat::default()
                        };
                        kind(&jobs.heartbeat(&ns, &q, &id, &receipt, report).await)
                    }
                    Op::Complete { .. } => {
                        let meta = ResultMeta {
                            content_type: "text/plain".into(),
                            status: 200,
                        };
                        let body = IncomingBody::from_bytes("out");
                        kind(&jobs.complete(&ns, &q, &id, &receipt, body, meta).await)
                    }
                    Op::Fail { retry, .. } => {
                        let report = FailureReport {
                            failure: JobFailure {
                                code: "X".into(),
                                message: "m".into(),
                                details: None,
                            },
                            retry: *retry,
                        };
                        kind(&jobs.fail(&ns, &q, &id, &receipt, report).await)
                    }
                    _ => unreachable!("matched above"),
                };
                assert_eq!(got, want, "{op:?} on {:?}", model[i]);
                if got.is_ok() {
                    let m = &mut model[i];
                    match op {
                        Op::Complete { .. } => m.state = JobState::Succeeded,
                        Op::Fail { retry, .. } if retry && m.attempt < m.max_attempts => {
                            m.state = JobState::Pending;
                            pending.push_front(i);
                        }
                        Op::Fail { .. } => m.state = JobState::Failed,
                        _ => {}
                    }
                }
            }
            Op::Cancel { n } => {
                let Some(i) = pick(n) else { continue };
                let got = kind(&jobs.cancel(&ns, &q, &model[i].id).await);
                let m = &mut model[i];
                if m.deleted {
                    assert_eq!(got, Err("not found"));
                    continue;
                }
                assert_eq!(got, Ok(()));
                if !m.state.is_done() {
                    m.state = JobState::Cancelled;
                }
            }
            Op::Delete { n } => {
                let Some(i) = pick(n) else { continue };
                let got = kind(&jobs.delete(&ns, &q, &model[i].id).await);
                let m = &mut model[i];
                let want = match (m.deleted, m.state.is_done()) {
                    (true, _) => Err("not found"),
                    (false, false) => Err("not done"),
                    (false, true) => Ok(()),
                };
                assert_eq!(got, want, "delete {m:?}");
                m.deleted |= got.is_ok();
            }
        }
        for m in &model {
            let got = jobs.get(&ns, &q, &m.id).await;
            if m.deleted {
                assert!(got.is_err(), "{m:?} is gone");
            } else {
                let view = got.unwrap();
                assert_eq!((view.state, view.attempt), (m.state, m.attempt), "{m:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_engine_agrees_with_a_plain_model(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops));
    }
}
