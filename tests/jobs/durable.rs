//! Durable jobs (`--data-dir`) through the real server: every kind of job
//! comes back after a restart as the contract says, and a `kill -9` while
//! workers claim, report and finish jobs loses nothing that was
//! acknowledged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{self, header, TestServer, STEP};
use super::{claim, heartbeat, job, put_result, submit_with, worker_call};

const POST: reqwest::Method = reqwest::Method::POST;

async fn start(data: &Path, fsync: &str) -> TestServer {
    common::options()
        .arg("--data-dir", data.display())
        .arg("--fsync", fsync)
        .start()
        .await
}

async fn submitted(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Pending, succeeded (with a log and a reported status), failed with
/// details, cancelled, deleted, running, and running on its last attempt:
/// after a `kill -9` and a start on the same directory, each is as the
/// contract says, the idempotency key still answers `200`, and the running
/// job is claimed first, with its attempt count kept.
#[tokio::test]
async fn every_state_comes_back_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), "always").await;
    let s = &server;
    let pending = submitted(
        submit_with(
            s,
            "acme/q",
            "pending input",
            &[
                ("content-type", "text/plain"),
                ("x-custom-data", "user=alice"),
                ("idempotency-key", "order-1"),
            ],
        )
        .await,
    )
    .await;
    // Succeeded: claimed, two progress reports, a result with its status.
    let succeeded = submitted(submit_with(s, "acme/done", "a", &[]).await).await;
    let held = claim(s, "acme/done", "").await.unwrap();
    assert_eq!(held.id, succeeded);
    for report in [r#"{"progress":10,"message":"start"}"#, r#"{"progress":60}"#] {
        assert_eq!(heartbeat(s, "acme/done", &held, report).await.status(), 200);
    }
    let r = s
        .client
        .put(s.url(&format!("/jobs/acme/done/{succeeded}/result")))
        .header("x-queueserver-lease", &held.receipt)
        .header("content-type", "text/csv")
        .header("x-job-status", "201")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Failed by its worker, with details.
    let failed = submitted(submit_with(s, "acme/done", "b", &[]).await).await;
    let held = claim(s, "acme/done", "").await.unwrap();
    assert_eq!(held.id, failed);
    let report = r#"{"code":"USER_LOCKED","message":"locked","details":{"lang":"en"}}"#;
    let r = worker_call(s, "acme/done", &held, POST, "fail", report).await;
    assert_eq!(r.status(), 200);
    // Cancelled while pending; deleted once finished.
    let cancelled = submitted(submit_with(s, "acme/done", "c", &[]).await).await;
    let r = s
        .post(&format!("/jobs/acme/done/{cancelled}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);
    let deleted = submitted(submit_with(s, "acme/done", "d", &[]).await).await;
    s.post(&format!("/jobs/acme/done/{deleted}/cancel"), "")
        .await;
    assert_eq!(
        s.delete(&format!("/jobs/acme/done/{deleted}"))
            .await
            .status(),
        204
    );
    // Running: one with attempts left, one on its last.
    let running = submitted(submit_with(s, "acme/run", "r", &[]).await).await;
    let held = claim(s, "acme/run", "?lease=600").await.unwrap();
    assert_eq!((held.id.as_str(), held.attempt), (running.as_str(), 1));
    heartbeat(s, "acme/run", &held, r#"{"progress":30,"message":"half"}"#).await;
    let later = submitted(submit_with(s, "acme/run", "later", &[]).await).await;
    let last =
        submitted(submit_with(s, "acme/last", "l", &[("x-job-max-attempts", "1")]).await).await;
    assert_eq!(claim(s, "acme/last", "").await.unwrap().id, last);

    server.kill_hard();
    let server = start(data.path(), "always").await;
    let s = &server;

    let doc = job(s, "acme/q", &pending).await;
    assert_eq!(doc["state"], "pending");
    assert_eq!(doc["metadata"]["user"], "alice");
    assert_eq!(doc["input"]["content_type"], "text/plain");
    let again = submit_with(s, "acme/q", "other", &[("idempotency-key", "order-1")]).await;
    assert_eq!(again.status(), 200, "the key is kept");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], pending.as_str());

    let doc = job(s, "acme/done", &succeeded).await;
    assert_eq!(doc["state"], "succeeded");
    assert_eq!(doc["progress"], 100);
    assert_eq!(doc["result"]["status"], 201);
    let r = s.get(&format!("/jobs/acme/done/{succeeded}/result")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/csv");
    assert_eq!(header(&r, "x-job-status"), "201");
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![7u8; 100_000]);
    let log = s
        .json(&format!("/jobs/acme/done/{succeeded}/log"), 200)
        .await;
    let log: Vec<(Value, Value)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["progress"].clone(), e["message"].clone()))
        .collect();
    assert_eq!(
        log,
        [
            (Value::from(10), Value::from("start")),
            (Value::from(60), Value::Null)
        ]
    );

    let doc = job(s, "acme/done", &failed).await;
    assert_eq!(doc["state"], "failed");
    assert_eq!(doc["error"]["code"], "USER_LOCKED");
    assert_eq!(doc["error"]["details"]["lang"], "en");
    let doc = job(s, "acme/done", &cancelled).await;
    assert_eq!(
        (&doc["state"], &doc["error"]["code"]),
        (&"cancelled".into(), &"CANCELLED".into())
    );
    assert_eq!(
        s.get(&format!("/jobs/acme/done/{deleted}")).await.status(),
        404
    );

    let doc = job(s, "acme/run", &running).await;
    assert_eq!(doc["state"], "pending", "{doc}");
    assert_eq!(doc["attempt"], 1);
    assert_eq!(doc["message"], "half");
    let held = claim(s, "acme/run", "").await.unwrap();
    assert_eq!(
        held.id, running,
        "the job that was running comes back at the head"
    );
    assert_eq!(held.attempt, 2);
    assert_eq!(held.body, b"r");
    assert_eq!(claim(s, "acme/run", "").await.unwrap().id, later);
    let doc = job(s, "acme/last", &last).await;
    assert_eq!(doc["state"], "failed");
    assert_eq!(doc["error"]["code"], "ABANDONED");

    let counts = s.json("/jobs/acme", 200).await;
    assert_eq!(counts["queues"]["done"]["succeeded"], 1, "{counts}");
}

