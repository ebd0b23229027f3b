//! blobq on NATS JetStream through the real binary (`--backend nats://`):
//! the queue API over HTTP, two blobq nodes sharing a queue, blobs by id,
//! and start-up while NATS is down (jobs are in tests/nats_jobs.rs).
//! Each test starts its own `nats-server` (tests/nats), and is skipped
//! without one unless `BLOBQ_REQUIRE_NATS=1`.

mod common;
mod nats;

use std::time::{Duration, Instant};

use common::{TestServer, STEP};
use nats::NatsServer;

/// A blobq node on `nats`, leases handed out again within 2 s of a node's loss.
async fn node(nats_url: &str) -> TestServer {
    common::options()
        .arg("--backend", nats_url)
        .arg("--nats-ack-wait", 2)
        .start()
        .await
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Pushes `body` with a content type and a custom pair; the element id.
async fn push(s: &TestServer, path: &str, body: &'static str) -> String {
    let r = s
        .client
        .post(s.url(path))
        .header("Content-Type", "text/plain")
        .header("X-Custom-Data", "k=v w")
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202, "push to {path}");
    let v: serde_json::Value = r.json().await.expect("json");
    v["id"].as_str().expect("an id").to_owned()
}

/// Polls `/healthz` until it answers `want`, failing after [`STEP`].
async fn wait_health(s: &TestServer, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + STEP;
    loop {
        let r = s.get("/healthz").await;
        if r.status() == want {
            return r.json().await.expect("json");
        }
        assert!(Instant::now() < deadline, "/healthz never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn push_pop_lease_and_ack_over_http() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = node(&nats.url()).await;
    wait_health(&s, 200).await;
    let first = push(&s, "/qs/demo/jobs", "one").await;
    push(&s, "/qs/demo/jobs", "two").await;
    let r = s.get("/qs/demo/jobs").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-id").as_deref(), Some(&*first));
    assert_eq!(header(&r, "content-type").as_deref(), Some("text/plain"));
    assert_eq!(header(&r, "x-custom-data").as_deref(), Some("k=v w"));
    assert_eq!(r.text().await.unwrap(), "one");
    // A lease: invisible, then acknowledged.
    let r = s.get("/qs/demo/jobs?lease=30").await;
    assert_eq!(r.status(), 200);
    let receipt = header(&r, "x-queueserver-lease").expect("a receipt");
    assert_eq!(header(&r, "x-queueserver-deliveries").as_deref(), Some("1"));
    assert_eq!(r.text().await.unwrap(), "two");
    assert_eq!(s.get("/qs/demo/jobs").await.status(), 204, "leased");
    let stats = s.json("/qs/demo/jobs/stats", 200).await;
    assert_eq!(
        (stats["elements"].as_u64(), stats["leased"].as_u64()),
        (Some(0), Some(1))
    );
    let ack = format!("/qs/demo/jobs/leases/{receipt}");
    assert_eq!(s.delete(&ack).await.status(), 204);
    assert_eq!(s.delete(&ack).await.status(), 404, "settled once");
    let stats = s.json("/qs/demo/jobs/stats", 200).await;
    assert_eq!(
        (stats["elements"].as_u64(), stats["leased"].as_u64()),
        (Some(0), Some(0))
    );
    // A blocking pop woken by a push.
    let waiter = {
        let (client, url) = (s.client.clone(), s.url("/qs/demo/jobs?timeout=10"));
        tokio::spawn(async move { client.get(url).send().await.expect("GET") })
    };
    s.wait_for_waiters("demo", "jobs", 1).await;
    push(&s, "/qs/demo/jobs", "three").await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "three");
}

#[tokio::test]
async fn two_nodes_share_a_queue() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let (a, b) = (node(&nats.url()).await, node(&nats.url()).await);
    wait_health(&a, 200).await;
    wait_health(&b, 200).await;
    let id = push(&a, "/qs/shared/q", "from a").await;
    let r = b.get("/qs/shared/q").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-id"), Some(id));
    assert_eq!(r.text().await.unwrap(), "from a");
    assert_eq!(a.get("/qs/shared/q").await.status(), 204, "popped once");
    // A consumer waiting on one node gets what is pushed on the other.
    let waiter = {
        let (client, url) = (b.client.clone(), b.url("/qs/shared/q?timeout=10"));
        tokio::spawn(async move { client.get(url).send().await.expect("GET") })
    };
    a.wait_for_waiters("shared", "q", 1).await;
    push(&a, "/qs/shared/q", "across").await;
    let r = waiter.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "across");
    // A batch pushed through one node, popped through the other.
    let r = a
        .client
        .post(a.url("/qs/shared/batch"))
        .header("Content-Type", "multipart/mixed; boundary=b")
        .body("--b\r\n\r\nfirst\r\n--b\r\n\r\nsecond\r\n--b--\r\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = b.get("/qs/shared/batch?count=5").await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let (first, second) = (body.find("first"), body.find("second"));
    assert!(first.is_some() && first < second, "{body}");
    // A lease granted by one node is settled through the other.
    push(&a, "/qs/shared/q", "settled on b").await;
    let r = a.get("/qs/shared/q?lease=60").await;
    let receipt = header(&r, "x-queueserver-lease").expect("a receipt");
    let leases = format!("/qs/shared/q/leases/{receipt}");
    let r = b.post(&format!("{leases}/extend?lease=120"), "").await;
    assert_eq!(r.status(), 200, "extended through b");
    assert_eq!(b.post(&format!("{leases}/release"), "").await.status(), 204);
    let r = b.get("/qs/shared/q?lease=60").await;
    assert_eq!(header(&r, "x-queueserver-deliveries").as_deref(), Some("2"));
    let receipt = header(&r, "x-queueserver-lease").expect("a receipt");
    let leases = format!("/qs/shared/q/leases/{receipt}");
    assert_eq!(
        a.delete(&leases).await.status(),
        204,
        "acknowledged through a"
    );
    assert_eq!(b.delete(&leases).await.status(), 404, "settled once");
    // An element leased through a node that dies comes back after the
    // ack wait, through the other; its lease ended with the node.
    push(&a, "/qs/shared/q", "leased").await;
    let r = a.get("/qs/shared/q?lease=60").await;
    assert_eq!(r.status(), 200);
    let receipt = header(&r, "x-queueserver-lease").expect("a receipt");
    drop(a);
    let gone = b.delete(&format!("/qs/shared/q/leases/{receipt}")).await;
    assert_eq!(gone.status(), 404, "the lease ended with its node");
    let r = b.get("/qs/shared/q?timeout=15").await;
    assert_eq!(r.status(), 200, "back after the dead node's ack wait");
    assert_eq!(r.text().await.unwrap(), "leased");
}

