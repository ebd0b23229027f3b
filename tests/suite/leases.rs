//! Leases: a pop under `?lease=S` hides the element until it is
//! acknowledged, released, extended or its lease runs out, settled through
//! either node; a lease that runs out hands the element back at the head,
//! and after `--max-deliveries` deliveries into `{queue}.dead`.

use std::time::{Duration, Instant};

use super::lease_ops::{
    ack, counts_after_hand_back, expect_counts, extend, lease, lease_ran_out, looks_like_uuid, pop,
    push, read_pop, release,
};
use super::{Case, Target};
use crate::common::{self, STEP};

pub fn cases() -> Vec<Case> {
    vec![
        case!(a_leased_element_is_hidden_until_acknowledged_and_then_gone_for_good),
        case!(release_hands_the_element_back_at_the_head_at_once),
        case!(a_lease_that_runs_out_returns_the_element_to_the_head),
        case!(an_element_delivered_max_deliveries_times_moves_to_the_dead_letter_queue, "--max-deliveries" => "2"),
        case!(extend_keeps_a_lease_running_and_fails_once_it_ran_out),
        case!(a_lease_that_runs_out_wakes_a_waiting_consumer),
        case!(unknown_receipts_and_bad_lease_requests_are_refused, "--max-lease" => "60"),
        case!(a_header_only_lease_leaves_the_blob_readable),
    ]
}

pub async fn a_leased_element_is_hidden_until_acknowledged_and_then_gone_for_good(t: Target) {
    let id = push(t.a(), "/qs/ns/q", "job").await;

    let got = lease(t.b(), "/qs/ns/q?lease=0.5").await;
    assert_eq!((got.id(), got.text()), (id.as_str(), "job"));
    assert!(
        looks_like_uuid(got.receipt()),
        "receipt is a UUID: {}",
        got.receipt()
    );
    assert_eq!(got.deliveries, Some(1), "first delivery");

    for node in t.nodes() {
        let other = pop(node, "/qs/ns/q").await;
        assert_eq!(other.status, 204, "invisible while leased: {other:?}");
        let other = pop(node, "/qs/ns/q?lease=5").await;
        assert_eq!(other.status, 204, "invisible to leased pops too: {other:?}");
        expect_counts(&t, node, "ns", "q", (0, 1), "the counts").await;
    }
    // Each node's totals count the leases it granted.
    assert_eq!(t.sum("/qs", "leased").await, 1);
    let totals = t.a().json("/qs", 200).await;
    assert_eq!(totals["elements"], 0, "{totals}");

    // Acknowledged through the other node than the one that granted it.
    let r = ack(t.a(), "ns", "q", got.receipt()).await;
    assert_eq!(r.status(), 204);
    expect_counts(&t, t.b(), "ns", "q", (0, 0), "the counts").await;
    assert_eq!(t.sum("/qs", "leased").await, 0);

    for node in t.nodes() {
        let again = ack(node, "ns", "q", got.receipt()).await;
        let p = common::problem(again, 404).await;
        assert!(
            p["detail"].as_str().unwrap().contains(got.receipt()),
            "the detail names the receipt: {p}"
        );
    }

    // Past the lease's length, an acknowledged element does not come back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(pop(t.b(), "/qs/ns/q").await.status, 204);
    expect_counts(&t, t.a(), "ns", "q", (0, 0), "the counts").await;
}

