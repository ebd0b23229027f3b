//! A namespace's statistics documents, read under its lock.

use super::NsState;
use crate::backend::name::Name;
use crate::backend::stats::{Counts, NamespaceStats, NamespaceSummary, Page, QueueStats};

impl NsState {
    pub fn queue_stats(&self, ns: &Name, queue: &Name) -> Option<QueueStats> {
        self.queues.get(queue).map(|q| QueueStats {
            namespace: ns.clone(),
            queue: queue.clone(),
            counts: q.counts(),
        })
    }

    /// The figures of `page` of the queues, sorted by name, and the sum
    /// of every queue's.
    pub fn stats(&self, ns: &Name, page: &Page) -> NamespaceStats {
        let mut counts = Counts::default();
        for q in self.queues.values() {
            counts.add(&q.counts());
        }
        let (names, next_page_token) = page.select(self.queues.keys());
        let queues = names
            .into_iter()
            .filter_map(|name| self.queue_stats(ns, &name))
            .collect();
        NamespaceStats {
            namespace: ns.clone(),
            counts,
            blobs: self.blobs.len() as u64,
            blob_bytes: self.blob_bytes,
            queue_count: self.queues.len() as u64,
            queues,
            next_page_token,
        }
    }

    /// The namespace's row in the server's statistics.
    pub fn summary(&self, ns: &Name) -> NamespaceSummary {
        let mut counts = Counts::default();
        for q in self.queues.values() {
            counts.add(&q.counts());
        }
        NamespaceSummary {
            namespace: ns.clone(),
            queue_count: self.queues.len() as u64,
            counts,
            blobs: self.blobs.len() as u64,
            blob_bytes: self.blob_bytes,
        }
    }
}
