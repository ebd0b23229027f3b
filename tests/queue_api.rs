//! Push and pop over HTTP: the push answer, byte-exact bodies, FIFO order,
//! every pop header, content types, lifetimes, header-only and metadata-only
//! elements, empty queues, statistics and metrics.

mod common;

use std::time::{Duration, Instant};

use common::{custom_data, header, TestServer};

/// POSTs `body` to `path` with `headers` (repeated names are appended, not
/// replaced).
async fn push(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = server.client.post(server.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("POST")
}

/// Pushes `body` and returns the push answer's JSON, asserting `202`.
async fn push_ok(
    server: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> serde_json::Value {
    let r = push(server, path, body, &[]).await;
    assert_eq!(r.status(), 202, "push to {path}");
    r.json().await.expect("push json")
}

/// The `X-QueueServer-Lifetime` of a pop, as a number.
fn lifetime_left(r: &reqwest::Response) -> u64 {
    header(r, "x-queueserver-lifetime")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn push_answers_202_with_ids_in_headers_and_a_matching_json_body() {
    let server = common::start().await;
    let r = push(
        &server,
        "/qs/ns/q",
        b"hello".to_vec(),
        &[("X-QueueServer-Lifetime", "120")],
    )
    .await;
    assert_eq!(r.status(), 202);
    let element = header(&r, "x-queueserver-id").to_owned();
    let blob = header(&r, "x-blobstorage_id").to_owned();
    assert!(!element.is_empty() && !blob.is_empty());
    assert_ne!(element, blob);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["id"], element.as_str());
    assert_eq!(v["blob_id"], blob.as_str());
    assert_eq!(v["namespace"], "ns");
    assert_eq!(v["queue"], "q");
    assert_eq!(v["size"], 5);
    assert_eq!(v["lifetime"], 120);
    assert_eq!(
        v.as_object().unwrap().len(),
        6,
        "exactly the contract's fields: {v}"
    );

    let second = push_ok(&server, "/qs/ns/q", b"x".to_vec()).await;
    assert_ne!(second["id"], v["id"], "element ids differ");
    assert_ne!(second["blob_id"], v["blob_id"], "blob ids differ");
}

#[tokio::test]
async fn binary_bodies_round_trip_byte_exact_and_an_empty_body_is_an_element_of_size_zero() {
    let server = common::start().await;
    let body = common::pattern(70_000, 3);
    for b in 0..=255u8 {
        assert!(body.contains(&b), "the pattern holds byte {b}");
    }
    push_ok(&server, "/qs/ns/bin", body.clone()).await;
    let r = server.get("/qs/ns/bin").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-size"), "70000");
    let got = r.bytes().await.unwrap();
    assert!(got[..] == body[..], "bytes altered in transit");

    let v = push_ok(&server, "/qs/ns/empty", Vec::new()).await;
    assert_eq!(v["size"], 0);
    let r = server.get("/qs/ns/empty").await;
    assert_eq!(r.status(), 200, "an empty element is still an element");
    assert_eq!(header(&r, "content-length"), "0");
    assert_eq!(header(&r, "x-queueserver-size"), "0");
    assert_eq!(header(&r, "x-queueserver-id"), v["id"].as_str().unwrap());
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(server.get("/qs/ns/empty").await.status(), 204, "consumed");
}

#[tokio::test]
async fn elements_come_out_in_fifo_order() {
    let server = common::start().await;
    let n = 300;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let v = push_ok(&server, "/qs/ns/fifo", format!("element {i}")).await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        let r = server.get("/qs/ns/fifo").await;
        assert_eq!(r.status(), 200, "pop {i}");
        assert_eq!(header(&r, "x-queueserver-id"), id, "pop {i}");
        assert_eq!(r.text().await.unwrap(), format!("element {i}"));
    }
    assert_eq!(server.get("/qs/ns/fifo").await.status(), 204);
}

#[tokio::test]
async fn a_pop_carries_every_header_of_the_element() {
    let server = common::start().await;
    let r = push(
        &server,
        "/qs/ns/h",
        b"payload".to_vec(),
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-QueueServer-Lifetime", "100"),
            ("X-Custom-Data", "a=1"),
            ("X-Custom-Data", "b=x=y z"),
            ("X-Custom-Data", "a=2"),
            ("X-Custom-Data", "empty="),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    let element = header(&r, "x-queueserver-id").to_owned();
    let blob = header(&r, "x-blobstorage_id").to_owned();

    let r = server.get("/qs/ns/h").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/plain; charset=utf-8");
    assert_eq!(header(&r, "content-length"), "7");
    assert_eq!(header(&r, "x-queueserver-id"), element);
    assert_eq!(header(&r, "x-blobstorage_id"), blob);
    assert_eq!(header(&r, "x-queueserver-size"), "7");
    let left = lifetime_left(&r);
    assert!((99..=100).contains(&left), "seconds left: {left}");
    assert_eq!(
        custom_data(&r),
        ["a=1", "b=x=y z", "a=2", "empty="],
        "one header per pair, in order"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"payload");
}

#[tokio::test]
async fn the_override_content_type_wins_then_content_type_then_octet_stream() {
    let server = common::start().await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("X-QueueServer-ContentType", "image/png"),
                ("Content-Type", "text/plain"),
            ],
            "image/png",
        ),
        (&[("Content-Type", "application/json")], "application/json"),
        (&[], "application/octet-stream"),
    ];
    for (headers, want) in cases {
        let r = push(&server, "/qs/ns/ct", b"x".to_vec(), headers).await;
        assert_eq!(r.status(), 202);
        let r = server.get("/qs/ns/ct").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), want, "pushed with {headers:?}");
    }
}

