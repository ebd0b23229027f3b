//! The behaviour every engine behind [`Backend`] must show, as one suite.
//!
//! Each case is an async function taking a [`Fresh`] backend; the macro
//! [`backend_suite!`](crate::backend_suite) turns a factory of fresh
//! backends into one `#[tokio::test]` per case. An engine runs the suite
//! from its own tests (the embedded store does, in memory and durable
//! mode); integration tests can too, which is why this is a public, hidden
//! module rather than a `#[cfg(test)]` one.
//!
//! A factory must configure its backend as the constants below say:
//! dead-lettering after [`MAX_DELIVERIES`], and a quota on
//! [`LIMITED_NAMESPACE`] only. Cases that wait for time to pass (leases,
//! expiry) take a second or two.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

mod batch;
pub use batch::*;

use super::name::Name;
use super::{Backend, BackendError, IncomingBody, Page, Payload, PopOptions, Popped, PushOptions};

/// Deliveries under lease after which an element goes to the dead-letter queue.
pub const MAX_DELIVERIES: u32 = 3;
/// The one namespace with a quota.
pub const LIMITED_NAMESPACE: &str = "limited";
/// Elements [`LIMITED_NAMESPACE`] may hold.
pub const LIMITED_MAX_ELEMENTS: u64 = 2;
/// Blob bytes [`LIMITED_NAMESPACE`] may hold.
pub const LIMITED_MAX_BYTES: u64 = 64;

/// A backend made for one case, with whatever must outlive it (a
/// temporary directory, a server process).
pub struct Fresh {
    pub backend: Arc<dyn Backend>,
    pub guard: Box<dyn Any + Send>,
}

/// One `#[tokio::test]` per case of the suite, each on a backend from
/// `$factory`, an async fn returning a [`Fresh`].
#[macro_export]
#[doc(hidden)]
macro_rules! backend_suite {
    ($factory:expr) => {
        $crate::backend_suite!(@cases $factory;
            fifo_push_pop,
            header_only_pop_leaves_the_blob_readable,
            reference_push_shares_a_blob_and_an_unknown_one_is_not_found,
            a_deleted_blob_makes_a_data_pop_gone,
            a_shared_blob_lives_until_its_last_element_is_consumed,
            a_blocking_pop_is_woken_by_a_push,
            a_dropped_waiter_never_receives_and_the_element_stays_queued,
            a_pop_that_times_out_returns_none,
            leases_ack_release_and_extend,
            a_purge_removes_ready_elements_and_leaves_leased_ones,
            a_lease_that_runs_out_returns_the_element_then_dead_letters_it,
            quotas_refuse_what_would_break_them,
            an_element_expires_after_its_lifetime,
            statistics_count_what_happened,
            listings_come_in_pages,
            shutdown_answers_waiters_shutting_down,
            // Batches (`suite/batch.rs`).
            a_batch_is_pushed_in_order_and_popped_in_a_batch,
            a_refused_or_dropped_batch_stores_nothing,
            a_waiting_batch_pop_takes_the_whole_batch_that_woke_it,
            a_leased_batch_is_settled_by_one_acknowledgement,
            a_batch_pop_marks_deleted_blobs_gone_and_header_only_exposes,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                $crate::backend::suite::$case(($factory)().await).await;
            }
        )*
    };
}

/// A page larger than any listing of the suite.
fn whole() -> Page {
    Page::first(1000)
}

fn name(s: &str) -> Name {
    Name::parse(s).expect("a valid name")
}

fn names() -> (Name, Name) {
    (name("ns"), name("q"))
}

fn lives(lifetime: u64) -> PushOptions {
    PushOptions {
        lifetime,
        ..PushOptions::default()
    }
}

const DATA: PopOptions = PopOptions {
    with_data: true,
    lease: None,
    wait: Duration::ZERO,
};

const HEADER: PopOptions = PopOptions {
    with_data: false,
    lease: None,
    wait: Duration::ZERO,
};

