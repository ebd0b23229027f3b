//! `/tbs`: temporary blob storage through either node, and fan-out of one
//! stored blob to several queues by reference. On NATS an element holds a
//! copy of its blob's bytes ([`Target::shares_blobs`]).

use std::time::{Duration, Instant};

use super::{Case, Target};
use crate::common::{self, custom_data, header, send_with, store_blob, TestServer};

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_stored_blob_is_readable_by_id_any_number_of_times),
        case!(blobs_are_deleted_by_read_with_delete_or_by_delete_and_unknown_ids_are_404),
        case!(one_blob_fans_out_to_several_queues_by_reference, "--spill-threshold" => "1000"),
        case!(a_reference_to_an_unknown_or_malformed_blob_id_is_404_and_queues_nothing),
        case!(deleting_a_referenced_blob_makes_the_next_data_pop_410_where_blobs_are_shared, "--spill-threshold" => "1000"),
        case!(an_unexposed_blob_is_freed_as_soon_as_its_element_is_popped_with_data, "--spill-threshold" => "1000"),
        case!(a_stored_blob_expires_after_its_lifetime, "--spill-threshold" => "1000"),
    ]
}

/// `PUT /qs/{ns}/{q}` with `headers`.
async fn put(node: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    send_with(node.put(path).await, headers).await
}

/// POSTs `body` to a queue with `headers` and returns the push answer's JSON.
async fn push(
    node: &TestServer,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let r = send_with(node.client.post(node.url(path)).body(body), headers).await;
    assert_eq!(r.status(), 202, "push to {path}");
    r.json().await.expect("json")
}

/// Pops `path` with data, asserting `200` and the exact bytes; returns the
/// content type and custom data.
async fn pop_exact(node: &TestServer, path: &str, want: &[u8]) -> (String, Vec<String>) {
    let r = node.get(path).await;
    assert_eq!(r.status(), 200, "pop {path}");
    let meta = (header(&r, "content-type").to_owned(), custom_data(&r));
    assert_eq!(header(&r, "content-length"), want.len().to_string());
    let got = r.bytes().await.unwrap();
    assert!(got[..] == want[..], "bytes of {path} differ");
    meta
}

pub async fn a_stored_blob_is_readable_by_id_any_number_of_times(t: Target) {
    let body = common::pattern(5000, 11);
    let v = store_blob(
        t.a(),
        "ns",
        body.clone(),
        &[
            ("X-QueueServer-ContentType", "image/webp"),
            ("X-QueueServer-Lifetime", "600"),
            ("X-Custom-Data", "owner=me"),
            ("X-Custom-Data", "note=a=b c"),
        ],
    )
    .await;
    assert_eq!(v["size"], 5000);
    assert_eq!(v["lifetime"], 600);
    assert_eq!(v["content_type"], "image/webp");
    assert_eq!(
        v.as_object().unwrap().len(),
        4,
        "exactly the contract's fields: {v}"
    );
    let id = v["id"].as_str().unwrap();

    for read in 0..3 {
        let r = t.node(read + 1).get(&format!("/tbs/ns/blobs/{id}")).await;
        assert_eq!(r.status(), 200, "read {read}");
        assert_eq!(header(&r, "content-type"), "image/webp");
        assert_eq!(header(&r, "x-blobstorage_id"), id);
        assert_eq!(header(&r, "x-queueserver-size"), "5000");
        let left: u64 = header(&r, "x-queueserver-lifetime").parse().unwrap();
        assert!((599..=600).contains(&left), "{left}");
        assert_eq!(custom_data(&r), ["owner=me", "note=a=b c"]);
        assert!(r.bytes().await.unwrap()[..] == body[..], "read {read}");
    }

    let plain = store_blob(t.b(), "ns", b"x".to_vec(), &[]).await;
    assert_eq!(plain["content_type"], "application/octet-stream");
    assert_eq!(plain["lifetime"], 3600);
    assert_ne!(plain["id"], v["id"]);
    let stats = t.a().json("/qs/ns", 200).await;
    assert_eq!(stats["blobs"], 2);
    assert_eq!(stats["blob_bytes"], t.bytes(5001));
    assert_eq!(stats["elements"], 0, "a stored blob is not a queue element");
}

