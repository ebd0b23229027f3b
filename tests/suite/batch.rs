//! Batches (BATCH.md): a batch pushed whole and in part order between
//! single pushes, batch pops (blocking, leased, header-only, with deleted
//! blobs), batch acknowledgements through either node, and a batch
//! refused midway storing nothing. Answers are read by the tests' own
//! multipart splitter (`tests/batch/wire.rs`).

use std::time::{Duration, Instant};

use super::wire::{self, ack, pop, push, queued, Part};
use super::{Case, Target};
use crate::common::{self, pattern, problem};

pub fn cases() -> Vec<Case> {
    let mut all = vec![
        case!(a_batch_is_pushed_in_part_order_between_single_pushes_and_popped_byte_for_byte),
        case!(count_takes_what_is_ready_up_to_n_and_a_blocking_batch_pop_is_woken_by_a_push),
        case!(a_leased_batch_pop_is_settled_by_a_batch_ack),
        case!(header_only_batch_pops_expose_blobs_and_a_deleted_blob_is_a_gone_part_where_blobs_are_shared),
        case!(a_batch_refused_midway_stores_nothing_and_names_the_part, "--max-element-size" => "1048576"),
        case!(a_client_that_leaves_a_leased_batch_unread_gets_it_back_when_the_leases_run_out),
    ];
    all.extend(super::batch_limits::cases());
    all
}

/// A body that looks like multipart framing inside: CRLFs, dashes, the
/// start of the boundary.
fn tricky(n: u8) -> Vec<u8> {
    let mut body = format!("\r\n--b0undary-7e1\r\n\r\n--{n}--\r\n").into_bytes();
    body.extend(pattern(300, n));
    body
}

pub async fn a_batch_is_pushed_in_part_order_between_single_pushes_and_popped_byte_for_byte(
    t: Target,
) {
    let r = t.a().post("/qs/ns/q", "before").await;
    assert_eq!(r.status(), 202);
    let parts = [
        Part::new(tricky(1))
            .header("Content-Type", "image/png")
            .header("X-Custom-Data", "a=1")
            .header("X-Custom-Data", "b=x=y"),
        Part::new(Vec::new()).header("X-QueueServer-Lifetime", "600"),
        Part::new(pattern(5000, 3))
            .header("Content-Type", "text/plain")
            .header("X-QueueServer-ContentType", "application/x-won"),
    ];
    let elements = push(t.b(), "ns", "q", &parts).await;
    assert_eq!(elements.len(), 3);
    for (e, part) in elements.iter().zip(&parts) {
        assert_eq!(e["size"], part.body.len() as u64);
        assert!(e["id"].as_str().is_some_and(|s| s.len() == 36), "{e}");
        assert!(
            e["blob_id"].as_str().is_some(),
            "a body part has a blob: {e}"
        );
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["blob_id", "id", "lifetime", "size"], "{e}");
    }
    assert_eq!(elements[0]["lifetime"], 3600, "the default lifetime");
    assert_eq!(elements[1]["lifetime"], 600);
    assert_eq!(t.a().post("/qs/ns/q", "after").await.status(), 202);

    // Single pops see the batch consecutive, in part order.
    let r = t.b().get("/qs/ns/q").await;
    assert_eq!(r.text().await.unwrap(), "before");
    for (i, (e, part)) in elements.iter().zip(&parts).enumerate() {
        let r = t.node(i).get("/qs/ns/q").await;
        assert_eq!(r.status(), 200);
        assert_eq!(common::header(&r, "x-queueserver-id"), e["id"]);
        assert_eq!(r.bytes().await.unwrap(), part.body);
    }
    assert_eq!(t.b().get("/qs/ns/q").await.text().await.unwrap(), "after");

    // And a batch pop gives the same elements with a single pop's headers.
    push(t.a(), "ns", "q", &parts).await;
    let batch = pop(t.b(), "/qs/ns/q?count=10").await;
    assert_eq!((batch.status, batch.count), (200, Some(3)));
    assert_eq!(batch.parts.len(), 3);
    let [first, empty, third] = &batch.parts[..] else {
        panic!("three parts")
    };
    assert_eq!(first.body, parts[0].body);
    assert_eq!(first.header("content-type"), Some("image/png"));
    assert_eq!(first.all("x-custom-data"), ["a=1", "b=x=y"]);
    let len = parts[0].body.len().to_string();
    assert_eq!(first.header("x-queueserver-size"), Some(&*len));
    assert_eq!(first.header("content-length"), Some(&*len));
    assert!(first.header("x-blobstorage_id").is_some());
    assert!(first.header("x-queueserver-lease").is_none());
    assert_eq!(empty.body, b"");
    assert_eq!(empty.header("x-queueserver-lifetime"), Some("600"));
    assert_eq!(
        empty.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(third.body, parts[2].body);
    assert_eq!(third.header("content-type"), Some("application/x-won"));
    for node in t.nodes() {
        assert_eq!(pop(node, "/qs/ns/q?count=10").await.status, 204);
    }
}