pub async fn release_hands_the_element_back_at_the_head_at_once(t: Target) {
    let a = push(t.a(), "/qs/ns/q", "a").await;
    let b = push(t.b(), "/qs/ns/q", "b").await;

    let first = lease(t.a(), "/qs/ns/q?lease=30").await;
    assert_eq!((first.id(), first.deliveries), (a.as_str(), Some(1)));
    expect_counts(&t, t.b(), "ns", "q", (1, 1), "the counts").await;
    let r = release(t.b(), "ns", "q", first.receipt()).await;
    assert_eq!(r.status(), 204);
    counts_after_hand_back(&t, "ns", "q", 1, 0, 1).await;
    for node in t.nodes() {
        common::problem(release(node, "ns", "q", first.receipt()).await, 404).await;
        common::problem(ack(node, "ns", "q", first.receipt()).await, 404).await;
    }

    let second = lease(t.b(), "/qs/ns/q?lease=30").await;
    assert_eq!(
        (second.id(), second.text(), second.deliveries),
        (a.as_str(), "a", Some(2)),
        "released to the head, its deliveries counted"
    );
    assert_ne!(
        second.receipt(),
        first.receipt(),
        "a new lease, a new receipt"
    );
    assert_eq!(
        release(t.a(), "ns", "q", second.receipt()).await.status(),
        204
    );

    let p = pop(t.a(), "/qs/ns/q").await;
    assert_eq!((p.status, p.id(), p.text()), (200, a.as_str(), "a"));
    assert!(p.receipt.is_none(), "a plain pop has no lease: {p:?}");
    let p = pop(t.b(), "/qs/ns/q").await;
    assert_eq!((p.status, p.id(), p.text()), (200, b.as_str(), "b"));
    assert_eq!(pop(t.a(), "/qs/ns/q").await.status, 204);
}

pub async fn a_lease_that_runs_out_returns_the_element_to_the_head(t: Target) {
    let a = push(t.a(), "/qs/ns/q", "a").await;
    push(t.b(), "/qs/ns/q", "b").await;
    let c = push(t.a(), "/qs/ns/q", "c").await;

    let granted = Instant::now();
    let first = lease(t.b(), "/qs/ns/q?lease=0.5").await;
    assert_eq!(first.id(), a);
    let b_pop = pop(t.a(), "/qs/ns/q").await;
    assert_eq!(
        (b_pop.status, b_pop.text()),
        (200, "b"),
        "a is out on lease"
    );

    lease_ran_out(&t, "ns", "q", granted, 0.5).await;
    assert!(
        granted.elapsed() < Duration::from_secs(5),
        "the lease ran out on time ({:?})",
        granted.elapsed()
    );
    counts_after_hand_back(&t, "ns", "q", 1, 0, 1).await;

    let again = lease(t.a(), "/qs/ns/q?lease=30").await;
    assert_eq!(
        (again.id(), again.text(), again.deliveries),
        (a.as_str(), "a", Some(2)),
        "back at the head, before c, delivered a second time"
    );
    for node in t.nodes() {
        common::problem(ack(node, "ns", "q", first.receipt()).await, 404).await;
    }
    assert_eq!(ack(t.b(), "ns", "q", again.receipt()).await.status(), 204);
    let last = pop(t.b(), "/qs/ns/q").await;
    assert_eq!((last.status, last.id()), (200, c.as_str()));
    assert_eq!(pop(t.a(), "/qs/ns/q").await.status, 204);
}

pub async fn an_element_delivered_max_deliveries_times_moves_to_the_dead_letter_queue(t: Target) {
    let max = t.max_deliveries();
    let id = push(t.a(), "/qs/ns/jobs", "poison").await;
    for round in 1..=max {
        let granted = Instant::now();
        let got = lease(t.node(round as usize), "/qs/ns/jobs?lease=0.3").await;
        assert_eq!((got.id(), got.deliveries), (id.as_str(), Some(round)));
        lease_ran_out(&t, "ns", "jobs", granted, 0.3).await;
    }
    t.a()
        .wait_for_json("/qs/ns/jobs.dead/stats", "the dead letter", |v| {
            v["elements"] == 1
        })
        .await;
    expect_counts(&t, t.a(), "ns", "jobs", (0, 0), "not back in jobs").await;
    assert_eq!(pop(t.b(), "/qs/ns/jobs").await.status, 204);
    expect_counts(&t, t.b(), "ns", "jobs.dead", (1, 0), "the counts").await;

    // A release on the last allowed delivery dead-letters as well, at the tail.
    let released = push(t.b(), "/qs/ns/jobs", "released").await;
    for round in 1..=max {
        let got = lease(t.node(round as usize), "/qs/ns/jobs?lease=30").await;
        assert_eq!((got.id(), got.deliveries), (released.as_str(), Some(round)));
        let settle = t.node(round as usize + 1);
        assert_eq!(
            release(settle, "ns", "jobs", got.receipt()).await.status(),
            204
        );
    }
    expect_counts(&t, t.a(), "ns", "jobs", (0, 0), "the counts").await;
    expect_counts(&t, t.b(), "ns", "jobs.dead", (2, 0), "the counts").await;

    let dead = pop(t.a(), "/qs/ns/jobs.dead").await;
    assert_eq!(
        (dead.status, dead.id(), dead.text()),
        (200, id.as_str(), "poison"),
        "the same element, in the dead-letter queue"
    );
    let dead = pop(t.b(), "/qs/ns/jobs.dead").await;
    assert_eq!(
        (dead.status, dead.id(), dead.text()),
        (200, released.as_str(), "released")
    );
    assert_eq!(pop(t.a(), "/qs/ns/jobs.dead").await.status, 204);
}

