//! Leases: at-least-once consumption. A pop under `?lease=S` hides the element
//! until it is acknowledged, released, extended or its lease runs out; a lease
//! that runs out hands the element back at the head of its queue, and after
//! `--max-deliveries` deliveries into `{queue}.dead`.

mod common;
#[path = "leases/concurrent.rs"]
mod concurrent;

use std::time::{Duration, Instant};

use common::{TestServer, STEP};

/// What a pop answered, with the lease headers when there are any.
#[derive(Debug)]
struct Popped {
    status: u16,
    id: Option<String>,
    receipt: Option<String>,
    deliveries: Option<u64>,
    blob_id: Option<String>,
    content_length: Option<u64>,
    body: Vec<u8>,
}

impl Popped {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
    fn receipt(&self) -> &str {
        self.receipt.as_deref().expect("X-QueueServer-Lease")
    }
    fn id(&self) -> &str {
        self.id.as_deref().expect("X-QueueServer-Id")
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

async fn read_pop(r: reqwest::Response) -> Popped {
    let status = r.status().as_u16();
    let id = header(&r, "x-queueserver-id");
    let receipt = header(&r, "x-queueserver-lease");
    let deliveries = header(&r, "x-queueserver-deliveries").map(|d| d.parse().expect("number"));
    let blob_id = header(&r, "x-blobstorage_id");
    let content_length = header(&r, "content-length").map(|d| d.parse().expect("number"));
    let body = r.bytes().await.expect("body").to_vec();
    Popped {
        status,
        id,
        receipt,
        deliveries,
        blob_id,
        content_length,
        body,
    }
}

async fn pop(server: &TestServer, path: &str) -> Popped {
    read_pop(server.get(path).await).await
}

/// A pop under a lease that must deliver something.
async fn lease(server: &TestServer, path: &str) -> Popped {
    let p = pop(server, path).await;
    assert_eq!(p.status, 200, "GET {path}: {p:?}");
    assert!(p.receipt.is_some(), "a leased pop names its lease: {p:?}");
    assert!(
        p.deliveries.is_some(),
        "a leased pop counts deliveries: {p:?}"
    );
    p
}

/// Pushes `body` and returns the element id.
async fn push(server: &TestServer, path: &str, body: impl Into<reqwest::Body>) -> String {
    let r = server.post(path, body).await;
    assert_eq!(r.status(), 202, "POST {path}");
    let v: serde_json::Value = r.json().await.expect("push answer");
    v["id"].as_str().expect("id").to_owned()
}

async fn ack(server: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    server
        .delete(&format!("/qs/{ns}/{q}/leases/{receipt}"))
        .await
}

async fn release(server: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    server
        .post(&format!("/qs/{ns}/{q}/leases/{receipt}/release"), "")
        .await
}

async fn extend(
    server: &TestServer,
    ns: &str,
    q: &str,
    receipt: &str,
    query: &str,
) -> reqwest::Response {
    server
        .post(&format!("/qs/{ns}/{q}/leases/{receipt}/extend{query}"), "")
        .await
}

/// `(elements, leased)` of queue `ns/q`.
async fn counts(server: &TestServer, ns: &str, q: &str) -> (u64, u64) {
    let v = server.json(&format!("/qs/{ns}/{q}/stats"), 200).await;
    (
        v["elements"].as_u64().expect("elements"),
        v["leased"].as_u64().expect("leased"),
    )
}

/// Waits until no element of `ns/q` is out under a lease.
async fn wait_until_no_lease(server: &TestServer, ns: &str, q: &str) {
    server
        .wait_for_json(&format!("/qs/{ns}/{q}/stats"), "no lease left", |v| {
            v["leased"] == 0
        })
        .await;
}

fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn a_leased_element_is_hidden_until_acknowledged_and_then_gone_for_good() {
    let server = common::start().await;
    let id = push(&server, "/qs/ns/q", "job").await;

    let got = lease(&server, "/qs/ns/q?lease=0.5").await;
    assert_eq!((got.id(), got.text()), (id.as_str(), "job"));
    assert!(
        looks_like_uuid(got.receipt()),
        "receipt is a UUID: {}",
        got.receipt()
    );
    assert_eq!(got.deliveries, Some(1), "first delivery");

    let other = pop(&server, "/qs/ns/q").await;
    assert_eq!(other.status, 204, "invisible while leased: {other:?}");
    let other = pop(&server, "/qs/ns/q?lease=5").await;
    assert_eq!(other.status, 204, "invisible to leased pops too: {other:?}");
    assert_eq!(counts(&server, "ns", "q").await, (0, 1));
    let totals = server.json("/qs", 200).await;
    assert_eq!(totals["leased"], 1, "server totals count it: {totals}");
    assert_eq!(totals["elements"], 0, "{totals}");

    let r = ack(&server, "ns", "q", got.receipt()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(counts(&server, "ns", "q").await, (0, 0));
    assert_eq!(server.json("/qs", 200).await["leased"], 0);

    let again = ack(&server, "ns", "q", got.receipt()).await;
    let p = common::problem(again, 404).await;
    assert!(
        p["detail"].as_str().unwrap().contains(got.receipt()),
        "the detail names the receipt: {p}"
    );

    // Past the lease's length, an acknowledged element does not come back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pop(&server, "/qs/ns/q").await.status, 204);
    assert_eq!(counts(&server, "ns", "q").await, (0, 0));
}

#[tokio::test]
async fn release_hands_the_element_back_at_the_head_at_once() {
    let server = common::start().await;
    let a = push(&server, "/qs/ns/q", "a").await;
    let b = push(&server, "/qs/ns/q", "b").await;

    let first = lease(&server, "/qs/ns/q?lease=30").await;
    assert_eq!((first.id(), first.deliveries), (a.as_str(), Some(1)));
    assert_eq!(counts(&server, "ns", "q").await, (1, 1));
    let r = release(&server, "ns", "q", first.receipt()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(counts(&server, "ns", "q").await, (2, 0), "back at once");
    common::problem(release(&server, "ns", "q", first.receipt()).await, 404).await;
    common::problem(ack(&server, "ns", "q", first.receipt()).await, 404).await;

    let second = lease(&server, "/qs/ns/q?lease=30").await;
    assert_eq!(
        (second.id(), second.text(), second.deliveries),
        (a.as_str(), "a", Some(2)),
        "released to the head, its deliveries counted"
    );
    assert_ne!(
        second.receipt(),
        first.receipt(),
        "a new lease, a new receipt"
    );
    assert_eq!(
        release(&server, "ns", "q", second.receipt()).await.status(),
        204
    );

    let p = pop(&server, "/qs/ns/q").await;
    assert_eq!((p.status, p.id(), p.text()), (200, a.as_str(), "a"));
    assert!(p.receipt.is_none(), "a plain pop has no lease: {p:?}");
    let p = pop(&server, "/qs/ns/q").await;
    assert_eq!((p.status, p.id(), p.text()), (200, b.as_str(), "b"));
    assert_eq!(pop(&server, "/qs/ns/q").await.status, 204);
}

#[tokio::test]
async fn a_lease_that_runs_out_returns_the_element_to_the_head() {
    let server = common::start().await;
    let a = push(&server, "/qs/ns/q", "a").await;
    push(&server, "/qs/ns/q", "b").await;
    let c = push(&server, "/qs/ns/q", "c").await;

    let first = lease(&server, "/qs/ns/q?lease=0.5").await;
    assert_eq!(first.id(), a);
    let b_pop = pop(&server, "/qs/ns/q").await;
    assert_eq!(
        (b_pop.status, b_pop.text()),
        (200, "b"),
        "a is out on lease"
    );

    let started = Instant::now();
    wait_until_no_lease(&server, "ns", "q").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the lease ran out on time ({:?})",
        started.elapsed()
    );
    assert_eq!(counts(&server, "ns", "q").await, (2, 0), "a is back");

    let again = lease(&server, "/qs/ns/q?lease=30").await;
    assert_eq!(
        (again.id(), again.text(), again.deliveries),
        (a.as_str(), "a", Some(2)),
        "back at the head, before c, delivered a second time"
    );
    common::problem(ack(&server, "ns", "q", first.receipt()).await, 404).await;
    assert_eq!(ack(&server, "ns", "q", again.receipt()).await.status(), 204);
    let last = pop(&server, "/qs/ns/q").await;
    assert_eq!((last.status, last.id()), (200, c.as_str()));
    assert_eq!(pop(&server, "/qs/ns/q").await.status, 204);
}

#[tokio::test]
async fn an_element_delivered_max_deliveries_times_moves_to_the_dead_letter_queue() {
    let server = common::options().arg("--max-deliveries", 2).start().await;
    let id = push(&server, "/qs/ns/jobs", "poison").await;
    for round in 1..=2 {
        let got = lease(&server, "/qs/ns/jobs?lease=0.3").await;
        assert_eq!((got.id(), got.deliveries), (id.as_str(), Some(round)));
        wait_until_no_lease(&server, "ns", "jobs").await;
    }
    assert_eq!(
        counts(&server, "ns", "jobs").await,
        (0, 0),
        "not back in jobs"
    );
    assert_eq!(pop(&server, "/qs/ns/jobs").await.status, 204);
    assert_eq!(counts(&server, "ns", "jobs.dead").await, (1, 0));

    // A release on the last allowed delivery dead-letters as well, at the tail.
    let released = push(&server, "/qs/ns/jobs", "released").await;
    for round in 1..=2 {
        let got = lease(&server, "/qs/ns/jobs?lease=30").await;
        assert_eq!((got.id(), got.deliveries), (released.as_str(), Some(round)));
        assert_eq!(
            release(&server, "ns", "jobs", got.receipt()).await.status(),
            204
        );
    }
    assert_eq!(counts(&server, "ns", "jobs").await, (0, 0));
    assert_eq!(counts(&server, "ns", "jobs.dead").await, (2, 0));

    let dead = pop(&server, "/qs/ns/jobs.dead").await;
    assert_eq!(
        (dead.status, dead.id(), dead.text()),
        (200, id.as_str(), "poison"),
        "the same element, in the dead-letter queue"
    );
    let dead = pop(&server, "/qs/ns/jobs.dead").await;
    assert_eq!(
        (dead.status, dead.id(), dead.text()),
        (200, released.as_str(), "released")
    );
    assert_eq!(pop(&server, "/qs/ns/jobs.dead").await.status, 204);
}

#[tokio::test]
async fn extend_keeps_a_lease_running_and_fails_once_it_ran_out() {
    let server = common::start().await;
    let id = push(&server, "/qs/ns/q", "slow job").await;
    let got = lease(&server, "/qs/ns/q?lease=0.6").await;

    let r = extend(&server, "ns", "q", got.receipt(), "?lease=3").await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("extend answer");
    assert_eq!(v["receipt"], got.receipt(), "{v}");
    assert_eq!(v["lease"], 3, "seconds now left: {v}");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        counts(&server, "ns", "q").await,
        (0, 1),
        "still leased past the first length"
    );
    assert_eq!(pop(&server, "/qs/ns/q").await.status, 204);
    assert_eq!(ack(&server, "ns", "q", got.receipt()).await.status(), 204);
    common::problem(
        extend(&server, "ns", "q", got.receipt(), "?lease=3").await,
        404,
    )
    .await;

    // Bad extension requests are refused without touching the lease.
    let id2 = push(&server, "/qs/ns/q", "short").await;
    let short = lease(&server, "/qs/ns/q?lease=0.3").await;
    assert_eq!(short.id(), id2);
    for bad in [
        "",
        "?lease=",
        "?lease=0",
        "?lease=abc",
        "?lease=-1",
        "?other=1",
    ] {
        let r = extend(&server, "ns", "q", short.receipt(), bad).await;
        common::problem(r, 400).await;
    }

    // Past its deadline (whether or not the sweeper ran) it cannot be extended
    // and the element is back in the queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = common::problem(
        extend(&server, "ns", "q", short.receipt(), "?lease=3").await,
        404,
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains(short.receipt()),
        "{p}"
    );
    let back = pop(&server, "/qs/ns/q").await;
    assert_eq!((back.status, back.id()), (200, id2.as_str()));
    assert_ne!(id, id2);
}

#[tokio::test]
async fn a_lease_that_runs_out_wakes_a_waiting_consumer() {
    let server = common::start().await;
    let id = push(&server, "/qs/ns/q", "abandoned").await;
    let crashed = lease(&server, "/qs/ns/q?lease=0.5").await;
    assert_eq!(crashed.deliveries, Some(1));

    let waiter = {
        let (client, url) = (
            server.client.clone(),
            server.url("/qs/ns/q?timeout=5&lease=5"),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get(url).send().await.expect("pop");
            (read_pop(r).await, started.elapsed())
        })
    };
    server.wait_for_waiters("ns", "q", 1).await;
    let (got, took) = tokio::time::timeout(STEP, waiter)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        (got.id(), got.text(), got.deliveries),
        (id.as_str(), "abandoned", Some(2))
    );
    assert!(
        took < Duration::from_secs(4),
        "woken by the lease running out, not the timeout ({took:?})"
    );
    assert_ne!(got.receipt(), crashed.receipt());
    assert_eq!(counts(&server, "ns", "q").await, (0, 1));
    common::problem(ack(&server, "ns", "q", crashed.receipt()).await, 404).await;
    assert_eq!(ack(&server, "ns", "q", got.receipt()).await.status(), 204);
    assert_eq!(counts(&server, "ns", "q").await, (0, 0));
}