fn waiting(wait: Duration) -> PopOptions {
    PopOptions { wait, ..DATA }
}

fn leased(lease: Duration, wait: Duration) -> PopOptions {
    PopOptions {
        lease: Some(lease),
        wait,
        ..DATA
    }
}

async fn push(b: &dyn Backend, ns: &Name, q: &Name, body: &[u8]) -> super::Pushed {
    let body = IncomingBody::from_bytes(body.to_vec());
    b.push(ns, q, body, lives(60)).await.expect("push")
}

async fn bytes_of(payload: Payload) -> Vec<u8> {
    match payload {
        Payload::Bytes(b) => b.to_vec(),
        Payload::Stream { mut chunks, .. } => {
            let mut out = Vec::new();
            while let Some(chunk) = chunks.next().await {
                out.extend_from_slice(&chunk.expect("a readable body"));
            }
            out
        }
    }
}

async fn body_of(popped: Popped) -> Vec<u8> {
    bytes_of(popped.body.expect("a data pop returns data")).await
}

/// Waits (up to 5 s) until `what` holds, checking every few milliseconds.
async fn eventually<F: Future<Output = bool>>(mut what: impl FnMut() -> F) {
    let started = Instant::now();
    while !what().await {
        assert!(started.elapsed() < Duration::from_secs(5), "never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn waiting_on(b: &dyn Backend, ns: &Name, q: &Name) -> u64 {
    b.queue_stats(ns, q)
        .await
        .expect("stats")
        .map_or(0, |s| s.counts.waiting)
}

pub async fn fifo_push_pop(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let mut ids = Vec::new();
    // Small and large bodies: an engine may keep them differently.
    for body in [&b"one"[..], &[2u8; 100], b"three"] {
        ids.push(push(b, &ns, &q, body).await.id);
    }
    for (id, body) in ids.iter().zip([&b"one"[..], &[2u8; 100], b"three"]) {
        let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
        assert_eq!((p.id, p.size), (*id, body.len() as u64));
        assert_eq!(body_of(p).await, body);
    }
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
}

pub async fn header_only_pop_leaves_the_blob_readable(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, b"the bytes").await;
    let p = b.pop(&ns, &q, HEADER).await.unwrap().expect("an element");
    assert!(p.body.is_none());
    assert_eq!((p.size, p.blob_id), (9, pushed.blob_id));
    let id = p.blob_id.expect("a blob id").to_string();
    let read = b.read_blob(&ns, &id, false).await.unwrap();
    assert_eq!(bytes_of(read.body).await, b"the bytes");
    // Read, not consumed; then read and deleted.
    let read = b.read_blob(&ns, &id, true).await.unwrap();
    assert_eq!(bytes_of(read.body).await, b"the bytes");
    let gone = b.read_blob(&ns, &id, false).await;
    assert!(matches!(gone, Err(BackendError::BlobNotFound { .. })));
}

pub async fn reference_push_shares_a_blob_and_an_unknown_one_is_not_found(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let stored = b
        .store_blob(&ns, IncomingBody::from_bytes(&b"shared"[..]), lives(60))
        .await
        .unwrap();
    let id = stored.id.to_string();
    for _ in 0..2 {
        b.push_reference(&ns, &q, Some(&id), lives(60))
            .await
            .unwrap();
    }
    assert_eq!(
        b.namespace_stats(&ns, &whole())
            .await
            .expect("stats")
            .unwrap()
            .blobs,
        1,
        "stored once"
    );
    for _ in 0..2 {
        let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
        assert_eq!(p.blob_id, Some(stored.id));
        assert_eq!(body_of(p).await, b"shared");
    }
    // Without a blob: a header-only element.
    b.push_reference(&ns, &q, None, lives(60)).await.unwrap();
    let p = b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
    assert!(p.body.is_none() && p.blob_id.is_none());
    let unknown = super::ids::BlobId::random().to_string();
    for bad in [unknown.as_str(), "not-an-id"] {
        let refused = b.push_reference(&ns, &q, Some(bad), lives(60)).await;
        assert!(
            matches!(&refused, Err(BackendError::BlobNotFound { id, .. }) if id == bad),
            "{refused:?}"
        );
    }
    assert!(
        b.pop(&ns, &q, DATA).await.unwrap().is_none(),
        "nothing pushed"
    );
}

pub async fn a_deleted_blob_makes_a_data_pop_gone(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, &[3u8; 40]).await;
    let id = pushed.blob_id.expect("a blob").to_string();
    b.push_reference(&ns, &q, Some(&id), lives(60))
        .await
        .unwrap();
    b.delete_blob(&ns, &id).await.unwrap();
    let gone = b.pop(&ns, &q, DATA).await;
    assert!(matches!(gone, Err(BackendError::BlobGone)), "{gone:?}");
    let gone = b.pop(&ns, &q, DATA).await;
    assert!(matches!(gone, Err(BackendError::BlobGone)), "{gone:?}");
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none(), "consumed");
    let again = b.delete_blob(&ns, &id).await;
    assert!(matches!(again, Err(BackendError::BlobNotFound { .. })));
}

