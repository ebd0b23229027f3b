//! The statistics documents an engine reports (`GET /qs`, `GET /qs/{ns}`,
//! `GET /qs/{ns}/{queue}/stats`, `/metrics`). They cross the seam, so they
//! live here; how an engine counts is its own business.

use std::collections::BinaryHeap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Serialize, Serializer};

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
    /// Queues of the namespace, all of them (`queues` is one page).
    pub queue_count: u64,
    /// The queues of the page asked for, by name.
    pub queues: Vec<QueueStats>,
    /// Where the next page starts; `None` on the last.
    pub next_page_token: Option<PageToken>,
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
    /// Namespaces listed, all pages together.
    pub namespace_count: u64,
    #[serde(flatten)]
    pub totals: TotalsSnapshot,
    /// The namespaces of the page asked for, by name.
    pub namespaces: Vec<NamespaceSummary>,
    /// Where the next page starts; `None` on the last.
    pub next_page_token: Option<PageToken>,
}

/// Which names a listing shows (a caller's grant, in the HTTP layer).
pub type NameFilter<'a> = &'a (dyn Fn(&Name) -> bool + Sync);

/// Which page of a listing to answer: the first `limit` names after
/// `after`, in byte order. Names, not positions, mark where a page starts,
/// so a name created or dropped between two pages shifts no other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Start after this name; `None` for the first page.
    pub after: Option<Name>,
    /// At most this many names (at least one).
    pub limit: usize,
}

impl Page {
    /// The first page of `limit` names.
    pub fn first(limit: usize) -> Page {
        Page { after: None, limit }
    }

    /// This page's names out of `names` (in any order): the first `limit`
    /// after `after`, sorted, and the token of the next page if more
    /// follow.
    pub fn select<'a>(
        &self,
        names: impl Iterator<Item = &'a Name>,
    ) -> (Vec<Name>, Option<PageToken>) {
        let mut selection = self.selection();
        names.for_each(|name| selection.offer(name));
        selection.finish()
    }

    /// A selection of this page's names, offered one at a time.
    pub fn selection(&self) -> Selection<'_> {
        Selection {
            page: self,
            // Room for the page, up to a size any sane page stays under.
            smallest: BinaryHeap::with_capacity(self.limit.clamp(1, 1024) + 1),
            offered: 0,
        }
    }
}

/// A page's names, chosen while the names are offered: it keeps at most
/// `limit + 1` of them (a copy only of those it keeps), so a page costs a
/// pass over the names and no copy of them all.
pub struct Selection<'p> {
    page: &'p Page,
    /// A max-heap of the smallest names offered after the page's start:
    /// its top is the first to go.
    smallest: BinaryHeap<Name>,
    offered: usize,
}

impl Selection<'_> {
    pub fn offer(&mut self, name: &Name) {
        self.offered += 1;
        if self.page.after.as_ref().is_some_and(|after| name <= after) {
            return;
        }
        if self.smallest.len() <= self.page.limit.max(1) {
            self.smallest.push(name.clone());
        } else if self.smallest.peek().is_some_and(|top| name < top) {
            self.smallest.pop();
            self.smallest.push(name.clone());
        }
    }

    /// How many names were offered, on every page alike.
    pub fn offered(&self) -> usize {
        self.offered
    }

    /// The page, sorted, and the token of the next one if more follow.
    pub fn finish(self) -> (Vec<Name>, Option<PageToken>) {
        let limit = self.page.limit.max(1);
        let more = self.smallest.len() > limit;
        let mut page = self.smallest.into_sorted_vec();
        page.truncate(limit);
        let next = match (more, page.last()) {
            (true, Some(last)) => Some(PageToken(last.clone())),
            _ => None,
        };
        (page, next)
    }
}

/// Where the next page of a listing starts, opaque to clients: the last
/// name of the page before, base64url-encoded so that nobody builds on its
/// spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(pub Name);

impl PageToken {
    /// The token as clients see it.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_str())
    }

    /// A token a client sent back; `None` if no listing made it.
    pub fn decode(token: &str) -> Option<PageToken> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        let name = std::str::from_utf8(&bytes).ok()?;
        Name::parse(name).ok().map(PageToken)
    }
}

impl Serialize for PageToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Name> {
        list.iter().map(|n| Name::parse(n).unwrap()).collect()
    }

    #[test]
    fn pages_follow_each_other_in_name_order_to_the_last() {
        let all = names(&["e", "a", "d", "b", "c"]);
        let mut page = Page::first(2);
        let mut seen = Vec::new();
        loop {
            let (names, next) = page.select(all.iter());
            assert!(names.len() <= 2);
            seen.extend(names);
            match next {
                Some(token) => {
                    let token = PageToken::decode(&token.encode()).unwrap();
                    page.after = Some(token.0);
                }
                None => break,
            }
        }
        assert_eq!(seen, names(&["a", "b", "c", "d", "e"]));
        let (exact, next) = Page::first(5).select(all.iter());
        assert_eq!(
            (exact.len(), next),
            (5, None),
            "no token on a full last page"
        );
        let (none, next) = Page::first(3).select(std::iter::empty());
        assert!(none.is_empty() && next.is_none());
    }

    #[test]
    fn a_token_is_opaque_and_a_forged_one_is_refused() {
        let token = PageToken(Name::parse("tenant-7").unwrap());
        assert_ne!(token.encode(), "tenant-7");
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        for bad in ["", "!!", "Li4", "bm8gc3BhY2U"] {
            // "", not base64, "..", "no space"
            assert_eq!(PageToken::decode(bad), None, "{bad}");
        }
    }

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
