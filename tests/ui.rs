//! The dashboard at `/ui`: its files served without a credential and the
//! history bounded (plain HTTP), and the page itself in a real headless
//! Chromium through chromedriver: it shows a queue's depth and leases,
//! follows changes without a reload, shows jobs, and asks for a token when
//! the server requires one. A screenshot goes to `target/ui-dashboard.png`.

mod common;

#[path = "ui/browser.rs"]
mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::Browser;
use common::{header, TestServer};
use fantoccini::Locator;
use serde_json::Value;

/// Where the screenshot is written: the target directory.
fn screenshot_path() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("ui-dashboard.png")
}

const ADMIN: &str = "tok-ui-admin-4f9a0c21d7";
const VIEWER: &str = "tok-ui-viewer-8b3e61f05a";

/// A server requiring a credential: `ADMIN` (admin on every namespace)
/// and `VIEWER` (observer on `demo`).
async fn server_with_tokens(dir: &tempfile::TempDir) -> TestServer {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let entries = [
        blobq::auth::entry_toml("ops", ADMIN, &strings(&["*"]), &strings(&["admin"])),
        blobq::auth::entry_toml(
            "viewer",
            VIEWER,
            &strings(&["demo"]),
            &strings(&["observer"]),
        ),
    ];
    let file = dir.path().join("tokens.toml");
    std::fs::write(&file, entries.join("\n")).expect("tokens file");
    common::options()
        .arg("--auth-file", file.display())
        .start()
        .await
}

