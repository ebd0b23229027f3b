//! Faults on a three-node JetStream cluster under two blobq nodes: a NATS
//! server killed while both take pushes and leased pops, and a blobq node
//! killed while it holds leases. No acknowledged push may be lost, every
//! one is delivered at least once, and every answer is one the contract
//! allows (`503` with `Retry-After` while a quorum is lost, never a wrong
//! answer). Skipped without `nats-server` unless `BLOBQ_REQUIRE_NATS=1`.

mod common;
mod nats;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use nats::NatsServer;

/// Elements pushed in all.
const ELEMENTS: usize = 200;
/// Longest the whole run may take.
const RUN_WITHIN: Duration = Duration::from_secs(90);

/// A push of `body` through `s`, again after each `503` until `deadline`:
/// whether it was acknowledged (`202`).
async fn push(s: &TestServer, body: String, deadline: Instant) -> bool {
    loop {
        let r = s.post("/qs/fault/q", body.clone()).await;
        match r.status().as_u16() {
            202 => return true,
            503 => {
                assert!(
                    r.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                );
                eprintln!("push: 503 {}", r.text().await.unwrap_or_default());
            }
            other => panic!("a push answered {other}"),
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Leases and acknowledges through `s` until `done` says to stop, adding
/// every body it is handed to `seen`.
async fn consume(s: &TestServer, seen: Arc<Mutex<BTreeSet<String>>>, done: impl Fn() -> bool) {
    while !done() {
        let r = s.get("/qs/fault/q?lease=30&timeout=1").await;
        match r.status().as_u16() {
            200 => {
                let receipt = r.headers()["x-queueserver-lease"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body = r.text().await.unwrap();
                seen.lock().unwrap().insert(body);
                // Acknowledged, else delivered again: at least once either way.
                let ack = s.delete(&format!("/qs/fault/q/leases/{receipt}")).await;
                assert!(
                    [204, 404, 503].contains(&ack.status().as_u16()),
                    "ack: {}",
                    ack.status()
                );
            }
            204 => {}
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("a pop answered {other}"),
        }
    }
}

/// Three clustered servers, and their client URLs.
fn cluster() -> (Vec<Option<NatsServer>>, Vec<String>) {
    let cluster: Vec<(u16, u16)> = (0..3)
        .map(|_| (nats::free_port(), nats::free_port()))
        .collect();
    let servers = (0..3)
        .map(|i| Some(NatsServer::start_in_cluster(i, &cluster)))
        .collect();
    let urls = cluster
        .iter()
        .map(|(p, _)| format!("nats://127.0.0.1:{p}"))
        .collect();
    (servers, urls)
}

/// A blobq node on `backend`, whose leases come back within 2 s of its loss.
async fn start(backend: String) -> TestServer {
    common::options()
        .arg("--backend", backend)
        .arg("--nats-ack-wait", 2)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_killed_under_load_loses_no_acknowledged_push() {
    if !nats::available() {
        return;
    }
    let (mut servers, urls) = cluster();
    // Node a knows only the server killed below (it learns the others from
    // it), so its connection is one of those lost; b knows them all.
    let a = Arc::new(start(urls[0].clone()).await);
    let b = Arc::new(start(urls.join(",")).await);
    let deadline = Instant::now() + RUN_WITHIN;
    // The cluster elects its leaders, then takes the stream (R3).
    assert!(
        push(&a, "warm-up".into(), deadline).await,
        "the cluster never took a push"
    );
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let pushing_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut consumers = Vec::new();
    for node in [a.clone(), b.clone()] {
        let (seen, acked, pushing_done) = (seen.clone(), acked.clone(), pushing_done.clone());
        consumers.push(tokio::spawn(async move {
            let done = || {
                let all = pushing_done.load(std::sync::atomic::Ordering::Acquire)
                    && acked.lock().unwrap().is_subset(&seen.lock().unwrap());
                all || Instant::now() > deadline
            };
            consume(&node, seen.clone(), done).await;
        }));
    }
    for i in 0..ELEMENTS {
        if i == ELEMENTS / 3 {
            // The first server goes away without a word.
            servers[0] = None;
        }
        let node = if i % 2 == 0 { &a } else { &b };
        let body = format!("element-{i}");
        if push(node, body.clone(), deadline).await {
            acked.lock().unwrap().insert(body);
        }
    }
    acked.lock().unwrap().insert("warm-up".into());
    pushing_done.store(true, std::sync::atomic::Ordering::Release);
    for consumer in consumers {
        consumer.await.expect("a consumer");
    }
    let (acked, seen) = (acked.lock().unwrap().clone(), seen.lock().unwrap().clone());
    eprintln!(
        "{} pushes acknowledged, {} distinct elements delivered",
        acked.len(),
        seen.len()
    );
    assert!(
        acked.len() > ELEMENTS / 2,
        "most pushes were acknowledged: {}",
        acked.len()
    );
    let reconnected = a
        .log()
        .iter()
        .any(|l| l.contains("lost the connection to NATS"));
    assert!(
        reconnected,
        "node a's server was killed under it: {:?}",
        a.log()
    );
    let lost: Vec<_> = acked.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "acknowledged pushes never delivered: {lost:?}"
    );
    drop(servers);
}

/// A blobq node killed while it holds leases: its clients go to the other
/// node, which keeps taking pushes, and the elements it had leased come
/// back there after the ack wait, long before their leases would have run
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blobq_node_killed_under_load_loses_nothing_it_had_leased() {
    if !nats::available() {
        return;
    }
    let (servers, urls) = cluster();
    let a = Arc::new(start(urls.join(",")).await);
    let b = start(urls.join(",")).await;
    let deadline = Instant::now() + RUN_WITHIN;
    let mut acked = BTreeSet::new();
    for i in 0..40 {
        let (node, body) = (if i % 2 == 0 { &*a } else { &b }, format!("before-{i}"));
        if push(node, body.clone(), deadline).await {
            acked.insert(body);
        }
    }
    let mut held = BTreeSet::new();
    for _ in 0..5 {
        let r = b.get("/qs/fault/q?lease=60").await;
        assert_eq!(r.status(), 200);
        held.insert(r.text().await.unwrap());
    }
    drop(b);
    let killed = Instant::now();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let producer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            for i in 0..40 {
                let body = format!("after-{i}");
                if push(&a, body.clone(), deadline).await {
                    acked.insert(body);
                }
            }
            acked
        })
    };
    let consumer = {
        let (a, seen) = (a.clone(), seen.clone());
        let wanted = acked.clone();
        tokio::spawn(async move {
            let done = || wanted.is_subset(&seen.lock().unwrap()) || Instant::now() > deadline;
            consume(&a, seen.clone(), done).await;
        })
    };
    acked.extend(producer.await.expect("the producer"));
    consumer.await.expect("the consumer");
    // What was pushed after the consumer last looked, then the rest.
    consume(&a, seen.clone(), || {
        acked.is_subset(&seen.lock().unwrap()) || Instant::now() > deadline
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let back: Vec<_> = held.difference(&seen).collect();
    assert!(
        back.is_empty(),
        "leased on the killed node, never back: {back:?}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "back after the ack wait, not after their 60 s leases"
    );
    let lost: Vec<_> = acked.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "acknowledged pushes never delivered: {lost:?}"
    );
    drop(servers);
}
