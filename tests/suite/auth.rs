//! Authentication in front of any backend: a granted push and pop through
//! either node, a refused push or blob store leaving nothing, and listings
//! filtered to what the caller may observe (on NATS, the namespaces are
//! the cluster's streams). The role table, JWTs, reloads and the rest are
//! in tests/auth.rs, on the embedded store.

use std::path::Path;

use reqwest::Method;

use super::{Case, Target};
use crate::common::{self, TestServer};
#[allow(dead_code)] // tests/auth.rs uses the rest
#[path = "../auth/support.rs"]
mod support;

use support::{send, token, Via, TOKENS};

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            a_granted_push_and_pop_do_what_they_always_did,
            setup = tokens
        ),
        case!(a_refused_push_or_blob_store_leaves_no_element_blob_or_spill_file,
            setup = tokens, "--spill-threshold" => "1024"),
        case!(
            listings_show_only_what_the_caller_may_observe,
            setup = tokens
        ),
    ]
}

/// The tests' static tokens (`support::TOKENS`) in an `--auth-file`.
fn tokens(dir: &Path) -> Vec<(&'static str, String)> {
    let file = dir.join("tokens.toml");
    std::fs::write(&file, support::token_file_text(&TOKENS)).expect("the token file");
    vec![("--auth-file", file.display().to_string())]
}

pub async fn a_granted_push_and_pop_do_what_they_always_did(t: Target) {
    let r = send(
        t.a(),
        Method::POST,
        "/qs/media-eu/jobs",
        Some(token("producer")),
        Via::Bearer,
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = send(
        t.b(),
        Method::GET,
        "/qs/media-eu/jobs",
        Some(token("consumer")),
        Via::ApiKey,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "payload");
}

/// Everything stored, as `root` sees it through every node: no
/// namespace, element, blob byte or spill file.
async fn assert_nothing_stored(t: &Target, what: &str) {
    for node in t.nodes() {
        let r = send(node, Method::GET, "/qs", Some(token("root")), Via::Bearer).await;
        let stats: serde_json::Value = r.json().await.unwrap();
        assert_eq!(stats["namespace_count"], 0, "{what}: {stats}");
        assert_eq!(stats["elements"], 0, "{what}");
        assert_eq!(stats["memory_bytes"], 0, "{what}");
        assert_eq!(stats["disk_bytes"], 0, "{what}");
        assert_eq!(stats["pushes"], 0, "{what}");
    }
    assert!(t.spill_files().is_empty(), "{what}: {:?}", t.spill_files());
}

pub async fn a_refused_push_or_blob_store_leaves_no_element_blob_or_spill_file(t: Target) {
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
    for (i, (what, credential, status)) in cases.into_iter().enumerate() {
        for path in ["/qs/media/q", "/tbs/media/blobs", "/qs/other/q"] {
            if status == 403 && what.starts_with("a producer") && path.contains("media") {
                continue;
            }
            let node: &TestServer = t.node(i);
            let mut request = node.client.post(node.url(path)).body(body.clone());
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
            assert_nothing_stored(&t, &format!("{what}, POST {path}")).await;
        }
    }
    let r = send(
        t.b(),
        Method::PUT,
        "/qs/other/q",
        Some(token("producer")),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
    assert_nothing_stored(&t, "a reference push outside the grant").await;
}

pub async fn listings_show_only_what_the_caller_may_observe(t: Target) {
    for (i, ns) in ["media", "media-eu", "mediaX", "other"]
        .into_iter()
        .enumerate()
    {
        let r = send(
            t.node(i),
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
    for (i, caller) in ["observer", "admin"].into_iter().enumerate() {
        let r = send(
            t.node(i),
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
    for node in t.nodes() {
        let r = send(node, Method::GET, "/qs", Some(token("root")), Via::Bearer).await;
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(names(&v), ["media", "media-eu", "mediaX", "other"]);
        assert_eq!(v["elements"], t.gauge(4));
    }
    // A namespace outside the grant is 403 whether it exists or not; one
    // inside it that does not exist is 404.
    for (i, (path, status)) in [
        ("/qs/other", 403),
        ("/qs/nowhere", 403),
        ("/qs/media-none", 404),
    ]
    .into_iter()
    .enumerate()
    {
        let r = send(
            t.node(i),
            Method::GET,
            path,
            Some(token("observer")),
            Via::Bearer,
        )
        .await;
        assert_eq!(r.status(), status, "{path}");
    }
    let r = send(
        t.b(),
        Method::GET,
        "/qs",
        Some(token("producer")),
        Via::Bearer,
    )
    .await;
    common::problem(r, 403).await;
}