pub async fn a_shared_blob_lives_until_its_last_element_is_consumed(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let (x, y) = (name("x"), name("y"));
    let pushed = push(b, &ns, &q, b"8 bytes!").await;
    let id = pushed.blob_id.expect("a blob").to_string();
    for target in [&x, &y] {
        b.push_reference(&ns, target, Some(&id), lives(60))
            .await
            .unwrap();
    }
    for queue in [&q, &x] {
        let p = b.pop(&ns, queue, DATA).await.unwrap().expect("an element");
        assert_eq!(body_of(p).await, b"8 bytes!");
        let stats = b
            .namespace_stats(&ns, &whole())
            .await
            .expect("stats")
            .unwrap();
        assert_eq!((stats.blobs, stats.blob_bytes), (1, 8), "still referenced");
    }
    let last = b.pop(&ns, &y, DATA).await.unwrap().expect("an element");
    assert_eq!(body_of(last).await, b"8 bytes!");
    let stats = b
        .namespace_stats(&ns, &whole())
        .await
        .expect("stats")
        .unwrap();
    assert_eq!((stats.blobs, stats.blob_bytes), (0, 0));
    assert_eq!(b.totals().memory_bytes + b.totals().disk_bytes, 0);
}

pub async fn a_blocking_pop_is_woken_by_a_push(fresh: Fresh) {
    let b = fresh.backend.clone();
    let (ns, q) = names();
    let waiter = {
        let (b, ns, q) = (b.clone(), ns.clone(), q.clone());
        tokio::spawn(async move { b.pop(&ns, &q, waiting(Duration::from_secs(10))).await })
    };
    eventually(|| async { waiting_on(&*b, &ns, &q).await == 1 }).await;
    let pushed = push(&*b, &ns, &q, &[7u8; 100]).await;
    let p = waiter.await.unwrap().unwrap().expect("the pushed element");
    assert_eq!(p.id, pushed.id);
    assert_eq!(body_of(p).await, vec![7u8; 100]);
    assert_eq!(waiting_on(&*b, &ns, &q).await, 0);
}

