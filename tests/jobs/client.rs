//! The client side: submit and its headers, the document and its `ETag`,
//! long polls, `Prefer: wait`, the result, the log, delete, listing,
//! counts and metrics, idempotency.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{self, header, problem};
use super::{claim, heartbeat, job, put_result, submit, submit_with, worker_call};

#[tokio::test]
async fn a_submit_answers_202_with_location_retry_after_and_the_document() {
    let server = common::start().await;
    let r = submit_with(
        &server,
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
    assert!(
        created.ends_with('Z') && created.len() == 24,
        "RFC 3339 with ms: {created}"
    );
    assert_eq!(doc["input"]["size"], 14);
    assert_eq!(doc["input"]["content_type"], "application/json");
    assert_eq!(
        doc["metadata"],
        serde_json::json!({"user": "alice", "reason": "audit"})
    );
    let again = server.get(&location).await;
    assert_eq!(header(&again, "etag"), etag, "unchanged, same tag");
    let plain = submit_with(&server, "acme/export", "", &[]).await;
    let doc: Value = plain.json().await.unwrap();
    assert_eq!(
        doc["input"],
        serde_json::json!({"size": 0, "content_type": "application/octet-stream"})
    );
    assert_eq!(doc["max_attempts"], 10, "the server's --max-deliveries");
}

#[tokio::test]
async fn an_etag_changes_with_the_job_and_if_none_match_answers_304() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let path = format!("/jobs/ns/q/{id}");
    let first = server.get(&path).await;
    let etag = header(&first, "etag").to_owned();
    let conditional = |tag: String, query: &'static str| {
        let url = server.url(&format!("{path}{query}"));
        server.client.get(url).header("if-none-match", tag).send()
    };
    let r = conditional(etag.clone(), "").await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);
    let started = Instant::now();
    let r = conditional(etag.clone(), "?wait=0.5").await.unwrap();
    assert_eq!(r.status(), 304, "unchanged when the wait ran out");
    assert!(started.elapsed() >= Duration::from_millis(450));
    let held = claim(&server, "ns/q", "").await.unwrap();
    let r = conditional(etag.clone(), "").await.unwrap();
    assert_eq!(r.status(), 200);
    let running_tag = header(&r, "etag").to_owned();
    assert_ne!(running_tag, etag);
    heartbeat(&server, "ns/q", &held, r#"{"progress": 10}"#).await;
    let r = conditional(running_tag.clone(), "").await.unwrap();
    assert_eq!(r.status(), 200, "progress changes the tag");
    let extend_only = heartbeat(&server, "ns/q", &held, r#"{"lease": 30}"#).await;
    assert_eq!(extend_only.status(), 200);
    let tag = header(&r, "etag").to_owned();
    let r = conditional(tag, "").await.unwrap();
    assert_eq!(
        r.status(),
        304,
        "a lease extension alone changes nothing shown"
    );
}

#[tokio::test]
async fn a_long_poll_is_woken_by_a_worker_on_another_connection() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    // Each poller has its own client, so its own connection.
    let poll = |query: &'static str, tag: Option<String>| {
        let url = server.url(&format!("/jobs/ns/q/{id}{query}"));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut request = client.get(url);
            if let Some(tag) = tag {
                request = request.header("if-none-match", tag);
            }
            let started = Instant::now();
            let r = request.send().await.expect("poll");
            let status = r.status().as_u16();
            let doc: Value = r.json().await.unwrap_or(Value::Null);
            (status, doc, started.elapsed())
        })
    };
    let until_done = poll("?wait=20", None);
    let etag = header(&server.get(&format!("/jobs/ns/q/{id}")).await, "etag").to_owned();
    let until_changed = poll("?wait=20", Some(etag));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!until_done.is_finished() && !until_changed.is_finished());
    let held = claim(&server, "ns/q", "").await.unwrap();
    let (status, doc, waited) = until_changed.await.unwrap();
    assert_eq!((status, doc["state"].as_str()), (200, Some("running")));
    assert!(waited < Duration::from_secs(10));
    assert!(!until_done.is_finished(), "running is not done");
    put_result(&server, "ns/q", &held, b"out").await;
    let (status, doc, waited) = until_done.await.unwrap();
    assert_eq!((status, doc["state"].as_str()), (200, Some("succeeded")));
    assert_eq!(doc["done"], true);
    assert!(waited < Duration::from_secs(10));
    let started = Instant::now();
    let done = server.get(&format!("/jobs/ns/q/{id}?wait=20")).await;
    assert_eq!(done.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a done job answers at once"
    );
}

