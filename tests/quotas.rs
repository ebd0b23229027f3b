//! Namespace quotas on the embedded store (429 with Retry-After, nothing
//! stored): bytes refused before a body is read, quotas of namespaces named
//! in the settings file, and the memory budget (small bodies spill once
//! memory is full). The element quota is in the suite (tests/suite/purge.rs).

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{header, problem, STEP};

async fn push(server: &common::TestServer, path: &str, body: Vec<u8>) -> reqwest::Response {
    server.post(path, body).await
}

async fn refused_for_quota(r: reqwest::Response, retry_after: &str) -> String {
    assert_eq!(header(&r, "retry-after"), retry_after);
    let p = problem(r, 429).await;
    assert_eq!(p["type"], "urn:blobq:problem:over-quota");
    p["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_byte_quota_refuses_an_announced_body_before_reading_it() {
    let server = common::options()
        .arg("--namespace-max-bytes", 1000)
        .arg("--spill-threshold", 100)
        .start()
        .await;
    assert_eq!(push(&server, "/qs/ns/q", vec![1; 600]).await.status(), 202);
    // Announce 600 more bytes and send none: the answer comes at once.
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    let head = "POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(STEP, s.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    drop(s);

    // Without Content-Length the body is read, then refused, and its spill file removed.
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![2; 300]), Ok(vec![2; 300])];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let r = server
        .client
        .post(server.url("/qs/ns/q"))
        .body(body)
        .send()
        .await
        .unwrap();
    refused_for_quota(r, "1").await;
    assert_eq!(
        server.spill_files().len(),
        1,
        "only the first element's file"
    );
    let ns = server.json("/qs/ns", 200).await;
    assert_eq!(
        (ns["elements"].as_u64(), ns["blob_bytes"].as_u64()),
        (Some(1), Some(600))
    );

    // Blobs stored through /tbs count against the same bytes.
    let r = server.post("/tbs/ns/blobs", vec![3; 300]).await;
    assert_eq!(r.status(), 201);
    refused_for_quota(server.post("/tbs/ns/blobs", vec![3; 200]).await, "1").await;
    // Popping frees the bytes again.
    assert_eq!(server.get("/qs/ns/q").await.status(), 200);
    assert_eq!(push(&server, "/qs/ns/q", vec![4; 600]).await.status(), 202);
}

#[tokio::test]
async fn namespaces_named_in_the_file_get_their_own_quota() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blobq.toml");
    let text = "namespace_max_elements = 1\n[namespaces.big]\nmax_elements = 4\n";
    std::fs::write(&file, text).unwrap();
    let server = common::options()
        .arg("--config", file.display())
        .start()
        .await;
    for _ in 0..4 {
        assert_eq!(push(&server, "/qs/big/q", vec![1]).await.status(), 202);
    }
    refused_for_quota(push(&server, "/qs/big/q", vec![1]).await, "1").await;
    assert_eq!(push(&server, "/qs/small/q", vec![1]).await.status(), 202);
    refused_for_quota(push(&server, "/qs/small/q", vec![1]).await, "1").await;
}

#[tokio::test]
async fn once_the_memory_budget_is_spent_small_bodies_go_to_disk() {
    const BUDGET: u64 = 100_000;
    let server = common::options()
        .arg("--memory-limit", BUDGET)
        .arg("--spill-threshold", 1_000_000)
        .start()
        .await;
    // 50 × 10 KB: five times the budget, every body far below the threshold.
    for i in 0..50u8 {
        let r = push(&server, "/qs/ns/flood", common::pattern(10_000, i)).await;
        assert_eq!(r.status(), 202);
    }
    let totals = server.json("/qs", 200).await;
    let (memory, disk) = (
        totals["memory_bytes"].as_u64().unwrap(),
        totals["disk_bytes"].as_u64().unwrap(),
    );
    assert!(memory <= BUDGET, "memory {memory} stays within the budget");
    assert_eq!(memory + disk, 500_000);
    assert!(disk >= 10_000);
    // They share one overflow segment (64 MiB by default), not a file each.
    assert_eq!(server.spill_files().len(), 1);
    for i in 0..50u8 {
        let r = server.get("/qs/ns/flood").await;
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            common::pattern(10_000, i),
            "element {i}"
        );
    }
    assert!(server.spill_files().is_empty());
}