pub async fn a_dropped_waiter_never_receives_and_the_element_stays_queued(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let mut pop = Box::pin(b.pop(&ns, &q, waiting(Duration::from_secs(10))));
    // Poll the pop until it waits, as a connection's task would.
    let started = Instant::now();
    while waiting_on(b, &ns, &q).await == 0 {
        tokio::select! {
            biased;
            done = &mut pop => panic!("an empty queue's pop returned {done:?}"),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never waited");
    }
    // The push may hand the element to the waiter, which then goes away
    // without being polled again: the client disconnected.
    let pushed = push(b, &ns, &q, b"kept").await;
    drop(pop);
    let counts = b.queue_stats(&ns, &q).await.expect("stats").unwrap().counts;
    assert_eq!((counts.elements, counts.waiting), (1, 0));
    let p = b.pop(&ns, &q, DATA).await.unwrap().expect("still queued");
    assert_eq!(p.id, pushed.id);
    assert_eq!(body_of(p).await, b"kept");
}

pub async fn a_pop_that_times_out_returns_none(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let started = Instant::now();
    let popped = b.pop(&ns, &q, waiting(Duration::from_millis(200))).await;
    assert!(popped.unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(waiting_on(b, &ns, &q).await, 0, "the waiter is gone");
}

pub async fn leases_ack_release_and_extend(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, b"job").await;
    let minute = Duration::from_secs(60);
    let p = b.pop(&ns, &q, leased(minute, Duration::ZERO)).await;
    let p = p.unwrap().expect("an element");
    let lease = p.lease.expect("a lease");
    assert_eq!((p.id, lease.deliveries), (pushed.id, 1));
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none(), "invisible");
    assert_eq!(
        b.queue_stats(&ns, &q)
            .await
            .expect("stats")
            .unwrap()
            .counts
            .leased,
        1
    );
    let receipt = lease.receipt.to_string();
    let left = b.extend(&ns, &q, &receipt, Duration::from_secs(120)).await;
    assert!((119..=120).contains(&left.unwrap()));
    b.release(&ns, &q, &receipt).await.unwrap();
    let p = b.pop(&ns, &q, leased(minute, Duration::ZERO)).await;
    let p = p.unwrap().expect("released: back in the queue");
    let lease = p.lease.expect("a lease");
    assert_eq!((p.id, lease.deliveries), (pushed.id, 2));
    assert_eq!(body_of(p).await, b"job");
    let receipt = lease.receipt.to_string();
    b.ack(&ns, &q, &receipt).await.unwrap();
    assert!(
        b.pop(&ns, &q, DATA).await.unwrap().is_none(),
        "acknowledged"
    );
    let counts = b.queue_stats(&ns, &q).await.expect("stats").unwrap().counts;
    assert_eq!((counts.elements, counts.leased), (0, 0));
    let unknown = super::ids::Receipt::random().to_string();
    for r in [receipt.as_str(), unknown.as_str(), "not-a-receipt"] {
        let not_found = |e: &BackendError| matches!(e, BackendError::LeaseNotFound { receipt, .. } if receipt == r);
        assert!(not_found(&b.ack(&ns, &q, r).await.unwrap_err()));
        assert!(not_found(&b.release(&ns, &q, r).await.unwrap_err()));
        assert!(not_found(&b.extend(&ns, &q, r, minute).await.unwrap_err()));
    }
    let other = name("other");
    let err = b.ack(&other, &q, &unknown).await.unwrap_err();
    assert!(matches!(err, BackendError::LeaseNotFound { .. }));
}

pub async fn a_purge_removes_ready_elements_and_leaves_leased_ones(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    for body in [b"leased".as_slice(), b"two", b"three"] {
        push(b, &ns, &q, body).await;
    }
    let lease = leased(Duration::from_secs(60), Duration::ZERO);
    let held = b.pop(&ns, &q, lease).await.unwrap().expect("an element");
    assert_eq!(b.purge(&ns, &q).await.unwrap(), 2);
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
    let counts = b
        .queue_stats(&ns, &q)
        .await
        .unwrap()
        .expect("a queue")
        .counts;
    assert_eq!(
        (counts.elements, counts.bytes, counts.leased, counts.popped),
        (0, 0, 1, 1)
    );
    let receipt = held.lease.expect("a lease").receipt.to_string();
    b.ack(&ns, &q, &receipt)
        .await
        .expect("the leased element is still held");
    assert_eq!(b.totals().memory_bytes + b.totals().disk_bytes, 0);
    assert_eq!(b.purge(&ns, &name("none")).await.unwrap(), 0);
    assert_eq!(b.purge(&name("nons"), &q).await.unwrap(), 0);
}

