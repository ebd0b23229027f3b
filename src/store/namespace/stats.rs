//! A namespace's statistics documents, read under its lock.

use super::NsState;
use crate::backend::name::Name;
use crate::backend::stats::{Counts, NamespaceStats, NamespaceSummary, QueueStats};

impl NsState {
    pub fn queue_stats(&self, ns: &Name, queue: &Name) -> Option<QueueStats> {
        self.queues.get(queue).map(|q| QueueStats {
            namespace: ns.clone(),
            queue: queue.clone(),
            counts: q.counts(),
        })
    }

    /// Every queue's figures, sorted by queue name, and their sum.
    pub fn stats(&self, ns: &Name) -> NamespaceStats {
        let mut queues: Vec<QueueStats> = self
            .queues
            .iter()
            .map(|(name, q)| QueueStats {
                namespace: ns.clone(),
                queue: name.clone(),
                counts: q.counts(),
            })
            .collect();
        queues.sort_by(|a, b| a.queue.cmp(&b.queue));
        let mut counts = Counts::default();
        for q in &queues {
            counts.add(&q.counts);
        }
        NamespaceStats {
            namespace: ns.clone(),
            counts,
            blobs: self.blobs.len() as u64,
            blob_bytes: self.blob_bytes,
            queues,
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
