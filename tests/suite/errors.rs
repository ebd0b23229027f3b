//! Every validation error is an `application/problem+json` document with
//! the right status, from either node, and a refused push stores nothing.

use std::time::{Duration, Instant};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Case, Target};
use crate::common::{self, TestServer, STEP};

pub fn cases() -> Vec<Case> {
    vec![
        case!(bad_namespace_and_queue_names_are_refused_everywhere_and_create_nothing, "--spill-threshold" => "10"),
        case!(lifetimes_must_be_positive_whole_seconds_up_to_the_maximum_given_once, "--spill-threshold" => "10"),
        case!(a_lifetime_above_a_configured_maximum_is_refused, "--max-lifetime" => "60"),
        case!(custom_data_pairs_are_validated_and_capped, "--spill-threshold" => "10"),
        case!(a_content_type_that_is_not_type_slash_subtype_is_refused, "--spill-threshold" => "10"),
        case!(bad_timeouts_and_query_parameters_are_refused),
        case!(unknown_routes_are_404_problems),
        case!(the_root_sends_a_browser_to_the_dashboard),
        case!(a_method_a_path_does_not_allow_is_405_with_an_allow_header),
    ]
}

/// Sends `method path` with the path exactly as written: reqwest would
/// normalise `.` and `..` segments away before the server saw them.
async fn raw(server: &TestServer, method: &str, path: &str) -> reqwest::Response {
    let exchange = async {
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
            server.addr
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(STEP, exchange)
        .await
        .expect("raw request hung");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = std::str::from_utf8(&answer[..split]).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut response = http::Response::builder().status(status);
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        response = response.header(k.trim(), v.trim());
    }
    reqwest::Response::from(response.body(answer[split + 4..].to_vec()).unwrap())
}

/// POSTs a 100-byte body to `/qs/ns/{q}` with `headers` (repeated names are
/// appended).
async fn push(server: &TestServer, q: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let path = format!("/qs/ns/{q}");
    common::post_with(server, &path, common::pattern(100, 5), headers).await
}

/// Checks that a push to `/qs/ns/{q}` was refused with `400` and left
/// nothing: no queued element and no spill file.
async fn refused(server: &TestServer, q: &str, r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 400, "{what}");
    let doc = common::problem(r, 400).await;
    let r = server.get(&format!("/qs/ns/{q}/stats")).await;
    match r.status().as_u16() {
        404 => {}
        200 => {
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["elements"], 0, "{what}: nothing queued");
        }
        other => panic!("{what}: stats answered {other}"),
    }
    assert!(
        server.spill_files().is_empty(),
        "{what}: no spill file left, problem {doc}"
    );
}

/// Checks that a push was accepted and returns the element as popped.
async fn accepted(
    server: &TestServer,
    q: &str,
    r: reqwest::Response,
    what: &str,
) -> reqwest::Response {
    assert_eq!(r.status(), 202, "{what}");
    let popped = server.get(&format!("/qs/ns/{q}")).await;
    assert_eq!(popped.status(), 200, "{what}");
    popped
}

