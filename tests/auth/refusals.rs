//! What a refusal does and does not do: `401` for a missing, unknown or
//! malformed credential, refusals counted and logged sparingly, `/metrics`
//! opened by a flag. (That a refused push stores nothing and that listings
//! are filtered to the caller's namespaces is in tests/suite/auth.rs.)

use std::time::Instant;

use reqwest::Method;

use super::support::{self, assert_401, send, token, Files, Via};
use crate::common;

#[tokio::test]
async fn missing_unknown_and_malformed_credentials_are_401_and_counted() {
    let files = Files::new();
    let server = support::start(&files, None, &[]).await;
    let r = send(&server, Method::GET, "/qs/media", None, Via::Bearer).await;
    assert_401(r, false, "no credential").await;
    for (what, via, credential) in [
        ("an unknown token", Via::Bearer, "tok-nobody-knows"),
        ("an unknown api key", Via::ApiKey, "tok-nobody-knows"),
        ("a JWT with no key configured", Via::Bearer, "e30.e30.sig"),
    ] {
        let r = send(&server, Method::GET, "/qs/media", Some(credential), via).await;
        assert_401(r, true, what).await;
    }
    let url = server.url("/qs/media");
    for (what, header, value) in [
        ("another scheme", "authorization", "Basic dXNlcjpwYXNz"),
        ("an empty bearer", "authorization", "Bearer "),
        ("an empty api key", "x-api-key", " "),
    ] {
        let r = server
            .client
            .get(&url)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_401(r, true, what).await;
    }
    let m = support::metrics(&server).await;
    assert_eq!(support::failures(&m, "missing"), 1);
    assert_eq!(support::failures(&m, "unknown"), 3);
    assert_eq!(support::failures(&m, "malformed"), 3);
    assert_eq!(support::failures(&m, "forbidden"), 0);
    // Refusals are counted under their route like any answer.
    assert!(
        m.contains(r#"blobq_http_requests_total{route="/qs/{ns}",method="GET",status="401"} 7"#),
        "{m}"
    );
}

#[tokio::test]
async fn metrics_need_admin_on_every_namespace_unless_opened() {
    let files = Files::new();
    let server = support::start(&files, None, &[]).await;
    let r = send(
        &server,
        Method::GET,
        "/metrics",
        Some(token("admin")),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
    let r = send(&server, Method::GET, "/metrics", None, Via::Bearer).await;
    assert_401(r, false, "metrics without a credential").await;
    let open_files = Files::new();
    let open = support::start(&open_files, None, &[("--metrics-open", "true")]).await;
    let r = send(&open, Method::GET, "/metrics", None, Via::Bearer).await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("blobq_auth_failures_total"));
    let r = send(&open, Method::GET, "/qs", None, Via::Bearer).await;
    assert_401(r, false, "only /metrics is opened").await;
}

#[tokio::test]
async fn refusals_are_logged_at_most_once_a_second_per_address_and_never_the_token() {
    let files = Files::new();
    let server = support::start(&files, None, &[]).await;
    let started = Instant::now();
    let secret = "tok-must-never-be-logged";
    for _ in 0..200 {
        let r = send(&server, Method::GET, "/qs/media", Some(secret), Via::Bearer).await;
        assert_eq!(r.status(), 401);
    }
    let forbidden = send(
        &server,
        Method::GET,
        "/qs/other",
        Some(token("observer")),
        Via::Bearer,
    )
    .await;
    assert_eq!(forbidden.status(), 403);
    let seconds = started.elapsed().as_secs();
    // Let the log reach the test's reader.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = server.log();
    let refused: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert!(!refused.is_empty(), "a refusal is logged: {log:?}");
    assert!(
        refused.len() as u64 <= seconds + 2,
        "{} lines in {seconds} s: {refused:?}",
        refused.len()
    );
    assert!(
        refused[0].contains("unknown") && refused[0].contains("peer=127.0.0.1"),
        "{refused:?}"
    );
    assert!(
        log.iter().all(|l| !l.contains(secret)),
        "the token is never logged"
    );
    let m = support::metrics(&server).await;
    assert_eq!(support::failures(&m, "unknown"), 200);
    assert_eq!(support::failures(&m, "forbidden"), 1);
}
