//! Worker-side cases, each given two nodes (the same server twice on the
//! embedded backend): claims, progress, results, failures, leases that run
//! out, cancels, `Prefer: wait`, and many workers on both nodes sharing
//! one queue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::common::{custom_data, header, problem, TestServer, STEP};
use super::{claim, heartbeat, job, job_total, put_result, submit, submit_with, worker_call};

pub async fn a_job_runs_through_workers_on_either_node(a: &TestServer, b: &TestServer) {
    let r = submit_with(
        a,
        "ns/q",
        "in,put",
        &[("content-type", "text/csv"), ("x-custom-data", "k=v w")],
    )
    .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let result = format!("/jobs/ns/q/{id}/result");
    let v = problem(b.get(&result).await, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:job-has-no-result");
    assert_eq!(v["state"], "pending");
    let r = b.post("/jobs/ns/q/claim?lease=30", "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/csv");
    assert_eq!(header(&r, "x-job-id"), id);
    assert_eq!(header(&r, "x-job-attempt"), "1");
    assert_eq!(header(&r, "location"), format!("/jobs/ns/q/{id}"));
    assert_eq!(custom_data(&r), ["k=v w"]);
    let receipt = header(&r, "x-queueserver-lease").to_owned();
    assert_eq!(receipt.len(), 36, "a UUID");
    assert_eq!(r.text().await.unwrap(), "in,put");
    let held = super::Held {
        id: id.clone(),
        receipt,
        body: Vec::new(),
        attempt: 1,
    };
    let r = heartbeat(a, "ns/q", &held, r#"{"progress": 40, "message": "half"}"#).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["lease_expires"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let r = heartbeat(b, "ns/q", &held, r#"{"progress": 40}"#).await;
    assert_eq!(r.status(), 200, "the same percentage: no new entry");
    let doc = job(a, "ns/q", &id).await;
    assert_eq!(
        (
            doc["state"].as_str(),
            doc["attempt"].as_u64(),
            doc["progress"].as_u64(),
            doc["message"].as_str()
        ),
        (Some("running"), Some(1), Some(40), Some("half"))
    );
    assert!(doc["started"].is_string());
    let log = b.json(&format!("/jobs/ns/q/{id}/log"), 200).await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(
        (log[0]["progress"].as_u64(), log[0]["message"].as_str()),
        (Some(40), Some("half"))
    );
    let rest = a.json(&format!("/jobs/ns/q/{id}/log?after=1"), 200).await;
    assert_eq!(rest, serde_json::json!([]));
    let r = a
        .client
        .put(a.url(&result))
        .header("x-queueserver-lease", &held.receipt)
        .header("content-type", "text/plain")
        .header("x-job-status", "201")
        .body("out")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (
            doc["state"].as_str(),
            doc["done"].as_bool(),
            doc["progress"].as_u64()
        ),
        (Some("succeeded"), Some(true), Some(100))
    );
    assert_eq!(
        doc["result"],
        serde_json::json!({"size": 3, "content_type": "text/plain", "status": 201, "href": result})
    );
    assert!(doc["expires"].is_string() && doc["finished"].is_string());
    let r = b.get(&result).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/plain");
    assert_eq!(header(&r, "x-job-status"), "201");
    assert_eq!(r.text().await.unwrap(), "out");
    let again = worker_call(b, "ns/q", &held, Method::PUT, "result", "again").await;
    let v = problem(again, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:lease-not-held");
}

pub async fn a_waiting_claim_is_woken_by_a_submit_on_the_other_node(
    a: &TestServer,
    b: &TestServer,
) {
    let started = Instant::now();
    assert!(claim(b, "ns/q", "?timeout=0.3").await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
    let worker = {
        let (client, url) = (b.client.clone(), b.url("/jobs/ns/q/claim?timeout=15"));
        tokio::spawn(async move {
            let r = client.post(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worker.is_finished());
    submit(a, "ns/q", "wake").await;
    let submitted = Instant::now();
    let (status, body, at) = worker.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "wake"));
    assert!(at.duration_since(submitted) < Duration::from_secs(5));
    // `Prefer: wait` on one node, answered by a worker on the other.
    let worker = {
        let (client, base) = (b.client.clone(), b.url("/jobs/ns/fast"));
        tokio::spawn(async move {
            let r = client.post(format!("{base}/claim?timeout=15")).send();
            let r = r.await.unwrap();
            let id = r.headers()["x-job-id"].to_str().unwrap().to_owned();
            let lease = r.headers()["x-queueserver-lease"]
                .to_str()
                .unwrap()
                .to_owned();
            let put = client
                .put(format!("{base}/{id}/result"))
                .header("x-queueserver-lease", lease);
            put.body("done").send().await.unwrap().status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = submit_with(a, "ns/fast", "x", &[("prefer", "wait=15")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "succeeded");
    assert_eq!(worker.await.unwrap(), 200);
    // No worker: answered `202` when the wait runs out.
    let started = Instant::now();
    let r = submit_with(a, "ns/slow", "x", &[("prefer", "respond-async, wait=0.3")]).await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "retry-after"), "1");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

pub async fn a_lease_that_runs_out_returns_the_job_to_the_head(a: &TestServer, b: &TestServer) {
    let r = submit_with(a, "ns/q", "x", &[("x-job-max-attempts", "2")]).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = claim(b, "ns/q", "?lease=0.6").await.unwrap();
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let node = if i % 2 == 0 { a } else { b };
        assert_eq!(heartbeat(node, "ns/q", &held, "").await.status(), 200);
    }
    assert_eq!(job(a, "ns/q", &id).await["state"], "running");
    a.wait_for_json(&format!("/jobs/ns/q/{id}"), "pending again", |v| {
        v["state"] == "pending"
    })
    .await;
    let v = problem(heartbeat(b, "ns/q", &held, "").await, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:lease-not-held");
    submit(b, "ns/q", "behind").await;
    let again = claim(a, "ns/q", "?lease=0.3").await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.attempt),
        (id.as_str(), 2),
        "at the head"
    );
    let doc = b
        .wait_for_json(&format!("/jobs/ns/q/{id}"), "abandoned", |v| {
            v["state"] == "failed"
        })
        .await;
    assert_eq!(doc["error"]["code"], "ABANDONED");
    assert_eq!(doc["attempt"], 2);
    let deadline = Instant::now() + STEP;
    while job_total(a, b, "blobq_job_failures_total").await != 1 {
        assert!(
            Instant::now() < deadline,
            "the abandoned job is not counted once"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = claim(b, "ns/q", "").await.unwrap();
    assert_eq!(next.body, b"behind");
}

pub async fn a_failure_retries_at_the_head_while_attempts_are_left(a: &TestServer, b: &TestServer) {
    let r = submit_with(a, "ns/q", "x", &[("x-job-max-attempts", "2")]).await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    submit(a, "ns/q", "second").await;
    let report =
        r#"{"code": "BUSY", "message": "try later", "details": {"n": [1]}, "retry": true}"#;
    let held = claim(b, "ns/q", "").await.unwrap();
    let r = worker_call(a, "ns/q", &held, Method::POST, "fail", report).await;
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["state"].as_str(), doc["error"].is_null()),
        (Some("pending"), true)
    );
    let held = claim(a, "ns/q", "").await.unwrap();
    assert_eq!((held.id.as_str(), held.attempt), (id.as_str(), 2));
    let r = worker_call(b, "ns/q", &held, Method::POST, "fail", report).await;
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["state"].as_str(), doc["done"].as_bool()),
        (Some("failed"), Some(true))
    );
    assert_eq!(
        doc["error"],
        serde_json::json!({"code": "BUSY", "message": "try later", "details": {"n": [1]}})
    );
    let v = problem(a.get(&format!("/jobs/ns/q/{id}/result")).await, 409).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["error"],
        serde_json::json!({"code": "BUSY", "message": "try later", "details": {"n": [1]}})
    );
    let v = problem(
        worker_call(a, "ns/q", &held, Method::POST, "fail", report).await,
        409,
    )
    .await;
    assert_eq!(v["type"], "urn:blobq:problem:lease-not-held");
    // Without `retry`, a failure is final whatever attempts are left.
    let held = claim(b, "ns/q", "").await.unwrap();
    let report = r#"{"code": "NO_DATA", "message": "nothing to export"}"#;
    let r = worker_call(a, "ns/q", &held, Method::POST, "fail", report).await;
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["state"].as_str(), doc["attempt"].as_u64()),
        (Some("failed"), Some(1)),
        "no retry asked"
    );
    let v = problem(b.get(&format!("/jobs/ns/q/{}/result", held.id)).await, 409).await;
    assert_eq!(
        v["error"],
        serde_json::json!({"code": "NO_DATA", "message": "nothing to export"})
    );
}

