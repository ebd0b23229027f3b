//! The jobs API's requests as the tests make them, shared by
//! `tests/jobs.rs` and `tests/nats_jobs.rs`.

use serde_json::Value;

use super::common::{header, post_with, TestServer};

/// A job a worker holds: its id and its lease receipt.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: String,
    pub receipt: String,
    pub body: Vec<u8>,
    pub attempt: u64,
}

/// Submits `input` to `/jobs/{nsq}` with `headers`; the answer.
pub async fn submit_with(
    server: &TestServer,
    nsq: &str,
    input: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    post_with(server, &format!("/jobs/{nsq}"), input, headers).await
}

/// Submits a job that must be accepted; its id.
pub async fn submit(server: &TestServer, nsq: &str, input: impl Into<reqwest::Body>) -> String {
    let r = submit_with(server, nsq, input, &[]).await;
    assert_eq!(r.status(), 202, "submit to {nsq}");
    let doc: Value = r.json().await.expect("job document");
    doc["id"].as_str().expect("id").to_owned()
}

/// Claims from `/jobs/{nsq}/claim{query}`; `None` on `204`.
pub async fn claim(server: &TestServer, nsq: &str, query: &str) -> Option<Held> {
    let url = server.url(&format!("/jobs/{nsq}/claim{query}"));
    let r = server.client.post(url).send().await.expect("claim");
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200, "claim from {nsq}");
    let id = header(&r, "x-job-id").to_owned();
    let receipt = header(&r, "x-queueserver-lease").to_owned();
    let attempt = header(&r, "x-job-attempt").parse().expect("attempt");
    assert_eq!(header(&r, "location"), format!("/jobs/{nsq}/{id}"));
    let body = r.bytes().await.expect("input").to_vec();
    Some(Held {
        id,
        receipt,
        body,
        attempt,
    })
}

/// A worker call (`heartbeat`, `fail`, `result`) on a held job.
pub async fn worker_call(
    server: &TestServer,
    nsq: &str,
    held: &Held,
    method: reqwest::Method,
    action: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let url = server.url(&format!("/jobs/{nsq}/{}/{action}", held.id));
    server
        .client
        .request(method, url)
        .header("x-queueserver-lease", &held.receipt)
        .body(body)
        .send()
        .await
        .expect("worker call")
}

pub async fn heartbeat(
    server: &TestServer,
    nsq: &str,
    held: &Held,
    json: &str,
) -> reqwest::Response {
    worker_call(
        server,
        nsq,
        held,
        reqwest::Method::POST,
        "heartbeat",
        json.to_owned(),
    )
    .await
}

pub async fn put_result(server: &TestServer, nsq: &str, held: &Held, body: &'static [u8]) -> Value {
    let r = worker_call(server, nsq, held, reqwest::Method::PUT, "result", body).await;
    assert_eq!(r.status(), 200, "result of {}", held.id);
    r.json().await.expect("job document")
}

/// The job document, which must exist.
pub async fn job(server: &TestServer, nsq: &str, id: &str) -> Value {
    server.json(&format!("/jobs/{nsq}/{id}"), 200).await
}
