//! The worker side on the embedded engine: waiting workers served in
//! order, nothing handed to a worker that has gone, a large result spilled,
//! a cut-off result upload, many workers at once, the example worker script
//! and what a result upload does to its connection. Claims, heartbeats,
//! leases, failures and cancels are cases of both backends
//! (`tests/nats_jobs/workers.rs`).

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::common::{self, STEP};
use super::{claim, job, put_result, submit, worker_call};

#[tokio::test]
async fn waiting_workers_are_served_in_the_order_they_came() {
    let server = common::start().await;
    submit(&server, "ns/other", "makes the namespace exist").await;
    let mut waiting = Vec::new();
    for n in 0..3u64 {
        let (client, url) = (
            reqwest::Client::new(),
            server.url("/jobs/ns/q/claim?timeout=20"),
        );
        waiting.push(tokio::spawn(async move {
            let r = client.post(url).send().await.unwrap();
            r.text().await.unwrap()
        }));
        server
            .wait_for_json("/jobs/ns", "a waiting worker", |v| {
                v["queues"]["q"]["waiting_workers"] == n + 1
            })
            .await;
    }
    for i in 0..3 {
        submit(&server, "ns/q", format!("job {i}")).await;
    }
    for (i, worker) in waiting.into_iter().enumerate() {
        assert_eq!(worker.await.unwrap(), format!("job {i}"), "worker {i}");
    }
}

#[tokio::test]
async fn a_worker_that_went_away_while_claiming_is_handed_nothing() {
    let server = common::start().await;
    submit(&server, "ns/other", "makes the namespace exist").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = server.url("/jobs/ns/q/claim?timeout=20");
    assert!(impatient.post(url).send().await.is_err(), "gave up");
    server
        .wait_for_json("/jobs/ns", "the worker forgotten", |v| {
            v["queues"]["q"].is_null() || v["queues"]["q"]["waiting_workers"] == 0
        })
        .await;
    let id = submit(&server, "ns/q", "x").await;
    assert_eq!(job(&server, "ns/q", &id).await["state"], "pending");
    let held = claim(&server, "ns/q", "").await.unwrap();
    assert_eq!((held.id.as_str(), held.attempt), (id.as_str(), 1));
}

#[tokio::test]
async fn a_result_upload_cut_off_stores_nothing_and_the_job_keeps_running() {
    let server = common::options().arg("--spill-threshold", 10).start().await;
    let id = submit(&server, "ns/q", "x").await;
    let held = claim(&server, "ns/q", "").await.unwrap();
    let files_before = server.spill_files().len();
    let mut tcp = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "PUT /jobs/ns/q/{id}/result HTTP/1.1\r\nhost: x\r\nx-queueserver-lease: {}\r\ncontent-length: 100000\r\n\r\n",
        held.receipt
    );
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(&[7u8; 5000]).unwrap();
    tcp.flush().unwrap();
    drop(tcp);
    let deadline = Instant::now() + STEP;
    while server.spill_files().len() != files_before {
        assert!(Instant::now() < deadline, "the cut-off upload left a file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let doc = job(&server, "ns/q", &id).await;
    assert_eq!(
        (doc["state"].as_str(), doc["result"].is_null()),
        (Some("running"), true)
    );
    let done = put_result(&server, "ns/q", &held, b"whole").await;
    assert_eq!(done["state"], "succeeded", "the lease still stands");
}

#[tokio::test]
async fn a_large_result_is_spilled_and_streamed_back_whole() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let held = claim(&server, "ns/q", "").await.unwrap();
    let big = common::pattern(300_000, 7);
    let r = worker_call(&server, "ns/q", &held, Method::PUT, "result", big.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["result"]["size"], 300_000);
    assert_eq!(server.spill_files().len(), 1, "the result spilled");
    let r = server.get(&format!("/jobs/ns/q/{id}/result")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), big);
}

#[tokio::test]
async fn many_workers_complete_each_of_many_jobs_exactly_once() {
    const JOBS: usize = 200;
    const WORKERS: usize = 8;
    let server = common::start().await;
    let mut ids = HashSet::new();
    for i in 0..JOBS {
        ids.insert(submit(&server, "ns/q", format!("{i}")).await);
    }
    let completed = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (base, completed) = (server.url("/jobs/ns/q"), completed.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let r = client
                    .post(format!("{base}/claim?timeout=0.5"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 204 {
                    return;
                }
                let id = r.headers()["x-job-id"].to_str().unwrap().to_owned();
                let lease = r.headers()["x-queueserver-lease"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let input = r.text().await.unwrap();
                let put = client
                    .put(format!("{base}/{id}/result"))
                    .header("x-queueserver-lease", lease);
                let r = put.body(format!("done {input}")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                completed.lock().unwrap().push(id);
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(STEP * 3, w)
            .await
            .expect("workers finish")
            .unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), JOBS, "one completion per job");
    assert_eq!(completed.iter().cloned().collect::<HashSet<_>>(), ids);
    let v = server.json("/jobs/ns", 200).await;
    assert_eq!(v["queues"]["q"]["succeeded"], JOBS as u64);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(&format!("blobq_job_claims_total {JOBS}")));
    assert!(metrics.contains(&format!("blobq_job_completions_total {JOBS}")));
}

#[tokio::test]
async fn the_example_worker_script_completes_jobs() {
    let server = common::start().await;
    let ids = [
        submit(&server, "demo/upper", "hello").await,
        submit(&server, "demo/upper", "blobq jobs").await,
    ];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/job-worker.sh");
    let base = server.url("");
    let run = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("bash")
            .args([script, &base, "demo", "upper"])
            .env("WORKER_MAX_JOBS", "2")
            .spawn()
            .expect("bash");
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the example worker did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(run.await.unwrap().success());
    for (id, want) in ids.iter().zip(["HELLO", "BLOBQ JOBS"]) {
        let r = server.get(&format!("/jobs/demo/upper/{id}/result")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(common::header(&r, "content-type"), "text/plain");
        assert_eq!(r.text().await.unwrap(), want);
        let log = server
            .json(&format!("/jobs/demo/upper/{id}/log"), 200)
            .await;
        assert!(!log.as_array().unwrap().is_empty(), "it reported progress");
    }
}

#[tokio::test]
async fn a_stored_result_keeps_the_connection_open_and_a_refused_one_closes_it() {
    let server = common::start().await;
    submit(&server, "acme/keep", "input").await;
    let held = claim(&server, "acme/keep", "").await.unwrap();
    let refused = server
        .client
        .put(server.url(&format!("/jobs/acme/keep/{}/result", held.id)))
        .body("unread")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "no receipt");
    assert_eq!(refused.headers()["connection"], "close");
    let r = worker_call(&server, "acme/keep", &held, Method::PUT, "result", "done").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("connection").is_none(),
        "a worker's next call may use the same connection"
    );
}
