//! Retention removing a job and its spilled blobs. Shutdown answering
//! waiters is a case of both backends (`tests/nats_jobs/lifecycle.rs`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{self, problem};
use super::{claim, job, submit_with};

#[tokio::test]
async fn a_finished_job_goes_after_its_retention_with_its_blobs() {
    let server = common::options().arg("--spill-threshold", 10).start().await;
    let r = submit_with(
        &server,
        "ns/q",
        vec![1u8; 1000],
        &[("x-job-retention", "1")],
    )
    .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = claim(&server, "ns/q", "").await.unwrap();
    assert_eq!(held.body.len(), 1000);
    let url = server.url(&format!("/jobs/ns/q/{id}/result"));
    let upload = server
        .client
        .put(url)
        .header("x-queueserver-lease", &held.receipt);
    assert_eq!(
        upload.body(vec![2u8; 5000]).send().await.unwrap().status(),
        200
    );
    assert_eq!(server.spill_files().len(), 2, "input and result spilled");
    let doc = job(&server, "ns/q", &id).await;
    assert!(doc["expires"].is_string());
    let deadline = Instant::now() + common::STEP;
    while server.get(&format!("/jobs/ns/q/{id}")).await.status() != 404 {
        assert!(Instant::now() < deadline, "the job outlived its retention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + common::STEP;
    while !server.spill_files().is_empty() {
        assert!(Instant::now() < deadline, "blobs outlived their job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    problem(server.get("/jobs/ns").await, 404).await;
}
