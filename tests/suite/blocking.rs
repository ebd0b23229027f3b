//! Blocking pops: woken by a push on either node, timeouts, waiters served
//! in arrival order, consumers that disconnect while waiting, and
//! concurrent producers and consumers spread over the nodes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Case, Target};
use crate::common::{TestServer, CLIENT_TIMEOUT, STEP};

/// Seconds a waiting pop of the cases below asks to wait when what it waits
/// for may be slow on a loaded machine: a push of a queue just made (on
/// NATS the stream and the consumer are made first, each up to the nodes'
/// 5 s request timeout, and a publish whose acknowledgement is late is sent
/// again), or an element that went to a waiter that had gone and comes back
/// after the 5 s ack wait. Short of [`CLIENT_TIMEOUT`], which bounds the
/// wait for the answer.
const SLOW_WAIT: u64 = 40;

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_blocked_pop_wakes_when_an_element_arrives_through_another_node),
        case!(a_blocked_pop_times_out_with_204_after_the_timeout),
        case!(waiters_are_served_in_arrival_order),
        case!(a_consumer_that_disconnects_while_waiting_is_forgotten),
        case!(an_element_goes_to_the_next_live_waiter_when_the_first_has_gone),
        case!(a_raw_waiter_receives_the_element_over_its_own_connection),
        case!(concurrent_producers_and_consumers_lose_and_duplicate_nothing),
        case!(the_first_pushes_and_waiting_pops_of_a_new_queue_at_once_all_succeed),
    ]
}

async fn pop_text(node: &TestServer, path: &str) -> (u16, String) {
    let r = node.get(path).await;
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

pub async fn a_blocked_pop_wakes_when_an_element_arrives_through_another_node(t: Target) {
    let waiter = {
        let (client, url) = (t.a().client.clone(), t.a().url("/qs/ns/q?timeout=10"));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get(url).send().await.expect("pop");
            (
                r.status().as_u16(),
                r.text().await.expect("body"),
                started.elapsed(),
            )
        })
    };
    t.b().wait_for_waiters("ns", "q", 1).await;
    assert_eq!(t.b().post("/qs/ns/q", "wake up").await.status(), 202);
    let (status, body, took) = tokio::time::timeout(STEP, waiter)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!((status, body.as_str()), (200, "wake up"));
    assert!(
        took < Duration::from_secs(9),
        "woken by the push, not the timeout ({took:?})"
    );
    t.settled(t.a(), "/qs/ns/q/stats", "nothing waiting or queued", |v| {
        (v["waiting"].as_u64(), v["elements"].as_u64()) == (Some(0), Some(0))
    })
    .await;
}

pub async fn a_blocked_pop_times_out_with_204_after_the_timeout(t: Target) {
    for node in t.nodes() {
        let started = Instant::now();
        let r = node.get("/qs/ns/q?timeout=0.4").await;
        let took = started.elapsed();
        assert_eq!(r.status(), 204);
        assert!(
            took >= Duration::from_millis(380),
            "waited the timeout, took {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "did not wait far past it, took {took:?}"
        );
    }
    t.a().wait_for_waiters("ns", "q", 0).await;
}

pub async fn waiters_are_served_in_arrival_order(t: Target) {
    let mut waiters = Vec::new();
    for i in 0..4u64 {
        waiters.push(t.node(i as usize).spawn_get("/qs/ns/fair?timeout=15"));
        // Register strictly one after the other.
        t.a().wait_for_waiters("ns", "fair", i + 1).await;
    }
    for i in 0..4 {
        let node = t.node(i + 1);
        assert_eq!(
            node.post("/qs/ns/fair", format!("e{i}")).await.status(),
            202
        );
    }
    for (i, w) in waiters.into_iter().enumerate() {
        let got = tokio::time::timeout(STEP, w)
            .await
            .expect("served")
            .expect("task");
        assert_eq!(
            got,
            (200, format!("e{i}")),
            "waiter {i} got the element pushed {i}th"
        );
    }
}

