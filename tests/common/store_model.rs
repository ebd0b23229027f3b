//! The model of `tests/replay_model.rs`: queues as `VecDeque`s, blobs as a
//! map, leases as a list; what of it a replay must give back; and how a
//! replay cut inside an operation may differ from it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::sample::Index;

use blobq::backend::meta::{Metadata, DEFAULT_CONTENT_TYPE};

/// Queues 0 and 1 take pushes and leases; 2 and 3 are their dead-letter queues.
pub(crate) const QUEUES: [&str; 4] = ["a", "b", "a.dead", "b.dead"];
/// Small enough that some bodies spill into the data directory's `blobs/`.
pub(crate) const SPILL_THRESHOLD: u64 = 512;
/// Small enough that segments seal, and compaction runs, within a case.
pub(crate) const SEGMENT_BYTES: u64 = 4096;
/// Bytes of small bodies held in memory before they go to segments.
pub(crate) const MEMORY_LIMIT: u64 = 400;
/// Low, so that releases and leases running out dead-letter now and then.
pub(crate) const MAX_DELIVERIES: u32 = 2;
pub(crate) const LONG_LIFETIME: u64 = 3600;
pub(crate) const SHORT_LEASE: Duration = Duration::from_millis(30);
/// Longest wait for the store's sweeper to do what the model expects.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// Kept in memory and inline in the log.
    Small(usize),
    /// Spilled to a file of the data directory.
    Spilled(usize),
}

#[derive(Clone, Debug)]
pub enum Op {
    Push {
        queue: usize,
        size: Size,
        typed: bool,
    },
    /// References one of the known blobs (or none: a header-only element).
    PushReference {
        queue: usize,
        blob: Index,
        none: bool,
    },
    StoreBlob {
        size: Size,
    },
    DeleteBlob {
        blob: Index,
    },
    Pop {
        queue: usize,
        with_data: bool,
    },
    PopLeased {
        queue: usize,
        with_data: bool,
    },
    Ack {
        lease: Index,
    },
    Release {
        lease: Index,
    },
    /// Pops under a lease too short to finish and waits until it ran out.
    LeaseRunsOut {
        queue: usize,
    },
    /// Seals the overflow segment being written and compacts every segment
    /// with a dead byte: the live bodies move, each move logged. The model
    /// does not change.
    CompactSegments,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Meta {
    pub(crate) content_type: String,
    pub(crate) custom: Vec<(String, String)>,
}

impl Meta {
    pub(crate) fn of(m: &Metadata) -> Meta {
        Meta {
            content_type: m.content_type.to_string(),
            custom: m
                .custom
                .iter()
                .map(|p| (p.key.to_string(), p.value.to_string()))
                .collect(),
        }
    }

    pub(crate) fn plain() -> Meta {
        Meta {
            content_type: DEFAULT_CONTENT_TYPE.into(),
            custom: Vec::new(),
        }
    }
}

/// How long an element lives: the hour of most, or the one second of a
/// short-lived one, pushed between `started` and `answered`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Life {
    Long,
    Short { started: Instant, answered: Instant },
}

impl Life {
    /// Whether it has certainly run out (`Some(true)`), is certainly alive
    /// for the next operation (`Some(false)`), or is too close to call.
    pub(crate) fn expired(self, now: Instant) -> Option<bool> {
        match self {
            Life::Long => Some(false),
            Life::Short { started, answered } => {
                if now + Duration::from_millis(300) < started + Duration::from_secs(1) {
                    Some(false)
                } else if now > answered + Duration::from_millis(1050) {
                    Some(true)
                } else {
                    None
                }
            }
        }
    }

