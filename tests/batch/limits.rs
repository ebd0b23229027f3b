//! The limits of batches and bodies that are not batches: `--max-batch`
//! for pushes, pops and acknowledgements, an empty batch, malformed
//! bodies, a part's headers past `--max-part-header-size`, a quota. Each
//! refusal stores nothing.

use crate::common::{self, pattern, problem};
use crate::wire::{self, encode, post_raw, queued, Part, BOUNDARY};

#[tokio::test]
async fn max_batch_bounds_pushes_pops_and_acks() {
    let server = common::options().arg("--max-batch", 3).start().await;
    let parts: Vec<Part> = (0..4u8).map(|i| Part::new(vec![i; 2])).collect();
    let r = post_raw(&server, "ns", "q", encode(&parts)).await;
    let p = problem(r, 413).await;
    assert_eq!(p["type"], "urn:blobq:problem:too-many-parts");
    assert_eq!(queued(&server, "ns", "q").await, 0);
    wire::push(&server, "ns", "q", &parts[..3]).await;

    for (query, kind) in [
        ("count=4", "invalid-count"),
        ("count=0", "invalid-count"),
        ("count=-1", "invalid-count"),
        ("count=1.5", "invalid-count"),
        ("count=", "invalid-count"),
        ("count=1&count=2", "invalid-query"),
    ] {
        let r = server.get(&format!("/qs/ns/q?{query}")).await;
        let p = problem(r, 400).await;
        assert_eq!(p["type"], format!("urn:blobq:problem:{kind}"), "{query}");
    }
    assert_eq!(wire::pop(&server, "/qs/ns/q?count=3").await.parts.len(), 3);

    let receipts = ["a"; 4];
    let (status, p) = wire::ack(&server, "ns", "q", &receipts).await;
    assert_eq!(
        (status, &p["type"]),
        (413, &"urn:blobq:problem:too-many-receipts".into())
    );
}

#[tokio::test]
async fn malformed_batches_are_refused_and_store_nothing() {
    let server = common::start().await;
    let good = encode(&[Part::new("a"), Part::new("b")]);
    let truncated = good[..good.len() - 12].to_vec();
    let no_crlf = format!("--{BOUNDARY}junk\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes();
    let bad_header =
        format!("--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--").into_bytes();
    let in_headers = format!("--{BOUNDARY}\r\nX-Custom-Data: a=1\r\n").into_bytes();
    let empty = format!("--{BOUNDARY}--\r\n").into_bytes();
    let nothing = b"no delimiter at all".to_vec();
    for (name, body) in [
        ("truncated", truncated),
        ("delimiter line", no_crlf),
        ("header line", bad_header),
        ("ends in headers", in_headers),
        ("no delimiter", nothing),
    ] {
        let r = post_raw(&server, "ns", "q", body).await;
        let p = problem(r, 400).await;
        assert_eq!(p["type"], "urn:blobq:problem:invalid-batch", "{name}: {p}");
    }
    let p = problem(post_raw(&server, "ns", "q", empty).await, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("no parts"), "{p}");
    for content_type in [
        None,
        Some("multipart/form-data; boundary=x"),
        Some("multipart/mixed"),
        Some("text/plain"),
    ] {
        let mut request = server
            .client
            .post(server.url("/qs/ns/q/batch"))
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
    assert_eq!(queued(&server, "ns", "q").await, 0);
    assert!(server.spill_files().is_empty());
    let totals = server.json("/qs", 200).await;
    assert_eq!(
        (totals["pushes"].as_u64(), totals["memory_bytes"].as_u64()),
        (Some(0), Some(0))
    );

    // A preamble, padding after a delimiter and an epilogue are allowed;
    // the boundary may be quoted.
    let mut body = b"a preamble\r\n".to_vec();
    body.extend(format!("--{BOUNDARY}  \r\n\r\nx\r\n--{BOUNDARY}--\r\nan epilogue").as_bytes());
    let r = server
        .client
        .post(server.url("/qs/ns/q/batch"))
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

#[tokio::test]
async fn part_headers_past_their_limit_are_refused() {
    let server = common::options()
        .arg("--max-part-header-size", 1024)
        .start()
        .await;
    let long = "v".repeat(600);
    let fits = Part::new("x").header("X-Custom-Data", &format!("a={long}"));
    wire::push(&server, "ns", "q", std::slice::from_ref(&fits)).await;
    let over = fits.header("X-Custom-Data", &format!("b={long}"));
    let r = post_raw(&server, "ns", "q", encode(&[Part::new("first"), over])).await;
    let p = problem(r, 413).await;
    assert_eq!(p["type"], "urn:blobq:problem:part-headers-too-large");
    assert_eq!(p["part"], 1);
    assert_eq!(queued(&server, "ns", "q").await, 1, "only the first batch");
    // More pairs than 32 lines fit, up to --max-custom-data.
    let mut many = Part::new("m");
    for i in 0..40 {
        many = many.header("X-Custom-Data", &format!("k{i}=v"));
    }
    let big = common::options().start().await;
    wire::push(&big, "ns", "q", &[many]).await;
    // Read by a single pop: multer, which reads the tests' batch answers,
    // stops at 32 header lines.
    let popped = big.get("/qs/ns/q").await;
    assert_eq!(common::custom_data(&popped).len(), 40);
}

#[tokio::test]
async fn a_batch_past_a_quota_is_refused_whole() {
    let server = common::options()
        .arg("--namespace-max-elements", 3)
        .start()
        .await;
    wire::push(&server, "ns", "q", &[Part::new("a")]).await;
    let parts: Vec<Part> = (0..3).map(|i| Part::new(pattern(200_000, i))).collect();
    let r = post_raw(&server, "ns", "q", encode(&parts)).await;
    assert_eq!(common::header(&r, "retry-after"), "1");
    let p = problem(r, 429).await;
    assert_eq!(p["part"], 2, "the part that would pass the limit: {p}");
    assert_eq!(queued(&server, "ns", "q").await, 1);
    assert!(
        server.spill_files().is_empty(),
        "the spilled parts are gone"
    );
}