/// What the crash run's clients were told.
#[derive(Default)]
struct Acked {
    submitted: Vec<String>,
    /// Job id to the outcome the worker was answered `200` for.
    outcomes: HashMap<String, &'static str>,
}

/// Submitters and workers hammer the server (claims, heartbeats, results
/// and failures) until it is killed with SIGKILL; on the same directory a
/// new server has every acknowledged submit, result and failure, and no
/// job is running. With `--fsync always` an answer waits for the sync;
/// with `batch` for the write, which a killed process does not undo.
#[tokio::test]
async fn a_kill_during_work_loses_nothing_acknowledged() {
    crash_run("always").await;
}

#[tokio::test]
async fn a_kill_during_work_loses_nothing_acknowledged_with_batch_syncs() {
    crash_run("batch").await;
}

async fn crash_run(fsync: &str) {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path(), fsync).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = server.url("/jobs/crash/work");
    let mut tasks = Vec::new();
    for submitter in 0..2 {
        let (client, base, acked, stop) =
            (client.clone(), base.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = client
                    .post(&base)
                    .header("x-job-max-attempts", "5")
                    .body(format!("job {submitter}-{n}"))
                    .send()
                    .await;
                let Ok(r) = sent else { break };
                if r.status() != 202 {
                    break;
                }
                let Ok(doc) = r.json::<Value>().await else {
                    break;
                };
                let id = doc["id"].as_str().unwrap().to_owned();
                acked.lock().unwrap().submitted.push(id);
            }
        }));
    }
    for worker in 0..4 {
        let (client, base, acked, stop) =
            (client.clone(), base.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let Ok(r) = client
                    .post(format!("{base}/claim?timeout=0.2"))
                    .send()
                    .await
                else {
                    break;
                };
                if r.status() == 204 {
                    continue;
                }
                if r.status() != 200 {
                    break;
                }
                let id = r.headers()["x-job-id"].to_str().unwrap().to_owned();
                let receipt = r.headers()["x-queueserver-lease"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let Ok(input) = r.bytes().await else { break };
                n += 1;
                let beat = client
                    .post(format!("{base}/{id}/heartbeat"))
                    .header("x-queueserver-lease", &receipt)
                    .body(r#"{"progress":50,"message":"working"}"#)
                    .send()
                    .await;
                if beat.is_err() {
                    break;
                }
                // Every fourth job is left running: the kill finds it so.
                let (answer, outcome) = match (n + worker) % 4 {
                    0 => continue,
                    1 => (
                        client
                            .post(format!("{base}/{id}/fail"))
                            .header("x-queueserver-lease", &receipt)
                            .body(r#"{"code":"BROKE","message":"no"}"#)
                            .send()
                            .await,
                        "failed",
                    ),
                    _ => (
                        client
                            .put(format!("{base}/{id}/result"))
                            .header("x-queueserver-lease", &receipt)
                            .body(input)
                            .send()
                            .await,
                        "succeeded",
                    ),
                };
                match answer {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().outcomes.insert(id, outcome);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    let deadline = Instant::now() + STEP;
    while acked.lock().unwrap().outcomes.len() < 300 {
        assert!(Instant::now() < deadline, "the workers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(STEP, task).await.unwrap().unwrap();
    }
    let server = start(data.path(), fsync).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    for id in &acked.submitted {
        let doc = job(&server, "crash/work", id).await;
        assert_ne!(doc["state"], "running", "{doc}");
        if let Some(outcome) = acked.outcomes.get(id) {
            assert_eq!(doc["state"], *outcome, "{doc}");
            if *outcome == "succeeded" {
                let r = server.get(&format!("/jobs/crash/work/{id}/result")).await;
                assert_eq!(r.status(), 200);
                let body = r.bytes().await.unwrap();
                assert!(body.starts_with(b"job "), "the result is the input");
            } else {
                assert_eq!(doc["error"]["code"], "BROKE");
            }
        }
    }
    for id in acked.outcomes.keys() {
        assert!(
            acked.submitted.contains(id),
            "a job finished before its submit was answered"
        );
    }
    // Whatever was left pending is still claimable, and is what it was.
    let held = claim(&server, "crash/work", "").await;
    if let Some(held) = held {
        assert!(held.body.starts_with(b"job "));
        put_result(&server, "crash/work", &held, b"done").await;
    }
}

/// With small segments, snapshots keep the jobs log's files few however
/// many changes are made, and a start from a snapshot has every job.
#[tokio::test]
async fn snapshots_bound_the_jobs_log() {
    let data = tempfile::tempdir().unwrap();
    let start_small = || {
        common::options()
            .arg("--data-dir", data.path().display())
            .arg("--log-segment-bytes", 4096)
            .arg("--fsync-interval-ms", 20)
            .start()
    };
    let mut server = start_small().await;
    let s = &server;
    let kept = submitted(submit_with(s, "ns/keep", "kept", &[]).await).await;
    for round in 0..60 {
        submitted(submit_with(s, "ns/churn", "x", &[]).await).await;
        let held = claim(s, "ns/churn", "").await.unwrap();
        let report = format!(
            r#"{{"progress":{},"message":"round {round} of sixty"}}"#,
            round % 100
        );
        assert_eq!(heartbeat(s, "ns/churn", &held, &report).await.status(), 200);
        put_result(s, "ns/churn", &held, b"done").await;
        let r = s.delete(&format!("/jobs/ns/churn/{}", held.id)).await;
        assert_eq!(r.status(), 204);
    }
    let jobs_dir = data.path().join("jobs");
    let files = || common::files_below(&jobs_dir);
    let deadline = Instant::now() + STEP;
    while files().len() > 3 {
        assert!(
            Instant::now() < deadline,
            "old segments stay: {:?}",
            files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        files()
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "snapshot")),
        "{:?}",
        files()
    );
    // Each start snapshots what earlier runs left, so restarts do not
    // pile up files either.
    for _ in 0..4 {
        server.kill_hard();
        server = start_small().await;
        submitted(submit_with(&server, "ns/more", "x", &[]).await).await;
    }
    let deadline = Instant::now() + STEP;
    while files().len() > 3 {
        assert!(
            Instant::now() < deadline,
            "restarts left files: {:?}",
            files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill_hard();
    let server = start_small().await;
    assert_eq!(job(&server, "ns/keep", &kept).await["state"], "pending");
    assert_eq!(server.get("/jobs/ns/churn").await.status(), 404);
    let more = server.json("/jobs/ns", 200).await;
    assert_eq!(more["queues"]["more"]["pending"], 4, "{more}");
}