pub async fn a_lease_that_runs_out_returns_the_element_then_dead_letters_it(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let pushed = push(b, &ns, &q, b"poison").await;
    let (short, wait) = (Duration::from_millis(100), Duration::from_secs(3));
    for delivery in 1..=MAX_DELIVERIES {
        // The wait lasts until the last lease runs out and the element returns.
        let p = b.pop(&ns, &q, leased(short, wait)).await.unwrap();
        let p = p.expect("the element, back after its lease ran out");
        assert_eq!(p.id, pushed.id);
        assert_eq!(p.lease.map(|l| l.deliveries), Some(delivery));
    }
    let dead = q.dead_letter().expect("a dead-letter queue");
    let p = b.pop(&ns, &dead, waiting(wait)).await.unwrap();
    let p = p.expect("dead-lettered after the last lease ran out");
    assert_eq!(p.id, pushed.id);
    assert_eq!(body_of(p).await, b"poison");
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
    let long = name(&"x".repeat(60));
    let refused = b.pop(&ns, &long, leased(short, Duration::ZERO)).await;
    assert!(matches!(refused, Err(BackendError::NoDeadLetterQueue(_))));
}

pub async fn quotas_refuse_what_would_break_them(fresh: Fresh) {
    let b = &*fresh.backend;
    let (limited, free, q) = (name(LIMITED_NAMESPACE), name("free"), name("q"));
    for _ in 0..LIMITED_MAX_ELEMENTS {
        push(b, &limited, &q, b"x").await;
    }
    let over = |r: Result<super::Pushed, BackendError>| matches!(r, Err(BackendError::OverQuota { namespace, .. }) if namespace == limited);
    let body = IncomingBody::from_bytes(&b"x"[..]);
    assert!(over(b.push(&limited, &q, body, lives(60)).await));
    assert!(over(b.push_reference(&limited, &q, None, lives(60)).await));
    for _ in 0..=LIMITED_MAX_ELEMENTS {
        push(b, &free, &q, b"x").await;
    }
    b.pop(&limited, &q, DATA)
        .await
        .unwrap()
        .expect("an element");
    push(b, &limited, &q, b"x").await;
    // Bytes: a blob larger than the namespace may hold.
    b.pop(&limited, &q, DATA)
        .await
        .unwrap()
        .expect("an element");
    let big = vec![1u8; LIMITED_MAX_BYTES as usize + 1];
    let stored = b
        .store_blob(&limited, IncomingBody::from_bytes(big), lives(60))
        .await;
    assert!(matches!(stored, Err(BackendError::OverQuota { .. })));
    let stats = b
        .namespace_stats(&limited, &whole())
        .await
        .expect("stats")
        .unwrap();
    assert_eq!((stats.counts.elements, stats.blobs), (1, 1), "nothing kept");
}

pub async fn an_element_expires_after_its_lifetime(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let body = IncomingBody::from_bytes(&b"brief"[..]);
    b.push(&ns, &q, body, lives(1)).await.unwrap();
    let kept = push(b, &ns, &q, b"kept").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = b.pop(&ns, &q, DATA).await.unwrap().expect("the live one");
    assert_eq!(p.id, kept.id);
    assert!(b.pop(&ns, &q, DATA).await.unwrap().is_none());
    let counts = b.queue_stats(&ns, &q).await.expect("stats").unwrap().counts;
    assert_eq!((counts.expired, counts.popped), (1, 1));
    assert_eq!(b.totals().expirations, 1);
}