    pub(crate) fn certainly_over(self) -> Instant {
        match self {
            Life::Long => Instant::now(),
            Life::Short { answered, .. } => answered + Duration::from_millis(1060),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Element {
    pub(crate) id: String,
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) meta: Meta,
    pub(crate) blob: Option<String>,
    /// Deliveries under lease so far, and as the log last recorded them.
    pub(crate) deliveries: u32,
    pub(crate) logged_deliveries: u32,
    /// Position of its latest `Put` in the log: replay rebuilds by it.
    pub(crate) order: u64,
    pub(crate) life: Life,
}

/// The model: what the store holds, live.
#[derive(Clone, Default)]
pub(crate) struct Model {
    pub(crate) queues: [VecDeque<Element>; 4],
    pub(crate) leases: Vec<(String, usize, Element)>,
    /// Blobs readable by id (stored, or exposed by a header-only pop), each
    /// with its bytes and metadata.
    pub(crate) blobs: BTreeMap<String, (Vec<u8>, Meta)>,
    pub(crate) deleted: BTreeSet<String>,
    /// Every blob id the client ever learnt (a push's, a stored blob's).
    pub(crate) known: BTreeSet<String>,
    /// When every short-lived element ever pushed has certainly run out:
    /// a cut log may bring back one the model saw consumed.
    pub(crate) short_until: Option<Instant>,
    pub(crate) next_order: u64,
}

/// What a replay must give back: each queue in log order and each blob
/// readable by id (exposed, or held by an element). Leased elements are
/// ready again; short-lived ones have run out by the time it is compared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Durable {
    pub(crate) queues: BTreeMap<&'static str, Vec<Entry>>,
    pub(crate) blobs: BTreeMap<String, (Digest, Meta)>,
}

/// An element as a replay must give it back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) blob: Option<String>,
    pub(crate) data: Option<Digest>,
    pub(crate) meta: Meta,
    /// Deliveries as of its last dead-letter move (0 if none).
    pub(crate) deliveries: u32,
}

/// Bytes as compared: their length and an FNV-1a hash, short in a report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Digest(pub(crate) usize, pub(crate) u64);

impl Digest {
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Digest(bytes.len(), hash)
    }
}

impl Model {
    pub(crate) fn durable(&self) -> Durable {
        let mut queues = BTreeMap::new();
        for (q, name) in QUEUES.iter().enumerate() {
            let mut elements: Vec<&Element> = self.queues[q]
                .iter()
                .chain(self.leases.iter().filter(|l| l.1 == q).map(|l| &l.2))
                .filter(|e| matches!(e.life, Life::Long))
                .filter(|e| e.blob.as_ref().is_none_or(|b| !self.deleted.contains(b)))
                .collect();
            elements.sort_by_key(|e| e.order);
            if !elements.is_empty() {
                let listed = elements
                    .into_iter()
                    .map(|e| Entry {
                        id: e.id.clone(),
                        blob: e.blob.clone(),
                        data: e.data.as_deref().map(Digest::of),
                        meta: e.meta.clone(),
                        deliveries: e.logged_deliveries,
                    })
                    .collect();
                queues.insert(*name, listed);
            }
        }
        let mut blobs: BTreeMap<String, (Digest, Meta)> = self
            .blobs
            .iter()
            .map(|(id, (bytes, meta))| (id.clone(), (Digest::of(bytes), meta.clone())))
            .collect();
        // An element's own blob is readable by the id its push answered
        // for as long as the element holds it.
        let held = self
            .queues
            .iter()
            .flatten()
            .chain(self.leases.iter().map(|l| &l.2));
        for e in held.filter(|e| matches!(e.life, Life::Long)) {
            if let (Some(id), Some(bytes)) = (&e.blob, &e.data) {
                if !self.deleted.contains(id) {
                    blobs
                        .entry(id.clone())
                        .or_insert_with(|| (Digest::of(bytes), e.meta.clone()));
                }
            }
        }
        Durable { queues, blobs }
    }

