//! Durable mode (`--data-dir`): what was accepted survives a restart and a
//! crash (SIGKILL), the log is compacted, and a damaged log is cut at a torn
//! tail but refused when damaged in the middle.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{custom_data, header, options, pattern, TestServer, STEP};

async fn durable(dir: &Path, extra: &[(&str, &str)]) -> TestServer {
    let mut o = options()
        .arg("--data-dir", dir.display())
        .arg("--spill-threshold", 1024);
    for (flag, value) in extra {
        o = o.arg(flag, value);
    }
    o.start().await
}

/// An element as a consumer sees it.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Seen {
    id: String,
    body: Vec<u8>,
    content_type: String,
    custom: Vec<String>,
    blob: Option<String>,
}

async fn pop(server: &TestServer, path: &str) -> Option<(Seen, u64)> {
    let r = server.get(path).await;
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200, "pop {path}");
    let lifetime: u64 = header(&r, "x-queueserver-lifetime").parse().unwrap();
    let seen = Seen {
        id: header(&r, "x-queueserver-id").to_owned(),
        content_type: header(&r, "content-type").to_owned(),
        custom: custom_data(&r),
        blob: r
            .headers()
            .get("x-blobstorage_id")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: r.bytes().await.unwrap().to_vec(),
    };
    Some((seen, lifetime))
}

async fn drain(server: &TestServer, path: &str) -> Vec<(Seen, u64)> {
    let mut out = Vec::new();
    while let Some(e) = pop(server, path).await {
        out.push(e);
    }
    out
}

