//! What a case of the suite talks to: the blobq node(s) started for it,
//! the flags they were given, and what the backend behind them is
//! documented to do differently (docs/SCALE-OUT.md, "Not the same"), so
//! that a case asks rather than being skipped.

use std::path::PathBuf;

use crate::common::TestServer;

/// The backend behind a target's nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One blobq with its embedded store.
    Embedded,
    /// Two blobq nodes sharing a NATS JetStream cluster.
    Nats,
}

/// The node(s) of one case, killed when it is dropped.
pub struct Target {
    pub(super) kind: Kind,
    pub(super) nodes: Vec<TestServer>,
    pub(super) flags: &'static [(&'static str, &'static str)],
}

impl Target {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The first node: where a case sends what it sends first.
    pub fn a(&self) -> &TestServer {
        &self.nodes[0]
    }

    /// The second node (the first again when there is one): where a case
    /// sends what must work through another node than `a`'s.
    pub fn b(&self) -> &TestServer {
        self.node(1)
    }

    /// Node `i`, counting round the nodes: for requests sent alternately.
    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i % self.nodes.len()]
    }

    pub fn nodes(&self) -> &[TestServer] {
        &self.nodes
    }

    /// The value the nodes were given for `flag`, if the case set it.
    pub fn flag(&self, flag: &str) -> Option<&'static str> {
        self.flags.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v)
    }

    /// `--max-deliveries` of the nodes.
    pub fn max_deliveries(&self) -> u64 {
        self.flag("--max-deliveries")
            .map_or(10, |v| v.parse().expect("a number"))
    }

    /// Whether statistics keep `bytes`, `blob_bytes` and `expired`
    /// (JetStream keeps none of them per subject: they read 0).
    pub fn keeps_byte_counts(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// `n` bytes as the statistics count them (0 where they are not kept).
    pub fn bytes(&self, n: u64) -> u64 {
        if self.keeps_byte_counts() {
            n
        } else {
            0
        }
    }

    /// Whether the server-wide totals of `/qs` count what is stored
    /// (`elements`, `memory_bytes`, `disk_bytes`); on NATS they read 0
    /// (the cluster's monitoring has them).
    pub fn keeps_gauges(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// `n` as a server-wide gauge reads it (0 where it is not kept).
    pub fn gauge(&self, n: u64) -> u64 {
        if self.keeps_gauges() {
            n
        } else {
            0
        }
    }

    /// Whether a namespace's `blobs` count the blobs of its queued
    /// elements; on NATS an element's data is in its message, and only
    /// blobs stored by id (`/tbs`, a header-only pop) are counted.
    pub fn counts_element_blobs(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether an element's delivery count counts only the deliveries a
    /// consumer was handed; on NATS one handed back because its waiter
    /// left (a blocking pop timing out as it arrived) counts too.
    pub fn counts_only_deliveries_seen(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether statistics count elements that expired (`expired`); on
    /// NATS JetStream removes them and nothing counts them.
    pub fn counts_expirations(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether a reference push shares the blob with its element (deleting
    /// the blob makes the element `410`; the blob of a queued element is
    /// readable by id). On NATS an element holds its own copy.
    pub fn shares_blobs(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether an element handed back (released, or its lease ran out)
    /// counts as ready at once; on NATS it counts as leased until
    /// JetStream delivers it again.
    pub fn hands_back_at_once(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether a namespace's element quota counts its `/tbs` blobs and
    /// dead-letter queues too (NATS counts every message of the stream).
    pub fn quota_counts_every_message(&self) -> bool {
        self.kind == Kind::Nats
    }

    /// Whether a batch refused for a quota names the part that would pass
    /// it; JetStream refuses an atomic batch whole, naming none.
    pub fn names_quota_part(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether a quota's refusal names the limit it met ("3 elements");
    /// on NATS it says only that the namespace's stream is full.
    pub fn names_quota_limit(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether bodies past `--spill-threshold` go to the nodes' spill
    /// files (a NATS node keeps none: bodies are in the cluster).
    pub fn spills(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// Whether statistics are exact the moment a request is answered. On
    /// a JetStream cluster a stream drops an acknowledged message a moment
    /// after the acknowledgement, so a read just after a pop or an ack may
    /// still count it.
    pub fn settles_at_once(&self) -> bool {
        self.kind == Kind::Embedded
    }

    /// `path`'s JSON through `node`, which `pred` must accept: read once
    /// where statistics settle at once, else polled until it does (failing
    /// after [`crate::common::STEP`]).
    pub async fn settled(
        &self,
        node: &TestServer,
        path: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if self.settles_at_once() {
            let v = node.json(path, 200).await;
            assert!(pred(&v), "{what}: {path} answered {v}");
            v
        } else {
            node.wait_for_json(path, what, pred).await
        }
    }

    /// Every spill file of every node (a NATS node keeps none).
    pub fn spill_files(&self) -> Vec<PathBuf> {
        self.nodes.iter().flat_map(|n| n.spill_files()).collect()
    }

    /// `key` of `path`'s JSON summed over the nodes: the counts each node
    /// keeps of its own (`pushed`, `popped`) add up to the target's.
    pub async fn sum(&self, path: &str, key: &str) -> u64 {
        let mut total = 0;
        for node in &self.nodes {
            let v = node.json(path, 200).await;
            total += v[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} of {path}: {v}"));
        }
        total
    }
}
