//! A namespace: its queues, its blob table and its expiry index, all behind
//! one lock.
//!
//! One `std::sync::Mutex` per namespace, as mini-redis does for its whole
//! database: every operation is a few map updates with no `.await` and no file
//! I/O inside, so a blocking mutex held for a microsecond beats an async one.
//! Anything that could be slow to drop (a spill file) is moved into a
//! [`Graveyard`] and dropped by the caller after unlocking.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::blob::Blob;
use super::clock::Millis;
use super::element::Element;
use super::ids::BlobId;
use super::meta::Metadata;
use super::name::Name;
use super::queue::{End, Queue};
use super::stats::{Counts, NamespaceStats, NamespaceSummary, QueueStats, Totals};

pub(crate) struct Namespace {
    pub name: Name,
    state: Mutex<NsState>,
}

impl Namespace {
    pub fn new(name: Name, totals: Arc<Totals>) -> Namespace {
        Namespace {
            name,
            state: Mutex::new(NsState {
                queues: HashMap::new(),
                blobs: HashMap::new(),
                expiry: BTreeSet::new(),
                scheduled: None,
                removed: false,
                totals,
            }),
        }
    }

    /// Locks the state. A panic while locked cannot leave the maps half
    /// updated in a way that matters more than refusing service would, so a
    /// poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, NsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the namespace keeps about one blob.
#[derive(Debug)]
struct BlobEntry {
    blob: Arc<Blob>,
    /// Queued elements that reference the blob.
    refs: u32,
    /// Stored through `/tbs` or handed out by a header-only pop: the blob then
    /// lives until its own deadline even with no element referencing it.
    exposed: bool,
    /// End of the blob's own lifetime.
    deadline: Millis,
}

impl BlobEntry {
    fn is_readable(&self, now: Millis) -> bool {
        !self.deadline.has_passed(now)
    }
    fn is_garbage(&self, now: Millis) -> bool {
        self.refs == 0 && (!self.exposed || self.deadline.has_passed(now))
    }
}

/// What the expiry index points at.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum ExpiryKey {
    Element(Name, u64),
    Blob(BlobId),
}

/// Elements and blobs removed under the lock, dropped (files unlinked) after it.
#[derive(Default)]
pub(crate) struct Graveyard {
    elements: Vec<Element>,
    blobs: Vec<Arc<Blob>>,
}

/// How a pop ended once an element was taken.
pub(crate) enum Taken {
    /// The element, to answer with; `blob` is `Some` only for a data pop.
    Element { element: Element, with_data: bool },
    /// The element's blob was deleted; the element is consumed.
    Gone,
}

pub(crate) struct NsState {
    queues: HashMap<Name, Queue>,
    blobs: HashMap<BlobId, BlobEntry>,
    /// Every pending deadline of the namespace, earliest first, so the sweeper
    /// touches only what is due.
    expiry: BTreeSet<(Millis, ExpiryKey)>,
    /// The wake-up registered with the store's sweeper for this namespace.
    pub scheduled: Option<Millis>,
    /// Set when the namespace was dropped from the store; an operation that
    /// finds it set looks the namespace up again.
    pub removed: bool,
    totals: Arc<Totals>,
}

impl NsState {
    /// Adds a deadline to the index. Returns the new wake-up time if the
    /// sweeper must now wake earlier for this namespace.
    #[must_use]
    fn index(&mut self, deadline: Millis, key: ExpiryKey) -> Option<Millis> {
        self.expiry.insert((deadline, key));
        if self.scheduled.is_none_or(|s| deadline < s) {
            self.scheduled = Some(deadline);
            return Some(deadline);
        }
        None
    }

    fn queue_mut(&mut self, name: &Name, now: Millis) -> &mut Queue {
        if !self.queues.contains_key(name) {
            self.queues.insert(name.clone(), Queue::new(now));
        }
        self.queues.get_mut(name).expect("inserted above")
    }

    /// Registers a blob. `refs` is 1 for a blob pushed with its element and 0
    /// for one stored through `/tbs` (which is exposed from the start).
    #[must_use]
    pub fn insert_blob(&mut self, blob: Arc<Blob>, refs: u32, deadline: Millis) -> Option<Millis> {
        let exposed = refs == 0;
        let id = blob.id();
        self.blobs.insert(
            id,
            BlobEntry {
                blob,
                refs,
                exposed,
                deadline,
            },
        );
        if exposed {
            self.index(deadline, ExpiryKey::Blob(id))
        } else {
            None
        }
    }

