//! Counters and the statistics documents the store reports.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde::Serialize;

use crate::backend::name::Name;

/// Store-wide gauges and counters, updated where the change happens and read
/// by `/metrics` and `GET /qs` without walking the namespaces.
///
/// Every push and pop changes several of them, from whichever worker thread
/// runs it. One shared set of atomics made their cache lines move between
/// the CPUs on every request, so each thread adds to a shard of its own
/// (assigned once per thread) and a report sums the shards.
#[derive(Debug, Default)]
pub struct Totals {
    shards: [Shard; SHARDS],
}

/// Shards of `Totals`: more than the worker threads of a small machine, so
/// that threads rarely share one.
const SHARDS: usize = 8;

/// One thread's share of every total. Gauges are kept as wrapping sums: an
/// element queued on one shard and taken on another leaves +1 and -1 (as
/// `u64::MAX`), which add up to 0.
#[derive(Debug, Default)]
// Two cache lines: x86 CPUs fetch lines in adjacent pairs.
#[repr(align(128))]
struct Shard {
    elements: AtomicU64,
    memory_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    waiting: AtomicU64,
    leased: AtomicU64,
    pushes: AtomicU64,
    pops: AtomicU64,
    expirations: AtomicU64,
}

/// A consistent-enough copy of [`Totals`] for one report.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TotalsSnapshot {
    /// Elements waiting in queues.
    pub elements: u64,
    /// Bytes of blobs held in memory.
    pub memory_bytes: u64,
    /// Bytes of blobs held in spill files.
    pub disk_bytes: u64,
    /// Consumers blocked in a pop.
    pub waiting: u64,
    /// Elements out under a lease.
    pub leased: u64,
    pub pushes: u64,
    pub pops: u64,
    pub expirations: u64,
}

impl Totals {
    /// The calling thread's shard.
    fn mine(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
        }
        &self.shards[INDEX.with(|i| *i)]
    }

    pub(crate) fn add_blob_bytes(&self, spilled: bool, n: u64) {
        self.mine().bytes_gauge(spilled).fetch_add(n, Relaxed);
    }
    pub(crate) fn remove_blob_bytes(&self, spilled: bool, n: u64) {
        self.mine().bytes_gauge(spilled).fetch_sub(n, Relaxed);
    }
    pub(crate) fn element_queued(&self) {
        self.mine().elements.fetch_add(1, Relaxed);
    }
    pub(crate) fn element_unqueued(&self) {
        self.mine().elements.fetch_sub(1, Relaxed);
    }
    pub(crate) fn waiter_added(&self) {
        self.mine().waiting.fetch_add(1, Relaxed);
    }
    pub(crate) fn waiter_removed(&self) {
        self.mine().waiting.fetch_sub(1, Relaxed);
    }
    pub(crate) fn lease_added(&self) {
        self.mine().leased.fetch_add(1, Relaxed);
    }
    pub(crate) fn lease_removed(&self) {
        self.mine().leased.fetch_sub(1, Relaxed);
    }
    pub(crate) fn pushed(&self) {
        self.mine().pushes.fetch_add(1, Relaxed);
    }
    pub(crate) fn popped(&self) {
        self.mine().pops.fetch_add(1, Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.mine().expirations.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> TotalsSnapshot {
        // A gauge read shard by shard while others change can catch a
        // decrement without its increment: never report that as a
        // negative (wrapped) figure.
        let sum = |field: fn(&Shard) -> &AtomicU64| {
            let total = self
                .shards
                .iter()
                .fold(0u64, |sum, s| sum.wrapping_add(field(s).load(Relaxed)));
            u64::try_from(total as i64).unwrap_or(0)
        };
        TotalsSnapshot {
            elements: sum(|s| &s.elements),
            memory_bytes: sum(|s| &s.memory_bytes),
            disk_bytes: sum(|s| &s.disk_bytes),
            waiting: sum(|s| &s.waiting),
            leased: sum(|s| &s.leased),
            pushes: sum(|s| &s.pushes),
            pops: sum(|s| &s.pops),
            expirations: sum(|s| &s.expirations),
        }
    }
}

impl Shard {
    fn bytes_gauge(&self, spilled: bool) -> &AtomicU64 {
        if spilled {
            &self.disk_bytes
        } else {
            &self.memory_bytes
        }
    }
}

/// Per-queue and per-namespace tallies; the same shape at both levels so a
/// namespace's figures are the sum of its queues'.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Elements ready to be popped.
    pub elements: u64,
    /// Data bytes of those elements.
    pub bytes: u64,
    /// Consumers blocked on a pop.
    pub waiting: u64,
    /// Elements handed out under a lease and not yet acknowledged.
    pub leased: u64,
    /// Elements ever pushed (since the queue was created).
    pub pushed: u64,
    /// Elements ever popped.
    pub popped: u64,
    /// Elements that expired before anyone popped them.
    pub expired: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.elements += o.elements;
        self.bytes += o.bytes;
        self.waiting += o.waiting;
        self.leased += o.leased;
        self.pushed += o.pushed;
        self.popped += o.popped;
        self.expired += o.expired;
    }
}

/// `GET /qs/{ns}/{queue}/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStats {
    pub namespace: Name,
    pub queue: Name,
    #[serde(flatten)]
    pub counts: Counts,
}

/// `GET /qs/{ns}`.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStats {
    pub namespace: Name,
    #[serde(flatten)]
    pub counts: Counts,
    /// Blobs stored in the namespace (each counted once, however many
    /// elements reference it).
    pub blobs: u64,
    pub blob_bytes: u64,
    pub queues: Vec<QueueStats>,
}

/// One namespace's row in `GET /qs`.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceSummary {
    pub namespace: Name,
    pub queue_count: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// `GET /qs`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub namespace_count: u64,
    #[serde(flatten)]
    pub totals: TotalsSnapshot,
    pub namespaces: Vec<NamespaceSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `each(thread index)` 1000 times on each of `n` new threads.
    fn on_threads(n: usize, each: impl Fn(usize) + Send + Sync + 'static) {
        let each = std::sync::Arc::new(each);
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let each = each.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| each(i)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn totals_changed_from_many_threads_add_up_and_never_read_negative() {
        let totals = std::sync::Arc::new(Totals::default());
        let t = totals.clone();
        on_threads(12, move |i| {
            t.element_queued();
            t.pushed();
            t.add_blob_bytes(i % 2 == 0, 10);
        });
        // Taken on other threads (other shards) than they were queued on.
        let t = totals.clone();
        on_threads(5, move |_| {
            t.element_unqueued();
            t.popped();
            t.remove_blob_bytes(false, 10);
        });
        let s = totals.snapshot();
        assert_eq!((s.elements, s.pushes, s.pops), (7000, 12000, 5000));
        assert_eq!((s.memory_bytes, s.disk_bytes), (10000, 60000));
        // A decrement seen without its increment reads as zero.
        totals.waiter_removed();
        assert_eq!(totals.snapshot().waiting, 0);
        totals.waiter_added();
        totals.waiter_added();
        assert_eq!(totals.snapshot().waiting, 1);
    }
}
