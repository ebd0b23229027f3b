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

mod accounting;
mod batch;
mod blobs;
mod leases;
mod waiting;
pub use accounting::*;
pub use batch::*;
pub use blobs::*;
pub use leases::*;
pub use waiting::*;

use super::name::Name;
use super::stats::{Counts, NamespaceStats};
use super::{Backend, IncomingBody, Page, Payload, PopOptions, Popped, PushOptions};

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

/// The counts of queue `q` of `ns`, which must exist.
async fn counts_of(b: &dyn Backend, ns: &Name, q: &Name) -> Counts {
    b.queue_stats(ns, q)
        .await
        .expect("stats")
        .expect("a queue")
        .counts
}

/// The statistics of namespace `ns`, all its queues listed; it must exist.
async fn stats_of(b: &dyn Backend, ns: &Name) -> NamespaceStats {
    b.namespace_stats(ns, &whole())
        .await
        .expect("stats")
        .expect("a namespace")
}

async fn waiting_on(b: &dyn Backend, ns: &Name, q: &Name) -> u64 {
    b.queue_stats(ns, q)
        .await
        .expect("stats")
        .map_or(0, |s| s.counts.waiting)
}