pub async fn bad_namespace_and_queue_names_are_refused_everywhere_and_create_nothing(t: Target) {
    let server = t.a();
    let long = "x".repeat(64);
    let bad = [
        "a%20b",
        "%2F",
        ".",
        "..",
        long.as_str(),
        "",
        "%C3%A9",
        "a:b",
    ];
    let blob = "00000000-0000-4000-8000-000000000000";
    for name in bad {
        let paths = [
            ("POST", format!("/qs/{name}/q")),
            ("POST", format!("/qs/ns/{name}")),
            ("PUT", format!("/qs/{name}/q")),
            ("PUT", format!("/qs/ns/{name}")),
            ("GET", format!("/qs/{name}/q")),
            ("GET", format!("/qs/ns/{name}")),
            ("GET", format!("/qs/{name}/q?timeout=1")),
            ("GET", format!("/qs/{name}/q/stats")),
            ("GET", format!("/qs/ns/{name}/stats")),
            ("GET", format!("/qs/{name}")),
            ("POST", format!("/tbs/{name}/blobs")),
            ("GET", format!("/tbs/{name}/blobs/{blob}")),
            ("DELETE", format!("/tbs/{name}/blobs/{blob}")),
        ];
        for (i, (method, path)) in paths.into_iter().enumerate() {
            let doc = common::problem(raw(t.node(i), method, &path).await, 400).await;
            assert_eq!(
                doc["type"], "urn:blobq:problem:invalid-name",
                "{method} {path}: {doc}"
            );
            if name.starts_with('.') {
                // Proof the dots reached the server rather than being normalised away.
                let detail = doc["detail"].as_str().unwrap();
                assert!(detail.contains("reserved"), "{method} {path}: {doc}");
            }
        }
    }
    // The same refusal through an ordinary client, which percent-encodes.
    common::problem(server.post("/qs/a b/q", "x").await, 400).await;
    common::problem(t.b().post("/qs/ns/é", "x").await, 400).await;

    for node in t.nodes() {
        let all = node.json("/qs", 200).await;
        assert_eq!(all["namespace_count"], 0, "nothing was created: {all}");
        assert_eq!(all["pushes"], 0);
    }
    assert!(t.spill_files().is_empty());
    // The longest valid name is accepted, so the 64-character refusal is the limit.
    let ok = "y".repeat(63);
    assert_eq!(
        server.post(&format!("/qs/{ok}/{ok}"), "x").await.status(),
        202
    );
}

pub async fn lifetimes_must_be_positive_whole_seconds_up_to_the_maximum_given_once(t: Target) {
    let server = t.a();
    for bad in [
        "0",
        "-1",
        "1.5",
        "abc",
        "86401",
        "",
        "99999999999999999999999",
    ] {
        let r = push(server, "q", &[("X-QueueServer-Lifetime", bad)]).await;
        refused(server, "q", r, &format!("lifetime {bad:?}")).await;
    }
    let r = push(
        server,
        "q",
        &[
            ("X-QueueServer-Lifetime", "5"),
            ("X-QueueServer-Lifetime", "6"),
        ],
    )
    .await;
    refused(server, "q", r, "lifetime given twice").await;

    let r = push(server, "ok", &[("X-QueueServer-Lifetime", "86400")]).await;
    let popped = accepted(server, "ok", r, "lifetime at the maximum").await;
    let left: u64 = popped.headers()["x-queueserver-lifetime"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((86399..=86400).contains(&left), "{left}");
}

pub async fn a_lifetime_above_a_configured_maximum_is_refused(t: Target) {
    for server in t.nodes() {
        let r = push(server, "q", &[("X-QueueServer-Lifetime", "61")]).await;
        refused(server, "q", r, "above a configured maximum").await;
        let r = push(server, "ok", &[("X-QueueServer-Lifetime", "60")]).await;
        accepted(server, "ok", r, "at a configured maximum").await;
    }
}

pub async fn custom_data_pairs_are_validated_and_capped(t: Target) {
    let server = t.a();
    let long_key = format!("{}=v", "k".repeat(65));
    let long_value = format!("k={}", "v".repeat(1025));
    let bad: [(&str, &str); 6] = [
        ("no '='", "novalue"),
        ("empty key", "=v"),
        ("key with a space", "a b=v"),
        ("65-character key", &long_key),
        ("1025-character value", &long_value),
        ("value with a tab", "k=a\tb"),
    ];
    for (what, value) in bad {
        let r = push(server, "q", &[("X-Custom-Data", value)]).await;
        refused(server, "q", r, what).await;
    }
    let pairs: Vec<String> = (0..65).map(|i| format!("k{i}=v{i}")).collect();
    let headers: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| ("X-Custom-Data", p.as_str()))
        .collect();
    let r = push(server, "q", &headers).await;
    refused(server, "q", r, "65 pairs").await;

    let r = push(server, "ok", &headers[..64]).await;
    let popped = accepted(server, "ok", r, "64 pairs").await;
    let got: Vec<_> = popped.headers().get_all("x-custom-data").iter().collect();
    assert_eq!(got.len(), 64);
    assert_eq!(got[63], "k63=v63");

    let key = "K".repeat(64);
    let value = "v ~".repeat(341) + "!";
    assert_eq!(value.len(), 1024);
    let pair = format!("{key}={value}");
    let r = push(server, "ok", &[("X-Custom-Data", &pair)]).await;
    let popped = accepted(server, "ok", r, "longest key and value").await;
    assert_eq!(popped.headers()["x-custom-data"], pair.as_str());
}