pub async fn extend_keeps_a_lease_running_and_fails_once_it_ran_out(t: Target) {
    let id = push(t.a(), "/qs/ns/q", "slow job").await;
    let got = lease(t.a(), "/qs/ns/q?lease=0.6").await;

    // Extended through the node that did not grant it.
    let r = extend(t.b(), "ns", "q", got.receipt(), "?lease=3").await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("extend answer");
    assert_eq!(v["receipt"], got.receipt(), "{v}");
    assert_eq!(v["lease"], 3, "seconds now left: {v}");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    expect_counts(
        &t,
        t.b(),
        "ns",
        "q",
        (0, 1),
        "still leased past the first length",
    )
    .await;
    assert_eq!(pop(t.b(), "/qs/ns/q").await.status, 204);
    assert_eq!(ack(t.a(), "ns", "q", got.receipt()).await.status(), 204);
    for node in t.nodes() {
        common::problem(
            extend(node, "ns", "q", got.receipt(), "?lease=3").await,
            404,
        )
        .await;
    }

    // Bad extension requests are refused without touching the lease.
    let id2 = push(t.b(), "/qs/ns/q", "short").await;
    let granted = Instant::now();
    let short = lease(t.b(), "/qs/ns/q?lease=0.3").await;
    assert_eq!(short.id(), id2);
    for (i, bad) in [
        "",
        "?lease=",
        "?lease=0",
        "?lease=abc",
        "?lease=-1",
        "?other=1",
    ]
    .into_iter()
    .enumerate()
    {
        let r = extend(t.node(i), "ns", "q", short.receipt(), bad).await;
        common::problem(r, 400).await;
    }

    // Past its deadline (whether or not the sweeper ran) it cannot be extended
    // and the element is back in the queue.
    tokio::time::sleep_until((granted + Duration::from_millis(800)).into()).await;
    for node in t.nodes() {
        let p = common::problem(
            extend(node, "ns", "q", short.receipt(), "?lease=3").await,
            404,
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains(short.receipt()),
            "{p}"
        );
    }
    let back = pop(t.a(), "/qs/ns/q").await;
    assert_eq!((back.status, back.id()), (200, id2.as_str()));
    assert_ne!(id, id2);
}

pub async fn a_lease_that_runs_out_wakes_a_waiting_consumer(t: Target) {
    let id = push(t.a(), "/qs/ns/q", "abandoned").await;
    let crashed = lease(t.a(), "/qs/ns/q?lease=0.5").await;
    assert_eq!(crashed.deliveries, Some(1));

    let waiter = {
        let (client, url) = (
            t.b().client.clone(),
            t.b().url("/qs/ns/q?timeout=5&lease=5"),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client.get(url).send().await.expect("pop");
            (read_pop(r).await, started.elapsed())
        })
    };
    t.a().wait_for_waiters("ns", "q", 1).await;
    let (got, took) = tokio::time::timeout(STEP, waiter)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        (got.id(), got.text(), got.deliveries),
        (id.as_str(), "abandoned", Some(2))
    );
    assert!(
        took < Duration::from_secs(4),
        "woken by the lease running out, not the timeout ({took:?})"
    );
    assert_ne!(got.receipt(), crashed.receipt());
    expect_counts(&t, t.a(), "ns", "q", (0, 1), "the counts").await;
    for node in t.nodes() {
        common::problem(ack(node, "ns", "q", crashed.receipt()).await, 404).await;
    }
    assert_eq!(ack(t.a(), "ns", "q", got.receipt()).await.status(), 204);
    expect_counts(&t, t.b(), "ns", "q", (0, 0), "the counts").await;
}

