//! The log's files: a torn tail cut, damage in the middle refused unless
//! `--repair`, compaction, and the compactor's lower priority.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::common::{self, pattern, STEP};
use super::{drain, durable, pop, push, run_to_exit, stop};

/// The newest log segment of a data directory.
pub(super) fn newest_log(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log segment")
}

/// Byte offsets at which the records of a segment start.
pub(super) fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 8; // the magic
    while at + 8 <= bytes.len() {
        starts.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    starts
}

async fn three_elements_then_stop(dir: &Path) {
    let mut server = durable(dir, &[]).await;
    for body in ["one", "two", "three"] {
        push(&server, "/qs/ns/q", body.as_bytes().to_vec(), &[]).await;
    }
    stop(&mut server).await;
}

#[tokio::test]
async fn a_record_cut_in_half_at_the_end_is_dropped_and_the_rest_served() {
    let data = tempfile::tempdir().unwrap();
    three_elements_then_stop(data.path()).await;
    let log = newest_log(data.path());
    let bytes = std::fs::read(&log).unwrap();
    let last = *record_starts(&bytes).last().unwrap();
    std::fs::write(&log, &bytes[..last + (bytes.len() - last) / 2]).unwrap();

    let server = durable(data.path(), &[]).await;
    assert!(
        server.log().iter().any(|l| l.contains("cut a torn record")),
        "the cut is logged: {:?}",
        server.log()
    );
    let bodies: Vec<Vec<u8>> = drain(&server, "/qs/ns/q")
        .await
        .into_iter()
        .map(|(s, _)| s.body)
        .collect();
    assert_eq!(bodies, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        std::fs::metadata(&log).unwrap().len() as usize,
        last,
        "the file is truncated"
    );
}

#[tokio::test]
async fn a_corrupt_byte_in_the_middle_stops_the_server_unless_repair_is_asked() {
    let data = tempfile::tempdir().unwrap();
    three_elements_then_stop(data.path()).await;
    let log = newest_log(data.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let starts = record_starts(&bytes);
    // Records: one change per element (its blob and put in one frame).
    // Damage the second element's.
    bytes[starts[1] + 10] ^= 0x5a;
    std::fs::write(&log, &bytes).unwrap();

    let (ok, stderr) = run_to_exit(data.path(), &[]);
    assert!(!ok, "refuses to start");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains("--repair"),
        "{stderr}"
    );

    let server = durable(data.path(), &[("--repair", "true")]).await;
    let bodies: Vec<Vec<u8>> = drain(&server, "/qs/ns/q")
        .await
        .into_iter()
        .map(|(s, _)| s.body)
        .collect();
    assert_eq!(
        bodies,
        vec![b"one".to_vec(), b"three".to_vec()],
        "what precedes and what follows the damage is kept"
    );
}

#[tokio::test]
async fn the_log_is_compacted_and_replays_from_the_compacted_file() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[("--log-segment-bytes", "8192")]).await;
    for i in 0..10u32 {
        push(
            &server,
            "/qs/ns/keep",
            format!("keep-{i}").into_bytes(),
            &[],
        )
        .await;
    }
    // Churn: thousands of records, none of them live at the end.
    for i in 0..1500u32 {
        push(&server, "/qs/ns/churn", pattern(200, i as u8), &[]).await;
        assert!(pop(&server, "/qs/ns/churn").await.is_some());
    }
    let log_dir = data.path().join("log");
    let deadline = Instant::now() + STEP;
    loop {
        let names: Vec<String> = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let size: u64 = common::files_below(&log_dir)
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum();
        // 1500 × (blob + put + take) records are ~700 KB; compacted, a few segments.
        if names.iter().any(|n| n.ends_with(".compact")) && size < 64 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log not compacted: {names:?}, {size} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut server).await;
    let server = durable(data.path(), &[("--log-segment-bytes", "8192")]).await;
    let bodies: Vec<String> = drain(&server, "/qs/ns/keep")
        .await
        .into_iter()
        .map(|(s, _)| String::from_utf8(s.body).unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("keep-{i}")).collect();
    assert_eq!(bodies, expected);
    assert!(drain(&server, "/qs/ns/churn").await.is_empty());
}

/// The nice value of the server thread named `name`, once it has one.
fn thread_nice(pid: u32, name: &str) -> Option<i64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        // Fields after the parenthesised command name; nice is field 19.
        let after = &stat[stat.rfind(')')? + 2..];
        return after.split(' ').nth(16)?.parse().ok();
    }
    None
}

/// Compaction rewrites the live log now and then; it must not take CPU
/// from the threads answering requests.
#[tokio::test]
async fn the_compactor_runs_at_a_lower_priority() {
    let data = tempfile::tempdir().unwrap();
    let server = durable(data.path(), &[]).await;
    let pid = server.pid().expect("running");
    let deadline = Instant::now() + STEP;
    loop {
        let nice = thread_nice(pid, "blobq-compact");
        if nice == Some(10) {
            break;
        }
        assert!(Instant::now() < deadline, "compactor nice value: {nice:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other threads keep the default priority. The syncer is started
    // just after the compactor: on a loaded machine the compactor can have
    // lowered its priority before the syncer exists.
    let nice = loop {
        if let Some(nice) = thread_nice(pid, "blobq-fsync") {
            break nice;
        }
        assert!(Instant::now() < deadline, "no blobq-fsync thread");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(nice, 0, "the syncer's nice value");
}
