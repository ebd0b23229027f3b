//! `/tbs`: temporary blob storage, and fan-out of one stored blob to several
//! queues by reference.

mod common;

use std::time::{Duration, Instant};

use common::{custom_data, header, TestServer};

/// Spill threshold for the tests that need files: anything from 1000 bytes on
/// goes to disk.
const THRESHOLD: u64 = 1000;

async fn spilling_server() -> TestServer {
    common::options()
        .arg("--spill-threshold", THRESHOLD)
        .start()
        .await
}

/// Sends `req` after adding `headers` (repeated names are appended).
async fn send(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> reqwest::Response {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

/// Stores `body` through `POST /tbs/{ns}/blobs` and returns the answer's JSON,
/// asserting `201` and the `Location`.
async fn store(
    server: &TestServer,
    ns: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let req = server
        .client
        .post(server.url(&format!("/tbs/{ns}/blobs")))
        .body(body);
    let r = send(req, headers).await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").to_owned();
    let id_header = header(&r, "x-blobstorage_id").to_owned();
    let v: serde_json::Value = r.json().await.expect("json");
    let id = v["id"].as_str().expect("id");
    assert_eq!(location, format!("/tbs/{ns}/blobs/{id}"));
    assert_eq!(id_header, id);
    v
}

/// `PUT /qs/{ns}/{q}` with `headers`.
async fn put(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    send(server.put(path).await, headers).await
}

/// POSTs `body` to a queue with `headers` and returns the push answer's JSON.
async fn push(
    server: &TestServer,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let r = send(server.client.post(server.url(path)).body(body), headers).await;
    assert_eq!(r.status(), 202, "push to {path}");
    r.json().await.expect("json")
}

/// Pops `path` with data, asserting `200` and the exact bytes; returns the
/// content type and custom data.
async fn pop_exact(server: &TestServer, path: &str, want: &[u8]) -> (String, Vec<String>) {
    let r = server.get(path).await;
    assert_eq!(r.status(), 200, "pop {path}");
    let meta = (header(&r, "content-type").to_owned(), custom_data(&r));
    assert_eq!(header(&r, "content-length"), want.len().to_string());
    let got = r.bytes().await.unwrap();
    assert!(got[..] == want[..], "bytes of {path} differ");
    meta
}

#[tokio::test]
async fn a_stored_blob_is_readable_by_id_any_number_of_times() {
    let server = common::start().await;
    let body = common::pattern(5000, 11);
    let v = store(
        &server,
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

    for read in 0..2 {
        let r = server.get(&format!("/tbs/ns/blobs/{id}")).await;
        assert_eq!(r.status(), 200, "read {read}");
        assert_eq!(header(&r, "content-type"), "image/webp");
        assert_eq!(header(&r, "x-blobstorage_id"), id);
        assert_eq!(header(&r, "x-queueserver-size"), "5000");
        let left: u64 = header(&r, "x-queueserver-lifetime").parse().unwrap();
        assert!((599..=600).contains(&left), "{left}");
        assert_eq!(custom_data(&r), ["owner=me", "note=a=b c"]);
        assert!(r.bytes().await.unwrap()[..] == body[..], "read {read}");
    }

    let plain = store(&server, "ns", b"x".to_vec(), &[]).await;
    assert_eq!(plain["content_type"], "application/octet-stream");
    assert_eq!(plain["lifetime"], 3600);
    assert_ne!(plain["id"], v["id"]);
    let stats = server.json("/qs/ns", 200).await;
    assert_eq!(stats["blobs"], 2);
    assert_eq!(stats["blob_bytes"], 5001);
    assert_eq!(stats["elements"], 0, "a stored blob is not a queue element");
}

#[tokio::test]
async fn blobs_are_deleted_by_read_with_delete_or_by_delete_and_unknown_ids_are_404() {
    let server = common::start().await;
    let id = store(&server, "ns", b"once".to_vec(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.get(&format!("/tbs/ns/blobs/{id}?delete=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"once");
    common::problem(server.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;

    let id = store(&server, "ns", b"twice".to_vec(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.delete(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    common::problem(server.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    common::problem(server.delete(&format!("/tbs/ns/blobs/{id}")).await, 404).await;

    let unknown = "3f1b2c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d";
    for id in [unknown, "not-an-id", "..", "12345"] {
        common::problem(server.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
        common::problem(server.delete(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    }
    let other = store(&server, "other", b"elsewhere".to_vec(), &[]).await;
    let path = format!("/tbs/ns/blobs/{}", other["id"].as_str().unwrap());
    common::problem(server.get(&path).await, 404).await;
    assert_eq!(
        server.delete(&path).await.status(),
        404,
        "ids are scoped to their namespace"
    );
}

#[tokio::test]
async fn a_large_stored_blob_is_spilled_read_back_exactly_and_its_file_removed_on_delete() {
    let server = spilling_server().await;
    let body = common::pattern(200_000, 21);
    let id = store(&server, "ns", body.clone(), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let files = server.spill_files();
    assert_eq!(files.len(), 1, "spilled to one file");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 200_000);
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 200_000);

    let r = server.get(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "200000");
    assert!(r.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(server.spill_files().len(), 1, "a read does not consume");

    assert_eq!(
        server.delete(&format!("/tbs/ns/blobs/{id}")).await.status(),
        204
    );
    assert!(
        server.spill_files().is_empty(),
        "the file went with the blob"
    );
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}

#[tokio::test]
async fn one_blob_fans_out_to_several_queues_by_reference_and_is_stored_once() {
    let server = spilling_server().await;
    let body = common::pattern(300_000, 33);
    let pushed = push(
        &server,
        "/qs/ns/in",
        body.clone(),
        &[
            ("X-QueueServer-ContentType", "image/png"),
            ("X-Custom-Data", "origin=producer"),
            ("X-Custom-Data", "n=1"),
        ],
    )
    .await;
    let r = server.get("/qs/ns/in?header_only=1").await;
    assert_eq!(r.status(), 200);
    let id = header(&r, "x-blobstorage_id").to_owned();
    assert_eq!(pushed["blob_id"], id.as_str());

    let a = put(&server, "/qs/ns/a", &[("X-BlobStorage_Id", &id)]).await;
    let b = put(
        &server,
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
    let ns = server.json("/qs/ns", 200).await;
    assert_eq!(ns["blobs"], 1, "stored once: {ns}");
    assert_eq!(ns["blob_bytes"], 300_000);
    assert_eq!(ns["elements"], 2);
    assert_eq!(
        server.spill_files().len(),
        1,
        "one file for every reference"
    );

    let (ct, custom) = pop_exact(&server, "/qs/ns/a", &body).await;
    assert_eq!(ct, "image/png", "a bare reference inherits the blob's type");
    assert_eq!(custom, ["origin=producer", "n=1"], "and its custom data");
    let (ct, custom) = pop_exact(&server, "/qs/ns/b", &body).await;
    assert_eq!(ct, "image/png");
    assert_eq!(
        custom,
        ["route=b"],
        "its own custom data replaces the blob's"
    );

    // The blob was exposed by the header-only pop: it outlives its elements.
    let r = server.get(&format!("/tbs/ns/blobs/{id}")).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap()[..] == body[..]);
    assert_eq!(server.spill_files().len(), 1);
}

#[tokio::test]
async fn a_reference_to_an_unknown_or_malformed_blob_id_is_404_and_queues_nothing() {
    let server = common::start().await;
    let elsewhere = store(&server, "other", b"x".to_vec(), &[]).await;
    let foreign = elsewhere["id"].as_str().unwrap();
    for id in [
        "3f1b2c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
        "not-a-blob-id",
        "",
        foreign,
    ] {
        let r = put(&server, "/qs/ns/q", &[("X-BlobStorage_Id", id)]).await;
        common::problem(r, 404).await;
        common::problem(server.get("/qs/ns/q/stats").await, 404).await;
        assert_eq!(
            server.get("/qs/ns/q").await.status(),
            204,
            "reference {id:?}"
        );
    }
    assert_eq!(server.json("/qs", 200).await["pushes"], 0);
}

#[tokio::test]
async fn deleting_a_referenced_blob_makes_the_next_data_pop_410_and_consumes_the_element() {
    let server = spilling_server().await;
    let id = store(&server, "ns", common::pattern(5000, 2), &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for q in ["a", "b"] {
        let r = put(
            &server,
            &format!("/qs/ns/{q}"),
            &[("X-BlobStorage_Id", &id)],
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    assert_eq!(
        server.delete(&format!("/tbs/ns/blobs/{id}")).await.status(),
        204
    );
    assert!(
        server.spill_files().is_empty(),
        "the file goes at once, not at the last pop"
    );

    common::problem(server.get("/qs/ns/a").await, 410).await;
    assert_eq!(
        server.get("/qs/ns/a").await.status(),
        204,
        "the element was consumed"
    );
    common::problem(server.get("/qs/ns/b").await, 410).await;
    assert_eq!(server.get("/qs/ns/b").await.status(), 204);
    let ns = server.json("/qs/ns", 200).await;
    assert_eq!(
        (ns["elements"].as_u64(), ns["blobs"].as_u64()),
        (Some(0), Some(0)),
        "{ns}"
    );
}

#[tokio::test]
async fn an_unexposed_blob_is_freed_as_soon_as_its_element_is_popped_with_data() {
    let server = spilling_server().await;
    let body = common::pattern(50_000, 44);
    let pushed = push(&server, "/qs/ns/q", body.clone(), &[]).await;
    let id = pushed["blob_id"].as_str().unwrap().to_owned();
    assert_eq!(server.spill_files().len(), 1);
    assert_eq!(server.json("/qs/ns", 200).await["blobs"], 1);

    pop_exact(&server, "/qs/ns/q", &body).await;
    assert!(
        server.spill_files().is_empty(),
        "spill file removed with the last reference"
    );
    common::problem(server.get(&format!("/tbs/ns/blobs/{id}")).await, 404).await;
    let ns = server.json("/qs/ns", 200).await;
    assert_eq!(ns["blobs"], 0);
    assert_eq!(ns["blob_bytes"], 0);
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}

#[tokio::test]
async fn a_stored_blob_expires_after_its_lifetime_and_its_file_is_removed() {
    let server = spilling_server().await;
    let started = Instant::now();
    let id = store(
        &server,
        "ns",
        common::pattern(5000, 8),
        &[("X-QueueServer-Lifetime", "1")],
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/tbs/ns/blobs/{id}");
    let r = server.get(&path).await;
    assert_eq!(r.status(), 200, "readable within its lifetime");
    assert_eq!(header(&r, "x-queueserver-lifetime"), "1");
    assert_eq!(server.spill_files().len(), 1);

    // Poll until it is gone: at 1 s it expires; 2.5 s leaves room for the sweeper.
    let deadline = started + Duration::from_millis(2500);
    loop {
        let status = server.get(&path).await.status();
        if status == 404 && server.spill_files().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 2.5 s: read answers {status}, spill files {:?}",
            server.spill_files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before its lifetime"
    );
    common::problem(server.get(&path).await, 404).await;
    assert_eq!(server.delete(&path).await.status(), 404);
    assert_eq!(server.json("/qs/ns", 200).await["blobs"], 0);
}
