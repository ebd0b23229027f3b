//! Replaying the jobs log against a model: random submits (some with an
//! idempotency key), claims, heartbeats with messages, results, failures,
//! cancels, deletes and snapshots run on a durable engine over two queues;
//! then the engine is closed (sometimes with a record cut short at the end
//! of its log, as a crash leaves one) and a new one opened on the same
//! directory. Every job of the first, as a `BTreeMap` of documents, must
//! come back as the contract says: the same document and log, except that
//! a running job is pending again (or `ABANDONED` after its last attempt),
//! and the pending jobs in the same order, the formerly running ones first.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::log::{list_files, FileKind};
use super::JobDurability;
use crate::backend::jobs::{
    codes, ClaimOptions, FailureReport, Heartbeat, JobFailure, JobState, JobStore, JobView,
    LogEntry, ResultMeta, SubmitOptions,
};
use crate::backend::name::Name;
use crate::backend::{IncomingBody, MetaInput};
use crate::jobs::{JobConfig, Jobs};
use crate::store::journal::FsyncMode;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        queue: usize,
        max_attempts: u32,
        key: Option<u8>,
    },
    Claim {
        queue: usize,
    },
    Heartbeat {
        n: usize,
        message: bool,
    },
    Complete {
        n: usize,
    },
    Fail {
        n: usize,
        retry: bool,
    },
    Cancel {
        n: usize,
    },
    Delete {
        n: usize,
    },
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1u32..4, prop::option::of(0..4u8))
            .prop_map(|(queue, max_attempts, key)| Op::Submit { queue, max_attempts, key }),
        4 => (0..2usize).prop_map(|queue| Op::Claim { queue }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, message)| Op::Heartbeat { n, message }),
        2 => any::<usize>().prop_map(|n| Op::Complete { n }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, retry)| Op::Fail { n, retry }),
        1 => any::<usize>().prop_map(|n| Op::Cancel { n }),
        1 => any::<usize>().prop_map(|n| Op::Delete { n }),
        1 => Just(Op::Snapshot),
    ]
}

/// A job the test made: where it is and the receipt of its latest claim.
struct Made {
    queue: Name,
    id: String,
    key: Option<String>,
    receipt: Option<String>,
}

/// What of a document and its log must survive a restart.
#[derive(Debug, PartialEq)]
struct Kept {
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    progress: Option<u8>,
    message: Option<Box<str>>,
    created: std::time::SystemTime,
    finished: Option<std::time::SystemTime>,
    result: Option<(u64, String, u16)>,
    error: Option<(String, String)>,
    metadata: Vec<(String, String)>,
    log: Vec<(Option<u8>, Option<Box<str>>)>,
}

fn kept(view: &JobView, log: &[LogEntry]) -> Kept {
    Kept {
        state: view.state,
        attempt: view.attempt,
        max_attempts: view.max_attempts,
        progress: view.progress,
        message: view.message.clone(),
        created: view.created,
        finished: view.finished,
        result: view
            .result
            .as_ref()
            .map(|r| (r.body.size, r.body.content_type.to_string(), r.status)),
        error: view
            .error
            .as_ref()
            .map(|e| (e.code.to_string(), e.message.to_string())),
        metadata: view
            .metadata
            .iter()
            .map(|p| (p.key.to_string(), p.value.to_string()))
            .collect(),
        log: log
            .iter()
            .map(|e| (e.progress, e.message.clone()))
            .collect(),
    }
}

fn durability(dir: &std::path::Path) -> JobDurability {
    JobDurability {
        dir: dir.join("jobs"),
        fsync: FsyncMode::Batch,
        fsync_interval: Duration::from_secs(3600),
        segment_bytes: 4096,
        repair: false,
    }
}

fn config() -> JobConfig {
    JobConfig {
        max_log_entries: 3,
        ..JobConfig::default()
    }
}

