//! The queue API: the push answer, byte-exact bodies, FIFO order across
//! nodes, every pop header, content types, lifetimes, header-only and
//! metadata-only elements, empty queues, and statistics.

use std::time::{Duration, Instant};

use super::{Case, Target};
use crate::common::{self, custom_data, header, post_with, push_ok};

pub fn cases() -> Vec<Case> {
    vec![
        case!(push_answers_202_with_ids_in_headers_and_a_matching_json_body),
        case!(binary_bodies_round_trip_byte_exact_and_an_empty_body_is_an_element_of_size_zero),
        case!(elements_come_out_in_fifo_order_through_either_node),
        case!(pushes_arriving_together_are_each_stored_once),
        case!(a_pop_carries_every_header_of_the_element),
        case!(the_override_content_type_wins_then_content_type_then_octet_stream),
        case!(the_configured_default_lifetime_applies_without_a_header, "--default-lifetime" => "50"),
        case!(a_header_only_pop_reports_the_size_and_keeps_the_blob_readable),
        case!(a_put_without_blob_id_pushes_a_metadata_only_element),
        case!(popping_an_empty_queue_or_an_unknown_namespace_answers_204_at_once),
        case!(queue_namespace_and_server_statistics_count_what_happened),
        case!(listings_are_paged),
    ]
}

/// The `X-QueueServer-Lifetime` of a pop, as a number.
fn lifetime_left(r: &reqwest::Response) -> u64 {
    header(r, "x-queueserver-lifetime")
        .parse()
        .expect("seconds")
}