    /// Takes a new reference on a readable blob, for a reference push.
    pub fn reference_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get_mut(&id).filter(|e| e.is_readable(now))?;
        entry.refs += 1;
        Some(entry.blob.clone())
    }

    /// The blob `id` with its seconds left, if it is readable.
    pub fn readable_blob(&self, id: BlobId, now: Millis) -> Option<(Arc<Blob>, u64)> {
        let entry = self.blobs.get(&id).filter(|e| e.is_readable(now))?;
        Some((entry.blob.clone(), entry.deadline.seconds_left(now)))
    }

    /// Forgets blob `id`. The caller calls [`Blob::delete`] after unlocking.
    pub fn remove_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get(&id).filter(|e| e.is_readable(now))?;
        let key = (entry.deadline, ExpiryKey::Blob(id));
        let exposed = entry.exposed;
        if exposed {
            self.expiry.remove(&key);
        }
        self.blobs.remove(&id).map(|e| e.blob)
    }

    /// A queued element lets go of its blob; `expose` when a header-only pop
    /// hands the blob id to a client.
    #[must_use]
    fn release_blob(
        &mut self,
        blob: &Blob,
        expose: bool,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        let id = blob.id();
        let entry = self.blobs.get_mut(&id)?;
        entry.refs = entry.refs.saturating_sub(1);
        let mut wake = None;
        if expose && !entry.exposed {
            entry.exposed = true;
            let deadline = entry.deadline;
            wake = self.index(deadline, ExpiryKey::Blob(id));
        }
        if self.blobs.get(&id).is_some_and(|e| e.is_garbage(now)) {
            if let Some(entry) = self.blobs.remove(&id) {
                grave.blobs.push(entry.blob);
            }
        }
        wake
    }

    /// Puts an element into `queue`: straight to a waiting consumer if there
    /// is one, else into the ready list.
    #[must_use]
    pub fn enqueue(
        &mut self,
        queue: &Name,
        element: Element,
        end: End,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        let totals = self.totals.clone();
        let q = self.queue_mut(queue, now);
        q.last_active = now;
        if end == End::Back {
            q.count_push();
            totals.pushed();
        }
        if element.deadline.has_passed(now) {
            return self.expire(queue, element, now, grave);
        }
        let element = match q.hand_to_waiter(element, &totals) {
            Ok(()) => return None,
            Err(element) => element,
        };
        let deadline = element.deadline;
        let seq = q.insert(element, end);
        totals.element_queued();
        self.index(deadline, ExpiryKey::Element(queue.clone(), seq))
    }

    /// Removes the first live element of `queue`, expiring any dead ones
    /// found in front of it.
    pub fn take_head(
        &mut self,
        queue: &Name,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Element> {
        loop {
            let q = self.queues.get_mut(queue)?;
            let (seq, element) = q.pop_front()?;
            q.last_active = now;
            self.totals.element_unqueued();
            self.expiry
                .remove(&(element.deadline, ExpiryKey::Element(queue.clone(), seq)));
            if element.deadline.has_passed(now) {
                // Nothing in the ready list can wake the sweeper earlier than it is already set for.
                let _ = self.expire(queue, element, now, grave);
                continue;
            }
            return Some(element);
        }
    }

    /// Completes a pop of `element` taken from `queue`: counts it and settles
    /// its blob (freed if this was the last reference to an unexposed blob,
    /// exposed if the pop is header-only).
    pub fn finish_pop(
        &mut self,
        queue: &Name,
        element: Element,
        with_data: bool,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (Taken, Option<Millis>) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.count_pop();
        }
        self.totals.popped();
        let Some(blob) = element.blob.clone() else {
            return (Taken::Element { element, with_data }, None);
        };
        let wake = self.release_blob(&blob, !with_data, now, grave);
        if blob.is_deleted() {
            grave.elements.push(element);
            return (Taken::Gone, wake);
        }
        (Taken::Element { element, with_data }, wake)
    }

    /// Counts `element` as expired and releases its blob.
    #[must_use]
    fn expire(
        &mut self,
        queue: &Name,
        element: Element,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        if let Some(q) = self.queues.get_mut(queue) {
            q.count_expiry();
        }
        self.totals.expired();
        let wake = element
            .blob
            .clone()
            .and_then(|blob| self.release_blob(&blob, false, now, grave));
        grave.elements.push(element);
        wake
    }

    /// Expires up to `limit` due deadlines. Returns how many it handled, so
    /// the sweeper can come back for the rest after letting others in.
    pub fn expire_due(&mut self, now: Millis, limit: usize, grave: &mut Graveyard) -> usize {
        let mut handled = 0;
        while handled < limit {
            let Some(first) = self.expiry.first() else {
                break;
            };
            if !first.0.has_passed(now) {
                break;
            }
            let Some((_, key)) = self.expiry.pop_first() else {
                break;
            };
            handled += 1;
            match key {
                ExpiryKey::Element(queue, seq) => {
                    let Some(element) = self.queues.get_mut(&queue).and_then(|q| q.remove(seq))
                    else {
                        continue;
                    };
                    self.totals.element_unqueued();
                    // The index already holds everything `expire` could add.
                    let _ = self.expire(&queue, element, now, grave);
                }
                ExpiryKey::Blob(id) => {
                    if self.blobs.get(&id).is_some_and(|e| e.is_garbage(now)) {
                        if let Some(entry) = self.blobs.remove(&id) {
                            grave.blobs.push(entry.blob);
                        }
                    }
                }
            }
        }
        handled
    }

    /// The earliest pending deadline, which becomes the new wake-up.
    #[must_use]
    pub fn reschedule(&mut self) -> Option<Millis> {
        self.scheduled = self.expiry.first().map(|(d, _)| *d);
        self.scheduled
    }

    /// Registers a waiting consumer on `queue`, creating the queue if needed.
    pub fn add_waiter(&mut self, queue: &Name, waiter: super::queue::Waiter, now: Millis) {
        let totals = self.totals.clone();
        let q = self.queue_mut(queue, now);
        q.last_active = now;
        q.add_waiter(waiter);
        totals.waiter_added();
    }

    /// Forgets a waiter that stopped waiting (timeout, disconnect, shutdown).
    pub fn remove_waiter(&mut self, queue: &Name, id: u64, now: Millis) {
        if let Some(q) = self.queues.get_mut(queue) {
            if q.remove_waiter(id) {
                self.totals.waiter_removed();
            }
            q.last_active = now;
        }
    }

    /// Drops queues that are empty, unwaited and idle since `idle_since`.
    /// True if the namespace is left with nothing at all.
    pub fn drop_idle_queues(&mut self, idle_since: Millis) -> bool {
        self.queues.retain(|_, q| !q.is_idle(idle_since));
        self.queues.is_empty() && self.blobs.is_empty()
    }

    /// Empties the namespace for shutdown.
    pub fn purge(&mut self, grave: &mut Graveyard) {
        for q in self.queues.values_mut() {
            let (elements, waiters) = q.drain();
            for _ in 0..elements.len() {
                self.totals.element_unqueued();
            }
            for _ in 0..waiters {
                self.totals.waiter_removed();
            }
            grave.elements.extend(elements);
        }
        self.queues.clear();
        grave.blobs.extend(self.blobs.drain().map(|(_, e)| e.blob));
        self.expiry.clear();
        self.removed = true;
    }

    pub fn queue_stats(&self, ns: &Name, queue: &Name) -> Option<QueueStats> {
        self.queues.get(queue).map(|q| QueueStats {
            namespace: ns.clone(),
            queue: queue.clone(),
            counts: q.counts(),
        })
    }

    fn blob_totals(&self) -> (u64, u64) {
        let bytes = self.blobs.values().map(|e| e.blob.size()).sum();
        (self.blobs.len() as u64, bytes)
    }

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
        let (blobs, blob_bytes) = self.blob_totals();
        NamespaceStats {
            namespace: ns.clone(),
            counts,
            blobs,
            blob_bytes,
            queues,
        }
    }

    pub fn summary(&self, ns: &Name) -> NamespaceSummary {
        let mut counts = Counts::default();
        for q in self.queues.values() {
            counts.add(&q.counts());
        }
        let (blobs, blob_bytes) = self.blob_totals();
        NamespaceSummary {
            namespace: ns.clone(),
            queue_count: self.queues.len() as u64,
            counts,
            blobs,
            blob_bytes,
        }
    }

    /// The metadata a reference push gets: its own where given, else the blob's.
    pub fn reference_meta(
        blob: Option<&Arc<Blob>>,
        content_type: Option<Box<str>>,
        custom: Vec<super::meta::CustomPair>,
    ) -> Arc<Metadata> {
        match blob {
            Some(b) if content_type.is_none() && custom.is_empty() => b.meta().clone(),
            Some(b) => Arc::new(Metadata {
                content_type: content_type.unwrap_or_else(|| b.meta().content_type.clone()),
                custom: if custom.is_empty() {
                    b.meta().custom.clone()
                } else {
                    custom.into_boxed_slice()
                },
            }),
            None => Arc::new(Metadata {
                content_type: content_type
                    .unwrap_or_else(|| super::meta::DEFAULT_CONTENT_TYPE.into()),
                custom: custom.into_boxed_slice(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Random operations against the namespace state and a plain model side
    //! by side, with the clock under the test's control.

    use std::collections::VecDeque;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::store::blob::BlobContent;
    use crate::store::ids::ElementId;

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            queue: usize,
            lifetime: u64,
            data: bool,
        },
        Reference {
            queue: usize,
            blob: usize,
            lifetime: u64,
        },
        Pop {
            queue: usize,
            with_data: bool,
        },
        Delete {
            blob: usize,
        },
        Advance {
            ms: u64,
            sweep: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..2usize, 1..6u64, any::<bool>()).prop_map(|(queue, lifetime, data)| Op::Push { queue, lifetime, data }),
            2 => (0..2usize, 0..8usize, 1..6u64).prop_map(|(queue, blob, lifetime)| Op::Reference { queue, blob, lifetime }),
            4 => (0..2usize, any::<bool>()).prop_map(|(queue, with_data)| Op::Pop { queue, with_data }),
            1 => (0..8usize).prop_map(|blob| Op::Delete { blob }),
            2 => (0..2500u64, any::<bool>()).prop_map(|(ms, sweep)| Op::Advance { ms, sweep }),
        ]
    }

    /// What the model remembers of an element.
    #[derive(Debug, Clone)]
    struct Expect {
        id: ElementId,
        deadline: Millis,
        blob: Option<BlobId>,
    }

    fn state() -> NsState {
        Namespace::new(Name::parse("ns").unwrap(), Arc::new(Totals::default()))
            .state
            .into_inner()
            .unwrap()
    }

    /// Structural invariants that must hold after every operation.
    fn check_invariants(st: &NsState, now: Millis) {
        let ready: Vec<&Element> = st.queues.values().flat_map(|q| q.ready()).collect();
        for (id, entry) in &st.blobs {
            let refs = ready
                .iter()
                .filter(|e| e.blob.as_ref().is_some_and(|b| b.id() == *id))
                .count();
            assert_eq!(
                entry.refs as usize, refs,
                "refs of blob {id} match the queued elements"
            );
            if !entry.exposed {
                assert!(
                    entry.refs > 0 || !entry.is_garbage(now),
                    "unexposed blob without references was freed"
                );
            }
        }
        let element_keys = st
            .expiry
            .iter()
            .filter(|(_, k)| matches!(k, ExpiryKey::Element(..)))
            .count();
        assert_eq!(
            element_keys,
            ready.len(),
            "one expiry entry per ready element"
        );
        assert_eq!(st.totals.snapshot().elements as usize, ready.len());
        if let Some((first, _)) = st.expiry.first() {
            assert!(
                st.scheduled.is_some_and(|s| s <= *first),
                "the sweeper is due no later than the first deadline"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn namespace_state_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..120)) {
            let mut st = state();
            let totals = st.totals.clone();
            let queues = [Name::parse("a").unwrap(), Name::parse("b").unwrap()];
            let mut model: [VecDeque<Expect>; 2] = Default::default();
            let mut blobs: Vec<BlobId> = Vec::new();
            let mut deleted: Vec<BlobId> = Vec::new();
            let mut now = Millis(1_000_000);
            for op in ops {
                let mut grave = Graveyard::default();
                match op {
                    Op::Push { queue, lifetime, data } => {
                        let meta = Metadata::new(None, vec![], 64).unwrap();
                        let deadline = now.plus_secs(lifetime);
                        let blob = data.then(|| Blob::new(BlobContent::Memory(Bytes::from_static(b"x")), 1, meta.clone(), totals.clone()));
                        let element = Element { id: ElementId::random(), blob: blob.clone(), meta, deadline, deliveries: 0 };
                        model[queue].push_back(Expect { id: element.id, deadline, blob: blob.as_ref().map(|b| b.id()) });
                        if let Some(b) = blob {
                            blobs.push(b.id());
                            let _ = st.insert_blob(b, 1, deadline);
                        }
                        let _ = st.enqueue(&queues[queue], element, End::Back, now, &mut grave);
                    }
                    Op::Reference { queue, blob, lifetime } => {
                        let Some(&id) = blobs.get(blob) else { continue };
                        if let Some(b) = st.reference_blob(id, now) {
                            prop_assert!(!deleted.contains(&id), "a deleted blob cannot be referenced");
                            let meta = NsState::reference_meta(Some(&b), None, vec![]);
                            let deadline = now.plus_secs(lifetime);
                            let element = Element { id: ElementId::random(), blob: Some(b), meta, deadline, deliveries: 0 };
                            model[queue].push_back(Expect { id: element.id, deadline, blob: Some(id) });
                            let _ = st.enqueue(&queues[queue], element, End::Back, now, &mut grave);
                        }
                    }
                    Op::Pop { queue, with_data } => {
                        while model[queue].front().is_some_and(|e| e.deadline.has_passed(now)) {
                            model[queue].pop_front();
                        }
                        let expected = model[queue].pop_front();
                        let got = st.take_head(&queues[queue], now, &mut grave);
                        prop_assert_eq!(got.as_ref().map(|e| e.id), expected.as_ref().map(|e| e.id), "FIFO order, expired skipped");
                        if let (Some(element), Some(expected)) = (got, expected) {
                            let (taken, _) = st.finish_pop(&queues[queue], element, with_data, now, &mut grave);
                            let gone = expected.blob.is_some_and(|b| deleted.contains(&b));
                            prop_assert_eq!(matches!(taken, Taken::Gone), gone, "410 exactly when the blob was deleted");
                        }
                    }
                    Op::Delete { blob } => {
                        let Some(&id) = blobs.get(blob) else { continue };
                        if let Some(b) = st.remove_blob(id, now) {
                            b.delete();
                            deleted.push(id);
                        }
                    }
                    Op::Advance { ms, sweep } => {
                        now = Millis(now.0 + ms);
                        if sweep {
                            while st.expire_due(now, 7, &mut grave) == 7 {}
                            let _ = st.reschedule();
                            for q in &mut model {
                                q.retain(|e| !e.deadline.has_passed(now));
                            }
                            let ready: usize = st.queues.values().map(|q| q.ready().count()).sum();
                            prop_assert_eq!(ready, model[0].len() + model[1].len(), "the sweeper removed exactly the expired");
                        }
                    }
                }
                drop(grave);
                check_invariants(&st, now);
            }
        }
    }

    #[test]
    fn a_waiter_that_left_never_receives_and_the_element_is_queued() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let now = Millis(1000);
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.add_waiter(&q, super::super::queue::Waiter { id: 1, tx }, now);
        drop(rx); // the consumer's connection closed
        let meta = Metadata::new(None, vec![], 64).unwrap();
        let element = Element {
            id: ElementId::random(),
            blob: None,
            meta,
            deadline: now.plus_secs(5),
            deliveries: 0,
        };
        let id = element.id;
        let mut grave = Graveyard::default();
        let _ = st.enqueue(&q, element, End::Back, now, &mut grave);
        assert_eq!(st.take_head(&q, now, &mut grave).map(|e| e.id), Some(id));
        assert_eq!(st.totals.snapshot().waiting, 0);
    }

    #[test]
    fn an_expired_head_is_skipped_before_the_sweeper_runs() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let meta = Metadata::new(None, vec![], 64).unwrap();
        let mut grave = Graveyard::default();
        let mut ids = Vec::new();
        for lifetime in [1, 10] {
            let element = Element {
                id: ElementId::random(),
                blob: None,
                meta: meta.clone(),
                deadline: Millis(0).plus_secs(lifetime),
                deliveries: 0,
            };
            ids.push(element.id);
            let _ = st.enqueue(&q, element, End::Back, Millis(0), &mut grave);
        }
        // At 1 s the first has just expired; no sweep has run.
        assert_eq!(
            st.take_head(&q, Millis(1000), &mut grave).map(|e| e.id),
            Some(ids[1])
        );
        assert_eq!(st.queues[&q].counts().expired, 1);
    }
}
