//! The suite's cases for leased pops: acknowledgement, release and
//! extension, a purge that leaves leased elements, and dead-lettering after
//! the last lease runs out.

use std::time::Duration;

use super::{body_of, counts_of, leased, name, names, push, waiting, Fresh, DATA, MAX_DELIVERIES};
use crate::backend::BackendError;

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
    assert_eq!(counts_of(b, &ns, &q).await.leased, 1);
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
    let counts = counts_of(b, &ns, &q).await;
    assert_eq!((counts.elements, counts.leased), (0, 0));
    let unknown = crate::backend::ids::Receipt::random().to_string();
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
    let counts = counts_of(b, &ns, &q).await;
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
