//! Large elements: spilled to a file while received, streamed back, the file
//! removed when the element is gone; bodies over the maximum refused while
//! streaming; a full spill directory answered with 507.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::STEP;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_multi_megabyte_element_is_spilled_streamed_back_and_its_file_removed() {
    let server = common::start().await;
    let body = common::pattern(8 * MIB + 123, 7);
    let r = server.post("/qs/ns/big", body.clone()).await;
    assert_eq!(r.status(), 202);
    let files = server.spill_files();
    assert_eq!(files.len(), 1, "one spill file while queued");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().len(),
        body.len() as u64
    );
    let totals = server.json("/qs", 200).await;
    assert_eq!(totals["disk_bytes"], body.len() as u64);
    assert_eq!(totals["memory_bytes"], 0);

    let r = server.get("/qs/ns/big").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        body.len().to_string().as_str()
    );
    // Read it as a stream, the way a consumer of a huge element would.
    let mut stream = r.bytes_stream();
    let mut got = Vec::with_capacity(body.len());
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(got == body, "streamed bytes differ");
    assert!(server.spill_files().is_empty(), "file removed once popped");
    let totals = server.json("/qs", 200).await;
    assert_eq!(totals["disk_bytes"], 0);
}

#[tokio::test]
async fn a_chunked_upload_crossing_the_threshold_spills_and_small_ones_stay_in_memory() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|i| Ok(common::pattern(300, i))).collect();
    let expected: Vec<u8> = parts
        .iter()
        .flat_map(|p| p.as_ref().unwrap().clone())
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let r = server
        .client
        .post(server.url("/qs/ns/chunked"))
        .body(body)
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), 202);
    assert_eq!(
        server.spill_files().len(),
        1,
        "3000 bytes ≥ threshold 1000 spill"
    );

    assert_eq!(
        server.post("/qs/ns/small", vec![1u8; 999]).await.status(),
        202
    );
    assert_eq!(server.spill_files().len(), 1, "999 bytes stay in memory");
    assert_eq!(
        server.post("/qs/ns/edge", vec![2u8; 1000]).await.status(),
        202
    );
    assert_eq!(
        server.spill_files().len(),
        2,
        "exactly the threshold spills"
    );
    assert_eq!(server.json("/qs", 200).await["memory_bytes"], 999);

    let r = server.get("/qs/ns/chunked").await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), expected);
    assert_eq!(
        server
            .get("/qs/ns/small")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        vec![1u8; 999]
    );
    assert_eq!(
        server
            .get("/qs/ns/edge")
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        vec![2u8; 1000]
    );
    assert!(server.spill_files().is_empty());
}

/// Reads a whole HTTP response head from `s`, bounded by [`STEP`].
async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + STEP;
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn assert_nothing_stored(server: &common::TestServer) {
    assert!(
        server.spill_files().is_empty(),
        "no spill file left: {:?}",
        server.spill_files()
    );
    let totals = server.json("/qs", 200).await;
    assert_eq!(totals["elements"], 0, "nothing queued: {totals}");
    assert_eq!(totals["disk_bytes"], 0);
    assert_eq!(totals["memory_bytes"], 0);
}

#[tokio::test]
async fn an_announced_body_over_the_maximum_is_refused_before_it_is_sent() {
    let server = common::options()
        .arg("--max-element-size", 100_000)
        .start()
        .await;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    // Announce 10 MB and send none of it: the answer must not wait for the body.
    let head = "POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let response = read_head(&mut s).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"));
    assert_nothing_stored(&server).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_maximum_is_refused_while_streaming_and_leaves_nothing() {
    let server = common::options()
        .arg("--max-element-size", 100_000)
        .arg("--spill-threshold", 10_000)
        .start()
        .await;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    s.write_all(b"POST /qs/ns/q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // 150 KB in 10 KB chunks, then stop sending (no final chunk): the server
    // must answer once the limit is crossed, without the end of the body.
    let chunk = vec![b'x'; 10_000];
    for _ in 0..15 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    let response = read_head(&mut s).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    drop(s);
    assert_nothing_stored(&server).await;
    // The server keeps serving.
    assert_eq!(
        server.post("/qs/ns/q", vec![0u8; 50_000]).await.status(),
        202
    );
}

#[tokio::test]
async fn a_body_over_the_maximum_sent_in_full_gets_413_and_nothing_is_stored() {
    let server = common::options()
        .arg("--max-element-size", 1000)
        .start()
        .await;
    let r = server.post("/qs/ns/q", vec![0u8; 1001]).await;
    let p = common::problem(r, 413).await;
    assert!(
        p["detail"].as_str().unwrap().contains("1000"),
        "names the limit: {p}"
    );
    assert_eq!(server.post("/qs/ns/q", vec![0u8; 1000]).await.status(), 202);
    assert_eq!(server.json("/qs/ns/q/stats", 200).await["elements"], 1);
}

#[tokio::test]
async fn expired_elements_are_never_served_and_their_files_are_removed() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let push = |body: Vec<u8>, lifetime: u64| {
        server
            .client
            .post(server.url("/qs/ns/exp"))
            .header("X-QueueServer-Lifetime", lifetime)
            .body(body)
            .send()
    };
    assert_eq!(push(vec![1; 10], 1).await.unwrap().status(), 202); // in memory
    assert_eq!(push(vec![2; 5000], 1).await.unwrap().status(), 202); // spilled
    assert_eq!(push(vec![3; 20], 60).await.unwrap().status(), 202); // survives
    assert_eq!(server.spill_files().len(), 1);
    // The sweeper removes both short-lived elements and the spill file.
    let stats = server
        .wait_for_json("/qs/ns/exp/stats", "two expirations", |v| v["expired"] == 2)
        .await;
    assert_eq!(stats["elements"], 1);
    assert!(
        server.spill_files().is_empty(),
        "spill file of the expired element removed"
    );
    let r = server.get("/qs/ns/exp").await;
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        vec![3; 20],
        "only the live element is served"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("blobq_expirations_total 2"), "{metrics}");
}

/// A 1 MiB tmpfs mounted for one test and unmounted after it.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount() -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyDisk { dir })
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn used_bytes(dir: &Path) -> u64 {
    common::files_below(dir)
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn a_full_spill_directory_answers_507_keeps_nothing_and_recovers() {
    let Some(disk) = TinyDisk::mount() else {
        // Mounting needs root (CI runs as root); say so loudly rather than pass silently.
        eprintln!(
            "SKIPPED a_full_spill_directory_answers_507: cannot mount a tmpfs here (not root?)"
        );
        return;
    };
    let server = common::options()
        .spill_into(&disk.path())
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let r = server.post("/qs/ns/q", common::pattern(3 * MIB, 1)).await;
    let p = common::problem(r, 507).await;
    assert!(p["detail"].as_str().unwrap().contains("full"), "{p}");
    assert_eq!(used_bytes(&disk.path()), 0, "the partial file was removed");
    assert_eq!(server.json("/qs", 200).await["elements"], 0);
    // Space is available again: the next push that fits succeeds.
    let body = common::pattern(200_000, 2);
    assert_eq!(server.post("/qs/ns/q", body.clone()).await.status(), 202);
    assert_eq!(
        server.get("/qs/ns/q").await.bytes().await.unwrap().to_vec(),
        body
    );
    drop(server);
}