#[tokio::test]
async fn prefer_wait_answers_200_with_the_finished_job_or_202_in_time() {
    let server = common::start().await;
    let worker = {
        let (client, url) = (
            server.client.clone(),
            server.url("/jobs/ns/fast/claim?timeout=10"),
        );
        let base = server.url("/jobs/ns/fast");
        tokio::spawn(async move {
            let r = client.post(url).send().await.unwrap();
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = submit_with(&server, "ns/fast", "x", &[("prefer", "wait=10")]).await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["state"], "succeeded");
    assert_eq!(worker.await.unwrap(), 200);
    let started = Instant::now();
    let r = submit_with(
        &server,
        "ns/slow",
        "x",
        &[("prefer", "respond-async, wait=0.3")],
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "retry-after"), "1");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn the_result_downloads_with_its_type_and_status_and_409s_until_it_exists() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let result = format!("/jobs/ns/q/{id}/result");
    let v = problem(server.get(&result).await, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:job-has-no-result");
    assert_eq!(v["state"], "pending");
    let held = claim(&server, "ns/q", "").await.unwrap();
    let url = server.url(&format!("/jobs/ns/q/{id}/result"));
    let big = common::pattern(300_000, 7);
    let r = server
        .client
        .put(url)
        .header("x-queueserver-lease", &held.receipt)
        .header("content-type", "application/zip")
        .header("x-job-status", "201")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["result"]["size"], 300_000);
    assert_eq!(doc["result"]["content_type"], "application/zip");
    assert_eq!(doc["result"]["status"], 201);
    assert_eq!(doc["result"]["href"], result);
    assert_eq!(doc["progress"], 100);
    assert!(doc["expires"].is_string() && doc["finished"].is_string());
    let r = server.get(&result).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/zip");
    assert_eq!(header(&r, "x-job-status"), "201");
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        big,
        "spilled and streamed back whole"
    );
    // A failed job's 409 carries its error.
    let failed = submit(&server, "ns/q", "x").await;
    let held = claim(&server, "ns/q", "").await.unwrap();
    assert_eq!(held.id, failed);
    let details = r#"{"code": "NO_DATA", "message": "nothing to export", "details": {"rows": 0}}"#;
    let r = worker_call(
        &server,
        "ns/q",
        &held,
        reqwest::Method::POST,
        "fail",
        details,
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = problem(
        server.get(&format!("/jobs/ns/q/{failed}/result")).await,
        409,
    )
    .await;
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["error"],
        serde_json::json!({"code": "NO_DATA", "message": "nothing to export", "details": {"rows": 0}})
    );
}

#[tokio::test]
async fn the_log_lists_each_report_with_a_message_or_a_new_percentage() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let held = claim(&server, "ns/q", "").await.unwrap();
    for report in [
        r#"{"progress": 10, "message": "reading"}"#,
        r#"{"progress": 10}"#,
        r#"{"progress": 50}"#,
        r#"{"message": "zipping"}"#,
        "",
    ] {
        assert_eq!(
            heartbeat(&server, "ns/q", &held, report).await.status(),
            200
        );
    }
    let log = server.json(&format!("/jobs/ns/q/{id}/log"), 200).await;
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
    let rest = server
        .json(&format!("/jobs/ns/q/{id}/log?after=2"), 200)
        .await;
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["message"], "zipping");
    let none = server
        .json(&format!("/jobs/ns/q/{id}/log?after=99"), 200)
        .await;
    assert_eq!(none, serde_json::json!([]));
    let doc = job(&server, "ns/q", &id).await;
    assert_eq!(
        (doc["progress"].as_u64(), doc["message"].as_str()),
        (Some(50), Some("zipping"))
    );
}

