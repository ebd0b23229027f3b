//! The statistics documents an engine reports (`GET /qs`, `GET /qs/{ns}`,
//! `GET /qs/{ns}/{queue}/stats`, `/metrics`). They cross the seam, so they
//! live here; how an engine counts is its own business.

use serde::Serialize;

use super::name::Name;

/// An engine's store-wide gauges and counters at one moment.
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
    /// Stored bodies found damaged when read back (`/metrics` only).
    #[serde(skip)]
    pub damaged_blobs: u64,
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

    /// The documents are part of the HTTP contract: field names and order
    /// are what clients parse.
    #[test]
    fn a_queues_statistics_serialize_flat_in_the_contracts_order() {
        let stats = QueueStats {
            namespace: Name::parse("ns").unwrap(),
            queue: Name::parse("q").unwrap(),
            counts: Counts {
                elements: 1,
                bytes: 2,
                waiting: 3,
                leased: 4,
                pushed: 5,
                popped: 6,
                expired: 7,
            },
        };
        assert_eq!(
            serde_json::to_string(&stats).unwrap(),
            r#"{"namespace":"ns","queue":"q","elements":1,"bytes":2,"waiting":3,"leased":4,"pushed":5,"popped":6,"expired":7}"#
        );
    }
}