pub async fn statistics_count_what_happened(fresh: Fresh) {
    let b = &*fresh.backend;
    let (ns, q) = names();
    let r = name("r");
    for body in [&b"1"[..], b"22", b"333"] {
        push(b, &ns, &q, body).await;
    }
    push(b, &ns, &r, b"4444").await;
    b.pop(&ns, &q, DATA).await.unwrap().expect("an element");
    let counts = b.queue_stats(&ns, &q).await.expect("stats").unwrap().counts;
    assert_eq!((counts.elements, counts.bytes), (2, 5));
    assert_eq!((counts.pushed, counts.popped, counts.expired), (3, 1, 0));
    let stats = b
        .namespace_stats(&ns, &whole())
        .await
        .expect("stats")
        .unwrap();
    let queues: Vec<&str> = stats.queues.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(queues, ["q", "r"], "sorted by name");
    assert_eq!((stats.counts.elements, stats.counts.pushed), (3, 4));
    assert_eq!((stats.blobs, stats.blob_bytes), (3, 9));
    let server = b.server_stats(&whole(), &|_| true).await.expect("stats");
    assert_eq!(server.namespace_count, 1);
    assert_eq!(server.namespaces[0].namespace, ns);
    assert_eq!(server.namespaces[0].queue_count, 2);
    let t = b.totals();
    assert_eq!((t.elements, t.pushes, t.pops, t.waiting), (3, 4, 1, 0));
    assert_eq!(server.totals, t);
    assert!(b
        .queue_stats(&ns, &name("none"))
        .await
        .expect("stats")
        .is_none());
    assert!(b
        .namespace_stats(&name("none"), &whole())
        .await
        .expect("stats")
        .is_none());
}

/// `namespace_stats` and `server_stats` answer a page at a time, in name
/// order, each page's token leading to the next; the figures count every
/// queue and every listed namespace on every page.
pub async fn listings_come_in_pages(fresh: Fresh) {
    let b = &*fresh.backend;
    let ns = name("paged");
    let queues = ["e", "a", "d", "b", "c"];
    for q in queues {
        push(b, &ns, &name(q), b"x").await;
    }
    push(b, &name("other"), &name("q"), b"y").await;
    let mut page = Page::first(2);
    let mut seen = Vec::new();
    loop {
        let stats = b.namespace_stats(&ns, &page).await.expect("stats").unwrap();
        assert_eq!((stats.counts.elements, stats.queue_count), (5, 5));
        assert!(stats.queues.len() <= 2);
        seen.extend(stats.queues.iter().map(|q| q.queue.to_string()));
        match stats.next_page_token {
            Some(token) => page.after = Some(token.0),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let first = b
        .server_stats(&Page::first(1), &|_| true)
        .await
        .expect("stats");
    assert_eq!(first.namespace_count, 2);
    assert_eq!(first.namespaces[0].namespace, name("other"));
    let after = first.next_page_token.expect("a second page").0;
    let page = Page {
        after: Some(after),
        limit: 1,
    };
    let second = b.server_stats(&page, &|_| true).await.expect("stats");
    assert_eq!(second.namespaces[0].namespace, ns);
    assert!(second.next_page_token.is_none(), "the last page");
    let only = |n: &Name| n.as_str() == "paged";
    let listed = b.server_stats(&Page::first(1), &only).await.expect("stats");
    assert_eq!(listed.namespace_count, 1, "counts what the filter lists");
    assert_eq!(listed.namespaces[0].namespace, ns);
    assert!(listed.next_page_token.is_none());
}

pub async fn shutdown_answers_waiters_shutting_down(fresh: Fresh) {
    let b = fresh.backend.clone();
    let (ns, q) = names();
    push(&*b, &ns, &name("other"), &[1u8; 64]).await;
    let waiter = {
        let (b, ns, q) = (b.clone(), ns.clone(), q.clone());
        tokio::spawn(async move { b.pop(&ns, &q, waiting(Duration::from_secs(30))).await })
    };
    eventually(|| async { waiting_on(&*b, &ns, &q).await == 1 }).await;
    b.begin_shutdown();
    let answer = waiter.await.unwrap();
    assert!(
        matches!(answer, Err(BackendError::ShuttingDown)),
        "{answer:?}"
    );
    let late = b.pop(&ns, &q, waiting(Duration::from_secs(1))).await;
    assert!(matches!(late, Err(BackendError::ShuttingDown)), "{late:?}");
    b.close().await;
    assert_eq!(b.totals().waiting, 0);
}