#[tokio::test]
async fn delete_removes_a_finished_job_and_refuses_one_not_done() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let path = format!("/jobs/ns/q/{id}");
    let v = problem(server.delete(&path).await, 409).await;
    assert_eq!(v["type"], "urn:blobq:problem:job-not-done");
    assert_eq!(v["state"], "pending");
    assert_eq!(
        job(&server, "ns/q", &id).await["state"],
        "pending",
        "changed nothing"
    );
    let cancelled = server.post(&format!("{path}/cancel"), "").await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(server.delete(&path).await.status(), 204);
    for gone in [
        path.clone(),
        format!("{path}/log"),
        format!("{path}/result"),
    ] {
        problem(server.get(&gone).await, 404).await;
    }
    problem(server.delete(&path).await, 404).await;
}

#[tokio::test]
async fn listing_filters_by_state_and_pages_oldest_first() {
    let server = common::start().await;
    problem(server.get("/jobs/ns/q").await, 404).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&server, "ns/q", format!("job {i}")).await);
    }
    claim(&server, "ns/q", "").await.unwrap();
    let mut listed = Vec::new();
    let mut next = "/jobs/ns/q?limit=2".to_owned();
    loop {
        let page = server.json(&next, 200).await;
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        listed.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(token) => next = format!("/jobs/ns/q?limit=2&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    let running = server.json("/jobs/ns/q?state=running", 200).await;
    assert_eq!(running["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(running["jobs"][0]["id"], ids[0].as_str());
    assert!(running["next_page_token"].is_null());
    let pending = server.json("/jobs/ns/q?state=pending", 200).await;
    assert_eq!(pending["jobs"].as_array().unwrap().len(), 4);
    let all = server.json("/jobs/ns/q", 200).await;
    assert_eq!(
        all["jobs"].as_array().unwrap().len(),
        5,
        "default limit 100"
    );
}

#[tokio::test]
async fn a_namespace_counts_its_jobs_by_queue_and_state() {
    let server = common::start().await;
    problem(server.get("/jobs/acme").await, 404).await;
    submit(&server, "acme/export", "a").await;
    submit(&server, "acme/export", "b").await;
    let id = submit(&server, "acme/report", "c").await;
    claim(&server, "acme/export", "").await.unwrap();
    server
        .post(&format!("/jobs/acme/report/{id}/cancel"), "")
        .await;
    let v = server.json("/jobs/acme", 200).await;
    assert_eq!(v["namespace"], "acme");
    let export = &v["queues"]["export"];
    assert_eq!(
        (export["pending"].as_u64(), export["running"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(export["total"], 2);
    assert_eq!(v["queues"]["report"]["cancelled"], 1);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"blobq_jobs{namespace="acme",queue="export",state="pending"} 1"#,
        r#"blobq_jobs{namespace="acme",queue="export",state="running"} 1"#,
        r#"blobq_jobs{namespace="acme",queue="report",state="cancelled"} 1"#,
        "blobq_jobs_submitted_total 3",
        "blobq_job_claims_total 1",
        "blobq_job_cancellations_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn an_idempotency_key_answers_the_first_job_while_it_is_kept() {
    let server = common::start().await;
    let key = [("idempotency-key", "order-42")];
    let first = submit_with(&server, "ns/q", "first", &key).await;
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = submit_with(&server, "ns/q", "second", &key).await;
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "location"), format!("/jobs/ns/q/{id}"));
    // Its body was never read: the answer says the connection ends, so a
    // client does not send its next request on a connection hyper closes.
    assert_eq!(header(&again, "connection"), "close");
    let doc: Value = again.json().await.unwrap();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["input"]["size"], 5, "the first job's input");
    let other_queue = submit_with(&server, "ns/other", "x", &key).await;
    assert_eq!(
        other_queue.status(),
        202,
        "keys are per namespace and queue"
    );
    let listed = server.json("/jobs/ns/q", 200).await;
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    server.post(&format!("/jobs/ns/q/{id}/cancel"), "").await;
    assert_eq!(
        server.delete(&format!("/jobs/ns/q/{id}")).await.status(),
        204
    );
    let after = submit_with(&server, "ns/q", "third", &key).await;
    assert_eq!(after.status(), 202, "the key is free once its job is gone");
}
