//! The four flows of the jobs issue, end to end, each as its users know it
//! and as it maps onto the jobs API (docs/JOBS.md shows the same with
//! curl).

use std::time::Duration;

use serde_json::{json, Value};

use super::common::{self, header, problem, TestServer};
use super::{claim, heartbeat, job, put_result, submit_with, worker_call};

/// Starts a worker task that claims one job of `nsq` (waiting up to 20 s)
/// and runs `work` on it.
fn one_worker<F, Fut>(
    server: &TestServer,
    nsq: &'static str,
    work: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(TestClient, super::Held) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let client = TestClient {
        base: server.url(""),
        http: reqwest::Client::new(),
    };
    tokio::spawn(async move {
        let url = format!("{}/jobs/{nsq}/claim?timeout=20&lease=30", client.base);
        let r = client.http.post(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let held = super::Held {
            id: header(&r, "x-job-id").to_owned(),
            receipt: header(&r, "x-queueserver-lease").to_owned(),
            attempt: header(&r, "x-job-attempt").parse().unwrap(),
            body: r.bytes().await.unwrap().to_vec(),
        };
        work(client, held).await;
    })
}

/// A worker's own connection to the server.
#[derive(Clone)]
struct TestClient {
    base: String,
    http: reqwest::Client,
}

impl TestClient {
    async fn call(
        &self,
        nsq: &str,
        held: &super::Held,
        method: reqwest::Method,
        action: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> u16 {
        let mut request = self
            .http
            .request(
                method,
                format!("{}/jobs/{nsq}/{}/{action}", self.base, held.id),
            )
            .header("x-queueserver-lease", &held.receipt);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(body).send().await.unwrap().status().as_u16()
    }
}

/// An export service: `POST /export` submits, a long poll on the id waits
/// through Pending and Processing to Finished, and the finished request
/// carries the response's status and body.
#[tokio::test]
async fn an_export_service_with_a_long_polling_endpoint() {
    let server = common::start().await;
    // POST /export {} -> an id.
    let r = submit_with(
        &server,
        "acme/export",
        r#"{"scope": "account"}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status(), 202);
    let lp = header(&r, "location").to_owned();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = one_worker(&server, "acme/export", |c, held| async move {
        assert_eq!(held.body, br#"{"scope": "account"}"#);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let zip = [("content-type", "application/zip"), ("x-job-status", "200")];
        assert_eq!(
            c.call(
                "acme/export",
                &held,
                reqwest::Method::PUT,
                "result",
                &zip,
                "PK zip bytes"
            )
            .await,
            200
        );
    });
    // /lp/export?id=...: Pending (no worker yet) or Processing, then Finished.
    let mut seen = Vec::new();
    let mut etag: Option<String> = None;
    loop {
        let mut request = server.client.get(server.url(&format!("{lp}?wait=20")));
        if let Some(tag) = &etag {
            request = request.header("if-none-match", tag);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200);
        etag = Some(header(&r, "etag").to_owned());
        let doc: Value = r.json().await.unwrap();
        seen.push(doc["state"].as_str().unwrap().to_owned());
        if doc["done"] == true {
            assert_eq!(doc["result"]["status"], 200);
            assert_eq!(doc["result"]["content_type"], "application/zip");
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("succeeded"));
    worker.await.unwrap();
    let r = server.get(&format!("/jobs/acme/export/{id}/result")).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "x-job-status")),
        (200, "200")
    );
    assert_eq!(r.text().await.unwrap(), "PK zip bytes");
}

/// An order API: `POST /v1/order` returns `{name, metadata.state, done,
/// error}`; the client polls until `done`, downloads the ZIP; another
/// order is cancelled with `POST .../cancel`.
#[tokio::test]
async fn an_order_api_polled_until_done_then_downloaded_or_cancelled() {
    let server = common::start().await;
    let r = submit_with(
        &server,
        "tenant/order",
        "",
        &[("x-custom-data", "project=p1")],
    )
    .await;
    let order: Value = r.json().await.unwrap();
    assert_eq!(
        order["name"],
        format!("jobs/tenant/order/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(
        (order["state"].as_str(), order["done"].as_bool()),
        (Some("pending"), Some(false))
    );
    assert!(order["error"].is_null());
    let id = order["id"].as_str().unwrap().to_owned();
    let held = claim(&server, "tenant/order", "").await.unwrap();
    assert_eq!(job(&server, "tenant/order", &id).await["state"], "running");
    put_result(&server, "tenant/order", &held, b"PK order zip").await;
    let done = server
        .wait_for_json(&format!("/jobs/tenant/order/{id}"), "done", |v| {
            v["done"] == true
        })
        .await;
    assert_eq!(
        (done["state"].as_str(), done["error"].is_null()),
        (Some("succeeded"), true)
    );
    let href = done["result"]["href"].as_str().unwrap();
    assert_eq!(server.get(href).await.text().await.unwrap(), "PK order zip");
    // Cancel a second order before any worker takes it.
    let r = submit_with(&server, "tenant/order", "", &[]).await;
    let second = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .post(&format!("/jobs/tenant/order/{second}/cancel"), "")
        .await;
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(
        (cancelled["state"].as_str(), cancelled["done"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    assert_eq!(cancelled["error"]["code"], "CANCELLED");
    problem(
        server
            .get(&format!("/jobs/tenant/order/{second}/result"))
            .await,
        409,
    )
    .await;
}

/// A data export that answers `202 Accepted` with a `Location` to poll and
/// leaves either a ZIP or an error document `{code, message: {lang, value}}`.
#[tokio::test]
async fn a_data_export_leaving_a_zip_or_an_error_document() {
    let server = common::start().await;
    let ok = submit_with(&server, "gdpr/export", "user=1", &[]).await;
    let bad = submit_with(&server, "gdpr/export", "user=2", &[]).await;
    assert_eq!((ok.status().as_u16(), bad.status().as_u16()), (202, 202));
    let (ok_at, bad_at) = (
        header(&ok, "location").to_owned(),
        header(&bad, "location").to_owned(),
    );
    let first = claim(&server, "gdpr/export", "").await.unwrap();
    put_result(&server, "gdpr/export", &first, b"PK user 1").await;
    let second = claim(&server, "gdpr/export", "").await.unwrap();
    let error = r#"{"code": "USER_LOCKED", "message": "the account is locked",
        "details": {"lang": "en", "value": "The account is locked; contact support."}}"#;
    let r = worker_call(
        &server,
        "gdpr/export",
        &second,
        reqwest::Method::POST,
        "fail",
        error,
    )
    .await;
    assert_eq!(r.status(), 200);
    let zip = server.json(&ok_at, 200).await;
    assert_eq!(zip["state"], "succeeded");
    assert_eq!(
        server
            .get(&format!("{ok_at}/result"))
            .await
            .text()
            .await
            .unwrap(),
        "PK user 1"
    );
    let failed = server.json(&bad_at, 200).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], "USER_LOCKED");
    assert_eq!(
        failed["error"]["details"],
        json!({"lang": "en", "value": "The account is locked; contact support."})
    );
}

/// Background requests: any call made a background one returns an id; its
/// status (progress in percent, creation and finish times, the outcome's
/// HTTP status and content type), its details (a log of progress lines)
/// and its result (the original response body with its content type).
#[tokio::test]
async fn a_background_request_with_status_details_and_result() {
    let server = common::start().await;
    let r = submit_with(
        &server,
        "api/background",
        r#"{"method": "GET", "path": "/reports/2026"}"#,
        &[
            ("content-type", "application/json"),
            ("x-custom-data", "caller=crm"),
        ],
    )
    .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = claim(&server, "api/background", "").await.unwrap();
    for (p, line) in [(25, "query"), (75, "render")] {
        let report = format!(r#"{{"progress": {p}, "message": "{line}"}}"#);
        assert_eq!(
            heartbeat(&server, "api/background", &held, &report)
                .await
                .status(),
            200
        );
    }
    let status = job(&server, "api/background", &id).await;
    assert_eq!(
        (status["progress"].as_u64(), status["message"].as_str()),
        (Some(75), Some("render"))
    );
    let url = server.url(&format!("/jobs/api/background/{id}/result"));
    let r = server
        .client
        .put(url)
        .header("x-queueserver-lease", &held.receipt)
        .header("content-type", "text/csv")
        .header("x-job-status", "203")
        .body("year,total\n2026,42\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = job(&server, "api/background", &id).await;
    assert_eq!(status["progress"], 100);
    assert!(status["created"].is_string() && status["finished"].is_string());
    assert_eq!(status["result"]["status"], 203);
    assert_eq!(status["result"]["content_type"], "text/csv");
    assert_eq!(status["metadata"]["caller"], "crm");
    let details = server
        .json(&format!("/jobs/api/background/{id}/log"), 200)
        .await;
    let lines: Vec<&str> = details
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["query", "render"]);
    let r = server
        .get(&format!("/jobs/api/background/{id}/result"))
        .await;
    assert_eq!(
        (header(&r, "content-type"), header(&r, "x-job-status")),
        ("text/csv", "203")
    );
    assert_eq!(r.text().await.unwrap(), "year,total\n2026,42\n");
}
