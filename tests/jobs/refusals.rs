//! Bad input: every malformed header, body, query value, id or receipt is
//! answered with a problem document of the right status and type, and
//! changes nothing.

use reqwest::Method;
use serde_json::Value;

use super::common::{self, header, problem, TestServer};
use super::{claim, submit};

/// Request headers of a case.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A worker call and what it must answer: method, path, headers, body,
/// status and problem type.
type WorkerCase<'a> = (
    Method,
    String,
    Vec<(&'a str, &'a str)>,
    &'a str,
    u16,
    &'a str,
);

/// The jobs of `ns/q` as `(id, etag)`, to compare before and after.
async fn snapshot(server: &TestServer) -> Vec<(String, String)> {
    let page = server.json("/jobs/ns/q", 200).await;
    let mut out = Vec::new();
    for job in page["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap().to_owned();
        let r = server.get(&format!("/jobs/ns/q/{id}")).await;
        out.push((id, header(&r, "etag").to_owned()));
    }
    out
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let request = server.client.request(method, server.url(path));
    common::send_with(request.body(body.to_owned()), headers).await
}

#[tokio::test]
async fn bad_submits_are_refused_and_store_nothing() {
    let server = common::start().await;
    submit(&server, "ns/q", "kept").await;
    let before = snapshot(&server).await;
    let cases: &[(&str, Headers, &str)] = &[
        (
            "/jobs/ns/q",
            &[("x-job-max-attempts", "0")],
            "invalid-max-attempts",
        ),
        (
            "/jobs/ns/q",
            &[("x-job-max-attempts", "11")],
            "invalid-max-attempts",
        ),
        (
            "/jobs/ns/q",
            &[("x-job-retention", "0")],
            "invalid-retention",
        ),
        (
            "/jobs/ns/q",
            &[("x-job-retention", "604801")],
            "invalid-retention",
        ),
        (
            "/jobs/ns/q",
            &[("idempotency-key", "has space")],
            "invalid-idempotency-key",
        ),
        (
            "/jobs/ns/q",
            &[("x-queueserver-lifetime", "0")],
            "invalid-lifetime",
        ),
        (
            "/jobs/ns/q",
            &[("x-queueserver-lifetime", "86401")],
            "invalid-lifetime",
        ),
        (
            "/jobs/ns/q",
            &[("content-type", "nonsense")],
            "invalid-content-type",
        ),
        (
            "/jobs/ns/q",
            &[("x-custom-data", "novalue")],
            "invalid-custom-data",
        ),
        (
            "/jobs/ns/q",
            &[("x-custom-data", "k=1"), ("x-custom-data", "k=2")],
            "invalid-custom-data",
        ),
        (
            "/jobs/ns/q",
            &[("x-job-callback", "https://example.com/")],
            "callback-not-allowed",
        ),
        ("/jobs/ns/q", &[("prefer", "wait=soon")], "invalid-prefer"),
        ("/jobs/ns/q", &[("prefer", "wait=301")], "invalid-prefer"),
        ("/jobs/ns/q?x=1", &[], "invalid-query"),
        ("/jobs/n%2Fs/q", &[], "invalid-name"),
        ("/jobs/ns/.", &[], "invalid-name"),
    ];
    for (path, headers, kind) in cases {
        let r = send(&server, Method::POST, path, headers, "input").await;
        let v = problem(r, 400).await;
        assert_eq!(
            v["type"],
            format!("urn:blobq:problem:{kind}"),
            "{path} {headers:?}"
        );
    }
    assert_eq!(snapshot(&server).await, before, "nothing stored");
    assert!(server.spill_files().is_empty());
}

#[tokio::test]
async fn bad_reads_are_refused_and_unknown_jobs_are_404() {
    let server = common::start().await;
    let id = submit(&server, "ns/q", "x").await;
    let unknown = "4f1c0000-0000-4000-8000-000000000000";
    let bad_queries = [
        (format!("/jobs/ns/q/{id}?wait=x"), "invalid-wait"),
        (format!("/jobs/ns/q/{id}?wait=301"), "invalid-wait"),
        (format!("/jobs/ns/q/{id}?timeout=1"), "invalid-query"),
        (format!("/jobs/ns/q/{id}/log?after=x"), "invalid-query"),
        (format!("/jobs/ns/q/{id}/result?x=1"), "invalid-query"),
        ("/jobs/ns/q?state=done".to_owned(), "invalid-query"),
        ("/jobs/ns/q?limit=0".to_owned(), "invalid-query"),
        ("/jobs/ns/q?limit=1001".to_owned(), "invalid-query"),
        ("/jobs/ns/q?page_token=x".to_owned(), "invalid-page-token"),
        ("/jobs/ns?x=1".to_owned(), "invalid-query"),
    ];
    for (path, kind) in bad_queries {
        let v = problem(server.get(&path).await, 400).await;
        assert_eq!(v["type"], format!("urn:blobq:problem:{kind}"), "{path}");
    }
    let r = send(
        &server,
        Method::GET,
        &format!("/jobs/ns/q/{id}"),
        &[("if-none-match", "3")],
        "",
    )
    .await;
    problem(r, 400).await;
    for path in [
        format!("/jobs/ns/q/{unknown}"),
        "/jobs/ns/q/not-an-id".to_owned(),
        format!("/jobs/ns/q/{id}x"),
        format!("/jobs/ns/other/{id}"),
        format!("/jobs/other/q/{id}"),
        format!("/jobs/ns/q/{unknown}/log"),
        format!("/jobs/ns/q/{unknown}/result"),
        "/jobs/ns/other".to_owned(),
        "/jobs/other".to_owned(),
    ] {
        let v = problem(server.get(&path).await, 404).await;
        assert_eq!(v["type"], "urn:blobq:problem:not-found", "{path}");
    }
    for (method, path) in [
        (Method::POST, format!("/jobs/ns/q/{unknown}/cancel")),
        (Method::DELETE, format!("/jobs/ns/q/{unknown}")),
        (Method::POST, "/jobs/ns/q/nope/cancel".to_owned()),
    ] {
        problem(send(&server, method, &path, &[], "").await, 404).await;
    }
    let r = server.get("/jobs/ns/q/claim").await;
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "POST");
}