/// Opens a raw connection, sends a blocking pop and returns the socket.
async fn raw_blocking_pop(node: &TestServer, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(&node.addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", node.addr);
    s.write_all(req.as_bytes()).await.expect("send");
    s
}

pub async fn a_consumer_that_disconnects_while_waiting_is_forgotten(t: Target) {
    let gone = raw_blocking_pop(t.a(), "/qs/ns/q?timeout=60").await;
    t.b().wait_for_waiters("ns", "q", 1).await;
    drop(gone);
    // The server notices the closed connection and drops the waiter.
    t.b().wait_for_waiters("ns", "q", 0).await;
    assert_eq!(t.b().post("/qs/ns/q", "kept").await.status(), 202);
    let stats = t.a().json("/qs/ns/q/stats", 200).await;
    assert_eq!(stats["elements"], 1, "the element stayed queued: {stats}");
    assert_eq!(pop_text(t.b(), "/qs/ns/q").await, (200, "kept".to_owned()));
}

pub async fn an_element_goes_to_the_next_live_waiter_when_the_first_has_gone(t: Target) {
    let gone = raw_blocking_pop(t.a(), "/qs/ns/q?timeout=60").await;
    t.a().wait_for_waiters("ns", "q", 1).await;
    let live = t.b().spawn_get(&format!("/qs/ns/q?timeout={SLOW_WAIT}"));
    t.a().wait_for_waiters("ns", "q", 2).await;
    drop(gone);
    // Push without waiting for the server to notice: whichever way the race
    // goes, the live waiter must get the element and nothing may be lost.
    // On NATS the element may first go to the gone waiter's pull request
    // (its end not yet known across the cluster), be lost in flight and come
    // back after the ack wait: the live waiter waits for longer than that.
    assert_eq!(t.a().post("/qs/ns/q", "for the living").await.status(), 202);
    let got = tokio::time::timeout(CLIENT_TIMEOUT, live)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(got, (200, "for the living".to_owned()));
    t.a()
        .wait_for_json("/qs/ns/q/stats", "no waiters, nothing queued", |v| {
            v["waiting"] == 0 && v["elements"] == 0
        })
        .await;
    assert_eq!(t.sum("/qs/ns/q/stats", "popped").await, 1);
}

pub async fn a_raw_waiter_receives_the_element_over_its_own_connection(t: Target) {
    let mut s = raw_blocking_pop(t.a(), "/qs/ns/raw?timeout=10").await;
    t.a().wait_for_waiters("ns", "raw", 1).await;
    assert_eq!(t.b().post("/qs/ns/raw", "bytes\0here").await.status(), 202);
    let mut buf = Vec::new();
    let deadline = Instant::now() + STEP;
    while !buf.ends_with(b"bytes\0here") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed early: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

pub async fn concurrent_producers_and_consumers_lose_and_duplicate_nothing(t: Target) {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const PER_PRODUCER: usize = 250;
    let mut tasks = Vec::new();
    for c in 0..CONSUMERS {
        let node = t.node(c);
        let (client, url) = (node.client.clone(), node.url("/qs/ns/busy?timeout=2"));
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let r = client.get(&url).send().await.expect("pop");
                match r.status().as_u16() {
                    200 => got.push(r.text().await.expect("body")),
                    204 => return got, // two quiet seconds: the producers are done
                    s => panic!("consumer {c}: {s} {}", r.text().await.unwrap_or_default()),
                }
            }
        }));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let node = t.node(p + 1);
        let (client, url) = (node.client.clone(), node.url("/qs/ns/busy"));
        producers.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                let r = client
                    .post(&url)
                    .body(format!("p{p}-{i}"))
                    .send()
                    .await
                    .expect("push");
                let status = r.status();
                assert_eq!(status, 202, "push: {}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for p in producers {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .expect("producers done")
            .expect("task");
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("consumers done")
                .expect("task"),
        );
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        PRODUCERS * PER_PRODUCER,
        "every element delivered"
    );
    assert_eq!(unique.len(), all.len(), "no element delivered twice");
    let total = (PRODUCERS * PER_PRODUCER) as u64;
    assert_eq!(t.sum("/qs/ns/busy/stats", "pushed").await, total);
    assert_eq!(t.sum("/qs/ns/busy/stats", "popped").await, total);
    t.settled(t.a(), "/qs/ns/busy/stats", "nothing queued", |v| {
        v["elements"] == 0
    })
    .await;
}

pub async fn the_first_pushes_and_waiting_pops_of_a_new_queue_at_once_all_succeed(t: Target) {
    // Nothing exists yet: the first requests race to make the namespace
    // and the queue (on NATS, its stream and consumer, through two nodes).
    let mut tasks = Vec::new();
    for i in 0..8usize {
        let node = t.node(i);
        let (client, url) = (node.client.clone(), node.url("/qs/fresh/q"));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = if i % 2 == 0 {
                client.post(&url).body(format!("e{i}")).send().await
            } else {
                client
                    .get(format!("{url}?timeout={SLOW_WAIT}"))
                    .send()
                    .await
            };
            let r = r.expect("request");
            let status = r.status().as_u16();
            (i, status, r.text().await.expect("body"), started.elapsed())
        }));
    }
    // The pushes first, so that a refused one is told at once rather than
    // after the pops have waited for it; each request is bounded by its
    // client's timeout.
    let (pushes, pops): (Vec<_>, Vec<_>) =
        tasks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut popped = Vec::new();
    for (_, task) in pushes.into_iter().chain(pops) {
        let (i, status, body, took) = tokio::time::timeout(CLIENT_TIMEOUT, task)
            .await
            .expect("answered")
            .expect("task");
        if i % 2 == 0 {
            assert_eq!(status, 202, "push {i} after {took:?}: {body}");
        } else {
            assert_eq!(status, 200, "pop {i} after {took:?}: {body}");
            popped.push(body);
        }
    }
    popped.sort();
    assert_eq!(popped, ["e0", "e2", "e4", "e6"], "each pushed element once");
}
