//! The route table through the `Router` itself: every route's statuses,
//! `Allow` on a `405`, unknown paths, raw segments and the layers.

use std::sync::Arc;

use axum::body::Body;
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{router, Api};
use crate::config::{Config, Settings};
use crate::http::App;
use crate::store::Store;

/// A router over a fresh store, and the app behind it (to begin draining).
fn app() -> (Arc<App>, Api) {
    let config = Config::from_settings(Settings::default()).expect("default settings");
    let store = Store::new(config.store()).expect("a store");
    let app = Arc::new(App::new(Arc::new(store), config.request_limits()));
    (app.clone(), router(app))
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: serde_json::Value,
}

async fn send(router: &Api, method: Method, path: &str, body: &'static str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body))
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// The problem type of a problem answer.
fn problem(answer: &Answer) -> &str {
    answer.body["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:blobq:problem:"))
        .unwrap_or("")
}

#[tokio::test]
async fn every_route_answers_its_methods() {
    let (_, router) = app();
    let pushed = send(&router, Method::POST, "/qs/ns/q", "x").await;
    assert_eq!(pushed.status, StatusCode::ACCEPTED);
    assert_eq!(pushed.body["namespace"], "ns");
    assert_eq!(
        pushed.headers["x-queueserver-id"],
        pushed.body["id"].as_str().unwrap()
    );
    let stored = send(&router, Method::POST, "/tbs/ns/blobs", "blob").await;
    assert_eq!(stored.status, StatusCode::CREATED);
    let blob = format!("/tbs/ns/blobs/{}", stored.body["id"].as_str().unwrap());
    let receipt = "/qs/ns/q/leases/00000000-0000-0000-0000-000000000000";
    let cases = [
        (Method::GET, "/qs".to_owned(), StatusCode::OK),
        (Method::GET, "/qs/ns".to_owned(), StatusCode::OK),
        (Method::GET, "/qs/none".to_owned(), StatusCode::NOT_FOUND),
        (Method::GET, "/qs/ns/q/stats".to_owned(), StatusCode::OK),
        (Method::PUT, "/qs/ns/q".to_owned(), StatusCode::ACCEPTED),
        (Method::GET, "/qs/ns/q".to_owned(), StatusCode::OK),
        (Method::GET, "/qs/ns/q".to_owned(), StatusCode::OK),
        (Method::GET, "/qs/ns/q".to_owned(), StatusCode::NO_CONTENT),
        (Method::DELETE, "/qs/ns/q".to_owned(), StatusCode::OK),
        (
            Method::DELETE,
            "/qs/ns/q?x=1".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (Method::DELETE, receipt.to_owned(), StatusCode::NOT_FOUND),
        (
            Method::POST,
            format!("{receipt}/release"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            format!("{receipt}/extend?lease=1"),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            format!("{receipt}/extend"),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, blob.clone(), StatusCode::OK),
        (Method::DELETE, blob.clone(), StatusCode::NO_CONTENT),
        (Method::GET, blob, StatusCode::NOT_FOUND),
        (Method::GET, "/healthz".to_owned(), StatusCode::OK),
        (Method::GET, "/metrics".to_owned(), StatusCode::OK),
    ];
    for (method, path, status) in cases {
        let answer = send(&router, method.clone(), &path, "").await;
        assert_eq!(answer.status, status, "{method} {path}");
    }
}

#[tokio::test]
async fn a_method_a_route_does_not_answer_is_405_with_exactly_its_allow_list() {
    let (_, router) = app();
    let routes = [
        ("/qs", "GET"),
        ("/qs/ns", "GET"),
        ("/qs/ns/q", "GET, POST, PUT, DELETE"),
        ("/qs/ns/q/stats", "GET"),
        ("/qs/ns/q/leases/r", "DELETE"),
        ("/qs/ns/q/leases/r/release", "POST"),
        ("/qs/ns/q/leases/r/extend", "POST"),
        ("/tbs/ns/blobs", "POST"),
        ("/tbs/ns/blobs/x", "GET, DELETE"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
    ];
    let every = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    for (path, allow) in routes {
        for method in every
            .iter()
            .filter(|m| !allow.split(", ").any(|a| a == **m))
        {
            let method: Method = method.parse().unwrap();
            let answer = send(&router, method.clone(), path, "").await;
            assert_eq!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(answer.headers[header::ALLOW], allow, "{method} {path}");
            if method != Method::HEAD {
                assert_eq!(problem(&answer), "method-not-allowed");
                let detail = format!("{method} is not allowed here; allowed: {allow}");
                assert_eq!(answer.body["detail"], detail);
            }
        }
    }
    let stats = send(&router, Method::GET, "/qs", "").await;
    assert_eq!(
        stats.body["namespace_count"], 0,
        "a refused method ran nothing"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_problems_naming_the_path() {
    let (_, router) = app();
    let unknown = [
        "/q",
        "//",
        "/qs/a/b/c",
        "/qs/a/b/",
        "/qs/a/b/stats/x",
        "/qs/a/b/leases/r/other",
        "/tbs/a",
        "/tbs/a/blob/x",
        "/healthz/",
        "/QS",
    ];
    for path in unknown {
        for method in [Method::GET, Method::POST, Method::PATCH] {
            let answer = send(&router, method.clone(), path, "").await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(problem(&answer), "not-found");
            assert_eq!(answer.body["detail"], format!("no route for {path}"));
        }
    }
}

#[tokio::test]
async fn empty_and_encoded_segments_reach_the_handler_raw() {
    let (_, router) = app();
    for (path, detail) in [
        ("/qs/", "namespace name \"\""),
        ("/qs/a/", "queue name \"\""),
        ("/qs//b", "namespace name \"\""),
        ("/qs//b/stats", "namespace name \"\""),
        ("/qs/ns/a%2Fb", "queue name \"a%2Fb\""),
        ("/qs/%2e%2e/q", "namespace name \"%2e%2e\""),
        ("/tbs/%ff/blobs", "namespace name \"%ff\""),
    ] {
        let method = if path.starts_with("/tbs") {
            Method::POST
        } else {
            Method::GET
        };
        let answer = send(&router, method, path, "").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(problem(&answer), "invalid-name", "{path}");
        let got = answer.body["detail"].as_str().unwrap();
        assert!(got.starts_with(detail), "{path}: {got}");
    }
    // A blob id or receipt is looked up as sent: unknown, not decoded.
    let answer = send(&router, Method::GET, "/tbs/ns/blobs/..%2F..", "").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = send(&router, Method::DELETE, "/qs/ns/q/leases/", "").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn draining_refuses_work_but_not_health_or_unknown_paths() {
    let (app, router) = app();
    app.begin_draining();
    let refused = send(&router, Method::POST, "/qs/ns/q", "x").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem(&refused), "shutting-down");
    let health = send(&router, Method::GET, "/healthz", "").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["status"], "draining");
    let unknown = send(&router, Method::GET, "/nope", "").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // A method the route does not answer is 405 first, as when serving.
    for method in [Method::PATCH, Method::HEAD] {
        let wrong = send(&router, method, "/qs/ns/q", "").await;
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.headers[header::ALLOW], "GET, POST, PUT, DELETE");
    }
}

#[tokio::test]
async fn a_body_left_unread_closes_the_connection() {
    let (_, router) = app();
    let closes = |a: &Answer| {
        a.headers
            .get(header::CONNECTION)
            .is_some_and(|v| v == "close")
    };
    assert!(!closes(&send(&router, Method::POST, "/qs/ns/q", "x").await));
    assert!(!closes(&send(&router, Method::GET, "/qs/ns/q", "").await));
    assert!(closes(&send(&router, Method::GET, "/qs/ns/q", "x").await));
    assert!(closes(&send(&router, Method::POST, "/qs/ns/%", "x").await));
    assert!(closes(&send(&router, Method::POST, "/nope", "x").await));
}

#[tokio::test]
async fn requests_are_counted_under_their_route_template() {
    let (app, router) = app();
    send(&router, Method::POST, "/qs/ns/q", "x").await;
    send(&router, Method::GET, "/nope/secret-name", "").await;
    send(&router, Method::PATCH, "/tbs/ns/blobs/x", "").await;
    let text = app.metrics.render();
    for label in [
        "route=\"/qs/{ns}/{queue}\"",
        "route=\"unknown\"",
        "route=\"/tbs/{ns}/blobs/{id}\"",
    ] {
        assert!(text.contains(label), "no {label} in {text}");
    }
    assert!(!text.contains("secret-name"));
}