async fn push(server: &TestServer, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> String {
    let mut req = server.client.post(server.url(path)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "x-queueserver-id").to_owned()
}

async fn push_reference(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = server.put(path).await;
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    header(&r, "x-queueserver-id").to_owned()
}

async fn stop(server: &mut TestServer) {
    server.terminate();
    assert!(server.wait_exit().await.success());
}

/// A mix of small, large, referenced, metadata-only, fanned-out, expiring,
/// consumed and leased elements; SIGTERM; restart; every queue compared.
#[tokio::test]
async fn a_restart_brings_back_every_element_in_order_with_its_metadata() {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[]).await;
    let big = pattern(5000, 3);
    push(
        &server,
        "/qs/ns/a",
        b"first".to_vec(),
        &[("x-custom-data", "k=1")],
    )
    .await;
    push(
        &server,
        "/qs/ns/a",
        b"second\0".to_vec(),
        &[
            ("content-type", "text/plain"),
            ("x-custom-data", "k=2"),
            ("x-custom-data", "z=last"),
            ("x-queueserver-lifetime", "600"),
        ],
    )
    .await;
    push(&server, "/qs/ns/a", big.clone(), &[]).await;
    push(
        &server,
        "/qs/ns/a",
        b"short-lived".to_vec(),
        &[("x-queueserver-lifetime", "1")],
    )
    .await;
    push(&server, "/qs/ns/a", b"last".to_vec(), &[]).await;
    // A stored blob, referenced twice, and a metadata-only element.
    let r = server.post("/tbs/ns/blobs", pattern(3000, 9)).await;
    assert_eq!(r.status(), 201);
    let blob = header(&r, "x-blobstorage_id").to_owned();
    for tag in ["r=1", "r=2"] {
        push_reference(
            &server,
            "/qs/ns/b",
            &[("x-blobstorage_id", &blob), ("x-custom-data", tag)],
        )
        .await;
    }
    push_reference(&server, "/qs/ns/b", &[("x-custom-data", "only=meta")]).await;
    // Fan-out: a header-only pop, then references to the exposed blob.
    push(
        &server,
        "/qs/other/in",
        pattern(2000, 1),
        &[("x-custom-data", "src=1")],
    )
    .await;
    let header_only = server.get("/qs/other/in?header_only=1").await;
    assert_eq!(header_only.status(), 200);
    let fanned = header(&header_only, "x-blobstorage_id").to_owned();
    push_reference(&server, "/qs/other/out", &[("x-blobstorage_id", &fanned)]).await;
    // Consumed before the restart: must not come back.
    let (first, _) = pop(&server, "/qs/ns/a").await.unwrap();
    assert_eq!(first.body, b"first");
    // An element out under a lease at shutdown comes back unleased.
    push(&server, "/qs/ns/leased", b"job".to_vec(), &[]).await;
    assert_eq!(server.get("/qs/ns/leased?lease=60").await.status(), 200);

    tokio::time::sleep(Duration::from_millis(1100)).await; // "short-lived" expires
    stop(&mut server).await;
    let server = durable(data.path(), &[]).await;

    let a = drain(&server, "/qs/ns/a").await;
    let bodies: Vec<&[u8]> = a.iter().map(|(s, _)| &s.body[..]).collect();
    assert_eq!(
        bodies,
        vec![&b"second\0"[..], &big[..], b"last"],
        "order kept, expired and popped gone"
    );
    let (second, lifetime) = &a[0];
    assert_eq!(second.content_type, "text/plain");
    assert_eq!(second.custom, vec!["k=2", "z=last"]);
    assert!(
        (590..=600).contains(lifetime),
        "remaining lifetime kept: {lifetime}"
    );

    let b = drain(&server, "/qs/ns/b").await;
    assert_eq!(b.len(), 3);
    for (i, tag) in ["r=1", "r=2"].iter().enumerate() {
        assert_eq!(b[i].0.body, pattern(3000, 9));
        assert_eq!(b[i].0.blob.as_deref(), Some(blob.as_str()));
        assert_eq!(b[i].0.custom, vec![*tag]);
    }
    assert!(b[2].0.body.is_empty() && b[2].0.blob.is_none());
    assert_eq!(b[2].0.custom, vec!["only=meta"]);

    let out = drain(&server, "/qs/other/out").await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.body, pattern(2000, 1));
    assert_eq!(
        out[0].0.custom,
        vec!["src=1"],
        "inherits the blob's metadata"
    );
    assert!(drain(&server, "/qs/other/in").await.is_empty());

    let leased = drain(&server, "/qs/ns/leased").await;
    assert_eq!(leased.len(), 1, "a lease in flight comes back unleased");

    let r = server.get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200, "the stored blob is still readable");
    assert_eq!(r.bytes().await.unwrap().to_vec(), pattern(3000, 9));
    let r = server.delete(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 204);
    let r = server.get(&format!("/tbs/other/blobs/{fanned}")).await;
    assert_eq!(r.status(), 200, "an exposed blob lives to its own deadline");
    assert_eq!(
        server
            .delete(&format!("/tbs/other/blobs/{fanned}"))
            .await
            .status(),
        204
    );

    // Everything consumed or deleted: the blob files go too.
    let blobs = data.path().join("blobs");
    let deadline = Instant::now() + STEP;
    while std::fs::read_dir(&blobs).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "blob files left: {:?}",
            common::files_below(&blobs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let _first = durable(data.path(), &[]).await;
    let (ok, stderr) = run_to_exit(data.path(), &[]);
    assert!(!ok);
    assert!(stderr.contains("in use by another blobq"), "{stderr}");
}

