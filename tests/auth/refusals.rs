//! What a refusal does and does not do: `401` for a missing, unknown or
//! malformed credential, nothing stored by a refused push or blob store,
//! listings filtered to the caller's namespaces, refusals counted and
//! logged sparingly, `/metrics` opened by a flag.

use std::time::Instant;

use reqwest::Method;

use super::support::{self, assert_401, send, token, Files, Via};
use crate::common::{self, TestServer};

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

/// Everything stored, as `root` sees it: no namespace, element, blob byte
/// or spill file.
async fn assert_nothing_stored(server: &TestServer, what: &str) {
    let r = send(server, Method::GET, "/qs", Some(token("root")), Via::Bearer).await;
    let stats: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stats["namespace_count"], 0, "{what}: {stats}");
    assert_eq!(stats["elements"], 0, "{what}");
    assert_eq!(stats["memory_bytes"], 0, "{what}");
    assert_eq!(stats["disk_bytes"], 0, "{what}");
    assert_eq!(stats["pushes"], 0, "{what}");
    assert!(
        server.spill_files().is_empty(),
        "{what}: {:?}",
        server.spill_files()
    );
}

#[tokio::test]
async fn a_refused_push_or_blob_store_leaves_no_element_blob_or_spill_file() {
    let files = Files::new();
    let server = support::start(&files, None, &[("--spill-threshold", "1024")]).await;
    // Above the spill threshold, small enough for the socket buffers, so
    // the client has sent it all when the answer comes.
    let body = common::pattern(48 * 1024, 7);
    let cases = [
        ("no credential", None, 401),
        ("an unknown token", Some("tok-unknown"), 401),
        ("a consumer", Some(token("consumer")), 403),
        (
            "a producer of other namespaces",
            Some(token("producer")),
            403,
        ),
    ];
    for (what, credential, status) in cases {
        for path in ["/qs/media/q", "/tbs/media/blobs", "/qs/other/q"] {
            if status == 403 && what.starts_with("a producer") && path.contains("media") {
                continue;
            }
            let mut request = server.client.post(server.url(path)).body(body.clone());
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            let r = request.send().await.unwrap();
            assert_eq!(
                r.headers().get("connection").map(|v| v.to_str().unwrap()),
                Some("close"),
                "{what} {path}: the unread body closes the connection"
            );
            common::problem(r, status).await;
            assert_nothing_stored(&server, &format!("{what}, POST {path}")).await;
        }
    }
    let r = send(
        &server,
        Method::PUT,
        "/qs/other/q",
        Some(token("producer")),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
    assert_nothing_stored(&server, "a reference push outside the grant").await;
}

#[tokio::test]
async fn listings_show_only_what_the_caller_may_observe() {
    let files = Files::new();
    let server = support::start(&files, None, &[]).await;
    for ns in ["media", "media-eu", "mediaX", "other"] {
        let r = send(
            &server,
            Method::POST,
            &format!("/qs/{ns}/q"),
            Some(token("root")),
            Via::Bearer,
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect()
    };
    for caller in ["observer", "admin"] {
        let r = send(
            &server,
            Method::GET,
            "/qs",
            Some(token(caller)),
            Via::Bearer,
        )
        .await;
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(names(&v), ["media", "media-eu"], "{caller}");
        assert_eq!(v["namespace_count"], 2, "{caller}");
        assert!(
            v.get("elements").is_none(),
            "{caller}: no server-wide figures: {v}"
        );
        assert!(v["version"].is_string() && v["uptime_seconds"].is_u64());
    }
    let r = send(
        &server,
        Method::GET,
        "/qs",
        Some(token("root")),
        Via::Bearer,
    )
    .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(names(&v), ["media", "media-eu", "mediaX", "other"]);
    assert_eq!(v["elements"], 4);
    // A namespace outside the grant is 403 whether it exists or not; one
    // inside it that does not exist is 404.
    for (path, status) in [
        ("/qs/other", 403),
        ("/qs/nowhere", 403),
        ("/qs/media-none", 404),
    ] {
        let r = send(
            &server,
            Method::GET,
            path,
            Some(token("observer")),
            Via::Bearer,
        )
        .await;
        assert_eq!(r.status(), status, "{path}");
    }
    let r = send(
        &server,
        Method::GET,
        "/qs",
        Some(token("producer")),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
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