#[tokio::test]
async fn the_default_lifetime_applies_without_a_header_and_follows_the_configuration() {
    let server = common::start().await;
    let v = push_ok(&server, "/qs/ns/l", b"x".to_vec()).await;
    assert_eq!(v["lifetime"], 3600);
    let r = server.get("/qs/ns/l").await;
    let left = lifetime_left(&r);
    assert!((3599..=3600).contains(&left), "seconds left: {left}");

    let server = common::options()
        .arg("--default-lifetime", 50)
        .start()
        .await;
    let v = push_ok(&server, "/qs/ns/l", b"x".to_vec()).await;
    assert_eq!(v["lifetime"], 50);
    let r = server.get("/qs/ns/l").await;
    let left = lifetime_left(&r);
    assert!((1..=50).contains(&left), "seconds left: {left}");
}

#[tokio::test]
async fn a_header_only_pop_reports_the_size_and_keeps_the_blob_readable() {
    let server = common::start().await;
    let body = common::pattern(4321, 9);
    let r = push(
        &server,
        "/qs/ns/ho",
        body.clone(),
        &[
            ("X-QueueServer-ContentType", "image/png"),
            ("X-Custom-Data", "k=v"),
        ],
    )
    .await;
    assert_eq!(r.status(), 202);
    let blob = header(&r, "x-blobstorage_id").to_owned();

    let r = server.get("/qs/ns/ho?header_only=1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "0");
    assert_eq!(header(&r, "x-queueserver-size"), "4321");
    assert_eq!(header(&r, "x-blobstorage_id"), blob);
    assert_eq!(header(&r, "content-type"), "image/png");
    assert_eq!(custom_data(&r), ["k=v"]);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "no data on a header-only pop"
    );
    assert_eq!(
        server.get("/qs/ns/ho").await.status(),
        204,
        "the element was consumed"
    );

    let r = server.get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200, "the exposed blob stays readable");
    assert_eq!(header(&r, "content-type"), "image/png");
    assert!(r.bytes().await.unwrap()[..] == body[..]);
}

#[tokio::test]
async fn a_put_without_blob_id_pushes_a_metadata_only_element() {
    let server = common::start().await;
    let r = server
        .put("/qs/ns/meta")
        .await
        .header("X-Custom-Data", "job=42")
        .header("X-QueueServer-ContentType", "application/json")
        .body("this body is ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers().get("x-blobstorage_id").is_none(),
        "no blob, no blob id"
    );
    let element = header(&r, "x-queueserver-id").to_owned();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["blob_id"].is_null(), "{v}");
    assert_eq!(v["size"], 0);
    assert_eq!(v["id"], element.as_str());

    let r = server.get("/qs/ns/meta").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-id"), element);
    assert_eq!(header(&r, "x-queueserver-size"), "0");
    assert_eq!(header(&r, "content-length"), "0");
    assert_eq!(header(&r, "content-type"), "application/json");
    assert!(r.headers().get("x-blobstorage_id").is_none());
    assert_eq!(custom_data(&r), ["job=42"]);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "the PUT body was not stored"
    );
}

#[tokio::test]
async fn popping_an_empty_queue_or_an_unknown_namespace_answers_204_at_once() {
    let server = common::start().await;
    push_ok(&server, "/qs/ns/q", b"x".to_vec()).await;
    assert_eq!(server.get("/qs/ns/q").await.status(), 200);
    for path in ["/qs/ns/q", "/qs/ns/never-used", "/qs/nobody/q"] {
        let started = Instant::now();
        let r = server.get(path).await;
        assert_eq!(r.status(), 204, "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} answered without waiting"
        );
        assert!(r.bytes().await.unwrap().is_empty());
    }
    common::problem(server.get("/qs/nobody").await, 404).await;
}