pub async fn push_answers_202_with_ids_in_headers_and_a_matching_json_body(t: Target) {
    let r = post_with(
        t.a(),
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

    let second = push_ok(t.b(), "/qs/ns/q", b"x".to_vec()).await;
    assert_ne!(second["id"], v["id"], "element ids differ");
    assert_ne!(second["blob_id"], v["blob_id"], "blob ids differ");
}

pub async fn binary_bodies_round_trip_byte_exact_and_an_empty_body_is_an_element_of_size_zero(
    t: Target,
) {
    let body = common::pattern(70_000, 3);
    for b in 0..=255u8 {
        assert!(body.contains(&b), "the pattern holds byte {b}");
    }
    push_ok(t.a(), "/qs/ns/bin", body.clone()).await;
    let r = t.b().get("/qs/ns/bin").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-size"), "70000");
    let got = r.bytes().await.unwrap();
    assert!(got[..] == body[..], "bytes altered in transit");

    let v = push_ok(t.b(), "/qs/ns/empty", Vec::new()).await;
    assert_eq!(v["size"], 0);
    let r = t.a().get("/qs/ns/empty").await;
    assert_eq!(r.status(), 200, "an empty element is still an element");
    assert_eq!(header(&r, "content-length"), "0");
    assert_eq!(header(&r, "x-queueserver-size"), "0");
    assert_eq!(header(&r, "x-queueserver-id"), v["id"].as_str().unwrap());
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!(t.b().get("/qs/ns/empty").await.status(), 204, "consumed");
}

pub async fn elements_come_out_in_fifo_order_through_either_node(t: Target) {
    let n = 300;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let v = push_ok(t.node(i), "/qs/ns/fifo", format!("element {i}")).await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for (i, id) in ids.iter().enumerate() {
        // Popped through the other node than the one it was pushed on.
        let r = t.node(i + 1).get("/qs/ns/fifo").await;
        assert_eq!(r.status(), 200, "pop {i}");
        assert_eq!(header(&r, "x-queueserver-id"), id, "pop {i}");
        assert_eq!(r.text().await.unwrap(), format!("element {i}"));
    }
    assert_eq!(t.a().get("/qs/ns/fifo").await.status(), 204);
}

/// Many pushes at once through both nodes (on NATS, passed to the
/// connection in bursts): each answered, each stored once, under its id.
pub async fn pushes_arriving_together_are_each_stored_once(t: Target) {
    let n = 200;
    let pushes = (0..n).map(|i| {
        let node = t.node(i);
        async move {
            let v = push_ok(node, "/qs/ns/together", format!("element {i}")).await;
            (v["id"].as_str().unwrap().to_owned(), format!("element {i}"))
        }
    });
    let mut pushed: Vec<(String, String)> = futures_util::future::join_all(pushes).await;
    let mut popped = Vec::with_capacity(n);
    for i in 0..n {
        let r = t.node(i).get("/qs/ns/together").await;
        assert_eq!(r.status(), 200, "pop {i}");
        let id = header(&r, "x-queueserver-id").to_owned();
        popped.push((id, r.text().await.unwrap()));
    }
    assert_eq!(t.a().get("/qs/ns/together").await.status(), 204);
    pushed.sort();
    popped.sort();
    assert_eq!(popped, pushed);
}

pub async fn a_pop_carries_every_header_of_the_element(t: Target) {
    let r = post_with(
        t.a(),
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

    let r = t.b().get("/qs/ns/h").await;
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

pub async fn the_override_content_type_wins_then_content_type_then_octet_stream(t: Target) {
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
    for (i, (headers, want)) in cases.into_iter().enumerate() {
        let r = post_with(t.node(i), "/qs/ns/ct", b"x".to_vec(), headers).await;
        assert_eq!(r.status(), 202);
        let r = t.node(i + 1).get("/qs/ns/ct").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), want, "pushed with {headers:?}");
    }
}

pub async fn the_configured_default_lifetime_applies_without_a_header(t: Target) {
    let v = push_ok(t.a(), "/qs/ns/l", b"x".to_vec()).await;
    assert_eq!(v["lifetime"], 50);
    let r = t.b().get("/qs/ns/l").await;
    let left = lifetime_left(&r);
    assert!((49..=50).contains(&left), "seconds left: {left}");
}

pub async fn a_header_only_pop_reports_the_size_and_keeps_the_blob_readable(t: Target) {
    let body = common::pattern(4321, 9);
    let r = post_with(
        t.a(),
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

    let r = t.b().get("/qs/ns/ho?header_only=1").await;
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
        t.a().get("/qs/ns/ho").await.status(),
        204,
        "the element was consumed"
    );

    for node in t.nodes() {
        let r = node.get(&format!("/tbs/ns/blobs/{blob}")).await;
        assert_eq!(r.status(), 200, "the exposed blob stays readable");
        assert_eq!(header(&r, "content-type"), "image/png");
        assert!(r.bytes().await.unwrap()[..] == body[..]);
    }
}

pub async fn a_put_without_blob_id_pushes_a_metadata_only_element(t: Target) {
    let r = t
        .a()
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

    let r = t.b().get("/qs/ns/meta").await;
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

pub async fn popping_an_empty_queue_or_an_unknown_namespace_answers_204_at_once(t: Target) {
    push_ok(t.a(), "/qs/ns/q", b"x".to_vec()).await;
    assert_eq!(t.b().get("/qs/ns/q").await.status(), 200);
    for node in t.nodes() {
        for path in ["/qs/ns/q", "/qs/ns/never-used", "/qs/nobody/q"] {
            let started = Instant::now();
            let r = node.get(path).await;
            assert_eq!(r.status(), 204, "{path}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{path} answered without waiting"
            );
            assert!(r.bytes().await.unwrap().is_empty());
        }
        common::problem(node.get("/qs/nobody").await, 404).await;
    }
}

pub async fn queue_namespace_and_server_statistics_count_what_happened(t: Target) {
    for (i, size) in [10, 20, 30].into_iter().enumerate() {
        push_ok(t.node(i), "/qs/stats/zeta", vec![b'z'; size]).await;
    }
    push_ok(t.a(), "/qs/stats/alpha", vec![b'a'; 5]).await;
    push_ok(t.b(), "/qs/other/q", vec![b'o'; 7]).await;
    let r = t.b().get("/qs/stats/zeta").await;
    assert_eq!(r.bytes().await.unwrap().len(), 10, "the head went out");

    let q = t
        .settled(t.a(), "/qs/stats/zeta/stats", "two left", |v| {
            v["elements"] == 2
        })
        .await;
    assert_eq!(q["namespace"], "stats");
    assert_eq!(q["queue"], "zeta");
    let counts = ["elements", "bytes", "waiting", "leased", "expired"];
    let got: Vec<_> = counts.iter().map(|k| q[k].as_u64()).collect();
    let want = [2, t.bytes(50), 0, 0, 0].map(Some);
    assert_eq!(got, want, "{counts:?} of {q}");
    // Each node counts its own pushes and pops.
    assert_eq!(t.sum("/qs/stats/zeta/stats", "pushed").await, 3);
    assert_eq!(t.sum("/qs/stats/zeta/stats", "popped").await, 1);

    for node in t.nodes() {
        common::problem(node.get("/qs/stats/nope/stats").await, 404).await;
        common::problem(node.get("/qs/nope/zeta/stats").await, 404).await;
        common::problem(node.get("/qs/nope").await, 404).await;
    }

    let ns = t.a().json("/qs/stats", 200).await;
    assert_eq!(ns["namespace"], "stats");
    assert_eq!(ns["elements"], 3);
    assert_eq!(ns["bytes"], t.bytes(55));
    assert_eq!(ns["waiting"], 0);
    let blobs = if t.counts_element_blobs() { 3 } else { 0 };
    assert_eq!(ns["blobs"], blobs, "the popped element's blob was freed");
    assert_eq!(ns["blob_bytes"], t.bytes(55));
    assert_eq!(t.sum("/qs/stats", "pushed").await, 4);
    assert_eq!(t.sum("/qs/stats", "popped").await, 1);
    let queues = ns["queues"].as_array().expect("queues array");
    let names: Vec<_> = queues
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "zeta"], "sorted by name");
    assert_eq!(queues[0]["elements"], 1);
    assert_eq!(queues[1], q, "the same document as the queue's own stats");

    let all = t.b().json("/qs", 200).await;
    assert_eq!(all["version"], env!("CARGO_PKG_VERSION"));
    assert!(all["uptime_seconds"].as_u64().is_some(), "{all}");
    assert_eq!(all["namespace_count"], 2);
    let totals = [
        "elements",
        "memory_bytes",
        "disk_bytes",
        "waiting",
        "expirations",
    ];
    let got: Vec<_> = totals.iter().map(|k| all[k].as_u64()).collect();
    let want = [t.gauge(4), t.gauge(62), 0, 0, 0].map(Some);
    assert_eq!(got, want, "{totals:?} of {all}");
    assert_eq!(t.sum("/qs", "pushes").await, 5);
    assert_eq!(t.sum("/qs", "pops").await, 1);
    let rows = all["namespaces"].as_array().expect("namespaces array");
    let names: Vec<_> = rows
        .iter()
        .map(|r| r["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "stats"], "sorted by name");
    let stats_row = &rows[1];
    assert_eq!(stats_row["queue_count"], 2);
    assert_eq!(stats_row["elements"], 3);
    assert_eq!(stats_row["bytes"], t.bytes(55));
    assert_eq!(stats_row["blobs"], blobs);
    assert_eq!(rows[0]["queue_count"], 1);
    assert_eq!(rows[0]["elements"], 1);
}

pub async fn listings_are_paged(t: Target) {
    for (i, q) in ["c", "a", "e", "b", "d"].into_iter().enumerate() {
        push_ok(t.node(i), &format!("/qs/ns/{q}"), "x").await;
        push_ok(t.node(i + 1), &format!("/qs/{q}/q"), "x").await;
    }
    for (path, key, field, want) in [
        ("/qs/ns", "queues", "queue", ["a", "b", "c", "d", "e"]),
        ("/qs", "namespaces", "namespace", ["a", "b", "c", "d", "e"]),
    ] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for page in 0.. {
            assert!(page < 10, "{path}: the pages never ended");
            let query = match &token {
                Some(t) => format!("{path}?limit=2&page_token={t}"),
                None => format!("{path}?limit=2"),
            };
            let v = t.node(page).json(&query, 200).await;
            let rows = v[key].as_array().expect("rows");
            assert!(rows.len() <= 2, "{query}: {v}");
            seen.extend(rows.iter().map(|r| r[field].as_str().unwrap().to_owned()));
            match v["next_page_token"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        let want: Vec<&str> = match path {
            "/qs" => vec!["a", "b", "c", "d", "e", "ns"],
            _ => want.to_vec(),
        };
        assert_eq!(seen, want, "{path} page by page");
    }
}
