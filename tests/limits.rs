//! Bounded names through the real server: `--max-namespaces` and
//! `--max-queues-per-namespace` refuse a new name with `429` and change
//! nothing, the listings of `GET /qs` and `GET /qs/{ns}` come in pages
//! (for a scoped credential too), and what a namespace costs in memory
//! (`limits/memory.rs`).

mod common;
#[path = "limits/memory.rs"]
mod memory;

use common::{options, problem, TestServer};
use serde_json::Value;

/// Pushes `body` to `ns/q`, returning the status.
async fn push(server: &TestServer, ns: &str, q: &str) -> reqwest::Response {
    server.post(&format!("/qs/{ns}/{q}"), "x").await
}

/// A `429` naming `kind` (`too-many-namespaces`, `too-many-queues`).
async fn refused(r: reqwest::Response, kind: &str) {
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1"),
        "{}",
        r.status()
    );
    let doc = problem(r, 429).await;
    assert_eq!(doc["type"], format!("urn:blobq:problem:{kind}"), "{doc}");
}

fn names(listing: &Value, field: &str, key: &str) -> Vec<String> {
    listing[field]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n[key].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_namespace_past_the_limit_is_refused_and_changes_nothing() {
    let server = options().arg("--max-namespaces", 2).start().await;
    for ns in ["a", "b"] {
        assert_eq!(push(&server, ns, "q").await.status(), 202);
    }
    refused(push(&server, "c", "q").await, "too-many-namespaces").await;
    // A stored blob and a pop that would wait make a namespace too.
    refused(
        server.post("/tbs/c/blobs", "x").await,
        "too-many-namespaces",
    )
    .await;
    refused(server.get("/qs/c/q?timeout=5").await, "too-many-namespaces").await;
    // A pop that does not wait makes nothing, so it is not refused.
    assert_eq!(server.get("/qs/c/q").await.status(), 204);
    let listing = server.json("/qs", 200).await;
    assert_eq!(listing["namespace_count"], 2);
    assert_eq!(listing["pushes"], 2);
    assert_eq!(names(&listing, "namespaces", "namespace"), ["a", "b"]);
    server.json("/qs/c", 404).await;
    // Existing namespaces take new queues and pushes as before.
    assert_eq!(push(&server, "a", "other").await.status(), 202);
    assert_eq!(server.get("/qs/a/q").await.status(), 200);
}

#[tokio::test]
async fn a_new_queue_past_the_limit_is_refused_and_changes_nothing() {
    let server = options().arg("--max-queues-per-namespace", 2).start().await;
    for q in ["q1", "q2"] {
        assert_eq!(push(&server, "ns", q).await.status(), 202);
    }
    refused(push(&server, "ns", "q3").await, "too-many-queues").await;
    let reference = server.put("/qs/ns/q3").await.send().await.unwrap();
    refused(reference, "too-many-queues").await;
    refused(server.get("/qs/ns/q3?timeout=5").await, "too-many-queues").await;
    // Blobs need no queue; an existing queue takes more; another
    // namespace has its own count.
    assert_eq!(server.post("/tbs/ns/blobs", "x").await.status(), 201);
    assert_eq!(push(&server, "ns", "q1").await.status(), 202);
    assert_eq!(push(&server, "other", "q3").await.status(), 202);
    let ns = server.json("/qs/ns", 200).await;
    assert_eq!(names(&ns, "queues", "queue"), ["q1", "q2"]);
    assert_eq!(
        (ns["queue_count"].as_u64(), ns["pushed"].as_u64()),
        (Some(2), Some(3))
    );
}

/// Every name of listing `path` (`field` of it, each named by `key`),
/// following the tokens `limit` at a time.
async fn every_page(
    server: &TestServer,
    path: &str,
    limit: usize,
    field: &str,
    key: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut query = format!("?limit={limit}");
    loop {
        let page = server.json(&format!("{path}{query}"), 200).await;
        let names = names(&page, field, key);
        assert!(names.len() <= limit);
        seen.extend(names);
        match page["next_page_token"].as_str() {
            Some(token) => query = format!("?limit={limit}&page_token={token}"),
            None => {
                assert!(page["next_page_token"].is_null(), "{page}");
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn listings_come_in_pages_of_a_hundred_unless_asked_otherwise() {
    let server = options().arg("--max-page-size", 150).start().await;
    let mut expected: Vec<String> = (0..230).map(|i| format!("tenant-{i:03}")).collect();
    for ns in &expected {
        assert_eq!(push(&server, ns, "q").await.status(), 202);
    }
    let queues: Vec<String> = (0..7).map(|i| format!("q{i}")).collect();
    for q in &queues {
        assert_eq!(push(&server, "tenant-000", q).await.status(), 202);
    }
    expected.sort();
    let first = server.json("/qs", 200).await;
    assert_eq!(first["namespace_count"], 230);
    assert_eq!(first["elements"], 237, "the figures count every namespace");
    assert_eq!(names(&first, "namespaces", "namespace"), expected[..100]);
    assert!(first["next_page_token"].is_string());
    assert_eq!(
        every_page(&server, "/qs", 150, "namespaces", "namespace").await,
        expected
    );
    assert_eq!(
        every_page(&server, "/qs", 7, "namespaces", "namespace").await,
        expected
    );
    let ns = server.json("/qs/tenant-000?limit=3", 200).await;
    assert_eq!(
        (ns["queue_count"].as_u64(), ns["elements"].as_u64()),
        (Some(8), Some(8))
    );
    let mut all_queues = queues.clone();
    all_queues.push("q".into());
    all_queues.sort();
    assert_eq!(
        every_page(&server, "/qs/tenant-000", 3, "queues", "queue").await,
        all_queues
    );
    // A short listing is one page, as it always was, with a null token.
    let short = server.json("/qs/tenant-001", 200).await;
    assert_eq!(names(&short, "queues", "queue"), ["q"]);
    assert!(short["next_page_token"].is_null());
    for (query, kind) in [
        ("limit=151", "invalid-limit"),
        ("limit=0", "invalid-limit"),
        ("page_token=tenant-001", "invalid-page-token"),
        ("page=2", "invalid-query"),
    ] {
        for path in ["/qs", "/qs/tenant-000"] {
            let doc = problem(server.get(&format!("{path}?{query}")).await, 400).await;
            assert_eq!(
                doc["type"],
                format!("urn:blobq:problem:{kind}"),
                "{path}?{query}"
            );
        }
    }
}

#[tokio::test]
async fn a_scoped_caller_pages_through_the_namespaces_it_observes() {
    let files = tempfile::tempdir().unwrap();
    let entry = |name: &str, secret: &str, namespaces: &[&str]| {
        let namespaces: Vec<String> = namespaces.iter().map(|n| n.to_string()).collect();
        blobq::auth::entry_toml(name, secret, &namespaces, &["admin".to_owned()])
    };
    let tokens = [
        entry("scoped", "tok-scoped-4be1c8a2f0", &["media-*"]),
        entry("root", "tok-root-91d3e07b5c", &["*"]),
    ]
    .join("\n");
    let file = files.path().join("tokens.toml");
    std::fs::write(&file, tokens).unwrap();
    let server = options().arg("--auth-file", file.display()).start().await;
    let mut observed = Vec::new();
    for i in 0..12 {
        for prefix in ["media", "other"] {
            let ns = format!("{prefix}-{i:02}");
            let r = server
                .client
                .post(server.url(&format!("/qs/{ns}/q")))
                .bearer_auth("tok-root-91d3e07b5c")
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            if prefix == "media" {
                observed.push(ns);
            }
        }
    }
    let mut seen = Vec::new();
    let mut query = "limit=5".to_owned();
    loop {
        let page: Value = server
            .client
            .get(server.url(&format!("/qs?{query}")))
            .bearer_auth("tok-scoped-4be1c8a2f0")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["namespace_count"], 12, "only what it observes: {page}");
        assert!(page.get("elements").is_none(), "no server-wide figures");
        let names = names(&page, "namespaces", "namespace");
        let last = page["next_page_token"].as_str();
        if last.is_some() {
            assert_eq!(names.len(), 5, "a page is full unless it is the last");
        }
        seen.extend(names);
        match last {
            Some(token) => query = format!("limit=5&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(seen, observed);
}