/// The ids of a queue's pending jobs in claim order.
fn pending_order(jobs: &Jobs, ns: &Name, queue: &Name) -> Vec<String> {
    let Some(q) = jobs.queue(ns, queue) else {
        return Vec::new();
    };
    let st = q.lock();
    let mut seen = std::collections::HashSet::new();
    st.pending
        .iter()
        .filter(|seq| {
            st.jobs
                .get(seq)
                .is_some_and(|j| j.state == JobState::Pending)
        })
        .filter(|seq| seen.insert(**seq))
        .map(|seq| st.jobs[seq].id.to_string())
        .collect()
}

async fn run(ops: Vec<Op>, torn: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::test_store(&dir.path().join("store")));
    let ns = Name::parse("m").unwrap();
    let queues = [Name::parse("a").unwrap(), Name::parse("b").unwrap()];
    let first = Jobs::open(store.clone(), config(), Some(durability(dir.path())))
        .await
        .unwrap();
    let mut made: Vec<Made> = Vec::new();
    let claim_now = ClaimOptions {
        lease: Duration::from_secs(600),
        wait: Duration::ZERO,
    };
    for op in ops {
        let pick = |n: usize| (!made.is_empty()).then(|| n % made.len());
        let held = |i: usize| {
            let m: &Made = &made[i];
            (
                m.queue.clone(),
                m.id.clone(),
                m.receipt.clone().unwrap_or_default(),
            )
        };
        match op {
            Op::Submit {
                queue,
                max_attempts,
                key,
            } => {
                let opts = SubmitOptions {
                    meta: MetaInput {
                        content_type: Some("text/plain".into()),
                        custom: vec![crate::backend::meta::CustomPair {
                            key: "k".into(),
                            value: made.len().to_string().into(),
                        }],
                    },
                    lifetime: 3600,
                    max_attempts,
                    retention: 3600,
                    idempotency_key: key.map(|k| format!("key-{k}").into()),
                    callback: None,
                };
                let body = IncomingBody::from_bytes("input");
                let s = first.submit(&ns, &queues[queue], body, opts).await.unwrap();
                if s.created {
                    made.push(Made {
                        queue: queues[queue].clone(),
                        id: s.job.id.to_string(),
                        key: key.map(|k| format!("key-{k}")),
                        receipt: None,
                    });
                }
            }
            Op::Claim { queue } => {
                if let Some(c) = first.claim(&ns, &queues[queue], claim_now).await.unwrap() {
                    let id = c.job.id.to_string();
                    let m = made.iter_mut().find(|m| m.id == id).unwrap();
                    m.receipt = Some(c.receipt.to_string());
                }
            }
            Op::Heartbeat { n, message } => {
                let Some(i) = pick(n) else { continue };
                let (q, id, receipt) = held(i);
                let report = Heartbeat {
                    progress: Some((n % 100) as u8),
                    message: message.then(|| format!("step {n}").into()),
                    lease: None,
                };
                let _ = first.heartbeat(&ns, &q, &id, &receipt, report).await;
            }
            Op::Complete { n } => {
                let Some(i) = pick(n) else { continue };
                let (q, id, receipt) = held(i);
                let meta = ResultMeta {
                    content_type: "text/csv".into(),
                    status: 201,
                };
                let body = IncomingBody::from_bytes("result");
                let _ = first.complete(&ns, &q, &id, &receipt, body, meta).await;
            }
            Op::Fail { n, retry } => {
                let Some(i) = pick(n) else { continue };
                let (q, id, receipt) = held(i);
                let report = FailureReport {
                    failure: JobFailure {
                        code: "BROKE".into(),
                        message: "it broke".into(),
                        details: None,
                    },
                    retry,
                };
                let _ = first.fail(&ns, &q, &id, &receipt, report).await;
            }
            Op::Cancel { n } => {
                let Some(i) = pick(n) else { continue };
                let _ = first.cancel(&ns, &made[i].queue, &made[i].id).await;
            }
            Op::Delete { n } => {
                let Some(i) = pick(n) else { continue };
                let _ = first.delete(&ns, &made[i].queue, &made[i].id).await;
            }
            Op::Snapshot => {
                let log = first.shared.log.clone().unwrap();
                first.snapshot(&log).await.unwrap();
            }
        }
    }
    // The model: every job of the first engine as the second must show it.
    let mut model: BTreeMap<String, Option<Kept>> = BTreeMap::new();
    let mut order = Vec::new();
    for q in &queues {
        let mut head = Vec::new();
        for m in made.iter().filter(|m| &m.queue == q) {
            let Ok(view) = first.get(&ns, q, &m.id).await else {
                model.insert(m.id.clone(), None);
                continue;
            };
            let log = first.log(&ns, q, &m.id, 0).await.unwrap();
            let mut want = kept(&view, &log);
            if want.state == JobState::Running {
                if want.attempt >= want.max_attempts {
                    want.state = JobState::Failed;
                    want.error = Some((codes::ABANDONED.into(), String::new()));
                    want.finished = None;
                } else {
                    want.state = JobState::Pending;
                    head.push(m.id.clone());
                }
            }
            model.insert(m.id.clone(), Some(want));
        }
        // Put back at the head one by one, in the order of their numbers.
        head.reverse();
        head.extend(pending_order(&first, &ns, q));
        order.push(head);
    }
    first.close().await;
    if torn {
        let jobs_dir = dir.path().join("jobs");
        let newest = list_files(&jobs_dir)
            .unwrap()
            .into_iter()
            .filter(|(_, kind)| *kind == FileKind::Log)
            .max()
            .unwrap();
        let path = super::log::file_path(&jobs_dir, newest.0, FileKind::Log);
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
    }
    let second = Jobs::open(store.clone(), config(), Some(durability(dir.path())))
        .await
        .unwrap();
    for m in &made {
        let got = second.get(&ns, &m.queue, &m.id).await;
        match &model[&m.id] {
            None => assert!(got.is_err(), "deleted job {} came back", m.id),
            Some(want) => {
                let view = got.unwrap_or_else(|e| panic!("job {} lost: {e}", m.id));
                let log = second.log(&ns, &m.queue, &m.id, 0).await.unwrap();
                let mut have = kept(&view, &log);
                if want.error.as_ref().is_some_and(|e| e.0 == codes::ABANDONED) {
                    // Its finish is the restart's, its message the server's.
                    have.finished = None;
                    if let Some(e) = &mut have.error {
                        e.1.clear();
                    }
                }
                assert_eq!(&have, want, "job {}", m.id);
                if let Some((size, ..)) = want.result {
                    let (_, body) = second.read_result(&ns, &m.queue, &m.id).await.unwrap();
                    assert_eq!(body.len(), size);
                }
            }
        }
    }
    for (q, want) in queues.iter().zip(&order) {
        assert_eq!(
            &pending_order(&second, &ns, q),
            want,
            "pending order of {q}"
        );
    }
    // Idempotency keys are kept with their jobs.
    for m in &made {
        let (Some(key), Some(Some(_))) = (&m.key, model.get(&m.id)) else {
            continue;
        };
        let opts = SubmitOptions {
            meta: MetaInput::default(),
            lifetime: 3600,
            max_attempts: 1,
            retention: 3600,
            idempotency_key: Some(key.as_str().into()),
            callback: None,
        };
        let again = second
            .submit(&ns, &m.queue, IncomingBody::from_bytes("x"), opts)
            .await
            .unwrap();
        assert!(!again.created, "key {key} of job {} was forgotten", m.id);
        assert_eq!(again.job.id.to_string(), m.id);
    }
    second.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn jobs_come_back_from_the_log_as_the_contract_says(
        ops in prop::collection::vec(op(), 1..70),
        torn in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops, torn));
    }
}