/// Runs the server on `dir` expecting it to exit at start-up.
fn run_to_exit(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blobq kept running on a data directory it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest log segment of a data directory.
fn newest_log(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log segment")
}

/// Byte offsets at which the records of a segment start.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
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
    // Records: blob+put per element. Damage the second element's blob record.
    bytes[starts[2] + 10] ^= 0x5a;
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
        vec![b"one".to_vec()],
        "what precedes the damage is kept"
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

/// A small deterministic generator, so each seed replays the same run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Producers and consumers run against a durable server that is killed
/// with SIGKILL at a moment the seed picks; after a restart every element
/// whose push was answered `202` is found: consumed before the crash or
/// still queued. With `always`, none is found twice. A plain pop whose
/// answer was lost in the crash may take its element with it (pops are
/// at-most-once; leases exist for that), so up to one element per pop in
/// flight at the crash may be missing.
async fn crash_run(fsync: &str, seed: u64) {
    let data = tempfile::tempdir().unwrap();
    let mut server = durable(data.path(), &[("--fsync", fsync)]).await;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Killed a seed-chosen moment after the load is under way (at least
    // `WARM` pushes answered, however slow the machine is at the time).
    let run_for = Duration::from_millis(rng.next() % 900);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let popped = Arc::new(Mutex::new(Vec::new()));
    let lost_pops = Arc::new(AtomicU64::new(0));
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for producer in 0..6u64 {
        let (client, url) = (server.client.clone(), server.url("/qs/crash/q"));
        let (acked, stop_flag) = (acked.clone(), stop_flag.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                n += 1;
                let tag = format!("p{producer}-{n}-");
                // Every 7th element is large enough to be a blob file.
                let len = if n % 7 == 0 { 3000 } else { 40 };
                let mut body = tag.clone().into_bytes();
                body.resize(len, b'x');
                match client.post(&url).body(body).send().await {
                    Ok(r) if r.status() == 202 => {
                        acked.lock().unwrap().insert(tag);
                    }
                    _ => break, // the server died mid-request
                }
            }
        }));
    }
    for _ in 0..2 {
        let (client, url) = (server.client.clone(), server.url("/qs/crash/q"));
        let (popped, lost_pops, stop_flag) = (popped.clone(), lost_pops.clone(), stop_flag.clone());
        tasks.push(tokio::spawn(async move {
            while !stop_flag.load(Ordering::Relaxed) {
                let answer = match client.get(&url).send().await {
                    Ok(r) => match r.status().as_u16() {
                        200 => r.bytes().await.ok().map(Some),
                        204 => Some(None),
                        other => panic!("a pop answered {other}"),
                    },
                    Err(_) => None,
                };
                match answer {
                    Some(Some(body)) => popped.lock().unwrap().push(tag_of(&body)),
                    Some(None) => tokio::time::sleep(Duration::from_millis(2)).await,
                    None => {
                        lost_pops.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    const WARM: usize = 60;
    let warm_by = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < WARM {
        assert!(Instant::now() < warm_by, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(run_for).await;
    server.kill_hard();
    stop_flag.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(STEP, t)
            .await
            .expect("load task ends")
            .unwrap();
    }
    let server = durable(data.path(), &[("--fsync", fsync)]).await;
    let after: Vec<String> = drain(&server, "/qs/crash/q")
        .await
        .into_iter()
        .map(|(s, _)| tag_of(&s.body))
        .collect();

    let acked = acked.lock().unwrap();
    let popped = popped.lock().unwrap();
    assert!(acked.len() >= WARM, "the load ran: {} pushes", acked.len());
    let mut found: HashMap<&str, u32> = HashMap::new();
    for tag in popped.iter().chain(after.iter()) {
        *found.entry(tag.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = acked
        .iter()
        .filter(|t| !found.contains_key(t.as_str()))
        .collect();
    let lost = lost_pops.load(Ordering::Relaxed);
    assert!(
        missing.len() as u64 <= lost,
        "{fsync}/seed {seed}: {} acknowledged elements lost ({missing:?}), only {lost} pops were cut by the crash",
        missing.len()
    );
    if fsync == "always" {
        let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "always/seed {seed}: delivered twice: {twice:?}"
        );
    }
    // Nothing found that was never pushed (no torn or mixed-up bodies).
    for tag in found.keys() {
        assert!(
            tag.starts_with('p') && tag.ends_with('-'),
            "garbage element {tag:?}"
        );
    }
}

fn tag_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let end = text
        .match_indices('-')
        .nth(1)
        .map_or(text.len(), |(i, _)| i + 1);
    text[..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_push_with_fsync_always() {
    for seed in 1..=3 {
        crash_run("always", seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_push_with_fsync_batch() {
    for seed in 11..=13 {
        crash_run("batch", seed).await;
    }
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
