//! The requests of leases (pop under a lease, acknowledge, release,
//! extend) and the checks of a queue's counts around them, for the lease
//! cases of the suite.

use std::time::{Duration, Instant};

use super::Target;
use crate::common::TestServer;

/// What a pop answered, with the lease headers when there are any.
#[derive(Debug)]
pub struct Popped {
    pub status: u16,
    pub id: Option<String>,
    pub receipt: Option<String>,
    pub deliveries: Option<u64>,
    pub blob_id: Option<String>,
    pub content_length: Option<u64>,
    pub body: Vec<u8>,
}

impl Popped {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
    pub fn receipt(&self) -> &str {
        self.receipt.as_deref().expect("X-QueueServer-Lease")
    }
    pub fn id(&self) -> &str {
        self.id.as_deref().expect("X-QueueServer-Id")
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

pub async fn read_pop(r: reqwest::Response) -> Popped {
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

pub async fn pop(node: &TestServer, path: &str) -> Popped {
    read_pop(node.get(path).await).await
}

/// A pop under a lease that must deliver something.
pub async fn lease(node: &TestServer, path: &str) -> Popped {
    let p = pop(node, path).await;
    assert_eq!(p.status, 200, "GET {path}: {p:?}");
    assert!(p.receipt.is_some(), "a leased pop names its lease: {p:?}");
    assert!(
        p.deliveries.is_some(),
        "a leased pop counts deliveries: {p:?}"
    );
    p
}

/// Pushes `body` and returns the element id.
pub async fn push(node: &TestServer, path: &str, body: impl Into<reqwest::Body>) -> String {
    let r = node.post(path, body).await;
    assert_eq!(r.status(), 202, "POST {path}");
    let v: serde_json::Value = r.json().await.expect("push answer");
    v["id"].as_str().expect("id").to_owned()
}

pub async fn ack(node: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    node.delete(&format!("/qs/{ns}/{q}/leases/{receipt}")).await
}

pub async fn release(node: &TestServer, ns: &str, q: &str, receipt: &str) -> reqwest::Response {
    node.post(&format!("/qs/{ns}/{q}/leases/{receipt}/release"), "")
        .await
}

pub async fn extend(
    node: &TestServer,
    ns: &str,
    q: &str,
    receipt: &str,
    query: &str,
) -> reqwest::Response {
    node.post(&format!("/qs/{ns}/{q}/leases/{receipt}/extend{query}"), "")
        .await
}

/// Checks that `(elements, leased)` of queue `ns/q` through `node` are
/// `want` (once they have settled: [`Target::settled`]).
pub async fn expect_counts(
    t: &Target,
    node: &TestServer,
    ns: &str,
    q: &str,
    want: (u64, u64),
    what: &str,
) {
    let path = format!("/qs/{ns}/{q}/stats");
    t.settled(node, &path, what, |v| {
        (v["elements"].as_u64(), v["leased"].as_u64()) == (Some(want.0), Some(want.1))
    })
    .await;
}

/// The counts of `ns/q` once `handed_back` elements were handed back by a
/// release or a lease that ran out, `ready` and `leased` besides: on NATS
/// a handed-back element counts as leased until it is delivered again.
pub async fn counts_after_hand_back(
    t: &Target,
    ns: &str,
    q: &str,
    ready: u64,
    leased: u64,
    back: u64,
) {
    let want = if t.hands_back_at_once() {
        (ready + back, leased)
    } else {
        (ready, leased + back)
    };
    expect_counts(t, t.a(), ns, q, want, "the counts").await;
}

/// Waits until the lease of `lease_seconds` granted at `granted` on
/// `ns/q` has run out: until no lease is counted where an element handed
/// back is ready at once, else past its end.
pub async fn lease_ran_out(t: &Target, ns: &str, q: &str, granted: Instant, lease_seconds: f64) {
    if t.hands_back_at_once() {
        t.a()
            .wait_for_json(&format!("/qs/{ns}/{q}/stats"), "no lease left", |v| {
                v["leased"] == 0
            })
            .await;
    } else {
        let end = granted + Duration::from_secs_f64(lease_seconds) + Duration::from_millis(500);
        tokio::time::sleep_until(end.into()).await;
    }
}

pub fn looks_like_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}
