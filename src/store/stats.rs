//! Counters and the statistics documents the store reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::name::Name;

/// Store-wide gauges and counters, updated where the change happens and read
/// by `/metrics` and `GET /qs` without walking the namespaces.
#[derive(Debug, Default)]
pub struct Totals {
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
    pub(crate) fn add_blob_bytes(&self, spilled: bool, n: u64) {
        self.bytes_gauge(spilled).fetch_add(n, Relaxed);
    }
    pub(crate) fn remove_blob_bytes(&self, spilled: bool, n: u64) {
        self.bytes_gauge(spilled).fetch_sub(n, Relaxed);
    }
    fn bytes_gauge(&self, spilled: bool) -> &AtomicU64 {
        if spilled {
            &self.disk_bytes
        } else {
            &self.memory_bytes
        }
    }
    pub(crate) fn element_queued(&self) {
        self.elements.fetch_add(1, Relaxed);
    }
    pub(crate) fn element_unqueued(&self) {
        self.elements.fetch_sub(1, Relaxed);
    }
    pub(crate) fn waiter_added(&self) {
        self.waiting.fetch_add(1, Relaxed);
    }
    pub(crate) fn waiter_removed(&self) {
        self.waiting.fetch_sub(1, Relaxed);
    }
    pub(crate) fn lease_added(&self) {
        self.leased.fetch_add(1, Relaxed);
    }
    pub(crate) fn lease_removed(&self) {
        self.leased.fetch_sub(1, Relaxed);
    }
    pub(crate) fn pushed(&self) {
        self.pushes.fetch_add(1, Relaxed);
    }
    pub(crate) fn popped(&self) {
        self.pops.fetch_add(1, Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.expirations.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> TotalsSnapshot {
        TotalsSnapshot {
            elements: self.elements.load(Relaxed),
            memory_bytes: self.memory_bytes.load(Relaxed),
            disk_bytes: self.disk_bytes.load(Relaxed),
            waiting: self.waiting.load(Relaxed),
            leased: self.leased.load(Relaxed),
            pushes: self.pushes.load(Relaxed),
            pops: self.pops.load(Relaxed),
            expirations: self.expirations.load(Relaxed),
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
