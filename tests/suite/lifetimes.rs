//! Element lifetimes: an expired element is never served, whether or not
//! it has been swept away yet, and the blob a header-only pop exposed
//! lives as long as its element had left.

use std::time::{Duration, Instant};

use super::{Case, Target};
use crate::common::{self, header};

pub fn cases() -> Vec<Case> {
    vec![
        case!(an_expired_element_is_never_served),
        case!(a_blob_exposed_by_a_header_only_pop_lives_as_long_as_its_element_had_left),
    ]
}

/// Pushes `body` with a lifetime of `seconds` through `node`.
async fn push(node: &common::TestServer, path: &str, body: &str, seconds: u64) {
    let r = node
        .client
        .post(node.url(path))
        .header("X-QueueServer-Lifetime", seconds.to_string())
        .body(body.to_owned())
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202, "push to {path}");
}

pub async fn an_expired_element_is_never_served(t: Target) {
    push(t.a(), "/qs/ns/q", "short", 1).await;
    push(t.b(), "/qs/ns/q", "long", 60).await;
    push(t.a(), "/qs/ns/leased", "short", 1).await;
    // Both lifetimes started before the last push was answered.
    let pushed = Instant::now();
    let r = t.b().get("/qs/ns/leased?lease=30").await;
    assert_eq!(r.status(), 200, "taken under a lease within its lifetime");
    let receipt = header(&r, "x-queueserver-lease").to_owned();
    tokio::time::sleep_until((pushed + Duration::from_millis(1300)).into()).await;

    // Popped at once, before anything need have swept it away.
    let r = t.b().get("/qs/ns/q").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "long",
        "the expired head is skipped"
    );
    for node in t.nodes() {
        assert_eq!(node.get("/qs/ns/q").await.status(), 204);
    }
    t.settled(t.a(), "/qs/ns/q/stats", "the expired element gone", |v| {
        v["elements"] == 0
    })
    .await;
    if t.counts_expirations() {
        t.a()
            .wait_for_json("/qs/ns/q/stats", "the expiry counted", |v| {
                v["expired"] == 1
            })
            .await;
    }
    // Settling the lease of an element past its lifetime hands nothing back.
    let release = t
        .a()
        .post(&format!("/qs/ns/leased/leases/{receipt}/release"), "")
        .await;
    assert!(
        [204, 404].contains(&release.status().as_u16()),
        "release: {}",
        release.status()
    );
    for node in t.nodes() {
        assert_eq!(
            node.get("/qs/ns/leased").await.status(),
            204,
            "never served again"
        );
    }
}

pub async fn a_blob_exposed_by_a_header_only_pop_lives_as_long_as_its_element_had_left(t: Target) {
    let before = Instant::now();
    push(t.a(), "/qs/ns/q", "exposed", 2).await;
    let pushed = Instant::now();
    let r = t.b().get("/qs/ns/q?header_only=1").await;
    assert_eq!(r.status(), 200);
    let blob = header(&r, "x-blobstorage_id").to_owned();
    let path = format!("/tbs/ns/blobs/{blob}");
    let r = t.a().get(&path).await;
    assert_eq!(
        r.status(),
        200,
        "readable while the element's lifetime lasts"
    );
    let left: u64 = header(&r, "x-queueserver-lifetime").parse().unwrap();
    assert!((1..=2).contains(&left), "{left}");
    assert_eq!(r.text().await.unwrap(), "exposed");

    // Gone once that lifetime has passed (with room for sweeping).
    let deadline = pushed + Duration::from_millis(3500);
    for i in 0.. {
        let status = t.node(i).get(&path).await.status();
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after 3.5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        before.elapsed() >= Duration::from_millis(1900),
        "not before its lifetime"
    );
    for node in t.nodes() {
        common::problem(node.get(&path).await, 404).await;
    }
}
