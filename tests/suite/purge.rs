//! `DELETE /qs/{ns}/{queue}` and namespace quotas: a purge removes a
//! queue's ready elements and leaves leased ones with their consumers; an
//! element quota refuses with `429` and `Retry-After`, storing nothing.

use super::{Case, Target};
use crate::common::{self, header, problem, TestServer};

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_purge_empties_the_queue_and_leaves_leases_alone, "--spill-threshold" => "1000"),
        case!(the_element_quota_counts_ready_and_leased_elements_and_frees_up_on_ack,
            "--namespace-max-elements" => "3", "--quota-retry-after" => "7"),
    ]
}

pub async fn a_purge_empties_the_queue_and_leaves_leases_alone(t: Target) {
    let held = t.a().post("/qs/ns/q", "leased").await;
    assert_eq!(held.status(), 202);
    let leased = t.b().get("/qs/ns/q?lease=60").await;
    assert_eq!(leased.status(), 200);
    let receipt = header(&leased, "x-queueserver-lease").to_owned();
    for body in [common::pattern(5000, 1), b"small".to_vec()] {
        assert_eq!(t.a().post("/qs/ns/q", body).await.status(), 202);
    }
    let shared = t.b().post("/qs/ns/q", "shared").await;
    let blob = header(&shared, "x-blobstorage_id").to_owned();
    let reference = t
        .a()
        .put("/qs/ns/other")
        .await
        .header("X-BlobStorage_Id", &blob)
        .send()
        .await
        .unwrap();
    if t.shares_blobs() {
        // A blob shared with another queue stays for it.
        assert_eq!(reference.status(), 202);
        assert_eq!(t.spill_files().len(), 1, "the large body spilled");
    } else {
        // The blob of a queued element is not readable by id.
        problem(reference, 404).await;
    }

    let answer = t.b().delete("/qs/ns/q").await;
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"namespace": "ns", "queue": "q", "purged": 3})
    );
    assert!(t.spill_files().is_empty(), "the spilled body is gone");
    for node in t.nodes() {
        assert_eq!(node.get("/qs/ns/q").await.status(), 204);
    }
    t.settled(t.a(), "/qs/ns/q/stats", "none ready, one leased", |v| {
        (v["elements"].as_u64(), v["leased"].as_u64()) == (Some(0), Some(1))
    })
    .await;
    if t.shares_blobs() {
        let other = t.a().get("/qs/ns/other").await;
        assert_eq!(other.status(), 200);
        assert_eq!(other.bytes().await.unwrap().as_ref(), b"shared");
    }
    let ack = t.a().delete(&format!("/qs/ns/q/leases/{receipt}")).await;
    assert_eq!(ack.status(), 204, "the lease outlived the purge");

    for node in t.nodes() {
        let none = node.delete("/qs/ns/never").await;
        assert_eq!(none.status(), 200);
        let none: serde_json::Value = none.json().await.unwrap();
        assert_eq!(none["purged"], 0);
        problem(node.delete("/qs/ns/q?al=1").await, 400).await;
        problem(node.delete("/qs/ns/bad%20name").await, 400).await;
    }
}

async fn refused_for_quota(r: reqwest::Response, retry_after: &str) -> String {
    assert_eq!(header(&r, "retry-after"), retry_after);
    let p = problem(r, 429).await;
    assert_eq!(p["type"], "urn:blobq:problem:over-quota");
    p["detail"].as_str().unwrap().to_owned()
}

async fn push(node: &TestServer, path: &str, body: Vec<u8>) -> reqwest::Response {
    node.post(path, body).await
}

pub async fn the_element_quota_counts_ready_and_leased_elements_and_frees_up_on_ack(t: Target) {
    for i in 0..3u8 {
        let r = push(t.node(i as usize), "/qs/ns/q", vec![i; 10]).await;
        assert_eq!(r.status(), 202);
    }
    let detail = refused_for_quota(push(t.b(), "/qs/ns/other", vec![9; 10]).await, "7").await;
    if t.names_quota_limit() {
        assert!(detail.contains("3 elements"), "{detail}");
    }
    assert_eq!(
        t.a().json("/qs/ns", 200).await["elements"],
        3,
        "nothing stored"
    );
    // Another namespace has its own quota.
    assert_eq!(push(t.a(), "/qs/elsewhere/q", vec![1]).await.status(), 202);

    // A leased element still counts; an acknowledged one does not.
    let r = t.a().get("/qs/ns/q?lease=30").await;
    assert_eq!(r.status(), 200);
    let receipt = header(&r, "x-queueserver-lease").to_owned();
    refused_for_quota(push(t.b(), "/qs/ns/q", vec![9]).await, "7").await;
    let ack = t.b().delete(&format!("/qs/ns/q/leases/{receipt}")).await;
    assert_eq!(ack.status(), 204);
    t.settled(t.a(), "/qs/ns", "the acknowledged element gone", |v| {
        v["elements"] == 2
    })
    .await;
    assert_eq!(push(t.a(), "/qs/ns/q", vec![9]).await.status(), 202);
    // A metadata-only push is an element too.
    let r = t.b().put("/qs/ns/q").await.send().await.unwrap();
    refused_for_quota(r, "7").await;
}