pub async fn count_takes_what_is_ready_up_to_n_and_a_blocking_batch_pop_is_woken_by_a_push(
    t: Target,
) {
    for i in 0..5u8 {
        t.node(i as usize).post("/qs/ns/q", vec![i; 10]).await;
    }
    let three = pop(t.a(), "/qs/ns/q?count=3").await;
    assert_eq!(three.count, Some(3));
    let bodies: Vec<u8> = three.parts.iter().map(|p| p.body[0]).collect();
    assert_eq!(bodies, [0, 1, 2]);
    let rest = pop(t.b(), "/qs/ns/q?count=10").await;
    assert_eq!((rest.count, rest.parts.len()), (Some(2), 2));
    let one = pop(t.a(), "/qs/ns/q?count=1").await;
    assert_eq!(one.status, 204, "nothing ready");

    // Waits for the first element only, then takes what else is ready.
    let waiter = {
        let (client, url) = (
            t.a().client.clone(),
            t.a().url("/qs/ns/w?count=5&timeout=20"),
        );
        tokio::spawn(async move { wire::read(client.get(url).send().await.unwrap()).await })
    };
    t.b().wait_for_waiters("ns", "w", 1).await;
    let parts: Vec<Part> = (0..3u8).map(|i| Part::new(vec![b'a' + i; 3])).collect();
    push(t.b(), "ns", "w", &parts).await;
    let woken = tokio::time::timeout(common::STEP, waiter)
        .await
        .unwrap()
        .unwrap();
    let bodies: Vec<&[u8]> = woken.parts.iter().map(|p| &p.body[..]).collect();
    assert_eq!(
        bodies,
        [b"aaa", b"bbb", b"ccc"],
        "the whole batch that woke it"
    );

    // Nothing within the timeout: 204 after it.
    let started = Instant::now();
    assert_eq!(pop(t.b(), "/qs/ns/w?count=5&timeout=0.3").await.status, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

pub async fn a_leased_batch_pop_is_settled_by_a_batch_ack(t: Target) {
    let parts: Vec<Part> = (0..4u8).map(|i| Part::new(vec![i; 4])).collect();
    push(t.a(), "ns", "q", &parts).await;
    let leased = pop(t.a(), "/qs/ns/q?count=3&lease=30").await;
    assert_eq!(leased.parts.len(), 3);
    let receipts: Vec<&str> = leased
        .parts
        .iter()
        .map(|p| {
            assert_eq!(p.header("x-queueserver-deliveries"), Some("1"));
            p.header("x-queueserver-lease").expect("a receipt")
        })
        .collect();
    t.settled(t.b(), "/qs/ns/q/stats", "one ready, three leased", |v| {
        (v["elements"].as_u64(), v["leased"].as_u64()) == (Some(1), Some(3))
    })
    .await;
    // Acknowledged through the node that did not grant the leases.
    let (status, answer) = ack(t.b(), "ns", "q", &[receipts[0], "nonsense", receipts[2]]).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        serde_json::json!({"acked": [receipts[0], receipts[2]], "unknown": ["nonsense"]})
    );
    // The one left unacknowledged is still out; acknowledging twice is unknown.
    let (_, again) = ack(t.a(), "ns", "q", &[receipts[0], receipts[1]]).await;
    assert_eq!(
        again,
        serde_json::json!({"acked": [receipts[1]], "unknown": [receipts[0]]})
    );
    t.settled(t.b(), "/qs/ns/q/stats", "one ready, none leased", |v| {
        (v["elements"].as_u64(), v["leased"].as_u64()) == (Some(1), Some(0))
    })
    .await;
    // A body that is not a list of receipts.
    for node in t.nodes() {
        let r = node
            .client
            .post(node.url("/qs/ns/q/leases/ack"))
            .body(r#"{"receipt": "x"}"#)
            .send()
            .await
            .unwrap();
        let p = problem(r, 400).await;
        assert_eq!(p["type"], "urn:blobq:problem:invalid-receipts");
    }
}

pub async fn header_only_batch_pops_expose_blobs_and_a_deleted_blob_is_a_gone_part_where_blobs_are_shared(
    t: Target,
) {
    let r = t
        .a()
        .client
        .post(t.a().url("/tbs/ns/blobs"))
        .body("shared")
        .send()
        .await
        .unwrap();
    let blob = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts = [
        Part::new("one"),
        Part::new(Vec::new()).header("X-BlobStorage_Id", &blob),
        Part::new("three"),
    ];
    let elements = push(t.b(), "ns", "q", &parts).await;
    assert_eq!(elements[1]["blob_id"], blob.as_str(), "a reference part");
    assert_eq!(elements[1]["size"], 6);
    let heads = pop(t.a(), "/qs/ns/q?count=1&header_only=1").await;
    let head = &heads.parts[0];
    assert!(head.body.is_empty());
    assert_eq!(
        (
            head.header("content-length"),
            head.header("x-queueserver-size")
        ),
        (Some("0"), Some("3"))
    );
    let id = head.header("x-blobstorage_id").unwrap();
    let read = t.b().get(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(
        read.text().await.unwrap(),
        "one",
        "exposed by the header-only pop"
    );

    assert_eq!(
        t.a()
            .delete(&format!("/tbs/ns/blobs/{blob}"))
            .await
            .status(),
        204
    );
    let rest = pop(t.b(), "/qs/ns/q?count=5").await;
    assert_eq!(rest.count, Some(2));
    let referenced = &rest.parts[0];
    assert_eq!(
        referenced.header("x-queueserver-id"),
        elements[1]["id"].as_str()
    );
    if t.shares_blobs() {
        assert_eq!(referenced.header("x-queueserver-gone"), Some("1"));
        assert!(referenced.body.is_empty());
    } else {
        // The element holds its own copy of the blob's bytes.
        assert_eq!(referenced.header("x-queueserver-gone"), None);
        assert_eq!(referenced.body, b"shared");
    }
    assert_eq!(rest.parts[1].body, b"three", "the batch goes on after it");
}

/// Waits until the target holds no blob bytes and no spill file.
async fn nothing_kept(t: &Target) {
    let deadline = Instant::now() + common::STEP;
    for node in t.nodes() {
        while wire::stored_bytes(node).await != (0, 0) || !t.spill_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "something of a refused batch was kept"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn a_batch_refused_midway_stores_nothing_and_names_the_part(t: Target) {
    let big = Part::new(pattern(300_000, 1));
    let cases: [(Part, u16, &str); 5] = [
        (
            Part::new("x").header("X-QueueServer-Lifetime", "0"),
            400,
            "invalid-lifetime",
        ),
        (
            Part::new("x").header("X-Custom-Data", "no-equals"),
            400,
            "invalid-custom-data",
        ),
        (
            Part::new(Vec::new())
                .header("X-BlobStorage_Id", "00000000-0000-4000-8000-000000000000"),
            404,
            "not-found",
        ),
        (
            Part::new("a body").header("X-BlobStorage_Id", "00000000-0000-4000-8000-000000000000"),
            400,
            "invalid-batch",
        ),
        (
            Part::new(pattern((1 << 20) + 1, 2)),
            413,
            "element-too-large",
        ),
    ];
    for (i, (bad, status, kind)) in cases.into_iter().enumerate() {
        let parts = [Part::new("fine"), big.clone(), bad, Part::new("never read")];
        let r = wire::post_raw(t.node(i), "ns", "q", wire::encode(&parts)).await;
        let p = problem(r, status).await;
        assert_eq!(p["type"], format!("urn:blobq:problem:{kind}"), "{p}");
        assert_eq!(p["part"], 2, "{p}");
        assert!(p["detail"].as_str().unwrap().starts_with("part 2: "), "{p}");
        assert_eq!(
            queued(t.node(i + 1), "ns", "q").await,
            0,
            "{kind}: no element"
        );
        nothing_kept(&t).await;
    }
    assert_eq!(t.sum("/qs", "pushes").await, 0);
}

pub async fn a_client_that_leaves_a_leased_batch_unread_gets_it_back_when_the_leases_run_out(
    t: Target,
) {
    let parts: Vec<Part> = (0..3u8).map(|i| Part::new(pattern(200_000, i))).collect();
    push(t.a(), "ns", "q", &parts).await;
    // The answer's head is read, its body is not: the client goes away.
    let granted = Instant::now();
    let r = t.b().get("/qs/ns/q?count=3&lease=0.5").await;
    assert_eq!(r.status(), 200);
    drop(r);
    let stats = t.a().json("/qs/ns/q/stats", 200).await;
    assert_eq!(stats["leased"], 3, "{stats}");
    if t.hands_back_at_once() {
        t.a()
            .wait_for_json("/qs/ns/q/stats", "the leases to run out", |v| {
                v["elements"] == 3
            })
            .await;
    } else {
        let end = granted + Duration::from_millis(1000);
        tokio::time::sleep_until(end.into()).await;
    }
    // Each comes back at the head as its lease runs out, as a single
    // lease's element does: all of them, in no promised order.
    let again = pop(t.a(), "/qs/ns/q?count=3").await;
    let mut bodies: Vec<&[u8]> = again.parts.iter().map(|p| &p.body[..]).collect();
    let mut sent: Vec<&[u8]> = parts.iter().map(|p| &p.body[..]).collect();
    bodies.sort_unstable();
    sent.sort_unstable();
    assert!(bodies == sent, "every element back, byte for byte");
    for p in &again.parts {
        assert_eq!(p.header("x-queueserver-deliveries"), None, "not leased now");
    }
}
