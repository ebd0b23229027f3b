//! Durable mode: an acknowledged batch survives a crash whole, small and
//! large parts alike, in its order.

use crate::common::{self, pattern, TestServer};
use crate::wire::{self, Part};

async fn durable(dir: &std::path::Path, fsync: &str) -> TestServer {
    common::options()
        .arg("--data-dir", dir.display())
        .arg("--spill-threshold", 1024)
        .arg("--fsync", fsync)
        .start()
        .await
}

#[tokio::test]
async fn an_acknowledged_batch_survives_a_crash_whole() {
    for fsync in ["always", "batch"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = durable(dir.path(), fsync).await;
        let parts: Vec<Part> = (0..50u8)
            .map(|i| {
                // Every tenth part is large: a file of the data directory.
                let len = if i % 10 == 0 { 5000 } else { 100 };
                Part::new(pattern(len, i)).header("X-Custom-Data", &format!("n={i}"))
            })
            .collect();
        let elements = wire::push(&server, "ns", "q", &parts).await;
        if fsync == "batch" {
            // Batch mode promises the log is written, not synced: a crash of
            // the process alone loses nothing written.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        server.kill_hard();
        let server = durable(dir.path(), fsync).await;
        assert_eq!(wire::queued(&server, "ns", "q").await, 50, "{fsync}");
        let batch = wire::pop(&server, "/qs/ns/q?count=50").await;
        assert_eq!(batch.parts.len(), 50);
        for ((popped, part), element) in batch.parts.iter().zip(&parts).zip(&elements) {
            assert_eq!(popped.body, part.body, "{fsync}");
            assert_eq!(popped.header("x-queueserver-id"), element["id"].as_str());
            assert_eq!(popped.all("x-custom-data"), [part.headers[0].1.as_str()]);
        }
        drop(server);
    }
}
