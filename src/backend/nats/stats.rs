//! Statistics from stream and consumer info: a queue's ready, leased and
//! waiting counts are the cluster's (every node sees the same); what
//! JetStream does not count per subject (pushes, pops, bytes, expiries) is
//! this node's own count, or not reported (docs/SCALE-OUT.md says which).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_nats::jetstream::stream::Stream as JsStream;
use dashmap::DashMap;
use futures_util::TryStreamExt as _;

use super::queues::{nats_error, stream_missing};
use super::{names, Inner};
use crate::backend::name::Name;
use crate::backend::{
    BackendError, Counts, NameFilter, NamespaceStats, NamespaceSummary, Page, QueueStats,
    ServerStats, TotalsSnapshot,
};

/// This node's counters.
pub struct Counters {
    pub waiting: AtomicU64,
    pushes: AtomicU64,
    pops: AtomicU64,
    /// Pushes and pops through this node, by namespace and queue.
    per_queue: DashMap<(Name, Name), (u64, u64)>,
    started: Instant,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            waiting: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            pops: AtomicU64::new(0),
            per_queue: DashMap::new(),
            started: Instant::now(),
        }
    }
}

impl Counters {
    pub fn pushed(&self, ns: &Name, queue: &Name) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.per_queue
            .entry((ns.clone(), queue.clone()))
            .or_default()
            .0 += 1;
    }

    pub fn popped(&self, ns: &Name, queue: &Name) {
        self.pops.fetch_add(1, Ordering::Relaxed);
        self.per_queue
            .entry((ns.clone(), queue.clone()))
            .or_default()
            .1 += 1;
    }

    fn of(&self, ns: &Name, queue: &Name) -> (u64, u64) {
        self.per_queue
            .get(&(ns.clone(), queue.clone()))
            .map_or((0, 0), |c| *c)
    }
}

/// A namespace's figures.
struct Summary {
    total: Counts,
    queues: Vec<(Name, Counts)>,
    blobs: u64,
}

impl Inner {
    /// Namespace `ns`'s stream, `None` if it has none.
    pub(super) async fn find_stream(&self, ns: &Name) -> Result<Option<JsStream>, BackendError> {
        match self.link.js()?.get_stream(names::stream(ns)).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) if stream_missing(&e) => Ok(None),
            Err(e) => Err(nats_error("reading the namespace's stream", e)),
        }
    }

    /// Every queue of a namespace's stream with its counts, and how many
    /// blobs it holds.
    async fn queues_of(
        &self,
        ns: &Name,
        stream: &JsStream,
    ) -> Result<(Vec<(Name, Counts)>, u64), BackendError> {
        let failed = |e| nats_error("reading the namespace's statistics", e);
        let held: HashMap<String, usize> = stream
            .info_with_subjects(names::stream_subjects(ns))
            .await
            .map_err(failed)?
            .try_collect()
            .await
            .map_err(failed)?;
        let infos: Vec<_> = stream.consumers().try_collect().await.map_err(failed)?;
        let mut queues = Vec::with_capacity(infos.len());
        for info in infos {
            let Some(queue) = names::unescape(&info.name) else {
                continue;
            };
            let stored = held.get(&names::subject(ns, &queue)).copied().unwrap_or(0) as u64;
            let leased = info.num_ack_pending as u64;
            let (pushed, popped) = self.counters.of(ns, &queue);
            let counts = Counts {
                elements: stored.saturating_sub(leased),
                bytes: 0,
                waiting: info.num_waiting as u64,
                leased,
                pushed,
                popped,
                expired: 0,
            };
            queues.push((queue, counts));
        }
        let blobs = held.keys().filter(|s| names::is_blob_subject(s)).count();
        Ok((queues, blobs as u64))
    }

    pub(super) async fn queue_stats(
        &self,
        ns: &Name,
        queue: &Name,
    ) -> Result<Option<QueueStats>, BackendError> {
        let Some(stream) = self.find_stream(ns).await? else {
            return Ok(None);
        };
        let (queues, _) = self.queues_of(ns, &stream).await?;
        Ok(queues
            .into_iter()
            .find(|(q, _)| q == queue)
            .map(|(queue, counts)| QueueStats {
                namespace: ns.clone(),
                queue,
                counts,
            }))
    }

    /// A namespace's figures over all its queues, its queues' stats and
    /// its blob count.
    async fn summary(&self, ns: &Name) -> Result<Option<Summary>, BackendError> {
        let Some(stream) = self.find_stream(ns).await? else {
            return Ok(None);
        };
        let (queues, blobs) = self.queues_of(ns, &stream).await?;
        let mut total = Counts::default();
        queues.iter().for_each(|(_, c)| total.add(c));
        Ok(Some(Summary {
            total,
            queues,
            blobs,
        }))
    }

    pub(super) async fn namespace_stats(
        &self,
        ns: &Name,
        page: &Page,
    ) -> Result<Option<NamespaceStats>, BackendError> {
        let Some(Summary {
            total: counts,
            queues,
            blobs,
        }) = self.summary(ns).await?
        else {
            return Ok(None);
        };
        let (names, next_page_token) = page.select(queues.iter().map(|(q, _)| q));
        let by_name: HashMap<&Name, &Counts> = queues.iter().map(|(q, c)| (q, c)).collect();
        let listed = names
            .into_iter()
            .map(|queue| QueueStats {
                namespace: ns.clone(),
                counts: by_name.get(&queue).map_or_else(Counts::default, |c| **c),
                queue,
            })
            .collect();
        Ok(Some(NamespaceStats {
            namespace: ns.clone(),
            counts,
            blobs,
            blob_bytes: 0,
            queue_count: queues.len() as u64,
            queues: listed,
            next_page_token,
        }))
    }

    pub(super) async fn server_stats(
        &self,
        page: &Page,
        listed: NameFilter<'_>,
    ) -> Result<ServerStats, BackendError> {
        let failed = |e| nats_error("listing the namespaces", e);
        let streams: Vec<String> = self
            .link
            .js()?
            .stream_names()
            .try_collect()
            .await
            .map_err(failed)?;
        let namespaces: Vec<Name> = streams
            .iter()
            .filter_map(|s| names::namespace_of(s))
            .filter(|ns| listed(ns))
            .collect();
        let (shown, next_page_token) = page.select(namespaces.iter());
        let mut summaries = Vec::with_capacity(shown.len());
        for ns in shown {
            if let Some(summary) = self.summary(&ns).await? {
                summaries.push(NamespaceSummary {
                    namespace: ns,
                    queue_count: summary.queues.len() as u64,
                    counts: summary.total,
                    blobs: summary.blobs,
                    blob_bytes: 0,
                });
            }
        }
        Ok(ServerStats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.counters.started.elapsed().as_secs(),
            namespace_count: namespaces.len() as u64,
            totals: self.totals(),
            namespaces: summaries,
            next_page_token,
        })
    }

    /// This node's gauges and counters; what the cluster holds is not
    /// counted here (see NATS's own monitoring).
    pub(super) fn totals(&self) -> TotalsSnapshot {
        TotalsSnapshot {
            waiting: self.counters.waiting.load(Ordering::Relaxed),
            leased: self.leases.count(),
            pushes: self.counters.pushes.load(Ordering::Relaxed),
            pops: self.counters.pops.load(Ordering::Relaxed),
            ..TotalsSnapshot::default()
        }
    }
}
