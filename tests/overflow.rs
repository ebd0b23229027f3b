//! Overflow segments, end to end: with a small memory budget and small
//! segments, elements cross from memory into segments and back byte for
//! byte and in order; drained segments are removed; a mostly dead segment is
//! compacted while its live elements are popped; a full disk answers `507`
//! and loses nothing; and spill folders of dead processes are removed at
//! start-up while a live server's stays.

mod common;
#[path = "overflow/launch.rs"]
mod launch;
#[path = "diskfull/tmpfs.rs"]
mod tmpfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{header, options, TestServer, STEP};

/// Segments of 64 KiB: a few dozen bodies each.
const SEGMENT: u64 = 64 * 1024;

/// A small, seeded generator: sizes and bytes differ run to run, and a
/// failure prints the seed that makes it again.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("random seed");
        let seed = u64::from_le_bytes(seed) | 1;
        eprintln!("seed {seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A server whose every body past `budget` bytes held in memory overflows.
async fn overflowing(budget: u64) -> TestServer {
    options()
        .arg("--memory-limit", budget)
        .arg("--spill-threshold", 20_000)
        .arg("--overflow-segment-bytes", SEGMENT)
        .start()
        .await
}

async fn push(server: &TestServer, queue: &str, body: Vec<u8>) -> String {
    let r = server.post(&format!("/qs/ns/{queue}"), body).await;
    assert_eq!(r.status(), 202);
    header(&r, "x-queueserver-id").to_owned()
}

/// Pops from `queue`: its id and bytes, or `None` when empty.
async fn pop(server: &TestServer, queue: &str) -> Option<(String, Vec<u8>)> {
    let r = server.get(&format!("/qs/ns/{queue}")).await;
    match r.status().as_u16() {
        204 => None,
        200 => {
            let id = header(&r, "x-queueserver-id").to_owned();
            Some((id, r.bytes().await.expect("body").to_vec()))
        }
        status => panic!("pop answered {status}"),
    }
}

fn segments(server: &TestServer) -> Vec<PathBuf> {
    server
        .spill_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("segment-"))
        })
        .collect()
}