#[tokio::test]
async fn queue_namespace_and_server_statistics_count_what_happened() {
    let server = common::start().await;
    for size in [10, 20, 30] {
        push_ok(&server, "/qs/stats/zeta", vec![b'z'; size]).await;
    }
    push_ok(&server, "/qs/stats/alpha", vec![b'a'; 5]).await;
    push_ok(&server, "/qs/other/q", vec![b'o'; 7]).await;
    let r = server.get("/qs/stats/zeta").await;
    assert_eq!(r.bytes().await.unwrap().len(), 10, "the head went out");

    let q = server.json("/qs/stats/zeta/stats", 200).await;
    assert_eq!(q["namespace"], "stats");
    assert_eq!(q["queue"], "zeta");
    let counts = [
        "elements", "bytes", "waiting", "leased", "pushed", "popped", "expired",
    ];
    let got: Vec<_> = counts.iter().map(|k| q[k].as_u64()).collect();
    let want = [2, 50, 0, 0, 3, 1, 0].map(Some);
    assert_eq!(got, want, "{counts:?} of {q}");

    common::problem(server.get("/qs/stats/nope/stats").await, 404).await;
    common::problem(server.get("/qs/nope/zeta/stats").await, 404).await;
    common::problem(server.get("/qs/nope").await, 404).await;

    let ns = server.json("/qs/stats", 200).await;
    assert_eq!(ns["namespace"], "stats");
    assert_eq!(ns["elements"], 3);
    assert_eq!(ns["bytes"], 55);
    assert_eq!(ns["pushed"], 4);
    assert_eq!(ns["popped"], 1);
    assert_eq!(ns["waiting"], 0);
    assert_eq!(ns["blobs"], 3, "the popped element's blob was freed");
    assert_eq!(ns["blob_bytes"], 55);
    let queues = ns["queues"].as_array().expect("queues array");
    let names: Vec<_> = queues
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "zeta"], "sorted by name");
    assert_eq!(queues[0]["elements"], 1);
    assert_eq!(queues[1], q, "the same document as the queue's own stats");

    let all = server.json("/qs", 200).await;
    assert_eq!(all["version"], env!("CARGO_PKG_VERSION"));
    assert!(all["uptime_seconds"].as_u64().is_some(), "{all}");
    assert_eq!(all["namespace_count"], 2);
    let totals = [
        "elements",
        "memory_bytes",
        "disk_bytes",
        "waiting",
        "pushes",
        "pops",
        "expirations",
    ];
    let got: Vec<_> = totals.iter().map(|k| all[k].as_u64()).collect();
    let want = [4, 62, 0, 0, 5, 1, 0].map(Some);
    assert_eq!(got, want, "{totals:?} of {all}");
    let rows = all["namespaces"].as_array().expect("namespaces array");
    let names: Vec<_> = rows
        .iter()
        .map(|r| r["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "stats"], "sorted by name");
    let stats_row = &rows[1];
    assert_eq!(stats_row["queue_count"], 2);
    assert_eq!(stats_row["elements"], 3);
    assert_eq!(stats_row["bytes"], 55);
    assert_eq!(stats_row["pushed"], 4);
    assert_eq!(stats_row["blobs"], 3);
    assert_eq!(rows[0]["queue_count"], 1);
    assert_eq!(rows[0]["elements"], 1);
}

/// The value of the sample line `series` (name and labels exactly as
/// exposed) in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .expect("sample value")
}

#[tokio::test]
async fn metrics_expose_request_counts_latency_and_store_counters() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let pushed = 5;
    for i in 0..pushed {
        push_ok(&server, "/qs/ns/m", vec![i as u8; 100]).await;
    }
    push_ok(&server, "/qs/ns/big", common::pattern(3000, 1)).await;
    for _ in 0..3 {
        assert_eq!(server.get("/qs/ns/m").await.status(), 200);
    }

    let r = server.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert_eq!(sample(&text, "blobq_pushes_total"), (pushed + 1) as f64);
    assert_eq!(sample(&text, "blobq_pops_total"), 3.0);
    assert_eq!(sample(&text, "blobq_expirations_total"), 0.0);
    assert_eq!(sample(&text, "blobq_queued_elements"), 3.0);
    assert_eq!(sample(&text, "blobq_waiting_consumers"), 0.0);
    assert_eq!(
        sample(&text, r#"blobq_stored_bytes{storage="memory"}"#),
        200.0
    );
    assert_eq!(
        sample(&text, r#"blobq_stored_bytes{storage="disk"}"#),
        3000.0
    );
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("blobq_http_requests_total{"))
        .collect();
    let pushes = requests
        .iter()
        .find(|l| l.contains(r#"route="/qs/{ns}/{queue}""#) && l.contains(r#"status="202""#))
        .unwrap_or_else(|| panic!("no push series in {requests:?}"));
    let value: f64 = pushes.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, (pushed + 1) as f64, "{pushes}");
    assert!(
        !requests.iter().any(|l| l.contains("route=\"/qs/ns/")),
        "client-chosen names never become labels: {requests:?}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("blobq_http_request_duration_seconds_bucket{")
                && l.contains(r#"route="/qs/{ns}/{queue}""#)
        ),
        "latency histogram by route"
    );
}