pub async fn cancel_takes_a_pending_job_out_and_revokes_a_running_one(
    a: &TestServer,
    b: &TestServer,
) {
    let running = submit(a, "ns/q", "a").await;
    let pending = submit(a, "ns/q", "b").await;
    let held = claim(b, "ns/q", "").await.unwrap();
    assert_eq!(held.id, running);
    for id in [&pending, &running] {
        let r = a.post(&format!("/jobs/ns/q/{id}/cancel"), "").await;
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(
            (doc["state"].as_str(), doc["done"].as_bool()),
            (Some("cancelled"), Some(true))
        );
        assert_eq!(doc["error"]["code"], "CANCELLED");
    }
    assert!(
        claim(b, "ns/q", "").await.is_none(),
        "nothing left to claim"
    );
    for (method, action, body) in [
        (Method::POST, "heartbeat", ""),
        (Method::PUT, "result", "late"),
        (Method::POST, "fail", "{}"),
    ] {
        let r = worker_call(b, "ns/q", &held, method, action, body).await;
        let v = problem(r, 409).await;
        assert_eq!(v["type"], "urn:blobq:problem:job-cancelled", "{action}");
    }
    let doc = job(a, "ns/q", &running).await;
    assert_eq!(
        doc["state"], "cancelled",
        "the revoked worker changed nothing"
    );
    assert!(doc["result"].is_null());
    let done = submit(b, "ns/q", "c").await;
    let held = claim(a, "ns/q", "").await.unwrap();
    put_result(b, "ns/q", &held, b"out").await;
    let r = a.post(&format!("/jobs/ns/q/{done}/cancel"), "").await;
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "succeeded");
}

