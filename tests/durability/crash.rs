//! SIGKILL under concurrent producers and consumers: every acknowledged
//! push is found after the restart, and with `always` none twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::STEP;
use super::{drain, durable};

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
                let len = if n.is_multiple_of(7) { 3000 } else { 40 };
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