pub async fn a_content_type_that_is_not_type_slash_subtype_is_refused(t: Target) {
    let server = t.a();
    for header in ["X-QueueServer-ContentType", "Content-Type"] {
        let r = push(server, "q", &[(header, "nonsense")]).await;
        refused(server, "q", r, header).await;
    }
    let r = push(
        server,
        "q",
        &[
            ("X-QueueServer-ContentType", "nonsense"),
            ("Content-Type", "text/plain"),
        ],
    )
    .await;
    refused(
        server,
        "q",
        r,
        "a bad override is not replaced by a good Content-Type",
    )
    .await;
}

pub async fn bad_timeouts_and_query_parameters_are_refused(t: Target) {
    let server = t.a();
    for query in [
        "timeout=-1",
        "timeout=abc",
        "timeout=NaN",
        "timeout=301",
        "timeout=",
        "timout=5",
        "header_only=maybe",
    ] {
        let r = server.get(&format!("/qs/ns/q?{query}")).await;
        common::problem(r, 400).await;
    }
    common::problem(server.get("/tbs/ns/blobs/x?remove=1").await, 400).await;
    assert_eq!(server.json("/qs", 200).await["namespace_count"], 0);

    let started = Instant::now();
    let r = server.get("/qs/ns/q?timeout=0.2").await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 204);
    assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // 300, the maximum, is a valid timeout: an element already there comes at once.
    assert_eq!(server.post("/qs/ns/q", "x").await.status(), 202);
    assert_eq!(server.get("/qs/ns/q?timeout=300").await.status(), 200);
}

pub async fn unknown_routes_are_404_problems(t: Target) {
    let server = t.a();
    for path in [
        "/nope",
        "/qs/a/b/c",
        "/tbs/a",
        "/tbs/a/blob/x",
        "/qs/a/b/stats/x",
    ] {
        let doc = common::problem(server.get(path).await, 404).await;
        assert!(doc["detail"].as_str().unwrap().contains(path), "{doc}");
    }
    common::problem(server.post("/nope", "x").await, 404).await;
}

pub async fn the_root_sends_a_browser_to_the_dashboard(t: Target) {
    let server = t.a();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    assert_eq!(answer.headers()["location"], "/ui");
    common::problem(server.post("/", "x").await, 405).await;
}

pub async fn a_method_a_path_does_not_allow_is_405_with_an_allow_header(t: Target) {
    let server = t.a();
    let cases = [
        (Method::PATCH, "/qs/ns/q", "GET, POST, PUT, DELETE"),
        (Method::OPTIONS, "/qs/ns/q", "GET, POST, PUT, DELETE"),
        (Method::POST, "/qs", "GET"),
        (Method::POST, "/qs/ns", "GET"),
        (Method::PUT, "/qs/ns/q/stats", "GET"),
        (Method::GET, "/tbs/ns/blobs", "POST"),
        (Method::PUT, "/tbs/ns/blobs/x", "GET, DELETE"),
    ];
    for (method, path, allow) in cases {
        let r = server
            .client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        let got = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        common::problem(r, 405).await;
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
    }
    assert_eq!(server.json("/qs", 200).await["namespace_count"], 0);
}
