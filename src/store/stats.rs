//! The store-wide counters, kept without locks; the documents built from
//! them are in [`crate::backend::stats`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::backend::stats::TotalsSnapshot;

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
    /// Rare: no shard needed.
    damaged_blobs: AtomicU64,
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
    /// A push taken back because the log could not record it.
    pub(crate) fn push_withdrawn(&self) {
        self.mine().pushes.fetch_sub(1, Relaxed);
    }
    /// A pop taken back because the log could not record it.
    pub(crate) fn pop_withdrawn(&self) {
        self.mine().pops.fetch_sub(1, Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.mine().expirations.fetch_add(1, Relaxed);
    }
    /// A stored body was found damaged as it was read back.
    pub(crate) fn blob_damaged(&self) {
        self.damaged_blobs.fetch_add(1, Relaxed);
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
            damaged_blobs: self.damaged_blobs.load(Relaxed),
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