#[tokio::test]
async fn bad_worker_calls_are_refused_and_change_nothing() {
    let server = common::start().await;
    let other = submit(&server, "ns/q", "other").await;
    let id = submit(&server, "ns/q", "x").await;
    let stranger = claim(&server, "ns/q", "").await.unwrap();
    assert_eq!(stranger.id, other);
    let held = claim(&server, "ns/q", "").await.unwrap();
    assert_eq!(held.id, id);
    for query in [
        "?lease=0",
        "?lease=x",
        "?lease=43201",
        "?timeout=x",
        "?timeout=301",
        "?header_only=1",
    ] {
        let r = server.post(&format!("/jobs/ns/q/claim{query}"), "").await;
        problem(r, 400).await;
    }
    let before = snapshot(&server).await;
    let path = |action: &str| format!("/jobs/ns/q/{id}/{action}");
    let lease = held.receipt.as_str();
    let too_big = format!(r#"{{"message": "{}"}}"#, "m".repeat(70_000));
    let cases: Vec<WorkerCase> = vec![
        (
            Method::POST,
            path("heartbeat"),
            vec![],
            "",
            400,
            "missing-lease",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", "nonsense")],
            "",
            409,
            "lease-not-held",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", &stranger.receipt)],
            "",
            409,
            "lease-not-held",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", lease)],
            "not json",
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", lease)],
            r#"{"percent": 5}"#,
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", lease)],
            r#"{"progress": 101}"#,
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", lease)],
            r#"{"lease": 0}"#,
            400,
            "invalid-lease",
        ),
        (
            Method::POST,
            path("heartbeat"),
            vec![("x-queueserver-lease", lease)],
            &too_big,
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            format!("{}?x=1", path("heartbeat")),
            vec![("x-queueserver-lease", lease)],
            "",
            400,
            "invalid-query",
        ),
        (
            Method::PUT,
            path("result"),
            vec![],
            "r",
            400,
            "missing-lease",
        ),
        (
            Method::PUT,
            path("result"),
            vec![("x-queueserver-lease", lease), ("x-job-status", "99")],
            "r",
            400,
            "invalid-job-status",
        ),
        (
            Method::PUT,
            path("result"),
            vec![("x-queueserver-lease", lease), ("x-job-status", "600")],
            "r",
            400,
            "invalid-job-status",
        ),
        (
            Method::PUT,
            path("result"),
            vec![("x-queueserver-lease", lease), ("content-type", "bad")],
            "r",
            400,
            "invalid-content-type",
        ),
        (
            Method::PUT,
            path("result"),
            vec![("x-queueserver-lease", &stranger.receipt)],
            "r",
            409,
            "lease-not-held",
        ),
        (
            Method::POST,
            path("fail"),
            vec![],
            "{}",
            400,
            "missing-lease",
        ),
        (
            Method::POST,
            path("fail"),
            vec![("x-queueserver-lease", lease)],
            r#"{"code": "no spaces"}"#,
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            path("fail"),
            vec![("x-queueserver-lease", lease)],
            r#"{"retry": "yes"}"#,
            400,
            "invalid-report",
        ),
        (
            Method::POST,
            path("fail"),
            vec![("x-queueserver-lease", "")],
            "{}",
            409,
            "lease-not-held",
        ),
    ];
    for (method, path, headers, body, status, kind) in cases {
        let r = send(&server, method.clone(), &path, &headers, body).await;
        let v = problem(r, status).await;
        assert_eq!(
            v["type"],
            format!("urn:blobq:problem:{kind}"),
            "{method} {path} {headers:?}"
        );
    }
    assert_eq!(snapshot(&server).await, before, "nothing changed");
    let r = super::heartbeat(&server, "ns/q", &held, r#"{"progress": 1}"#).await;
    assert_eq!(r.status(), 200, "the lease is still good");
    let doc: Value = server.json(&format!("/jobs/ns/q/{id}"), 200).await;
    assert_eq!(doc["progress"], 1);
}
