//! A job's input counts as an element of its namespace while the job is
//! kept: the namespace's element quota refuses a submit past it (and a
//! push), and a removed job gives its place back.

use serde_json::Value;

use super::common::options;
use super::{submit, submit_with};

#[tokio::test]
async fn a_submit_over_the_element_quota_answers_429_and_stores_nothing() {
    let server = options().arg("--namespace-max-elements", 3).start().await;
    let first = submit(&server, "acme/export", "one").await;
    submit(&server, "acme/export", "two").await;
    let r = server.post("/qs/acme/elements", "element").await;
    assert_eq!(r.status(), 202, "an element fills the last place");

    let r = submit_with(&server, "acme/export", "three", &[]).await;
    assert_eq!(r.status(), 429);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    let listed = server.json("/jobs/acme/export", 200).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2);
    let ns = server.json("/qs/acme", 200).await;
    // The two inputs and the element's body; not the refused input.
    assert_eq!(ns["blobs"], 3, "{ns}");
    assert_eq!(ns["blob_bytes"], 3 + 3 + 7, "{ns}");
    assert_eq!(
        server.post("/qs/acme/elements", "more").await.status(),
        429,
        "the jobs' inputs count against pushes too"
    );

    // A job that is removed gives its place back; one only finished keeps it.
    let r = server
        .post(&format!("/jobs/acme/export/{first}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);
    let r = submit_with(&server, "acme/export", "three", &[]).await;
    assert_eq!(r.status(), 429, "a finished job is still kept");
    let r = server.delete(&format!("/jobs/acme/export/{first}")).await;
    assert_eq!(r.status(), 204);
    submit(&server, "acme/export", "three").await;
}

#[tokio::test]
async fn a_job_removed_after_its_retention_gives_its_place_back() {
    let server = options().arg("--namespace-max-elements", 1).start().await;
    let r = submit_with(&server, "acme/export", "one", &[("x-job-retention", "1")]).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .post(&format!("/jobs/acme/export/{id}/cancel"), "")
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        submit_with(&server, "acme/export", "two", &[])
            .await
            .status(),
        429
    );
    let deadline = std::time::Instant::now() + super::common::STEP;
    loop {
        let status = submit_with(&server, "acme/export", "two", &[])
            .await
            .status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        server
            .get(&format!("/jobs/acme/export/{id}"))
            .await
            .status(),
        404
    );
}
