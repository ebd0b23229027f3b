//! Durable mode (`--data-dir`): what was accepted survives a restart and a
//! crash (SIGKILL), the log is compacted, and a damaged log is cut at a torn
//! tail but refused when damaged in the middle.

mod common;
#[path = "durability/compaction.rs"]
mod compaction;
#[path = "durability/crash.rs"]
mod crash;
#[path = "durability/damage.rs"]
mod damage;
#[path = "durability/damage_reads.rs"]
mod damage_reads;
#[path = "durability/log_files.rs"]
mod log_files;
#[path = "durability/repair.rs"]
mod repair;
#[path = "durability/segment_compaction.rs"]
mod segment_compaction;
#[path = "durability/segments.rs"]
mod segments;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{custom_data, header, options, pattern, TestServer, STEP};

async fn durable(dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut o = options()
        .arg("--data-dir", dir.display())
        .arg("--spill-threshold", 1024);
    for (flag, value) in extra {
        o = o.arg(flag, value);
    }
    o.start().await
}

/// An element as a consumer sees it.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Seen {
    id: String,
    body: Vec<u8>,
    content_type: String,
    custom: Vec<String>,
    blob: Option<String>,
}

async fn pop(server: &TestServer, path: &str) -> Option<(Seen, u64)> {
    let r = server.get(path).await;
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200, "pop {path}");
    let lifetime: u64 = header(&r, "x-queueserver-lifetime").parse().unwrap();
    let seen = Seen {
        id: header(&r, "x-queueserver-id").to_owned(),
        content_type: header(&r, "content-type").to_owned(),
        custom: custom_data(&r),
        blob: r
            .headers()
            .get("x-blobstorage_id")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: r.bytes().await.unwrap().to_vec(),
    };
    Some((seen, lifetime))
}

async fn drain(server: &TestServer, path: &str) -> Vec<(Seen, u64)> {
    let mut out = Vec::new();
    while let Some(e) = pop(server, path).await {
        out.push(e);
    }
    out
}

async fn push(server: &TestServer, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> String {
    let mut req = server.client.post(server.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "x-queueserver-id").to_owned()
}

async fn push_reference(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = server.put(path).await;
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "x-queueserver-id").to_owned()
}

async fn stop(server: &mut TestServer) {
    server.terminate();
    assert!(server.wait_exit().await.success());
}

/// A mix of small, large, referenced, metadata-only, fanned-out, expiring,
/// consumed and leased elements; SIGTERM; restart; every queue compared.
#[tokio::test]
async fn a_restart_brings_back_every_element_in_order_with_its_metadata() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    let big = pattern(5000, 3);
    push(
        &server,
        "/qs/ns/a",
        b"first".to_vec(),
        &[("x-custom-data", "k=1")],
    )
    .await;
    push(
        &server,
        "/qs/ns/a",
        b"second\0".to_vec(),
        &[
            ("content-type", "text/plain"),
            ("x-custom-data", "k=2"),
            ("x-custom-data", "z=last"),
            ("x-queueserver-lifetime", "600"),
        ],
    )
    .await;
    push(&server, "/qs/ns/a", big.clone(), &[]).await;
    push(
        &server,
        "/qs/ns/a",
        b"short-lived".to_vec(),
        &[("x-queueserver-lifetime", "1")],
    )
    .await;
    push(&server, "/qs/ns/a", b"last".to_vec(), &[]).await;
    // A stored blob, referenced twice, and a metadata-only element.
    let r = server.post("/tbs/ns/blobs", pattern(3000, 9)).await;
    assert_eq!(r.status(), 201);
    let blob = header(&r, "x-blobstorage_id").to_owned();
    for tag in ["r=1", "r=2"] {
        push_reference(
            &server,
            "/qs/ns/b",
            &[("x-blobstorage_id", &blob), ("x-custom-data", tag)],
        )
        .await;
    }
    push_reference(&server, "/qs/ns/b", &[("x-custom-data", "only=meta")]).await;
    // Fan-out: a header-only pop, then references to the exposed blob.
    push(
        &server,
        "/qs/other/in",
        pattern(2000, 1),
        &[("x-custom-data", "src=1")],
    )
    .await;
    let header_only = server.get("/qs/other/in?header_only=1").await;
    assert_eq!(header_only.status(), 200);
    let fanned = header(&header_only, "x-blobstorage_id").to_owned();
    push_reference(&server, "/qs/other/out", &[("x-blobstorage_id", &fanned)]).await;
    // Consumed before the restart: must not come back.
    let (first, _) = pop(&server, "/qs/ns/a").await.unwrap();
    assert_eq!(first.body, b"first");
    // An element out under a lease at shutdown comes back unleased.
    push(&server, "/qs/ns/leased", b"job".to_vec(), &[]).await;
    assert_eq!(server.get("/qs/ns/leased?lease=60").await.status(), 200);

    tokio::time::sleep(Duration::from_millis(1100)).await; // "short-lived" expires
    stop(&mut server).await;
    let server = durable(data.path(), &[]).await;

    let a = drain(&server, "/qs/ns/a").await;
    let bodies: Vec<&[u8]> = a.iter().map(|(s, _)| &s.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"second\0"[..], &big[..], b"last"],
        "order kept, expired and popped gone"
    );
    let (second, lifetime) = &a[0];
    assert_eq!(second.content_type, "text/plain");
    assert_eq!(second.custom, vec!["k=2", "z=last"]);
    assert!(
        (590..=600).contains(lifetime),
        "remaining lifetime kept: {lifetime}"
    );

    let b = drain(&server, "/qs/ns/b").await;
    assert_eq!(b.len(), 3);
    for (i, tag) in ["r=1", "r=2"].iter().enumerate() {
        assert_eq!(b[i].0.body, pattern(3000, 9));
        assert_eq!(b[i].0.blob.as_deref(), Some(blob.as_str()));
        assert_eq!(b[i].0.custom, vec![*tag]);
    }
    assert!(b[2].0.body.is_empty() && b[2].0.blob.is_none());
    assert_eq!(b[2].0.custom, vec!["only=meta"]);

    let out = drain(&server, "/qs/other/out").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.body, pattern(2000, 1));
    assert_eq!(
        out[0].0.custom,
        vec!["src=1"],
        "inherits the blob's metadata"
    );
    assert!(drain(&server, "/qs/other/in").await.is_empty());

    let leased = drain(&server, "/qs/ns/leased").await;
    assert_eq!(leased.len(), 1, "a lease in flight comes back unleased");

    let r = server.get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200, "the stored blob is still readable");
    assert_eq!(r.bytes().await.unwrap().to_vec(), pattern(3000, 9));
    let r = server.delete(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 204);
    let r = server.get(&format!("/tbs/other/blobs/{fanned}")).await;
    assert_eq!(r.status(), 200, "an exposed blob lives to its own deadline");
    assert_eq!(
        server
            .delete(&format!("/tbs/other/blobs/{fanned}"))
            .await
            .status(),
        204
    );

    // Everything consumed or deleted: the blob files go too.
    let blobs = data.path().join("blobs");
    let deadline = Instant::now() + STEP;
    while std::fs::read_dir(&blobs).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "blob files left: {:?}",
            common::files_below(&blobs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let _first = durable(data.path(), &[]).await;
    let (ok, stderr) = run_to_exit(data.path(), &[]);
    assert!(!ok);
    assert!(stderr.contains("in use by another blobq"), "{stderr}");
}

/// Runs the server on `dir` expecting it to exit at start-up.
fn run_to_exit(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blobq kept running on a data directory it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
