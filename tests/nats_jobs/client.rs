//! Client-side cases, each given two nodes (the same server twice on the
//! embedded backend): submit and the document, long polls across nodes,
//! listings and counts, delete, idempotency, lifetimes and retention.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{header, problem, TestServer, STEP};
use super::{claim, heartbeat, job, job_total, put_result, submit, submit_with};

pub async fn a_submit_answers_the_document_on_either_node(a: &TestServer, b: &TestServer) {
    let r = submit_with(
        a,
        "acme/export",
        r#"{"account": 7}"#,
        &[
            ("content-type", "application/json"),
            ("x-custom-data", "user=alice"),
            ("x-custom-data", "reason=audit"),
            ("x-job-max-attempts", "4"),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "retry-after"), "1");
    let location = header(&r, "location").to_owned();
    let etag = header(&r, "etag").to_owned();
    let doc: Value = r.json().await.unwrap();
    let id = doc["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID");
    assert_eq!(location, format!("/jobs/acme/export/{id}"));
    assert_eq!(doc["name"], format!("jobs/acme/export/{id}"));
    assert_eq!(
        (doc["namespace"].as_str(), doc["queue"].as_str()),
        (Some("acme"), Some("export"))
    );
    assert_eq!(doc["state"], "pending");
    assert_eq!(doc["done"], false);
    assert_eq!(
        (doc["attempt"].as_u64(), doc["max_attempts"].as_u64()),
        (Some(0), Some(4))
    );
    for null in [
        "progress", "message", "started", "finished", "expires", "result", "error",
    ] {
        assert!(doc[null].is_null(), "{null}: {doc}");
    }
    let created = doc["created"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    assert_eq!(
        doc["input"],
        serde_json::json!({"size": 14, "content_type": "application/json"})
    );
    assert_eq!(
        doc["metadata"],
        serde_json::json!({"user": "alice", "reason": "audit"})
    );
    let again = b.get(&location).await;
    assert_eq!(header(&again, "etag"), etag, "the same version on node b");
    let conditional = b
        .client
        .get(b.url(&location))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(conditional.status(), 304);
    assert_eq!(header(&conditional, "etag"), etag);
    let plain = submit_with(b, "acme/export", "", &[]).await;
    let doc: Value = plain.json().await.unwrap();
    assert_eq!(
        doc["input"],
        serde_json::json!({"size": 0, "content_type": "application/octet-stream"})
    );
    assert_eq!(doc["max_attempts"], 10, "the server's --max-deliveries");
}

/// Polls `path` on its own connection in the background.
fn poll(
    server: &TestServer,
    path: String,
    tag: Option<String>,
) -> tokio::task::JoinHandle<(u16, Value, Duration)> {
    let url = server.url(&path);
    tokio::spawn(async move {
        let mut request = reqwest::Client::new().get(url);
        if let Some(tag) = tag {
            request = request.header("if-none-match", tag);
        }
        let started = Instant::now();
        let r = request.send().await.expect("poll");
        let status = r.status().as_u16();
        let doc: Value = r.json().await.unwrap_or(Value::Null);
        (status, doc, started.elapsed())
    })
}

/// `GET path` with `If-None-Match: tag`.
async fn unchanged_since(server: &TestServer, path: &str, tag: &str) -> reqwest::Response {
    let request = server.client.get(server.url(path));
    request.header("if-none-match", tag).send().await.unwrap()
}

pub async fn a_long_poll_on_one_node_is_ended_by_a_worker_on_the_other(
    a: &TestServer,
    b: &TestServer,
) {
    let id = submit(a, "ns/q", "x").await;
    let path = format!("/jobs/ns/q/{id}");
    let until_done = poll(a, format!("{path}?wait=20"), None);
    let etag = header(&a.get(&path).await, "etag").to_owned();
    let until_changed = poll(a, format!("{path}?wait=20"), Some(etag));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!until_done.is_finished() && !until_changed.is_finished());
    let held = claim(b, "ns/q", "").await.unwrap();
    let (status, doc, waited) = until_changed.await.unwrap();
    assert_eq!((status, doc["state"].as_str()), (200, Some("running")));
    assert!(waited < Duration::from_secs(10));
    let running_tag = header(&a.get(&path).await, "etag").to_owned();
    assert_eq!(
        heartbeat(b, "ns/q", &held, r#"{"progress": 10}"#)
            .await
            .status(),
        200
    );
    let r = unchanged_since(a, &path, &running_tag).await;
    assert_eq!(r.status(), 200, "progress changes the tag");
    let tag = header(&r, "etag").to_owned();
    assert_eq!(
        heartbeat(b, "ns/q", &held, r#"{"lease": 30}"#)
            .await
            .status(),
        200
    );
    assert_eq!(
        unchanged_since(a, &path, &tag).await.status(),
        304,
        "a lease extension alone changes nothing shown"
    );
    assert!(!until_done.is_finished(), "running is not done");
    put_result(b, "ns/q", &held, b"out").await;
    let (status, doc, waited) = until_done.await.unwrap();
    assert_eq!((status, doc["state"].as_str()), (200, Some("succeeded")));
    assert_eq!(doc["done"], true);
    assert!(waited < Duration::from_secs(10), "woken, not timed out");
    let (status, _, waited) = poll(b, format!("{path}?wait=20"), None).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        waited < Duration::from_secs(5),
        "a done job answers at once"
    );
    let quiet = format!("/jobs/ns/q/{}", submit(b, "ns/q", "y").await);
    let tag = header(&a.get(&quiet).await, "etag").to_owned();
    let (status, _, waited) = poll(a, format!("{quiet}?wait=0.5"), Some(tag))
        .await
        .unwrap();
    assert_eq!(status, 304, "unchanged when the wait ran out");
    assert!(waited >= Duration::from_millis(450));
}

pub async fn listing_pages_oldest_first_and_counts_by_state(a: &TestServer, b: &TestServer) {
    problem(a.get("/jobs/ns/q").await, 404).await;
    problem(a.get("/jobs/acme").await, 404).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let node = if i % 2 == 0 { a } else { b };
        ids.push(submit(node, "ns/q", format!("job {i}")).await);
    }
    let held = claim(b, "ns/q", "").await.unwrap();
    assert_eq!(held.id, ids[0], "oldest first");
    let mut listed = Vec::new();
    let mut next = "/jobs/ns/q?limit=2".to_owned();
    loop {
        let page = a.json(&next, 200).await;
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        listed.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(token) => next = format!("/jobs/ns/q?limit=2&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    let running = b.json("/jobs/ns/q?state=running", 200).await;
    assert_eq!(running["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(running["jobs"][0]["id"], ids[0].as_str());
    assert!(running["next_page_token"].is_null());
    let pending = b.json("/jobs/ns/q?state=pending", 200).await;
    assert_eq!(pending["jobs"].as_array().unwrap().len(), 4);
    let all = a.json("/jobs/ns/q", 200).await;
    assert_eq!(
        all["jobs"].as_array().unwrap().len(),
        5,
        "default limit 100"
    );
    let v = problem(a.get("/jobs/ns/q?page_token=bogus").await, 400).await;
    assert_eq!(v["type"], "urn:blobq:problem:invalid-page-token");
    // Counts by queue and state, and the same in /metrics (the NATS
    // backend's are counted by its sweeper, every second).
    let report = submit(a, "ns/report", "c").await;
    a.post(&format!("/jobs/ns/report/{report}/cancel"), "")
        .await;
    let v = b.json("/jobs/ns", 200).await;
    assert_eq!(v["namespace"], "ns");
    let q = &v["queues"]["q"];
    assert_eq!(
        (
            q["pending"].as_u64(),
            q["running"].as_u64(),
            q["total"].as_u64()
        ),
        (Some(4), Some(1), Some(5))
    );
    assert_eq!(v["queues"]["report"]["cancelled"], 1);
    let deadline = Instant::now() + STEP;
    let wanted = [
        r#"blobq_jobs{namespace="ns",queue="q",state="pending"} 4"#,
        r#"blobq_jobs{namespace="ns",queue="q",state="running"} 1"#,
        r#"blobq_jobs{namespace="ns",queue="report",state="cancelled"} 1"#,
    ];
    loop {
        let metrics = b.get("/metrics").await.text().await.unwrap();
        if wanted.iter().all(|w| metrics.lines().any(|l| l == *w)) {
            break;
        }
        assert!(Instant::now() < deadline, "no job counts in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (total, want) in [
        ("blobq_jobs_submitted_total", 6),
        ("blobq_job_claims_total", 1),
        ("blobq_job_cancellations_total", 1),
    ] {
        assert_eq!(job_total(a, b, total).await, want, "{total}");
    }
}

pub async fn the_log_lists_each_report_with_a_message_or_a_new_percentage(
    a: &TestServer,
    b: &TestServer,
) {
    let id = submit(a, "ns/q", "x").await;
    let held = claim(b, "ns/q", "").await.unwrap();
    for (i, report) in [
        r#"{"progress": 10, "message": "reading"}"#,
        r#"{"progress": 10}"#,
        r#"{"progress": 50}"#,
        r#"{"message": "zipping"}"#,
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let node = if i % 2 == 0 { a } else { b };
        assert_eq!(heartbeat(node, "ns/q", &held, report).await.status(), 200);
    }
    let log = a.json(&format!("/jobs/ns/q/{id}/log"), 200).await;
    let entries = log.as_array().unwrap();
    let brief: Vec<(Value, Value)> = entries
        .iter()
        .map(|e| (e["progress"].clone(), e["message"].clone()))
        .collect();
    assert_eq!(
        brief,
        [
            (10.into(), "reading".into()),
            (50.into(), Value::Null),
            (50.into(), "zipping".into()),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    let rest = b.json(&format!("/jobs/ns/q/{id}/log?after=2"), 200).await;
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["message"], "zipping");
    let none = b.json(&format!("/jobs/ns/q/{id}/log?after=99"), 200).await;
    assert_eq!(none, serde_json::json!([]));
    let doc = job(a, "ns/q", &id).await;
    assert_eq!(
        (doc["progress"].as_u64(), doc["message"].as_str()),
        (Some(50), Some("zipping"))
    );
}

pub async fn delete_and_unknown_jobs(a: &TestServer, b: &TestServer) {
    let done = submit(a, "ns/q", "x").await;
    let pending = submit(a, "ns/q", "y").await;
    let held = claim(b, "ns/q", "").await.unwrap();
    assert_eq!(held.id, done);
    put_result(b, "ns/q", &held, b"result").await;
    let v = problem(b.delete(&format!("/jobs/ns/q/{pending}")).await, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:job-not-done");
    assert_eq!(v["state"], "pending");
    assert_eq!(
        job(a, "ns/q", &pending).await["state"],
        "pending",
        "changed nothing"
    );
    assert_eq!(b.delete(&format!("/jobs/ns/q/{done}")).await.status(), 204);
    for path in [
        format!("/jobs/ns/q/{done}"),
        format!("/jobs/ns/q/{done}/result"),
        format!("/jobs/ns/q/{done}/log"),
        "/jobs/ns/q/not-a-uuid".to_owned(),
        "/jobs/ns/q/4f1c2a3b-0000-4000-8000-000000000000".to_owned(),
        format!("/jobs/ns/other/{pending}"),
        format!("/jobs/other/q/{pending}"),
        "/jobs/nobody".to_owned(),
    ] {
        let v = problem(a.get(&path).await, 404).await;
        assert_eq!(v["type"], "urn:blobq:problem:not-found", "{path}");
    }
    assert_eq!(
        a.delete(&format!("/jobs/ns/q/{done}")).await.status(),
        404,
        "deleted once"
    );
    let listed = a.json("/jobs/ns/q", 200).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
}

pub async fn an_idempotency_key_answers_the_first_job_on_any_node(a: &TestServer, b: &TestServer) {
    // Characters no NATS key may hold.
    let key = [("idempotency-key", "order-42/x*>")];
    let first = submit_with(a, "ns/q", "first", &key).await;
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = submit_with(b, "ns/q", "second", &key).await;
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "location"), format!("/jobs/ns/q/{id}"));
    // Its body was never read: the answer says the connection ends, so a
    // client does not send its next request on a connection hyper closes.
    assert_eq!(header(&again, "connection"), "close");
    let doc: Value = again.json().await.unwrap();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["input"]["size"], 5, "the first job's input");
    let other_queue = submit_with(b, "ns/other", "x", &key).await;
    assert_eq!(other_queue.status(), 202, "keys are per queue");
    let listed = a.json("/jobs/ns/q", 200).await;
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    b.post(&format!("/jobs/ns/q/{id}/cancel"), "").await;
    assert_eq!(a.delete(&format!("/jobs/ns/q/{id}")).await.status(), 204);
    let after = submit_with(b, "ns/q", "third", &key).await;
    assert_eq!(after.status(), 202, "the key is free once its job is gone");
    let doc: Value = after.json().await.unwrap();
    assert_ne!(doc["id"], id.as_str());
    // Many submits with one key at once, through both nodes: one job.
    let racing = [("idempotency-key", "race")];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { a } else { b };
        let (client, url) = (node.client.clone(), node.url("/jobs/ns/race"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header(racing[0].0, racing[0].1)
                .body("x")
                .send();
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap()["id"].clone())
        }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for task in tasks {
        let (status, id) = task.await.unwrap();
        created += usize::from(status == 202);
        assert!(status == 202 || status == 200, "{status}");
        ids.push(id);
    }
    assert_eq!(created, 1, "one submit made the job");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let listed = b.json("/jobs/ns/race", 200).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
}

pub async fn lifetimes_and_retention_end_jobs(a: &TestServer, b: &TestServer) {
    let r = submit_with(a, "ns/q", "x", &[("x-queueserver-lifetime", "1")]).await;
    let expiring = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = b
        .wait_for_json(&format!("/jobs/ns/q/{expiring}"), "expired", |v| {
            v["state"] == "failed"
        })
        .await;
    assert_eq!(doc["error"]["code"], "EXPIRED");
    assert!(
        claim(b, "ns/q", "").await.is_none(),
        "an expired job is not claimed"
    );
    let r = submit_with(b, "ns/q", "y", &[("x-job-retention", "1")]).await;
    let kept = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = claim(a, "ns/q", "").await.unwrap();
    assert_eq!(held.id, kept);
    let doc = put_result(a, "ns/q", &held, b"out").await;
    assert!(doc["expires"].is_string());
    let deadline = Instant::now() + STEP;
    while job_status(b, &kept).await != 404 {
        assert!(Instant::now() < deadline, "kept past its retention");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = problem(a.get(&format!("/jobs/ns/q/{kept}/result")).await, 404).await;
    assert_eq!(v["type"], "urn:blobq:problem:not-found");
}

async fn job_status(server: &TestServer, id: &str) -> u16 {
    server
        .get(&format!("/jobs/ns/q/{id}"))
        .await
        .status()
        .as_u16()
}
