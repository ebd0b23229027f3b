//! The statistics documents of the store: a queue's, a namespace's with a
//! page of its queues, and the server's with a page of its namespaces.
//!
//! A page of namespaces is chosen from the names alone (one pass over the
//! map, keeping the page's worth), and only its namespaces are locked, so
//! a listing costs its page, not the whole server, however many
//! namespaces there are.

use super::Store;
use crate::backend::name::Name;
use crate::backend::stats::{NameFilter, NamespaceStats, Page, QueueStats, ServerStats};

impl Store {
    pub fn queue_stats(&self, ns: &Name, queue: &Name) -> Option<QueueStats> {
        self.change_existing(ns, |st, _| st.queue_stats(ns, queue))
            .flatten()
    }

    pub fn namespace_stats(&self, ns: &Name, page: &Page) -> Option<NamespaceStats> {
        self.change_existing(ns, |st, _| st.stats(ns, page))
    }

    /// The server's figures with `page` of the namespaces `listed` accepts.
    pub fn server_stats(&self, page: &Page, listed: NameFilter<'_>) -> ServerStats {
        let mut selection = page.selection();
        for entry in self.shared.namespaces.iter() {
            if listed(entry.key()) {
                selection.offer(entry.key());
            }
        }
        let count = selection.offered();
        let (names, next_page_token) = selection.finish();
        let namespaces = names
            .iter()
            .filter_map(|name| self.change_existing(name, |st, _| st.summary(name)))
            .collect();
        ServerStats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.shared.started.elapsed().as_secs(),
            namespace_count: count as u64,
            totals: self.totals(),
            namespaces,
            next_page_token,
        }
    }
}
