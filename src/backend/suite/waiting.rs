//! The suite's cases for pops that wait: woken by a push, dropped by their
//! client, timed out, and answered by a shutdown.

use std::time::{Duration, Instant};

use super::{body_of, counts_of, eventually, name, names, push, waiting, waiting_on, Fresh, DATA};
use crate::backend::BackendError;

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
    let counts = counts_of(b, &ns, &q).await;
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
