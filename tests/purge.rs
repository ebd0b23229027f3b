//! `DELETE /qs/{ns}/{queue}`: a queue's ready elements removed with their
//! data, leased ones left with their consumers, through the real server.

mod common;

use common::header;

#[tokio::test]
async fn a_purge_empties_the_queue_frees_its_files_and_leaves_leases_alone() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let held = server.post("/qs/ns/q", "leased").await;
    assert_eq!(held.status(), 202);
    let leased = server.get("/qs/ns/q?lease=60").await;
    assert_eq!(leased.status(), 200);
    let receipt = header(&leased, "x-queueserver-lease").to_owned();
    for body in [common::pattern(5000, 1), b"small".to_vec()] {
        assert_eq!(server.post("/qs/ns/q", body).await.status(), 202);
    }
    // A blob shared with another queue stays for it.
    let shared = server.post("/qs/ns/q", "shared").await;
    let blob = header(&shared, "x-blobstorage_id").to_owned();
    let reference = server
        .put("/qs/ns/other")
        .await
        .header("X-BlobStorage_Id", &blob)
        .send()
        .await
        .unwrap();
    assert_eq!(reference.status(), 202);
    assert_eq!(server.spill_files().len(), 1, "the large body spilled");

    let answer = server.delete("/qs/ns/q").await;
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"namespace": "ns", "queue": "q", "purged": 3})
    );
    assert!(server.spill_files().is_empty(), "the spilled body is gone");
    assert_eq!(server.get("/qs/ns/q").await.status(), 204);
    let stats = server.json("/qs/ns/q/stats", 200).await;
    assert_eq!(
        (&stats["elements"], &stats["leased"]),
        (&0.into(), &1.into())
    );
    let other = server.get("/qs/ns/other").await;
    assert_eq!(other.status(), 200);
    assert_eq!(other.bytes().await.unwrap().as_ref(), b"shared");
    let ack = server.delete(&format!("/qs/ns/q/leases/{receipt}")).await;
    assert_eq!(ack.status(), 204, "the lease outlived the purge");

    let none = server.delete("/qs/ns/never").await;
    assert_eq!(none.status(), 200);
    let none: serde_json::Value = none.json().await.unwrap();
    assert_eq!(none["purged"], 0);
    let typo = server.delete("/qs/ns/q?al=1").await;
    common::problem(typo, 400).await;
    let bad = server.delete("/qs/ns/bad%20name").await;
    common::problem(bad, 400).await;
}