pub async fn unknown_receipts_and_bad_lease_requests_are_refused(t: Target) {
    push(t.a(), "/qs/ns/q", "x").await;
    push(t.b(), "/qs/ns/other", "y").await;
    let got = lease(t.a(), "/qs/ns/q?lease=30").await;
    let receipt = got.receipt().to_owned();

    let unknown = "00000000-0000-4000-8000-000000000000";
    for node in t.nodes() {
        for r in [unknown, "not-a-receipt", "12345"] {
            common::problem(ack(node, "ns", "q", r).await, 404).await;
            common::problem(release(node, "ns", "q", r).await, 404).await;
            common::problem(extend(node, "ns", "q", r, "?lease=1").await, 404).await;
        }
        // Another queue or namespace does not know this receipt.
        common::problem(ack(node, "ns", "other", &receipt).await, 404).await;
        common::problem(release(node, "ns", "other", &receipt).await, 404).await;
        common::problem(extend(node, "ns", "other", &receipt, "?lease=1").await, 404).await;
        common::problem(ack(node, "elsewhere", "q", &receipt).await, 404).await;
    }
    expect_counts(&t, t.a(), "ns", "other", (1, 0), "untouched").await;
    expect_counts(&t, t.b(), "ns", "q", (0, 1), "still leased").await;
    assert_eq!(ack(t.b(), "ns", "q", &receipt).await.status(), 204);

    push(t.a(), "/qs/ns/q", "z").await;
    for (i, bad) in [
        "lease=0",
        "lease=-1",
        "lease=abc",
        "lease=",
        "lease=61",
        "lease=0.0001",
        "lease=1&lease=2",
    ]
    .into_iter()
    .enumerate()
    {
        let r = t.node(i).get(&format!("/qs/ns/q?{bad}")).await;
        let p = common::problem(r, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains("lease"),
            "{bad}: {p}"
        );
    }
    expect_counts(&t, t.a(), "ns", "q", (1, 0), "nothing was leased").await;
    let ok = lease(t.b(), "/qs/ns/q?lease=60").await;
    assert_eq!(ok.text(), "z", "the maximum itself is allowed");

    let long = "x".repeat(59);
    push(t.a(), &format!("/qs/ns/{long}"), "long").await;
    for node in t.nodes() {
        let r = node.get(&format!("/qs/ns/{long}?lease=5")).await;
        let p = common::problem(r, 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains(".dead"),
            "the detail explains the dead-letter name: {p}"
        );
    }
    expect_counts(&t, t.a(), "ns", &long, (1, 0), "not taken").await;
    let fits = "x".repeat(58);
    push(t.b(), &format!("/qs/ns/{fits}"), "fits").await;
    let got = lease(t.a(), &format!("/qs/ns/{fits}?lease=5")).await;
    assert_eq!(got.text(), "fits");
}

pub async fn a_header_only_lease_leaves_the_blob_readable(t: Target) {
    let id = push(t.a(), "/qs/ns/q", "payload").await;
    let got = lease(t.b(), "/qs/ns/q?lease=30&header_only=1").await;
    assert_eq!(got.id(), id);
    assert!(got.body.is_empty(), "no body: {got:?}");
    assert_eq!(got.content_length, Some(0));
    let blob = got.blob_id.clone().expect("X-BlobStorage_Id");

    let r = t.a().get(&format!("/tbs/ns/blobs/{blob}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "payload");

    assert_eq!(ack(t.a(), "ns", "q", got.receipt()).await.status(), 204);
    for node in t.nodes() {
        let r = node.get(&format!("/tbs/ns/blobs/{blob}")).await;
        assert_eq!(r.status(), 200, "the exposed blob outlives the ack");
        assert_eq!(r.text().await.unwrap(), "payload");
    }
}
