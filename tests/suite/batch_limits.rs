//! The limits of batches: `--max-batch` for pushes, pops and
//! acknowledgements, malformed bodies, and a batch past a namespace's
//! quota. Each refusal stores nothing.

use super::wire::{self, encode, post_raw, queued, Part, BOUNDARY};
use super::{Case, Target};
use crate::common::{pattern, problem};

pub fn cases() -> Vec<Case> {
    vec![
        case!(max_batch_bounds_pushes_pops_and_acks, "--max-batch" => "3"),
        case!(malformed_batches_are_refused_and_store_nothing),
        case!(a_batch_past_a_quota_is_refused_whole, "--namespace-max-elements" => "3"),
    ]
}

pub async fn max_batch_bounds_pushes_pops_and_acks(t: Target) {
    let parts: Vec<Part> = (0..4u8).map(|i| Part::new(vec![i; 2])).collect();
    let r = post_raw(t.a(), "ns", "q", encode(&parts)).await;
    let p = problem(r, 413).await;
    assert_eq!(p["type"], "urn:blobq:problem:too-many-parts");
    assert_eq!(queued(t.b(), "ns", "q").await, 0);
    wire::push(t.b(), "ns", "q", &parts[..3]).await;

    for (i, (query, kind)) in [
        ("count=4", "invalid-count"),
        ("count=0", "invalid-count"),
        ("count=-1", "invalid-count"),
        ("count=1.5", "invalid-count"),
        ("count=", "invalid-count"),
        ("count=1&count=2", "invalid-query"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = t.node(i).get(&format!("/qs/ns/q?{query}")).await;
        let p = problem(r, 400).await;
        assert_eq!(p["type"], format!("urn:blobq:problem:{kind}"), "{query}");
    }
    assert_eq!(wire::pop(t.a(), "/qs/ns/q?count=3").await.parts.len(), 3);

    let receipts = ["a"; 4];
    for node in t.nodes() {
        let (status, p) = wire::ack(node, "ns", "q", &receipts).await;
        assert_eq!(
            (status, &p["type"]),
            (413, &"urn:blobq:problem:too-many-receipts".into())
        );
    }
}

pub async fn malformed_batches_are_refused_and_store_nothing(t: Target) {
    let good = encode(&[Part::new("a"), Part::new("b")]);
    let truncated = good[..good.len() - 12].to_vec();
    let no_crlf = format!("--{BOUNDARY}junk\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes();
    let bad_header =
        format!("--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes();
    let in_headers = format!("--{BOUNDARY}\r\nX-Custom-Data: a=1\r\n").into_bytes();
    let empty = format!("--{BOUNDARY}--\r\n").into_bytes();
    let nothing = b"no delimiter at all".to_vec();
    for (i, (name, body)) in [
        ("truncated", truncated),
        ("delimiter line", no_crlf),
        ("header line", bad_header),
        ("ends in headers", in_headers),
        ("no delimiter", nothing),
    ]
    .into_iter()
    .enumerate()
    {
        let r = post_raw(t.node(i), "ns", "q", body).await;
        let p = problem(r, 400).await;
        assert_eq!(p["type"], "urn:blobq:problem:invalid-batch", "{name}: {p}");
    }
    let p = problem(post_raw(t.b(), "ns", "q", empty).await, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("no parts"), "{p}");
    for (i, content_type) in [
        None,
        Some("multipart/form-data; boundary=x"),
        Some("multipart/mixed"),
        Some("text/plain"),
    ]
    .into_iter()
    .enumerate()
    {
        let node = t.node(i);
        let mut request = node
            .client
            .post(node.url("/qs/ns/q/batch"))
            .body(good.clone());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let p = problem(request.send().await.unwrap(), 400).await;
        assert_eq!(
            p["type"], "urn:blobq:problem:invalid-batch",
            "{content_type:?}"
        );
    }
    assert_eq!(queued(t.a(), "ns", "q").await, 0);
    assert!(t.spill_files().is_empty());
    assert_eq!(t.sum("/qs", "pushes").await, 0);
    assert_eq!(t.sum("/qs", "memory_bytes").await, 0);

    // A preamble, padding after a delimiter and an epilogue are allowed;
    // the boundary may be quoted.
    let mut body = b"a preamble\r\n".to_vec();
    body.extend(format!("--{BOUNDARY}  \r\n\r\nx\r\n--{BOUNDARY}--\r\nan epilogue").as_bytes());
    let r = t
        .b()
        .client
        .post(t.b().url("/qs/ns/q/batch"))
        .header(
            "content-type",
            format!("multipart/mixed; boundary=\"{BOUNDARY}\""),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

pub async fn a_batch_past_a_quota_is_refused_whole(t: Target) {
    wire::push(t.a(), "ns", "q", &[Part::new("a")]).await;
    let parts: Vec<Part> = (0..3).map(|i| Part::new(pattern(200_000, i))).collect();
    let r = post_raw(t.b(), "ns", "q", encode(&parts)).await;
    assert_eq!(crate::common::header(&r, "retry-after"), "1");
    let p = problem(r, 429).await;
    if t.names_quota_part() {
        assert_eq!(p["part"], 2, "the part that would pass the limit: {p}");
    } else {
        assert!(p["part"].is_null(), "refused whole, no part named: {p}");
    }
    assert_eq!(queued(t.a(), "ns", "q").await, 1);
    assert!(t.spill_files().is_empty(), "the spilled parts are gone");
}
