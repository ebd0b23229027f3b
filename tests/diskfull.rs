//! A full disk, then not: with the data or spill directory on a small
//! tmpfs that fills up, requests that need room answer `507` (naming the
//! directory, never a path) and leave nothing behind, `/healthz` says why,
//! and once space is freed everything works again without a restart; a
//! restart then brings back exactly the acknowledged elements.

mod common;
#[path = "diskfull/tmpfs.rs"]
mod tmpfs;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{header, options, pattern, TestServer, STEP};
use tmpfs::TinyDisk;

/// Pushes tried before the disk must have filled.
const MAX_PUSHES: usize = 20_000;

/// A durable server whose small bodies past `memory_limit` bytes go to
/// overflow segments in the data directory.
async fn durable_within(disk: &TinyDisk, fsync: &str, memory_limit: u64) -> TestServer {
    options()
        .arg("--data-dir", disk.path().join("data").display())
        .arg("--fsync", fsync)
        .arg("--fsync-interval-ms", 20)
        .arg("--spill-threshold", 1024)
        .arg("--log-segment-bytes", 1 << 20)
        .arg("--memory-limit", memory_limit)
        .arg("--overflow-segment-bytes", 1 << 16)
        .start()
        .await
}

/// Pushes `body` to `ns/q`: `Some(id)` if accepted, `None` on `507`
/// (checked to be a path-free problem document naming `problem`).
async fn try_push(server: &TestServer, body: Vec<u8>, problem: &str, dir: &Path) -> Option<String> {
    let r = server.post("/qs/ns/q", body).await;
    if r.status() == 202 {
        return Some(header(&r, "x-queueserver-id").to_owned());
    }
    let p = common::problem(r, 507).await;
    assert_eq!(p["type"], format!("urn:blobq:problem:{problem}"), "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("is full"), "{p}");
    assert!(
        !detail.contains('/') && !detail.contains(&*dir.to_string_lossy()),
        "a path in {p}"
    );
    None
}

/// Pops from `ns/q`: the element's id, `None` when empty, or the status.
async fn try_pop(server: &TestServer) -> Result<Option<String>, u16> {
    let r = server.get("/qs/ns/q").await;
    match r.status().as_u16() {
        200 => Ok(Some(header(&r, "x-queueserver-id").to_owned())),
        204 => Ok(None),
        status => Err(status),
    }
}

async fn elements(server: &TestServer) -> u64 {
    server.json("/qs/ns/q/stats", 200).await["elements"]
        .as_u64()
        .unwrap()
}

/// Waits for `/healthz` to answer `want`; its body.
async fn health(server: &TestServer, want: u16) -> serde_json::Value {
    let deadline = Instant::now() + STEP;
    loop {
        let r = server.get("/healthz").await;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

async fn durable_mode_survives_a_full_disk(fsync: &str) {
    durable_mode_survives_a_full_disk_within(fsync, 1 << 30).await;
}

/// With `memory_limit` bytes of small bodies held in memory at most: past
/// it, they fill overflow segments in the data directory.
async fn durable_mode_survives_a_full_disk_within(fsync: &str, memory_limit: u64) {
    let test = format!("durable_mode_survives_a_full_disk ({fsync}, memory limit {memory_limit})");
    let Some(disk) = TinyDisk::mount(&test) else {
        return;
    };
    let blobs = disk.path().join("data/blobs");
    let mut server = durable_within(&disk, fsync, memory_limit).await;
    let mut acked = Vec::new();
    for i in 0..10u8 {
        acked.push(
            try_push(&server, pattern(100, i), "", disk.path())
                .await
                .unwrap(),
        );
    }
    acked.push(
        try_push(&server, pattern(200_000, 1), "", disk.path())
            .await
            .unwrap(),
    );
    disk.fill();

    // Small pushes fill what the log's last page had left, then fail.
    let mut refused = 0;
    for i in 0..MAX_PUSHES {
        match try_push(&server, pattern(100, i as u8), "data-dir-full", disk.path()).await {
            Some(id) => acked.push(id),
            None => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "{test}: the disk never filled");
    let body_files = files_in(&blobs);
    assert!(
        try_push(&server, pattern(300_000, 9), "data-dir-full", disk.path())
            .await
            .is_none(),
        "{test}: a large push needs room too"
    );
    assert_eq!(files_in(&blobs), body_files, "{test}: no partial body file");
    assert_eq!(
        elements(&server).await,
        acked.len() as u64,
        "{test}: nothing refused is counted"
    );
    let h = health(&server, 503).await;
    assert!(
        h["reason"].as_str().unwrap().contains("data directory"),
        "{h}"
    );

    // Pops need no room unless every pop is logged before its answer.
    let mut popped = Vec::new();
    match try_pop(&server).await {
        Ok(Some(id)) => {
            assert_ne!(
                fsync, "always",
                "{test}: a pop that could not be logged was answered"
            );
            popped.push(id);
        }
        Err(507) => assert_eq!(fsync, "always", "{test}"),
        other => panic!("{test}: pop answered {other:?}"),
    }
    assert_eq!(
        elements(&server).await,
        (acked.len() - popped.len()) as u64,
        "{test}"
    );

    // Room again: no restart needed.
    disk.free();
    health(&server, 200).await;
    acked.push(
        try_push(&server, pattern(200_000, 2), "", disk.path())
            .await
            .expect("a large push once space is back"),
    );
    acked.push(
        try_push(&server, pattern(100, 3), "", disk.path())
            .await
            .expect("a small push once space is back"),
    );
    popped.push(
        try_pop(&server)
            .await
            .unwrap()
            .expect("a pop once space is back"),
    );
    assert_eq!(
        popped,
        acked[..popped.len()],
        "{test}: FIFO, nothing refused served"
    );

    // A restart brings back exactly what was acknowledged and not popped.
    server.terminate();
    assert!(server.wait_exit().await.success(), "{test}: clean exit");
    let server = durable_within(&disk, fsync, memory_limit).await;
    let mut back = Vec::new();
    while let Some(id) = try_pop(&server).await.expect("pop after restart") {
        back.push(id);
        assert!(
            back.len() <= acked.len(),
            "{test}: more came back than was acknowledged"
        );
    }
    assert_eq!(
        back,
        acked[popped.len()..],
        "{test}: exactly the acknowledged elements"
    );
    drop(server);
}

#[tokio::test]
async fn a_full_data_directory_with_fsync_always() {
    durable_mode_survives_a_full_disk("always").await;
}

#[tokio::test]
async fn a_full_data_directory_with_fsync_batch() {
    durable_mode_survives_a_full_disk("batch").await;
}

#[tokio::test]
async fn a_full_data_directory_with_fsync_never() {
    durable_mode_survives_a_full_disk("never").await;
}

/// Small bodies past the memory limit need room in the data directory's
/// segments: refused with `507` when there is none, stored again once
/// there is, and all those acknowledged back after a restart.
#[tokio::test]
async fn a_full_data_directory_with_small_bodies_in_segments() {
    durable_mode_survives_a_full_disk_within("always", 1).await;
    durable_mode_survives_a_full_disk_within("batch", 1).await;
}

#[tokio::test]
async fn a_full_spill_directory_refuses_large_pushes_and_recovers_by_itself() {
    let Some(disk) = TinyDisk::mount("a_full_spill_directory_refuses_large_pushes") else {
        return;
    };
    let server = options()
        .spill_into(disk.path())
        .arg("--spill-threshold", 1024)
        .start()
        .await;
    let mut acked = Vec::new();
    for i in 0..2 {
        acked.push(
            try_push(&server, pattern(300_000, i), "", disk.path())
                .await
                .unwrap(),
        );
    }
    disk.fill();
    for i in 0..3 {
        let refused = try_push(&server, pattern(300_000, i), "spill-dir-full", disk.path()).await;
        assert!(refused.is_none(), "the spill directory is full");
    }
    assert_eq!(server.spill_files().len(), 2, "no partial spill file left");
    // Small bodies stay in memory: they need no room on disk.
    acked.push(
        try_push(&server, pattern(100, 7), "", disk.path())
            .await
            .unwrap(),
    );
    assert_eq!(elements(&server).await, 3);
    let h = health(&server, 503).await;
    assert!(
        h["reason"].as_str().unwrap().contains("spill directory"),
        "{h}"
    );
    disk.free();
    health(&server, 200).await;
    acked.push(
        try_push(&server, pattern(300_000, 8), "", disk.path())
            .await
            .unwrap(),
    );
    for id in &acked {
        assert_eq!(try_pop(&server).await, Ok(Some(id.clone())));
    }
    assert_eq!(try_pop(&server).await, Ok(None));
    assert!(server.spill_files().is_empty());
    drop(server);
}