#[tokio::test]
async fn unknown_receipts_and_bad_lease_requests_are_refused() {
    let server = common::options().arg("--max-lease", 60).start().await;
    push(&server, "/qs/ns/q", "x").await;
    push(&server, "/qs/ns/other", "y").await;
    let got = lease(&server, "/qs/ns/q?lease=30").await;
    let receipt = got.receipt().to_owned();

    let unknown = "00000000-0000-4000-8000-000000000000";
    for r in [unknown, "not-a-receipt", "12345"] {
        common::problem(ack(&server, "ns", "q", r).await, 404).await;
        common::problem(release(&server, "ns", "q", r).await, 404).await;
        common::problem(extend(&server, "ns", "q", r, "?lease=1").await, 404).await;
    }
    // Another queue or namespace does not know this receipt.
    common::problem(ack(&server, "ns", "other", &receipt).await, 404).await;
    common::problem(release(&server, "ns", "other", &receipt).await, 404).await;
    common::problem(
        extend(&server, "ns", "other", &receipt, "?lease=1").await,
        404,
    )
    .await;
    common::problem(ack(&server, "elsewhere", "q", &receipt).await, 404).await;
    assert_eq!(counts(&server, "ns", "other").await, (1, 0), "untouched");
    assert_eq!(counts(&server, "ns", "q").await, (0, 1), "still leased");
    assert_eq!(ack(&server, "ns", "q", &receipt).await.status(), 204);

    push(&server, "/qs/ns/q", "z").await;
    for bad in [
        "lease=0",
        "lease=-1",
        "lease=abc",
        "lease=",
        "lease=61",
        "lease=0.0001",
        "lease=1&lease=2",
    ] {
        let r = server.get(&format!("/qs/ns/q?{bad}")).await;
        let p = common::problem(r, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("lease"),
            "{bad}: {p}"
        );
    }
    assert_eq!(
        counts(&server, "ns", "q").await,
        (1, 0),
        "nothing was leased"
    );
    let ok = lease(&server, "/qs/ns/q?lease=60").await;
    assert_eq!(ok.text(), "z", "the maximum itself is allowed");

    let long = "x".repeat(59);
    push(&server, &format!("/qs/ns/{long}"), "long").await;
    let r = server.get(&format!("/qs/ns/{long}?lease=5")).await;
    let p = common::problem(r, 400).await;
    assert!(
        p["detail"].as_str().unwrap().contains(".dead"),
        "the detail explains the dead-letter name: {p}"
    );
    assert_eq!(counts(&server, "ns", &long).await, (1, 0), "not taken");
    let fits = "x".repeat(58);
    push(&server, &format!("/qs/ns/{fits}"), "fits").await;
    let got = lease(&server, &format!("/qs/ns/{fits}?lease=5")).await;
    assert_eq!(got.text(), "fits");
}