#[tokio::test]
async fn nats_down_at_start_is_503_until_it_comes_up() {
    if !nats::available() {
        return;
    }
    let port = nats::free_port();
    let s = node(&format!("nats://127.0.0.1:{port}")).await;
    let health = wait_health(&s, 503).await;
    let reason = health["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("NATS"), "{health}");
    let r = s.post("/qs/demo/q", "x").await;
    assert_eq!(r.status(), 503);
    assert!(header(&r, "retry-after").is_some());
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:blobq:problem:backend-unavailable");
    let _nats = NatsServer::start_on(port);
    wait_health(&s, 200).await;
    push(&s, "/qs/demo/q", "late").await;
    assert_eq!(s.get("/qs/demo/q").await.text().await.unwrap(), "late");
}

/// Blobs by id through `/tbs`, and the data a header-only pop leaves
/// readable there, on any node.
#[tokio::test]
async fn blobs_by_id_and_header_only_pops() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let (a, b) = (node(&nats.url()).await, node(&nats.url()).await);
    wait_health(&a, 200).await;
    wait_health(&b, 200).await;
    let r = a
        .client
        .post(a.url("/tbs/demo/blobs"))
        .header("Content-Type", "text/plain")
        .body("stored")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let blob = format!("/tbs/demo/blobs/{}", v["id"].as_str().expect("an id"));
    let r = b.get(&blob).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("text/plain"));
    assert_eq!(r.text().await.unwrap(), "stored");
    assert_eq!(b.delete(&blob).await.status(), 204);
    assert_eq!(a.get(&blob).await.status(), 404);
    assert_eq!(a.delete(&blob).await.status(), 404);
    assert_eq!(a.get("/tbs/demo/blobs/not-an-id").await.status(), 404);
    // A header-only pop: headers and size, the data readable by blob id.
    push(&a, "/qs/demo/q", "kept aside").await;
    let r = a.get("/qs/demo/q?header_only=1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-size").as_deref(), Some("10"));
    let blob_id = header(&r, "x-blobstorage_id").expect("a blob id");
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    let r = b.get(&format!("/tbs/demo/blobs/{blob_id}?delete=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "kept aside");
    assert_eq!(
        a.get(&format!("/tbs/demo/blobs/{blob_id}")).await.status(),
        404
    );
    // A reference push copies a stored blob into its element.
    let r = a.post("/tbs/demo/blobs", "shared").await;
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["id"].as_str().expect("an id").to_owned();
    let r = (a.put("/qs/demo/refs").await)
        .header("X-BlobStorage_Id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = b.get("/qs/demo/refs").await;
    assert_eq!(header(&r, "x-blobstorage_id"), Some(id));
    assert_eq!(r.text().await.unwrap(), "shared");
    let r = (a.put("/qs/demo/refs").await).send().await.unwrap();
    assert_eq!(r.status(), 202, "a header-only element");
    let r = b.get("/qs/demo/refs").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-queueserver-size").as_deref(), Some("0"));
}