/// Workers on both nodes take every job of one queue: each is claimed and
/// finished exactly once, and no result is refused.
pub async fn workers_on_both_nodes_finish_each_job_once(a: &TestServer, b: &TestServer) {
    const JOBS: usize = 24;
    let mut submitted = Vec::new();
    for i in 0..JOBS {
        let node = if i % 2 == 0 { a } else { b };
        submitted.push(submit(node, "ns/many", format!("{i}")).await);
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let node = if w % 2 == 0 { a } else { b };
        let (client, base) = (node.client.clone(), node.url("/jobs/ns/many"));
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let r = client.post(format!("{base}/claim?timeout=1")).send();
                let r = r.await.unwrap();
                if r.status() == 204 {
                    return done;
                }
                assert_eq!(r.status(), 200);
                let id = r.headers()["x-job-id"].to_str().unwrap().to_owned();
                let lease = r.headers()["x-queueserver-lease"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let put = client
                    .put(format!("{base}/{id}/result"))
                    .header("x-queueserver-lease", lease)
                    .body(id.clone());
                assert_eq!(put.send().await.unwrap().status(), 200, "result of {id}");
                done.push(id);
            }
        }));
    }
    let mut times: HashMap<String, usize> = HashMap::new();
    for worker in workers {
        for id in tokio::time::timeout(Duration::from_secs(60), worker)
            .await
            .expect("workers finish")
            .unwrap()
        {
            *times.entry(id).or_default() += 1;
        }
    }
    assert_eq!(times.len(), JOBS, "every job finished");
    assert!(times.values().all(|&n| n == 1), "{times:?}");
    for id in &submitted {
        assert_eq!(job(a, "ns/many", id).await["state"], "succeeded");
    }
}
