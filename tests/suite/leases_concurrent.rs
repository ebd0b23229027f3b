//! Many consumers at once through both nodes, some of which "crash"
//! holding a lease: nothing is lost and each element is acknowledged once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lease_ops::{ack, expect_counts, pop, push};
use super::{Case, Target};
use crate::common;

pub fn cases() -> Vec<Case> {
    vec![case!(
        concurrent_consumers_that_crash_lose_nothing_and_ack_each_element_once,
        "--max-deliveries" => "50"
    )]
}

/// SplitMix64: a deterministic stand-in for a random number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Default)]
struct Ledger {
    /// Successful (`204`) acknowledgements per element id.
    acks: HashMap<String, u32>,
    /// Delivery numbers seen per element id.
    deliveries: HashMap<String, Vec<u64>>,
    /// Receipts of deliveries whose consumer "crashed".
    abandoned: Vec<String>,
    /// Acknowledgements refused although the consumer acked at once.
    late_acks: u32,
}

pub async fn concurrent_consumers_that_crash_lose_nothing_and_ack_each_element_once(t: Target) {
    const ELEMENTS: usize = 200;
    const CONSUMERS: u64 = 4;
    let t = Arc::new(t);
    let mut ids = HashSet::new();
    for i in 0..ELEMENTS {
        ids.insert(push(t.node(i), "/qs/ns/work", format!("e{i}")).await);
    }
    assert_eq!(ids.len(), ELEMENTS);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumers = Vec::new();
    for c in 0..CONSUMERS {
        let (t, ledger) = (t.clone(), ledger.clone());
        consumers.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                if ledger.lock().unwrap().acks.len() >= ELEMENTS || Instant::now() > deadline {
                    return;
                }
                let node = t.node(c as usize);
                let got = pop(node, "/qs/ns/work?lease=0.5&timeout=1").await;
                if got.status == 204 {
                    continue;
                }
                assert_eq!(got.status, 200, "{got:?}");
                let id = got.id().to_owned();
                assert!(got.text().starts_with('e'), "{got:?}");
                ledger
                    .lock()
                    .unwrap()
                    .deliveries
                    .entry(id.clone())
                    .or_default()
                    .push(got.deliveries.expect("deliveries"));
                n += 1;
                let roll = mix((c << 32) | n) % 100;
                if roll < 30 {
                    // Crash: never ack; the lease runs out.
                    ledger
                        .lock()
                        .unwrap()
                        .abandoned
                        .push(got.receipt().to_owned());
                    continue;
                }
                // Acknowledged through either node.
                let settle = t.node(c as usize + (roll % 2) as usize);
                let status = ack(settle, "ns", "work", got.receipt()).await.status();
                let mut l = ledger.lock().unwrap();
                match status.as_u16() {
                    204 => *l.acks.entry(id).or_default() += 1,
                    404 => l.late_acks += 1,
                    other => panic!("ack answered {other}"),
                }
            }
        }));
    }
    for c in consumers {
        tokio::time::timeout(Duration::from_secs(40), c)
            .await
            .expect("consumer finished")
            .expect("consumer task");
    }

    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("sole owner")
        .into_inner()
        .unwrap();
    assert_eq!(
        ledger.acks.len(),
        ELEMENTS,
        "every element acknowledged within the deadline"
    );
    let acked: HashSet<String> = ledger.acks.keys().cloned().collect();
    assert_eq!(acked, ids, "exactly the pushed elements");
    for (id, n) in &ledger.acks {
        assert_eq!(*n, 1, "element {id} acknowledged {n} times");
    }
    assert!(
        !ledger.abandoned.is_empty(),
        "some consumers crashed, so redelivery was exercised"
    );
    for (id, seen) in &ledger.deliveries {
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        if t.counts_only_deliveries_seen() {
            let expected: Vec<u64> = (1..=seen.len() as u64).collect();
            assert_eq!(
                sorted, expected,
                "element {id} delivered once per delivery count"
            );
        } else {
            // A delivery handed back because its waiter left counts too.
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "element {id}: {seen:?}");
        }
    }
    let redelivered = ledger.deliveries.values().filter(|d| d.len() > 1).count();
    assert!(redelivered > 0, "some elements were redelivered");

    // Every abandoned lease ran out (its element was delivered again and
    // acked), so acknowledging it now must fail.
    for (i, receipt) in ledger.abandoned.iter().enumerate() {
        common::problem(ack(t.node(i), "ns", "work", receipt).await, 404).await;
    }
    expect_counts(&t, t.a(), "ns", "work", (0, 0), "all acknowledged").await;
    let dead = t.b().get("/qs/ns/work.dead/stats").await;
    if dead.status() == 200 {
        let v: serde_json::Value = dead.json().await.unwrap();
        assert_eq!(
            (v["elements"].as_u64(), v["leased"].as_u64()),
            (Some(0), Some(0)),
            "{v}"
        );
    } else {
        assert_eq!(dead.status(), 404, "no dead-letter queue was ever needed");
    }
    assert_eq!(t.sum("/qs", "leased").await, 0);
    assert_eq!(t.a().json("/qs", 200).await["elements"], 0);
    for node in t.nodes() {
        assert_eq!(pop(node, "/qs/ns/work").await.status, 204);
    }
    eprintln!(
        "{} deliveries, {} abandoned, {} late acks",
        ledger.deliveries.values().map(Vec::len).sum::<usize>(),
        ledger.abandoned.len(),
        ledger.late_acks
    );
}