#[tokio::test]
async fn the_page_and_its_files_are_served_without_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(&dir).await;
    assert_eq!(server.get("/qs").await.status(), 401, "auth is on");
    let page = server.get("/ui").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    for (file, content_type) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        assert!(html.contains(file), "the page loads {file}");
        let r = server.get(file).await;
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(header(&r, "content-type"), content_type, "{file}");
        let etag = header(&r, "etag").to_owned();
        assert!(!r.bytes().await.unwrap().is_empty(), "{file} has a body");
        let again = server
            .client
            .get(server.url(file))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}: a current copy is not resent");
    }
    // No file of another site: the page works offline.
    assert!(!html.contains("http://") && !html.contains("https://"));
    // The data is not open.
    assert_eq!(server.get("/ui/history").await.status(), 401);
    let with_token = server
        .client
        .get(server.url("/ui/history"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    let viewer = server
        .client
        .get(server.url("/ui/history"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 403, "server-wide totals need admin on *");
}

#[tokio::test]
async fn the_history_keeps_only_its_newest_samples() {
    let server = common::options()
        .arg("--ui-history-interval-ms", 20)
        .arg("--ui-history-samples", 5)
        .start()
        .await;
    assert_eq!(server.post("/qs/demo/work", "x").await.status(), 202);
    // Many intervals pass: far more samples than are kept.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = server.get("/ui/history").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        (doc["capacity"].as_u64(), doc["interval_ms"].as_u64()),
        (Some(5), Some(20))
    );
    let samples = doc["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 5, "{doc}");
    let times: Vec<u64> = samples.iter().map(|s| s["t"].as_u64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
    assert!(doc["now"].as_u64().unwrap() >= times[4]);
    let last = &samples[4];
    assert_eq!(
        (last["pushes"].as_u64(), last["elements"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(last["jobs"]["submitted"].is_u64(), "{last}");

    let none = common::options()
        .arg("--ui-history-samples", 0)
        .start()
        .await;
    let doc = none.json("/ui/history", 200).await;
    assert_eq!(doc["samples"], serde_json::json!([]));
}

/// A queue's cells in the dashboard's table.
fn cell(queue: &str, field: &str) -> String {
    format!(r#"tr[data-queue="{queue}"] td[data-field="{field}"]"#)
}

/// Submits a job to `demo/render` and claims it: its id and lease.
async fn claimed_job(server: &TestServer) -> (String, String) {
    assert_eq!(
        server.post("/jobs/demo/render", "frames").await.status(),
        202
    );
    let r = server.post("/jobs/demo/render/claim?lease=60", "").await;
    assert_eq!(r.status(), 200, "claim");
    (
        header(&r, "x-job-id").to_owned(),
        header(&r, "x-queueserver-lease").to_owned(),
    )
}

async fn worker_call(server: &TestServer, id: &str, lease: &str, what: &str, body: &str) {
    let r = server
        .client
        .post(server.url(&format!("/jobs/demo/render/{id}/{what}")))
        .header("x-queueserver-lease", lease)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{what}: {}", r.text().await.unwrap());
}

#[tokio::test]
async fn the_dashboard_follows_a_queue_and_its_jobs_without_a_reload() {
    let Some((chromium, driver)) = browser::programs() else {
        return;
    };
    let server = common::start().await;
    for i in 0..3 {
        assert_eq!(
            server
                .post("/qs/demo/work", format!("task {i}"))
                .await
                .status(),
            202
        );
    }
    assert_eq!(
        server
            .post("/qs/demo/work", vec![7u8; 300_000])
            .await
            .status(),
        202
    );
    assert_eq!(
        server.post("/qs/demo/work.dead", "poisoned").await.status(),
        202
    );
    assert_eq!(
        server.post("/qs/billing/invoices", "inv-1").await.status(),
        202
    );
    let leased = server.get("/qs/demo/work?lease=60").await;
    assert_eq!(leased.status(), 200);
    let receipt = header(&leased, "x-queueserver-lease").to_owned();
    // Jobs: one running with progress, one failed, one pending.
    let (running, lease) = claimed_job(&server).await;
    let progress = r#"{"progress": 40, "message": "rendering frame 4 of 10"}"#;
    worker_call(&server, &running, &lease, "heartbeat", progress).await;
    let (failing, lease) = claimed_job(&server).await;
    let failure = r#"{"code": "ENCODER_CRASHED", "message": "ffmpeg exited with status 139"}"#;
    worker_call(&server, &failing, &lease, "fail", failure).await;
    assert_eq!(
        server.post("/jobs/demo/render", "later").await.status(),
        202
    );

    let browser = Browser::start(&chromium, &driver).await;
    let c = &browser.client;
    c.goto(&server.url("/ui")).await.expect("open /ui");
    browser
        .wait_for_texts(
            "the queue as pushed and leased",
            &[
                (&cell("demo/work", "elements"), "3"),
                (&cell("demo/work", "leased"), "1"),
                (&cell("demo/work.dead", "elements"), "1"),
            ],
        )
        .await;
    let dead_class = c
        .find(Locator::Css(r#"tr[data-queue="demo/work.dead"]"#))
        .await
        .unwrap()
        .attr("class")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        dead_class.contains("dead"),
        "a dead-letter queue is marked: {dead_class}"
    );
    browser
        .wait_for_texts(
            "jobs by state",
            &[
                (
                    r#"tr[data-jobs="demo/render"] td[data-field="pending"]"#,
                    "1",
                ),
                (
                    r#"tr[data-jobs="demo/render"] td[data-field="running"]"#,
                    "1",
                ),
                (
                    r#"tr[data-jobs="demo/render"] td[data-field="failed"]"#,
                    "1",
                ),
                (&format!(r#"#running li[data-job="{running}"] .pct"#), "40%"),
                (
                    &format!(r#"#failures li[data-job="{failing}"] .err"#),
                    "ffmpeg exited with status 139",
                ),
            ],
        )
        .await;
    // Traffic elsewhere while the charts collect a few samples, so that
    // the picture shows rates.
    let until = Instant::now() + Duration::from_millis(4500);
    let mut i = 0;
    while Instant::now() < until {
        let pushed = server
            .post("/qs/billing/invoices", format!("inv-{i}"))
            .await;
        assert_eq!(pushed.status(), 202);
        if i % 3 != 0 {
            assert_eq!(server.get("/qs/billing/invoices").await.status(), 200);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_path(), &png).expect("write the screenshot");

    // A mark the page would lose on a reload.
    c.execute("window.blobqTestMark = 42; return null;", vec![])
        .await
        .unwrap();
    assert_eq!(server.get("/qs/demo/work").await.status(), 200, "pop");
    let ack = server
        .delete(&format!("/qs/demo/work/leases/{receipt}"))
        .await;
    assert_eq!(ack.status(), 204, "ack");
    browser
        .wait_for_texts(
            "the queue after a pop and an acknowledgement",
            &[
                (&cell("demo/work", "elements"), "2"),
                (&cell("demo/work", "leased"), "0"),
            ],
        )
        .await;
    let mark = c
        .execute("return window.blobqTestMark ?? null;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, 42, "the page changed without reloading");
    browser.close().await;
}

#[tokio::test]
async fn the_dashboard_asks_for_a_token_and_then_shows_the_queues() {
    let Some((chromium, driver)) = browser::programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(&dir).await;
    let pushed = server
        .client
        .post(server.url("/qs/demo/work"))
        .bearer_auth(ADMIN)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);

    let browser = Browser::start(&chromium, &driver).await;
    let c = &browser.client;
    c.goto(&server.url("/ui")).await.expect("open /ui");
    browser.wait_shown("the token form", "#token-form").await;
    assert!(browser.text(&cell("demo/work", "elements")).await.is_none());

    // A wrong token is refused, and the form asks again.
    enter_token(&browser, "not-a-token").await;
    browser.wait_shown("the form again", "#token-form").await;
    let deadline = Instant::now() + browser::PAGE_WAIT;
    loop {
        let reason = browser.text("#login-reason").await.unwrap_or_default();
        if reason.contains("refused") {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal shown: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The viewer's token (observer on demo) shows its queues.
    enter_token(&browser, VIEWER).await;
    browser
        .wait_for_texts("the queue", &[(&cell("demo/work", "elements"), "1")])
        .await;
    assert!(!browser.shown("#token-form").await, "the form is gone");
    let stored = c
        .execute("return sessionStorage.getItem('blobq.token');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, VIEWER, "kept in the tab's session storage");
    browser.close().await;
}

async fn enter_token(browser: &Browser, token: &str) {
    let c = &browser.client;
    let input = c.find(Locator::Css("#token")).await.expect("token input");
    input.clear().await.unwrap();
    input.send_keys(token).await.unwrap();
    c.find(Locator::Css("#token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}
