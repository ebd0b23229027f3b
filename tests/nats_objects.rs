//! Bodies past `--nats-max-inline` on the NATS backend, through the real
//! binary: kept in the JetStream object store, or in S3 (`--blob-store
//! s3://`, against a `moto_server`), pushed on one node and popped on
//! another byte for byte, their objects deleted when their last element or
//! blob goes (an acknowledged pop or lease, a deleted blob, an ended
//! lifetime), shared by reference pushes, and streamed without being held
//! whole. Skipped without `nats-server` (unless `BLOBQ_REQUIRE_NATS=1`) and,
//! for S3, without `moto_server` (unless `BLOBQ_REQUIRE_S3=1`).

mod common;
mod nats;
// The batch tests' helpers, of which these use a few.
#[path = "batch/wire.rs"]
mod wire;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pattern, TestServer, STEP};
use futures_util::StreamExt as _;
use nats::NatsServer;
use sha2::{Digest as _, Sha256};

/// The inline threshold of these tests' nodes.
const INLINE: usize = 64 * 1024;
/// A body past it.
const LARGE: usize = 300 * 1024;
/// The S3 bucket and key prefix the S3 tests use.
const BUCKET: &str = "blobq-test";
const PREFIX: &str = "objs";

/// A `moto_server` on a free port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// `None` (skipped, with a message) without `moto_server`.
    async fn start() -> Option<Moto> {
        let found = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("BLOBQ_REQUIRE_S3").as_deref() != Ok("1"),
                "BLOBQ_REQUIRE_S3=1 but moto_server is not on the PATH (.ci/install-moto)"
            );
            eprintln!("skipped: moto_server is not on the PATH (see .ci/install-moto)");
            return None;
        }
        let port = nats::free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < STEP * 4, "moto_server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let r = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", moto.endpoint()))
            .send()
            .await
            .expect("make the bucket");
        assert!(r.status().is_success(), "bucket: {}", r.status());
        Some(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the nodes keep large bodies.
enum Store {
    Nats,
    S3(Moto),
}

impl Store {
    /// `None` if the store cannot be run here.
    async fn start(s3: bool) -> Option<Store> {
        if s3 {
            Moto::start().await.map(Store::S3)
        } else {
            Some(Store::Nats)
        }
    }

    /// Objects stored for namespace `ns`.
    async fn objects(&self, nats: &NatsServer, ns: &str) -> usize {
        match self {
            Store::Nats => {
                let client = async_nats::connect(nats.url()).await.expect("connect");
                let js = async_nats::jetstream::new(client);
                let Ok(bucket) = js.get_object_store(format!("BLOBQ_{ns}")).await else {
                    return 0;
                };
                let list = bucket.list().await.expect("list");
                list.count().await
            }
            Store::S3(moto) => {
                let url = format!(
                    "{}/{BUCKET}?list-type=2&prefix={PREFIX}/{ns}/",
                    moto.endpoint()
                );
                let text = reqwest::get(url).await.expect("list").text().await.unwrap();
                text.matches("<Key>").count()
            }
        }
    }

    /// Waits (bounded) until namespace `ns` holds `want` objects.
    async fn expect_objects(&self, nats: &NatsServer, ns: &str, want: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let n = self.objects(nats, ns).await;
            if n == want {
                return;
            }
            assert!(Instant::now() < deadline, "{n} objects, not {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A node on `nats` keeping bodies past [`INLINE`] in `store`.
async fn node(nats: &NatsServer, store: &Store, extra: &[(&str, &str)]) -> TestServer {
    let mut options = common::options()
        .arg("--backend", nats.url())
        .arg("--nats-max-inline", INLINE)
        .arg("--nats-ack-wait", 2);
    if let Store::S3(moto) = store {
        options = options
            .arg("--blob-store", format!("s3://{BUCKET}/{PREFIX}"))
            .arg("--blob-store-endpoint", moto.endpoint())
            .arg("--blob-store-region", "us-east-1")
            .arg("--blob-store-access-key-id", "testing")
            .arg("--blob-store-secret-access-key", "testing");
    }
    for (flag, value) in extra {
        options = options.arg(flag, value);
    }
    let s = options.start().await;
    let deadline = Instant::now() + STEP;
    while s.get("/healthz").await.status() != 200 {
        assert!(Instant::now() < deadline, "never connected to NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

fn header(r: &reqwest::Response, name: &str) -> String {
    common::header(r, name).to_owned()
}

/// Pushes `body` to `path`; the answer's JSON.
async fn push(s: &TestServer, path: &str, body: Vec<u8>) -> serde_json::Value {
    let r = s.post(path, body).await;
    assert_eq!(r.status(), 202, "push to {path}");
    r.json().await.expect("json")
}

/// Large bodies across two nodes: pops, leases, blobs, reference pushes
/// and header-only pops, and when their objects go.
async fn large_bodies_across_nodes(s3: bool) {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(store) = Store::start(s3).await else {
        return;
    };
    // One delivery, so that a lease that runs out dead-letters at once.
    let a = node(&nats, &store, &[("--max-deliveries", "1")]).await;
    let b = node(&nats, &store, &[("--max-deliveries", "1")]).await;
    let body = pattern(LARGE, 7);
    let small = b"small stays inline".to_vec();

    // Pushed on one node, popped byte for byte on the other; an inline
    // body stores no object.
    push(&a, "/qs/demo/q", small.clone()).await;
    store.expect_objects(&nats, "demo", 0, STEP).await;
    let v = push(&a, "/qs/demo/q", body.clone()).await;
    assert_eq!(v["size"], LARGE);
    store.expect_objects(&nats, "demo", 1, STEP).await;
    let r = b.get("/qs/demo/q").await;
    assert_eq!(r.bytes().await.unwrap(), small);
    let r = b.get("/qs/demo/q").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-size"), LARGE.to_string());
    assert_eq!(r.bytes().await.unwrap(), body, "the large body, whole");
    store.expect_objects(&nats, "demo", 0, STEP).await;

    // A leased pop keeps the object until its acknowledgement, which the
    // other node forwards.
    push(&a, "/qs/demo/q", body.clone()).await;
    let r = b.get("/qs/demo/q?lease=30").await;
    let receipt = header(&r, "x-queueserver-lease");
    assert_eq!(r.bytes().await.unwrap(), body);
    store.expect_objects(&nats, "demo", 1, STEP).await;
    let r = a.delete(&format!("/qs/demo/q/leases/{receipt}")).await;
    assert_eq!(r.status(), 204);
    store.expect_objects(&nats, "demo", 0, STEP).await;

    // A large blob shared by reference: the element holds the blob's
    // object, no copy is made, and the object goes with the last holder.
    let r = a.post("/tbs/demo/blobs", body.clone()).await;
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["id"].as_str().expect("a blob id").to_owned();
    let r = (b.put("/qs/demo/refs").await)
        .header("X-BlobStorage_Id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    store.expect_objects(&nats, "demo", 1, STEP).await;
    let r = a.get("/qs/demo/refs").await;
    assert_eq!(header(&r, "x-blobstorage_id"), id);
    assert_eq!(r.bytes().await.unwrap(), body);
    // Give a wrongly eager deletion time to happen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.expect_objects(&nats, "demo", 1, STEP).await;
    let r = b.get(&format!("/tbs/demo/blobs/{id}")).await;
    assert_eq!(r.bytes().await.unwrap(), body, "the blob, still whole");
    assert_eq!(
        a.delete(&format!("/tbs/demo/blobs/{id}")).await.status(),
        204
    );
    store.expect_objects(&nats, "demo", 0, STEP).await;

    // A header-only pop leaves the data readable by blob id, through the
    // same object, until that blob is read with ?delete=1.
    push(&a, "/qs/demo/q", body.clone()).await;
    let r = b.get("/qs/demo/q?header_only=1").await;
    assert_eq!(header(&r, "x-queueserver-size"), LARGE.to_string());
    let blob = header(&r, "x-blobstorage_id");
    assert!(r.bytes().await.unwrap().is_empty());
    store.expect_objects(&nats, "demo", 1, STEP).await;
    let r = a.get(&format!("/tbs/demo/blobs/{blob}?delete=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);
    store.expect_objects(&nats, "demo", 0, STEP).await;
    assert_eq!(
        b.get(&format!("/tbs/demo/blobs/{blob}")).await.status(),
        404
    );

    // A lease that runs out moves the element to its dead-letter queue,
    // object and all.
    push(&a, "/qs/demo/q", body.clone()).await;
    let r = b.get("/qs/demo/q?lease=1").await;
    assert_eq!(r.bytes().await.unwrap(), body);
    let deadline = Instant::now() + STEP;
    let r = loop {
        let r = a.get("/qs/demo/q.dead").await;
        if r.status() == 200 {
            break r;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.bytes().await.unwrap(), body, "the dead-lettered body");
    store.expect_objects(&nats, "demo", 0, STEP).await;

    // A batch with a large part, popped as a batch on the other node; a
    // purge lets go of what it removes.
    let parts = [
        wire::Part::new(small.clone()),
        wire::Part::new(body.clone()),
    ];
    let pushed = wire::push(&a, "demo", "batch", &parts).await;
    assert_eq!(pushed[1]["size"], LARGE);
    let popped = wire::pop(&b, "/qs/demo/batch?count=2").await;
    assert_eq!(popped.parts.len(), 2);
    assert_eq!(popped.parts[0].body, small);
    assert_eq!(popped.parts[1].body, body);
    store.expect_objects(&nats, "demo", 0, STEP).await;
    push(&a, "/qs/demo/q", body.clone()).await;
    store.expect_objects(&nats, "demo", 1, STEP).await;
    assert_eq!(b.delete("/qs/demo/q").await.status(), 200);
    store.expect_objects(&nats, "demo", 0, STEP).await;
}

#[tokio::test]
async fn large_bodies_in_the_jetstream_object_store() {
    large_bodies_across_nodes(false).await;
}

#[tokio::test]
async fn large_bodies_in_s3() {
    large_bodies_across_nodes(true).await;
}

/// A body past `--max-element-size` is refused and leaves no object; one
/// whose lifetime ends has its object swept.
async fn refused_and_expired_bodies_leave_no_object(s3: bool) {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(store) = Store::start(s3).await else {
        return;
    };
    let limit = (LARGE / 2).to_string();
    let s = node(
        &nats,
        &store,
        &[
            ("--max-element-size", &limit),
            ("--blob-sweep-interval", "1"),
            ("--nats-request-timeout", "1"),
        ],
    )
    .await;
    // Sent without a length, so refused only once past the limit, after
    // an object was begun.
    let chunks = pattern(LARGE, 3)
        .chunks(16 * 1024)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect::<Vec<_>>();
    let r = s
        .client
        .post(s.url("/qs/demo/q"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    store.expect_objects(&nats, "demo", 0, STEP).await;
    assert_eq!(s.get("/qs/demo/q").await.status(), 204);
    // An element that lives one second: its object is swept after it.
    let r = s
        .client
        .post(s.url("/qs/demo/q"))
        .header("X-QueueServer-Lifetime", "1")
        .body(pattern(INLINE * 2, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    store.expect_objects(&nats, "demo", 1, STEP).await;
    store
        .expect_objects(&nats, "demo", 0, Duration::from_secs(30))
        .await;
}

#[tokio::test]
async fn refused_and_expired_bodies_leave_no_object_in_the_object_store() {
    refused_and_expired_bodies_leave_no_object(false).await;
}

#[tokio::test]
async fn refused_and_expired_bodies_leave_no_object_in_s3() {
    refused_and_expired_bodies_leave_no_object(true).await;
}

/// Peak resident memory of process `pid`, in bytes (Linux), if known.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A 64 MiB body streamed in and out, checked by hash, without the node's
/// memory growing by the body's size.
async fn a_streamed_body_is_never_held_whole(s3: bool) {
    const SIZE: usize = 64 << 20;
    const CHUNK: usize = 1 << 20;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let Some(store) = Store::start(s3).await else {
        return;
    };
    let chunk = |i: usize| pattern(CHUNK, i as u8);
    let mut sent = Sha256::new();
    for i in 0..SIZE / CHUNK {
        sent.update(chunk(i));
    }
    // Started after the hashing: a streamed body cannot be sent again on
    // a new connection if the server closed the idle one meanwhile.
    let s = node(&nats, &store, &[]).await;
    let pid = s.pid().expect("the node runs");
    let before = peak_rss(pid);
    let body =
        futures_util::stream::iter(0..SIZE / CHUNK).map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    let r = s
        .client
        .post(s.url("/qs/big/q"))
        .body(reqwest::Body::wrap_stream(body))
        .timeout(STEP * 12)
        .send()
        .await;
    let r = r.expect("the push");
    assert_eq!(r.status(), 202);
    let r = s
        .client
        .get(s.url("/qs/big/q"))
        .timeout(STEP * 12)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Sha256::new();
    let mut len = 0;
    let mut chunks = r.bytes_stream();
    while let Some(c) = chunks.next().await {
        let c = c.expect("the body streams whole");
        len += c.len();
        got.update(&c);
    }
    assert_eq!(len, SIZE);
    assert_eq!(got.finalize(), sent.finalize(), "the same bytes");
    if let (Some(before), Some(after)) = (before, peak_rss(pid)) {
        let grew = after.saturating_sub(before);
        assert!(
            grew < (SIZE as u64) / 2,
            "the node's peak memory grew by {grew} bytes for a {SIZE}-byte body"
        );
    }
    store.expect_objects(&nats, "big", 0, STEP).await;
}

#[tokio::test]
async fn a_streamed_body_is_never_held_whole_in_the_object_store() {
    a_streamed_body_is_never_held_whole(false).await;
}

#[tokio::test]
async fn a_streamed_body_is_never_held_whole_in_s3() {
    a_streamed_body_is_never_held_whole(true).await;
}

/// S3's HTTP client brings a second TLS provider into the binary: the
/// NATS client's TLS must still find one (a `tls://` server that speaks
/// no TLS is a connection failure, logged and retried, not a panic).
#[tokio::test]
async fn a_tls_connection_to_nats_still_finds_its_tls_provider() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = common::options()
        .arg("--backend", format!("tls://127.0.0.1:{}", nats.port))
        .start()
        .await;
    let deadline = Instant::now() + STEP;
    loop {
        let log = s.log();
        assert!(
            !log.iter().any(|l| l.contains("panicked")),
            "the NATS client panicked: {log:?}"
        );
        if log.iter().any(|l| l.contains("cannot connect to NATS")) {
            break;
        }
        assert!(Instant::now() < deadline, "no connection attempt: {log:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/healthz").await.status(), 503);
}