#[tokio::test]
async fn a_leased_spilled_element_keeps_its_file_until_acknowledged() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let body = common::pattern(5000, 3);
    push(&server, "/qs/ns/big", body.clone()).await;
    assert_eq!(server.spill_files().len(), 1, "spilled");

    let got = lease(&server, "/qs/ns/big?lease=30").await;
    assert!(got.body == body, "the bytes come back whole");
    assert_eq!(server.spill_files().len(), 1, "kept while leased");
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 5000);

    // Released and leased again, the same bytes are served from the file.
    assert_eq!(
        release(&server, "ns", "big", got.receipt()).await.status(),
        204
    );
    let again = lease(&server, "/qs/ns/big?lease=30").await;
    assert!(again.body == body, "served again from the same file");
    assert_eq!(again.deliveries, Some(2));
    assert_eq!(server.spill_files().len(), 1);

    assert_eq!(
        ack(&server, "ns", "big", again.receipt()).await.status(),
        204
    );
    assert!(
        server.spill_files().is_empty(),
        "file removed once acknowledged: {:?}",
        server.spill_files()
    );
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}

#[tokio::test]
async fn a_header_only_lease_leaves_the_blob_readable() {
    let server = common::start().await;
    let id = push(&server, "/qs/ns/q", "payload").await;
    let got = lease(&server, "/qs/ns/q?lease=30&header_only=1").await;
    assert_eq!(got.id(), id);
    assert!(got.body.is_empty(), "no body: {got:?}");
    assert_eq!(got.content_length, Some(0));
    let blob = got.blob_id.clone().expect("X-BlobStorage_Id");

    let r = server.get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "payload");

    assert_eq!(ack(&server, "ns", "q", got.receipt()).await.status(), 204);
    let r = server.get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200, "the exposed blob outlives the ack");
    assert_eq!(r.text().await.unwrap(), "payload");
}