pub async fn blobs_are_deleted_by_read_with_delete_or_by_delete_and_unknown_ids_are_404(t: Target) {
    let id = store_blob(t.a(), "ns", b"once".to_vec(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t.b().get(&format!("/tbs/ns/blobs/{id}?delete=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"once");
    for node in t.nodes() {
        common::problem(node.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    }

    let id = store_blob(t.a(), "ns", b"twice".to_vec(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t.b().delete(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    for node in t.nodes() {
        common::problem(node.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
        common::problem(node.delete(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    }

    let unknown = "3f1b2c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d";
    for node in t.nodes() {
        for id in [unknown, "not-an-id", "..", "12345"] {
            common::problem(node.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
            common::problem(node.delete(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
        }
    }
    let other = store_blob(t.a(), "other", b"elsewhere".to_vec(), &[]).await;
    let path = format!("/tbs/ns/blobs/{}", other["id"].as_str().unwrap());
    for node in t.nodes() {
        common::problem(node.get(&path).await, 404).await;
        assert_eq!(
            node.delete(&path).await.status(),
            404,
            "ids are scoped to their namespace"
        );
    }
    let r = t
        .b()
        .get(&format!(
            "/tbs/other/blobs/{}",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 200, "and still there in their own");
}

pub async fn one_blob_fans_out_to_several_queues_by_reference(t: Target) {
    let body = common::pattern(300_000, 33);
    let pushed = push(
        t.a(),
        "/qs/ns/in",
        body.clone(),
        &[
            ("X-QueueServer-ContentType", "image/png"),
            ("X-Custom-Data", "origin=producer"),
            ("X-Custom-Data", "n=1"),
        ],
    )
    .await;
    let r = t.b().get("/qs/ns/in?header_only=1").await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-blobstorage_id").to_owned();
    assert_eq!(pushed["blob_id"], id.as_str());

    let a = put(t.a(), "/qs/ns/a", &[("X-BlobStorage_Id", &id)]).await;
    let b = put(
        t.b(),
        "/qs/ns/b",
        &[("X-BlobStorage_Id", &id), ("X-Custom-Data", "route=b")],
    )
    .await;
    for r in [a, b] {
        assert_eq!(r.status(), 202);
        assert_eq!(header(&r, "x-blobstorage_id"), id);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["blob_id"], id.as_str());
        assert_eq!(v["size"], 300_000);
    }
    let ns = t.a().json("/qs/ns", 200).await;
    assert_eq!(ns["blobs"], 1, "one blob by id: {ns}");
    assert_eq!(ns["blob_bytes"], t.bytes(300_000));
    assert_eq!(ns["elements"], 2);
    if t.spills() {
        assert_eq!(t.spill_files().len(), 1, "one file for every reference");
    }

    let (ct, custom) = pop_exact(t.b(), "/qs/ns/a", &body).await;
    assert_eq!(ct, "image/png", "a bare reference inherits the blob's type");
    assert_eq!(custom, ["origin=producer", "n=1"], "and its custom data");
    let (ct, custom) = pop_exact(t.a(), "/qs/ns/b", &body).await;
    assert_eq!(ct, "image/png");
    assert_eq!(
        custom,
        ["route=b"],
        "its own custom data replaces the blob's"
    );

    // The blob was exposed by the header-only pop: it outlives its elements.
    for node in t.nodes() {
        let r = node.get(&format!("/tbs/ns/blobs/{id}")).await;
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap()[..] == body[..]);
    }
    if t.spills() {
        assert_eq!(t.spill_files().len(), 1);
    }
}

pub async fn a_reference_to_an_unknown_or_malformed_blob_id_is_404_and_queues_nothing(t: Target) {
    let elsewhere = store_blob(t.a(), "other", b"x".to_vec(), &[]).await;
    let foreign = elsewhere["id"].as_str().unwrap();
    for (i, id) in [
        "3f1b2c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
        "not-a-blob-id",
        "",
        foreign,
    ]
    .into_iter()
    .enumerate()
    {
        let r = put(t.node(i), "/qs/ns/q", &[("X-BlobStorage_Id", id)]).await;
        common::problem(r, 404).await;
        common::problem(t.a().get("/qs/ns/q/stats").await, 404).await;
        assert_eq!(
            t.b().get("/qs/ns/q").await.status(),
            204,
            "reference {id:?}"
        );
    }
    assert_eq!(t.sum("/qs", "pushes").await, 0);
}

pub async fn deleting_a_referenced_blob_makes_the_next_data_pop_410_where_blobs_are_shared(
    t: Target,
) {
    let body = common::pattern(5000, 2);
    let id = store_blob(t.a(), "ns", body.clone(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, q) in ["a", "b"].into_iter().enumerate() {
        let r = put(
            t.node(i),
            &format!("/qs/ns/{q}"),
            &[("X-BlobStorage_Id", &id)],
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    assert_eq!(
        t.b().delete(&format!("/tbs/ns/blobs/{id}")).await.status(),
        204
    );
    assert!(
        t.spill_files().is_empty(),
        "the file goes at once, not at the last pop"
    );

    for (i, q) in ["a", "b"].into_iter().enumerate() {
        let path = format!("/qs/ns/{q}");
        let r = t.node(i).get(&path).await;
        if t.shares_blobs() {
            common::problem(r, 410).await;
        } else {
            // The element holds its own copy of the blob's bytes.
            assert_eq!(r.status(), 200, "{path}");
            assert!(r.bytes().await.unwrap()[..] == body[..], "{path}");
        }
        assert_eq!(
            t.node(i + 1).get(&path).await.status(),
            204,
            "the element was consumed"
        );
    }
    let ns = t.a().json("/qs/ns", 200).await;
    assert_eq!(
        (ns["elements"].as_u64(), ns["blobs"].as_u64()),
        (Some(0), Some(0)),
        "{ns}"
    );
}

pub async fn an_unexposed_blob_is_freed_as_soon_as_its_element_is_popped_with_data(t: Target) {
    let body = common::pattern(50_000, 44);
    let pushed = push(t.a(), "/qs/ns/q", body.clone(), &[]).await;
    let id = pushed["blob_id"].as_str().unwrap().to_owned();
    if t.spills() {
        assert_eq!(t.spill_files().len(), 1);
    }
    let blobs = if t.counts_element_blobs() { 1 } else { 0 };
    assert_eq!(t.b().json("/qs/ns", 200).await["blobs"], blobs);

    pop_exact(t.b(), "/qs/ns/q", &body).await;
    assert!(
        t.spill_files().is_empty(),
        "spill file removed with the last reference"
    );
    for node in t.nodes() {
        common::problem(node.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    }
    let ns = t.a().json("/qs/ns", 200).await;
    assert_eq!(ns["blobs"], 0);
    assert_eq!(ns["blob_bytes"], 0);
    assert_eq!(t.a().json("/qs", 200).await["disk_bytes"], 0);
}

pub async fn a_stored_blob_expires_after_its_lifetime(t: Target) {
    let started = Instant::now();
    let id = store_blob(
        t.a(),
        "ns",
        common::pattern(5000, 8),
        &[("X-QueueServer-Lifetime", "1")],
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/tbs/ns/blobs/{id}");
    let r = t.b().get(&path).await;
    assert_eq!(r.status(), 200, "readable within its lifetime");
    assert_eq!(header(&r, "x-queueserver-lifetime"), "1");
    if t.spills() {
        assert_eq!(t.spill_files().len(), 1);
    }

    // Poll until it is gone: at 1 s it expires; 2.5 s leaves room for the sweeper.
    let deadline = started + Duration::from_millis(2500);
    for i in 0.. {
        let status = t.node(i).get(&path).await.status();
        if status == 404 && t.spill_files().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 2.5 s: read answers {status}, spill files {:?}",
            t.spill_files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before its lifetime"
    );
    for node in t.nodes() {
        common::problem(node.get(&path).await, 404).await;
        assert_eq!(node.delete(&path).await.status(), 404);
    }
    assert_eq!(t.a().json("/qs/ns", 200).await["blobs"], 0);
}