/// Bytes the spill folder's files take.
fn disk_use(server: &TestServer) -> u64 {
    server
        .spill_files()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn elements_cross_memory_segments_and_files_and_come_back_whole_in_order() {
    const BUDGET: u64 = 50_000;
    let server = overflowing(BUDGET).await;
    let mut rng = Rng::new();
    let mut pushed = Vec::new();
    for i in 0..300 {
        // One in fifty at or past the spill threshold: a file of its own.
        let len = if i % 50 == 7 {
            20_000 + rng.below(5_000)
        } else {
            rng.below(6_000)
        };
        let body = rng.bytes(len as usize);
        pushed.push((push(&server, "q", body.clone()).await, body));
    }
    let totals = server.json("/qs", 200).await;
    let memory = totals["memory_bytes"].as_u64().unwrap();
    let disk = totals["disk_bytes"].as_u64().unwrap();
    let total: u64 = pushed.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(memory <= BUDGET, "memory {memory} within the budget");
    assert_eq!(memory + disk, total);
    let segment_files = segments(&server).len();
    assert!(
        segment_files >= 2 && segment_files as u64 <= disk / SEGMENT + 2,
        "{segment_files} segments for {disk} bytes on disk"
    );
    assert_eq!(server.spill_files().len(), segment_files + 6, "and 6 files");

    for (i, (id, body)) in pushed.iter().enumerate() {
        let (got_id, got) = pop(&server, "q").await.expect("an element");
        assert_eq!(&got_id, id, "element {i} in order");
        assert!(got == *body, "element {i}: bytes differ");
    }
    assert!(pop(&server, "q").await.is_none());
    assert!(
        server.spill_files().is_empty(),
        "drained: every segment gone"
    );
    assert_eq!(server.json("/qs", 200).await["disk_bytes"], 0);
}

#[tokio::test]
async fn mostly_dead_segments_are_compacted_while_their_elements_are_popped() {
    let server = overflowing(1).await;
    let mut rng = Rng::new();
    // Nine to `dead` for each one to `live`: as `dead` is drained, sealed
    // segments fall below the 25 % threshold one after the other, and the
    // compactor moves what they still hold (`live` elements, and `dead`
    // ones not popped yet) while the consumers pop.
    let mut live = Vec::new();
    let mut dead = HashMap::new();
    for i in 0..600 {
        let len = 2_000 + rng.below(2_000) as usize;
        let body = rng.bytes(len);
        if i % 10 == 0 {
            live.push((push(&server, "live", body.clone()).await, body));
        } else {
            dead.insert(push(&server, "dead", body.clone()).await, body);
        }
    }
    let before = disk_use(&server);
    assert!(
        segments(&server).len() >= 20,
        "{} segments",
        segments(&server).len()
    );

    let mut consumers = Vec::new();
    for _ in 0..8 {
        let (addr, client) = (server.addr.clone(), server.client.clone());
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let r = client
                    .get(format!("http://{addr}/qs/ns/dead"))
                    .send()
                    .await
                    .expect("pop");
                if r.status() == 204 {
                    return got;
                }
                assert_eq!(r.status(), 200);
                let id = header(&r, "x-queueserver-id").to_owned();
                got.push((id, r.bytes().await.expect("body").to_vec()));
            }
        }));
    }
    let mut popped = 0;
    for consumer in consumers {
        for (id, got) in tokio::time::timeout(STEP, consumer)
            .await
            .expect("drained")
            .unwrap()
        {
            assert!(dead.get(&id) == Some(&got), "element {id}: bytes differ");
            popped += 1;
        }
    }
    assert_eq!(popped, dead.len());

    // Once compaction settles every sealed segment is at least a quarter
    // live, so the files take at most four times the live bytes, and the
    // segment being written. Without compaction nearly every segment would
    // stay, each holding a `live` element or two.
    let rest: u64 = live.iter().map(|(_, b)| b.len() as u64).sum();
    let bound = 4 * rest + SEGMENT;
    assert!(
        bound < before / 2,
        "the test needs {bound} well under {before}"
    );
    let deadline = Instant::now() + STEP;
    while disk_use(&server) > bound {
        assert!(
            Instant::now() < deadline,
            "not compacted: {} bytes on disk for {rest} live (was {before})",
            disk_use(&server)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (id, body) in &live {
        let (got_id, got) = pop(&server, "live").await.expect("a live element");
        assert_eq!(&got_id, id);
        assert!(got == *body, "a moved element's bytes differ");
    }
    assert!(server.spill_files().is_empty());
}

#[tokio::test]
async fn a_full_disk_while_overflowing_answers_507_and_loses_nothing() {
    let Some(disk) = tmpfs::TinyDisk::mount("a_full_disk_while_overflowing") else {
        return;
    };
    let server = options()
        .spill_into(disk.path())
        .arg("--memory-limit", 1)
        .arg("--overflow-segment-bytes", SEGMENT)
        .start()
        .await;
    let mut rng = Rng::new();
    let mut acked = Vec::new();
    for _ in 0..20 {
        let body = rng.bytes(3_000);
        acked.push((push(&server, "q", body.clone()).await, body));
    }
    disk.fill();
    let mut refused = 0;
    for _ in 0..200 {
        let body = rng.bytes(3_000);
        let r = server.post("/qs/ns/q", body.clone()).await;
        if r.status() == 202 {
            // Room the segment's pages still had.
            acked.push((header(&r, "x-queueserver-id").to_owned(), body));
            continue;
        }
        let p = common::problem(r, 507).await;
        assert_eq!(p["type"], "urn:blobq:problem:spill-dir-full", "{p}");
        refused += 1;
    }
    assert!(refused > 150, "only {refused} refused on a full disk");
    assert_eq!(
        server.json("/qs/ns/q/stats", 200).await["elements"],
        acked.len()
    );
    for (id, body) in &acked {
        let (got_id, got) = pop(&server, "q").await.expect("an acknowledged element");
        assert_eq!(&got_id, id);
        assert!(got == *body, "an acknowledged element's bytes differ");
    }
    assert!(pop(&server, "q").await.is_none());
    disk.free();
    let body = rng.bytes(3_000);
    let id = push(&server, "q", body.clone()).await;
    assert_eq!(pop(&server, "q").await, Some((id, body)));
    drop(server);
}

/// The `blobq-*` folders in `dir`.
fn spill_folders(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("blobq-"))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn spill_folders_of_dead_processes_are_removed_at_start_up_and_live_ones_stay() {
    let root = tempfile::tempdir().unwrap();
    let args = ["--memory-limit", "1"];
    let mut crashed = launch::Launched::start(root.path(), &args);
    let client = reqwest::Client::builder().timeout(STEP).build().unwrap();
    let r = client
        .post(crashed.url("/qs/ns/q"))
        .body(vec![7u8; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let stale = spill_folders(root.path());
    assert_eq!(stale.len(), 1);
    assert_eq!(common::files_below(&stale[0]).len(), 1, "a segment");
    crashed.kill_hard();
    assert!(stale[0].exists(), "a killed server leaves its folder");

    // A server starting in the same directory removes it...
    let live = launch::Launched::start(root.path(), &args);
    let after = spill_folders(root.path());
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, stale, "the dead process's folder is gone");
    let r = client
        .post(live.url("/qs/ns/q"))
        .body(vec![8u8; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // ...and one more leaves the live one's alone.
    let third = launch::Launched::start(root.path(), &args);
    let both = spill_folders(root.path());
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.contains(&after[0]));
    let r = client.get(live.url("/qs/ns/q")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![8u8; 5000]);
    drop(third);
    drop(live);
}

#[tokio::test]
async fn segments_are_removed_with_the_spill_folder_at_shutdown() {
    let mut server = overflowing(1).await;
    let mut rng = Rng::new();
    for _ in 0..50 {
        push(&server, "q", rng.bytes(3_000)).await;
    }
    assert!(segments(&server).len() >= 2);
    server.terminate();
    assert!(server.wait_exit().await.success());
    let left: Vec<_> = std::fs::read_dir(server.spill_root.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
