//! `/metrics` of the embedded store: request counts, latency, and the
//! gauges of what is stored in memory and on disk. The rest of the queue
//! API is in the suite run on every backend (tests/suite/queue.rs).

mod common;

use common::{header, push_ok};

/// The value of the sample line `series` (name and labels exactly as
/// exposed) in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .expect("sample value")
}

#[tokio::test]
async fn metrics_expose_request_counts_latency_and_store_counters() {
    let server = common::options()
        .arg("--spill-threshold", 1000)
        .start()
        .await;
    let pushed = 5;
    for i in 0..pushed {
        push_ok(&server, "/qs/ns/m", vec![i as u8; 100]).await;
    }
    push_ok(&server, "/qs/ns/big", common::pattern(3000, 1)).await;
    for _ in 0..3 {
        assert_eq!(server.get("/qs/ns/m").await.status(), 200);
    }

    let r = server.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert_eq!(sample(&text, "blobq_pushes_total"), (pushed + 1) as f64);
    assert_eq!(sample(&text, "blobq_pops_total"), 3.0);
    assert_eq!(sample(&text, "blobq_expirations_total"), 0.0);
    assert_eq!(sample(&text, "blobq_queued_elements"), 3.0);
    assert_eq!(sample(&text, "blobq_waiting_consumers"), 0.0);
    assert_eq!(
        sample(&text, r#"blobq_stored_bytes{storage="memory"}"#),
        200.0
    );
    assert_eq!(
        sample(&text, r#"blobq_stored_bytes{storage="disk"}"#),
        3000.0
    );
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("blobq_http_requests_total{"))
        .collect();
    let pushes = requests
        .iter()
        .find(|l| l.contains(r#"route="/qs/{ns}/{queue}""#) && l.contains(r#"status="202""#))
        .unwrap_or_else(|| panic!("no push series in {requests:?}"));
    let value: f64 = pushes.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, (pushed + 1) as f64, "{pushes}");
    assert!(
        !requests.iter().any(|l| l.contains("route=\"/qs/ns/")),
        "client-chosen names never become labels: {requests:?}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("blobq_http_request_duration_seconds_bucket{")
                && l.contains(r#"route="/qs/{ns}/{queue}""#)
        ),
        "latency histogram by route"
    );
}