    pub(crate) fn put_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }

    /// A leased element comes back: to the head of its queue, or to the tail
    /// of the dead-letter queue once delivered too often. Whether the log
    /// records it (a dead-letter move is a `Take` and a `Put`).
    pub(crate) fn return_leased(
        &mut self,
        queue: usize,
        mut element: Element,
        now: Instant,
    ) -> bool {
        let dead = element.deliveries >= MAX_DELIVERIES;
        let expired = element.life.expired(now) == Some(true);
        if dead {
            element.logged_deliveries = element.deliveries;
            element.order = self.put_order();
            if !expired {
                self.queues[queue + 2].push_back(element);
            }
        } else if !expired {
            self.queues[queue].push_front(element);
        }
        dead || expired
    }

    /// Drops what has run out; waits first if any deadline is too close to call.
    pub(crate) async fn settle_expiry(&mut self) {
        let all = || {
            self.queues
                .iter()
                .flatten()
                .chain(self.leases.iter().map(|l| &l.2))
        };
        let now = Instant::now();
        if let Some(wait) = all()
            .filter(|e| e.life.expired(now).is_none())
            .map(|e| e.life.certainly_over())
            .max()
        {
            tokio::time::sleep(wait.saturating_duration_since(now)).await;
        }
        let now = Instant::now();
        for q in &mut self.queues {
            q.retain(|e| e.life.expired(now) != Some(true));
        }
    }
}

/// Whether `found` is `before` with part of the one operation that leads to
/// `after` applied: every element is as one of them has it, in their order;
/// what both hold is there, but for what the operation's own records may
/// take with them; no blob appears that neither has.
///
/// One loss is allowed: a plain pop is at most once. Cut between its
/// `Take` and the `Expose` of a header-only pop, the element and its blob
/// are gone, as if it had been answered (`docs/DURABILITY.md`). A
/// dead-letter move is one `Put` into the dead queue, so no cut loses it.
pub(crate) fn between(found: &Durable, before: &Durable, after: &Durable) -> Result<(), String> {
    let elements = |d: &Durable| -> BTreeMap<String, (&'static str, Option<String>)> {
        d.queues
            .iter()
            .flat_map(|(q, list)| {
                list.iter()
                    .map(move |e| (e.id.clone(), (*q, e.blob.clone())))
            })
            .collect()
    };
    let empty: Vec<Entry> = Vec::new();
    for (queue, list) in &found.queues {
        for side in [before, after] {
            let theirs = side.queues.get(queue).unwrap_or(&empty);
            let common: Vec<&String> = list
                .iter()
                .filter(|e| theirs.iter().any(|t| t.id == e.id))
                .map(|e| &e.id)
                .collect();
            let order: Vec<&String> = theirs
                .iter()
                .filter(|t| common.contains(&&t.id))
                .map(|t| &t.id)
                .collect();
            if common != order {
                return Err(format!("queue {queue} is out of order"));
            }
        }
        for entry in list {
            let known = [before, after]
                .iter()
                .any(|side| side.queues.get(queue).is_some_and(|l| l.contains(entry)));
            if !known {
                return Err(format!(
                    "element {} of {queue} is in neither state",
                    entry.id
                ));
            }
        }
    }
    let (found_ids, before_ids, after_ids) = (elements(found), elements(before), elements(after));
    for id in before_ids.keys() {
        if after_ids.contains_key(id) && !found_ids.contains_key(id) {
            return Err(format!("element {id} is lost"));
        }
    }
    for (id, blob) in &found.blobs {
        if before.blobs.get(id) != Some(blob) && after.blobs.get(id) != Some(blob) {
            return Err(format!("blob {id} is in neither state"));
        }
    }
    for id in before
        .blobs
        .keys()
        .filter(|id| after.blobs.contains_key(*id))
    {
        // Gone with an element the cut operation took (allowed above).
        let popped_holder = before_ids
            .iter()
            .any(|(e, (_, blob))| blob.as_ref() == Some(id) && !found_ids.contains_key(e));
        if !found.blobs.contains_key(id) && !popped_holder {
            return Err(format!("blob {id} is lost"));
        }
    }
    Ok(())
}
