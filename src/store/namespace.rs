//! A namespace: its queues, its blob table and its expiry index, all behind
//! one lock.
//!
//! One `std::sync::Mutex` per namespace, as mini-redis does for its whole
//! database: every operation is a few map updates with no `.await` and no file
//! I/O inside, so a blocking mutex held for a microsecond beats an async one.
//! Anything that could be slow to drop (a spill file) is moved into a
//! [`Graveyard`] and dropped by the caller after unlocking.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashMap;
use smallvec::SmallVec;
use smol_str::SmolStr;

use super::blob::{Blob, BlobContent};
use super::blob_table::{BlobEntry, BlobTable};
use super::clock::Millis;
use super::element::Element;
use super::journal::record::{BlobData, MetaRecord, Record};
use super::journal::Journal;
use super::queue::{End, Lease, Queue};
use super::stats::Totals;
use crate::backend::ids::{BlobId, Receipt};
use crate::backend::meta::{Metadata, SharedMeta};
use crate::backend::name::Name;
use crate::backend::stats::{Counts, NamespaceStats, NamespaceSummary, QueueStats};

pub(crate) struct Namespace {
    pub name: Name,
    state: Mutex<NsState>,
}

impl Namespace {
    pub fn new(
        name: Name,
        totals: Arc<Totals>,
        max_deliveries: u32,
        quota: Quota,
        journal: Option<Arc<Journal>>,
    ) -> Namespace {
        Namespace {
            name: name.clone(),
            state: Mutex::new(NsState {
                name,
                journal,
                queues: HashMap::new(),
                blobs: BlobTable::default(),
                expiry: BTreeSet::new(),
                scheduled: None,
                removed: false,
                totals,
                max_deliveries,
                held: 0,
                blob_bytes: 0,
                quota,
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

/// What the expiry index points at.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum ExpiryKey {
    /// An element with an entry of its own, by queue and sequence number.
    Element(Name, u64),
    /// The deadline chain of a queue (see [`Queue`]'s `chain_head`).
    Chain(Name),
    Blob(BlobId),
    Lease(Name, Receipt),
}

/// How an element arrives in a queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Arrival {
    /// A client's push, at the tail.
    Push,
    /// Handed back at the head: its consumer vanished, or its lease ended.
    Return,
    /// Moved at the tail of a dead-letter queue after too many deliveries.
    DeadLetter,
    /// Read back from the log at start-up, at the tail.
    Restore,
}

/// A lease on an element that was just delivered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseInfo {
    pub receipt: Receipt,
    pub deliveries: u32,
    pub deadline: Millis,
}

/// Elements and blobs removed under the lock, dropped (files unlinked) after it.
#[derive(Default)]
pub(crate) struct Graveyard {
    elements: Vec<Element>,
    /// Room for one inline: nearly every pop releases its blob's table
    /// entry, and a `Vec` allocated for that one `Arc` on each of them.
    blobs: SmallVec<[Arc<Blob>; 1]>,
}

/// How a pop ended once an element was taken.
pub(crate) enum Taken {
    /// The element to answer with: consumed by a plain pop, or a view of it
    /// when it stays in the queue's leased map.
    Element {
        element: Element,
        with_data: bool,
        lease: Option<LeaseInfo>,
    },
    /// The element's blob was deleted; the element is consumed.
    Gone,
}

/// What a pop asks for.
#[derive(Clone, Copy, Debug)]
pub struct PopMode {
    /// Return the bytes (else only the headers: a header-only pop).
    pub with_data: bool,
    /// Lease length in milliseconds; `None` for a plain pop.
    pub lease_ms: Option<u64>,
}

pub(crate) struct NsState {
    name: Name,
    /// Where changes are recorded, in durable mode.
    journal: Option<Arc<Journal>>,
    /// By name; hashbrown's foldhash rather than SipHash, as for the namespaces.
    queues: HashMap<Name, Queue>,
    blobs: BlobTable,
    /// Every pending deadline of the namespace, earliest first, so the sweeper
    /// touches only what is due.
    expiry: BTreeSet<(Millis, ExpiryKey)>,
    /// The wake-up registered with the store's sweeper for this namespace.
    pub scheduled: Option<Millis>,
    /// Set when the namespace was dropped from the store; an operation that
    /// finds it set looks the namespace up again.
    pub removed: bool,
    totals: Arc<Totals>,
    /// Deliveries under lease after which an element is dead-lettered.
    max_deliveries: u32,
    /// Elements held (ready or leased), for the quota.
    held: u64,
    /// Bytes of the blobs in `blobs`, each counted once, for the quota.
    blob_bytes: u64,
    quota: Quota,
}

/// Limits on what one namespace may hold; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default)]
    pub max_elements: u64,
    #[serde(default)]
    pub max_bytes: u64,
}

/// Which quota a push would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("the namespace holds its maximum of {0} elements")]
    Elements(u64),
    #[error("the namespace would hold more than its maximum of {0} bytes")]
    Bytes(u64),
}

/// The deadline the expiry index needs an entry at for `q`'s chain, if its
/// entry is missing or later than the chain's first deadline; records it as
/// the chain's entry.
fn chain_to_index(q: &mut Queue) -> Option<Millis> {
    let head = q.chain_deadline()?;
    if q.chain_key.is_some_and(|k| k <= head) {
        return None;
    }
    q.chain_key = Some(head);
    Some(head)
}

/// Queue `name` of `queues`, created if it does not exist yet: one probe
/// of the map. Apart from `NsState::queue_mut` so that a caller can hold it
/// beside the state's other fields.
fn queue_in<'q>(queues: &'q mut HashMap<Name, Queue>, name: &Name, now: Millis) -> &'q mut Queue {
    queues.entry_ref(name).or_insert_with(|| Queue::new(now))
}

impl NsState {
    /// Records that `element` left its queue for good.
    fn log_take(&self, element: &Element) {
        if let Some(journal) = &self.journal {
            let ns = self.name.as_str();
            journal.append(&Record::Take {
                ns,
                id: element.id.to_u128(),
            });
        }
    }

    /// Puts back a blob read from the log; elements then take references.
    #[must_use]
    pub fn restore_blob(
        &mut self,
        blob: Arc<Blob>,
        exposed: bool,
        deadline: Millis,
    ) -> Option<Millis> {
        self.add_blob(BlobEntry::new(blob, 0, exposed, deadline), false)
    }

    /// Puts `entry` in the table (`new`: a blob just made, whose id the
    /// table cannot hold yet); an exposed blob's deadline in the index.
    #[must_use]
    fn add_blob(&mut self, entry: BlobEntry, new: bool) -> Option<Millis> {
        let id = entry.blob.id();
        let (exposed, deadline) = (entry.exposed(), entry.deadline);
        self.blob_bytes += entry.blob.size();
        if new {
            self.blobs.insert_new(entry);
        } else {
            self.blobs.insert(entry);
        }
        if exposed {
            self.index(deadline, ExpiryKey::Blob(id))
        } else {
            None
        }
    }

    /// The blob `id` as restored, taking a reference for an element.
    pub fn restored_blob(&mut self, id: BlobId) -> Option<Arc<Blob>> {
        let entry = self.blobs.get_mut(id)?;
        entry.add_ref();
        Some(entry.blob.clone())
    }

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
        queue_in(&mut self.queues, name, now)
    }

    /// Registers a blob just made (`Blob::new`, a fresh random id). `refs` is
    /// 1 for a blob pushed with its element and 0 for one stored through
    /// `/tbs` (which is exposed from the start).
    #[must_use]
    pub fn insert_blob(&mut self, blob: Arc<Blob>, refs: u32, deadline: Millis) -> Option<Millis> {
        let exposed = refs == 0;
        if let Some(journal) = &self.journal {
            journal.append(&blob_record(&self.name, &blob, deadline, exposed));
            if let Some(file) = blob.content().stored_file() {
                file.keep();
                journal.file_added();
            }
        }
        self.add_blob(BlobEntry::new(blob, refs, exposed, deadline), true)
    }

    /// Takes blob `id` out of the table.
    fn forget_blob(&mut self, id: BlobId) -> Option<Arc<Blob>> {
        let entry = self.blobs.remove(id)?;
        Some(self.forget_entry(entry))
    }

    /// Accounts for a blob entry taken out of the table.
    fn forget_entry(&mut self, entry: BlobEntry) -> Arc<Blob> {
        let id = entry.blob.id();
        self.blob_bytes -= entry.blob.size();
        if let Some(journal) = &self.journal {
            let ns = self.name.as_str();
            journal.append(&Record::BlobGone {
                ns,
                id: id.to_u128(),
            });
            if let Some(file) = entry.blob.content().stored_file() {
                file.remove_when_dropped(journal.clone());
            }
        }
        entry.blob
    }

    /// Refuses what would take the namespace past its quota: `elements` more
    /// held elements and `bytes` more stored bytes.
    pub fn check_quota(&self, elements: u64, bytes: u64) -> Result<(), QuotaExceeded> {
        let q = &self.quota;
        if q.max_elements > 0 && self.held + elements > q.max_elements {
            return Err(QuotaExceeded::Elements(q.max_elements));
        }
        if q.max_bytes > 0 && self.blob_bytes + bytes > q.max_bytes {
            return Err(QuotaExceeded::Bytes(q.max_bytes));
        }
        Ok(())
    }

    /// Takes a new reference on a readable blob, for a reference push.
    pub fn reference_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get_mut(id).filter(|e| e.is_readable(now))?;
        entry.add_ref();
        Some(entry.blob.clone())
    }

    /// The blob `id` with its seconds left, if it is readable.
    pub fn readable_blob(&self, id: BlobId, now: Millis) -> Option<(Arc<Blob>, u64)> {
        let entry = self.blobs.get(id).filter(|e| e.is_readable(now))?;
        Some((entry.blob.clone(), entry.deadline.seconds_left(now)))
    }

    /// Forgets blob `id`. The caller calls [`Blob::delete`] after unlocking.
    pub fn remove_blob(&mut self, id: BlobId, now: Millis) -> Option<Arc<Blob>> {
        let entry = self.blobs.get(id).filter(|e| e.is_readable(now))?;
        let key = (entry.deadline, ExpiryKey::Blob(id));
        let exposed = entry.exposed();
        if exposed {
            self.expiry.remove(&key);
        }
        self.forget_blob(id)
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
        let wake = if expose { self.expose_blob(id) } else { None };
        if let Some(entry) = self.blobs.release(blob, now)? {
            grave.blobs.push(self.forget_entry(entry));
        }
        wake
    }

    /// A header-only delivery handed the blob's id to a client: from now on
    /// the blob lives to its own deadline.
    #[must_use]
    fn expose_blob(&mut self, id: BlobId) -> Option<Millis> {
        let entry = self.blobs.get_mut(id)?;
        if entry.exposed() {
            return None;
        }
        entry.expose();
        let deadline = entry.deadline;
        if let Some(journal) = &self.journal {
            let ns = self.name.as_str();
            journal.append(&Record::Expose {
                ns,
                id: id.to_u128(),
            });
        }
        self.index(deadline, ExpiryKey::Blob(id))
    }

    /// Puts an element into `queue`: straight to a waiting consumer if there
    /// is one, else into the ready list.
    #[must_use]
    pub fn enqueue(
        &mut self,
        queue: &Name,
        element: Element,
        arrival: Arrival,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        if matches!(arrival, Arrival::Push | Arrival::DeadLetter) {
            if let Some(journal) = &self.journal {
                journal.append(&put_record(&self.name, queue, &element));
            }
        }
        let totals = &*self.totals;
        let q = queue_in(&mut self.queues, queue, now);
        q.last_active = now;
        if matches!(arrival, Arrival::Push | Arrival::DeadLetter) {
            q.count_push();
        }
        if arrival == Arrival::Push {
            totals.pushed();
        }
        if element.deadline.has_passed(now) {
            return self.expire(queue, element, now, grave);
        }
        let element = match q.hand_to_waiter(element, totals) {
            Ok(()) => return None,
            Err(element) => element,
        };
        let end = if arrival == Arrival::Return {
            End::Front
        } else {
            End::Back
        };
        let deadline = element.deadline;
        let (seq, indexed) = q.insert(element, end);
        totals.element_queued();
        self.held += 1;
        if indexed {
            return self.index(deadline, ExpiryKey::Element(queue.clone(), seq));
        }
        // From the queue already found: looking it up by name again cost
        // 186 ns a push under load (a cold probe of the queue map).
        let head = chain_to_index(q)?;
        self.index(head, ExpiryKey::Chain(queue.clone()))
    }

    /// Makes sure the index has an entry for `queue`'s chain no later than
    /// the chain's first deadline.
    #[must_use]
    fn index_chain(&mut self, queue: &Name) -> Option<Millis> {
        let head = chain_to_index(self.queues.get_mut(queue)?)?;
        self.index(head, ExpiryKey::Chain(queue.clone()))
    }

    /// Removes the first live element of `queue`, expiring any dead ones
    /// found in front of it, and counts the pop in the queue's statistics.
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
            let expired = element.deadline.has_passed(now);
            if !expired {
                // Here, while the queue is at hand: `finish_pop` would have
                // to look it up again.
                q.count_pop();
                prefetch_next_pops(q, &self.blobs);
            }
            self.totals.element_unqueued();
            self.held -= 1;
            if element.indexed {
                self.expiry
                    .remove(&(element.deadline, ExpiryKey::Element(queue.clone(), seq)));
            }
            if expired {
                // Nothing in the ready list can wake the sweeper earlier than it is already set for.
                let _ = self.expire(queue, element, now, grave);
                continue;
            }
            return Some(element);
        }
    }

    /// Pops the head of `queue`, if it has a live one: `take_head` then
    /// `finish_pop`, with the sweeper wake-up that asks for.
    pub fn pop_head(
        &mut self,
        queue: &Name,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (Option<Taken>, Option<Millis>) {
        match self.take_head(queue, now, grave) {
            Some(element) => {
                let (taken, wake) = self.finish_pop(queue, element, mode, now, grave);
                (Some(taken), wake)
            }
            None => (None, None),
        }
    }

    /// Counts a pop of an element handed to a waiting consumer, which did
    /// not go through `take_head`.
    pub fn count_handed_pop(&mut self, queue: &Name) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.count_pop();
        }
    }

    /// Completes a pop of `element` taken from `queue` (by `take_head` or
    /// handed to a waiter, and counted by then): counts it store-wide and settles
    /// its blob (freed if this was the last reference to an unexposed blob,
    /// exposed if the pop is header-only). Under a lease the element instead
    /// moves, with its blob reference, into the queue's leased map and the
    /// consumer gets a view of it.
    pub fn finish_pop(
        &mut self,
        queue: &Name,
        mut element: Element,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (Taken, Option<Millis>) {
        self.totals.popped();
        let with_data = mode.with_data;
        if element.blob.as_ref().is_some_and(|b| b.is_deleted()) {
            self.log_take(&element);
            grave.elements.push(element);
            return (Taken::Gone, None);
        }
        let Some(lease_ms) = mode.lease_ms else {
            self.log_take(&element);
            let wake = (element.blob.as_deref())
                .and_then(|b| self.release_blob(b, !with_data, now, grave));
            let taken = Taken::Element {
                element,
                with_data,
                lease: None,
            };
            return (taken, wake);
        };
        element.deliveries += 1;
        let wake_blob = match (&element.blob, with_data) {
            (Some(b), false) => self.expose_blob(b.id()),
            _ => None,
        };
        let lease = LeaseInfo {
            receipt: Receipt::random(),
            deliveries: element.deliveries,
            deadline: Millis(now.0.saturating_add(lease_ms)),
        };
        let view = element.clone();
        let deadline = lease.deadline;
        self.queue_mut(queue, now)
            .leased
            .insert(lease.receipt, Lease { element, deadline });
        self.totals.lease_added();
        self.held += 1;
        let wake_lease = self.index(deadline, ExpiryKey::Lease(queue.clone(), lease.receipt));
        let taken = Taken::Element {
            element: view,
            with_data,
            lease: Some(lease),
        };
        (taken, wake_blob.into_iter().chain(wake_lease).min())
    }

    /// Takes the lease `receipt` of `queue` out of the leased map if it is
    /// still running. A lease found past its deadline (the sweeper has not run
    /// yet) is ended here as the sweeper would end it.
    fn take_lease(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (Option<Element>, Option<Millis>) {
        let Some(lease) = self.queues.get(queue).and_then(|q| q.leased.get(&receipt)) else {
            return (None, None);
        };
        if lease.deadline.has_passed(now) {
            return (None, self.end_lease(queue, receipt, now, grave));
        }
        (self.remove_lease(queue, receipt), None)
    }

    fn remove_lease(&mut self, queue: &Name, receipt: Receipt) -> Option<Element> {
        let lease = self.queues.get_mut(queue)?.leased.remove(&receipt)?;
        self.totals.lease_removed();
        self.held -= 1;
        self.expiry
            .remove(&(lease.deadline, ExpiryKey::Lease(queue.clone(), receipt)));
        Some(lease.element)
    }

    /// Acknowledges a lease: the element is gone for good. False if the lease
    /// is unknown or has run out.
    pub fn ack(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (bool, Option<Millis>) {
        let (element, wake) = self.take_lease(queue, receipt, now, grave);
        let Some(element) = element else {
            return (false, wake);
        };
        self.log_take(&element);
        let wake_blob = element
            .blob
            .clone()
            .and_then(|b| self.release_blob(&b, false, now, grave));
        grave.elements.push(element);
        (true, wake.into_iter().chain(wake_blob).min())
    }

    /// Hands a leased element back at once, as if its lease had run out.
    pub fn release(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (bool, Option<Millis>) {
        let (element, wake) = self.take_lease(queue, receipt, now, grave);
        let Some(element) = element else {
            return (false, wake);
        };
        let wake_back = self.return_leased(queue, element, now, grave);
        (true, wake.into_iter().chain(wake_back).min())
    }

    /// Restarts a running lease with `lease_ms` from now. Its new deadline, or
    /// `None` if the lease is unknown or has run out.
    pub fn extend(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        lease_ms: u64,
        now: Millis,
        grave: &mut Graveyard,
    ) -> (Option<Millis>, Option<Millis>) {
        let (element, wake) = self.take_lease(queue, receipt, now, grave);
        let Some(element) = element else {
            return (None, wake);
        };
        let deadline = Millis(now.0.saturating_add(lease_ms));
        self.queue_mut(queue, now)
            .leased
            .insert(receipt, Lease { element, deadline });
        self.totals.lease_added();
        self.held += 1;
        let wake_lease = self.index(deadline, ExpiryKey::Lease(queue.clone(), receipt));
        (Some(deadline), wake.into_iter().chain(wake_lease).min())
    }

    /// Ends a lease that ran out: the element goes back to the head of its
    /// queue, or to the dead-letter queue once delivered too often.
    #[must_use]
    fn end_lease(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        let element = self.remove_lease(queue, receipt)?;
        self.return_leased(queue, element, now, grave)
    }

    #[must_use]
    fn return_leased(
        &mut self,
        queue: &Name,
        element: Element,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Millis> {
        if element.deliveries >= self.max_deliveries {
            if let Some(dead) = queue.dead_letter() {
                tracing::debug!(queue = %queue, element = %element.id, deliveries = element.deliveries, "dead-lettered");
                self.log_take(&element);
                return self.enqueue(&dead, element, Arrival::DeadLetter, now, grave);
            }
        }
        self.enqueue(queue, element, Arrival::Return, now, grave)
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
        self.log_take(&element);
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
            let Some((due, key)) = self.expiry.pop_first() else {
                break;
            };
            handled += 1;
            match key {
                ExpiryKey::Element(queue, seq) => {
                    let Some(element) = self.queues.get_mut(&queue).and_then(|q| q.remove(seq))
                    else {
                        continue;
                    };
                    self.compact_queue(&queue);
                    self.totals.element_unqueued();
                    self.held -= 1;
                    // The index already holds everything `expire` could add.
                    let _ = self.expire(&queue, element, now, grave);
                }
                ExpiryKey::Chain(queue) => {
                    let Some(q) = self.queues.get_mut(&queue) else {
                        continue;
                    };
                    // An entry the chain no longer uses (superseded by an earlier one).
                    if q.chain_key != Some(due) {
                        continue;
                    }
                    q.chain_key = None;
                    let expired = q.expire_chain(now, limit.saturating_sub(handled));
                    handled += expired.len();
                    for element in expired {
                        self.totals.element_unqueued();
                        self.held -= 1;
                        let _ = self.expire(&queue, element, now, grave);
                    }
                    // Re-registered at the new first deadline; the sweeper
                    // reschedules from the index after this batch.
                    let _ = self.index_chain(&queue);
                    self.compact_queue(&queue);
                }
                ExpiryKey::Blob(id) => {
                    if self.blobs.get(id).is_some_and(|e| e.is_garbage(now)) {
                        if let Some(blob) = self.forget_blob(id) {
                            grave.blobs.push(blob);
                        }
                    }
                }
                ExpiryKey::Lease(queue, receipt) => {
                    // Deadlines the return adds are in the future; the
                    // sweeper reschedules from the index after this batch.
                    let _ = self.end_lease(&queue, receipt, now, grave);
                }
            }
        }
        handled
    }

    /// Closes up the holes expiries left in `queue` once they outnumber its
    /// elements, moving the expiry entries of the elements that moved.
    fn compact_queue(&mut self, queue: &Name) {
        let Some(moved) = self.queues.get_mut(queue).and_then(Queue::compact) else {
            return;
        };
        for (from, _, deadline) in &moved {
            self.expiry
                .remove(&(*deadline, ExpiryKey::Element(queue.clone(), *from)));
        }
        for (_, to, deadline) in moved {
            self.expiry
                .insert((deadline, ExpiryKey::Element(queue.clone(), to)));
        }
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
            let (ready, leased, waiters) = q.drain();
            for _ in 0..ready.len() {
                self.totals.element_unqueued();
                self.held -= 1;
            }
            for _ in 0..leased.len() {
                self.totals.lease_removed();
                self.held -= 1;
            }
            for _ in 0..waiters {
                self.totals.waiter_removed();
            }
            grave.elements.extend(ready);
            grave.elements.extend(leased);
        }
        self.queues.clear();
        grave.blobs.extend(self.blobs.drain().map(|e| e.blob));
        self.blob_bytes = 0;
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
        (self.blobs.len() as u64, self.blob_bytes)
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
        content_type: Option<SmolStr>,
        custom: Vec<crate::backend::meta::CustomPair>,
    ) -> SharedMeta {
        match blob {
            Some(b) if content_type.is_none() && custom.is_empty() => b.meta().clone(),
            Some(b) => SharedMeta::new(Metadata {
                content_type: content_type.unwrap_or_else(|| b.meta().content_type.clone()),
                custom: if custom.is_empty() {
                    b.meta().custom.clone()
                } else {
                    custom.into_boxed_slice()
                },
            }),
            // The default type named explicitly is the same record.
            None if custom.is_empty()
                && content_type
                    .as_deref()
                    .is_none_or(|t| t == crate::backend::meta::DEFAULT_CONTENT_TYPE) =>
            {
                Metadata::plain()
            }
            None => SharedMeta::new(Metadata::with_default_type(content_type, custom)),
        }
    }
}

/// Asks the CPU for what the next pops of `q` will read: the blob of the
/// element after the head, and for the head, whose blob the pop before asked
/// for, its bytes and its entry in `blobs`. Queued blobs and their entries
/// are long out of the caches, and a pop otherwise waits for each in turn.
fn prefetch_next_pops(q: &Queue, blobs: &BlobTable) {
    let mut next = q.next_blobs();
    if let Some(Some(blob)) = next.next() {
        blob.prefetch_bytes();
        blobs.prefetch_entry(blob);
    }
    if let Some(Some(blob)) = next.next() {
        Blob::prefetch(blob);
    }
}

/// The log record of a stored blob.
fn blob_record<'a>(ns: &'a Name, blob: &'a Blob, deadline: Millis, exposed: bool) -> Record<'a> {
    let data = match blob.content() {
        BlobContent::Memory(bytes) => BlobData::Inline(bytes),
        // Durable mode only makes stored files; a spill file cannot be named
        // relative to the data directory, so it is recorded by its name too and
        // would be found missing at replay.
        BlobContent::File(file) => BlobData::File(
            file.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
        ),
    };
    Record::Blob {
        ns: ns.as_str(),
        id: blob.id().to_u128(),
        size: blob.size(),
        meta: meta_record(blob.meta()),
        deadline: deadline.0,
        exposed,
        data,
    }
}

/// The log record of an element entering `queue`.
fn put_record<'a>(ns: &'a Name, queue: &'a Name, element: &'a Element) -> Record<'a> {
    Record::Put {
        ns: ns.as_str(),
        queue: queue.as_str(),
        id: element.id.to_u128(),
        blob: element.blob.as_ref().map(|b| b.id().to_u128()),
        meta: meta_record(&element.meta),
        deadline: element.deadline.0,
        deliveries: element.deliveries,
    }
}

fn meta_record(meta: &Metadata) -> MetaRecord<'_> {
    MetaRecord {
        content_type: &meta.content_type,
        custom: meta.custom.iter().map(|p| (&*p.key, &*p.value)).collect(),
    }
}

#[cfg(test)]
mod tests {
    //! Random operations against the namespace state and a plain model side
    //! by side, with the clock under the test's control.

    use std::collections::{BTreeMap, VecDeque};

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::backend::ids::ElementId;
    use crate::store::blob::BlobContent;

    const MAX_DELIVERIES: u32 = 3;
    const QUEUES: [&str; 2] = ["a", "b"];

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
            lease_ms: Option<u64>,
        },
        Ack {
            lease: usize,
        },
        Release {
            lease: usize,
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
            4 => (0..2usize, 1..6u64, any::<bool>())
                .prop_map(|(queue, lifetime, data)| Op::Push { queue, lifetime, data }),
            2 => (0..2usize, 0..8usize, 1..6u64)
                .prop_map(|(queue, blob, lifetime)| Op::Reference { queue, blob, lifetime }),
            4 => (0..2usize, any::<bool>(), proptest::option::of(1..3000u64))
                .prop_map(|(queue, with_data, lease_ms)| Op::Pop { queue, with_data, lease_ms }),
            1 => (0..6usize).prop_map(|lease| Op::Ack { lease }),
            1 => (0..6usize).prop_map(|lease| Op::Release { lease }),
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
        deliveries: u32,
    }

    /// An element out under a lease, in the model.
    #[derive(Debug, Clone)]
    struct ModelLease {
        queue: String,
        element: Expect,
        deadline: Millis,
    }

    /// The model: plain FIFOs by queue name, and leases by receipt.
    #[derive(Default)]
    struct Model {
        queues: BTreeMap<String, VecDeque<Expect>>,
        leases: BTreeMap<Receipt, ModelLease>,
    }

    impl Model {
        fn queue(&mut self, name: &str) -> &mut VecDeque<Expect> {
            self.queues.entry(name.to_owned()).or_default()
        }

        /// A lease ends: the element goes back to the head, to the dead-letter
        /// queue after too many deliveries, or nowhere if it expired itself.
        fn end_lease(&mut self, receipt: Receipt, now: Millis) {
            let Some(lease) = self.leases.remove(&receipt) else {
                return;
            };
            if lease.element.deadline.has_passed(now) {
                return;
            }
            if lease.element.deliveries >= MAX_DELIVERIES {
                let dead = format!("{}.dead", lease.queue);
                self.queue(&dead).push_back(lease.element);
            } else {
                self.queue(&lease.queue).push_front(lease.element);
            }
        }

        /// The sweeper at `now`: element expiries, and leases that ran out in
        /// index order (deadline, then receipt), as the real index orders them.
        fn sweep(&mut self, now: Millis) {
            let mut due: Vec<(Millis, Receipt)> = self
                .leases
                .iter()
                .filter(|(_, l)| l.deadline.has_passed(now))
                .map(|(r, l)| (l.deadline, *r))
                .collect();
            due.sort();
            // Elements expire first when their deadline is earlier; a returned
            // element that is itself expired is dropped by `end_lease`.
            for (_, receipt) in due {
                self.end_lease(receipt, now);
            }
            for q in self.queues.values_mut() {
                q.retain(|e| !e.deadline.has_passed(now));
            }
        }
    }

    fn state() -> NsState {
        Namespace::new(
            Name::parse("ns").unwrap(),
            Arc::new(Totals::default()),
            MAX_DELIVERIES,
            Quota::default(),
            None,
        )
        .state
        .into_inner()
        .unwrap()
    }

    /// Structural invariants that must hold after every operation.
    fn check_invariants(st: &NsState, now: Millis) {
        let held: Vec<&Element> = st
            .queues
            .values()
            .flat_map(|q| q.ready().chain(q.leased.values().map(|l| &l.element)))
            .collect();
        for entry in st.blobs.iter() {
            let id = &entry.blob.id();
            let refs = held
                .iter()
                .filter(|e| e.blob.as_ref().is_some_and(|b| b.id() == *id))
                .count();
            assert_eq!(
                entry.refs() as usize,
                refs,
                "refs of blob {id} match the held elements"
            );
            if !entry.exposed() {
                assert!(
                    entry.refs() > 0 || !entry.is_garbage(now),
                    "unreferenced unexposed blob kept"
                );
            }
        }
        let ready: usize = st.queues.values().map(|q| q.ready().count()).sum();
        let indexed: usize = st
            .queues
            .values()
            .map(|q| q.ready().filter(|e| e.indexed).count())
            .sum();
        for (name, q) in &st.queues {
            if let Some(head) = q.chain_deadline() {
                let key = q.chain_key.expect("a chain has an index entry");
                assert!(key <= head, "the chain entry is due by its first deadline");
                assert!(st.expiry.contains(&(key, ExpiryKey::Chain(name.clone()))));
            }
        }
        let leased: usize = st.queues.values().map(|q| q.leased.len()).sum();
        let element_keys = st
            .expiry
            .iter()
            .filter(|(_, k)| matches!(k, ExpiryKey::Element(..)))
            .count();
        let lease_keys = st
            .expiry
            .iter()
            .filter(|(_, k)| matches!(k, ExpiryKey::Lease(..)))
            .count();
        assert_eq!(
            element_keys, indexed,
            "one expiry entry per indexed element"
        );
        assert_eq!(lease_keys, leased, "one expiry entry per lease");
        let totals = st.totals.snapshot();
        assert_eq!(
            (totals.elements as usize, totals.leased as usize),
            (ready, leased)
        );
        assert_eq!(
            st.held as usize,
            ready + leased,
            "the quota's element count"
        );
        let bytes: u64 = st.blobs.iter().map(|e| e.blob.size()).sum();
        assert_eq!(st.blob_bytes, bytes, "the quota's byte count");
        if let Some((first, _)) = st.expiry.first() {
            assert!(
                st.scheduled.is_some_and(|s| s <= *first),
                "the sweeper is due by the first deadline"
            );
        }
    }

    fn push_element(
        st: &mut NsState,
        queue: &Name,
        blob: Option<Arc<Blob>>,
        lifetime: u64,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Expect {
        let meta = blob.as_ref().map_or_else(
            || Metadata::shared(None, vec![], 64).unwrap(),
            |b| b.meta().clone(),
        );
        let deadline = now.plus_secs(lifetime);
        let element = Element {
            id: ElementId::random(),
            blob: blob.clone(),
            meta,
            deadline,
            deliveries: 0,
            indexed: false,
        };
        let expect = Expect {
            id: element.id,
            deadline,
            blob: blob.map(|b| b.id()),
            deliveries: 0,
        };
        let _ = st.enqueue(queue, element, Arrival::Push, now, grave);
        expect
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn namespace_state_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..150)) {
            let mut st = state();
            let totals = st.totals.clone();
            let names: Vec<Name> = QUEUES.iter().map(|q| Name::parse(q).unwrap()).collect();
            let mut model = Model::default();
            let mut blobs: Vec<BlobId> = Vec::new();
            let mut deleted: Vec<BlobId> = Vec::new();
            let mut receipts: Vec<(usize, Receipt)> = Vec::new();
            let mut now = Millis(1_000_000);
            for op in ops {
                let mut grave = Graveyard::default();
                match op {
                    Op::Push { queue, lifetime, data } => {
                        let blob = data.then(|| {
                            let meta = Metadata::shared(None, vec![], 64).unwrap();
                            Blob::new(BlobContent::Memory(Bytes::from_static(b"x")), 1, meta, totals.clone())
                        });
                        if let Some(b) = &blob {
                            blobs.push(b.id());
                            let _ = st.insert_blob(b.clone(), 1, now.plus_secs(lifetime));
                        }
                        let expect = push_element(&mut st, &names[queue], blob, lifetime, now, &mut grave);
                        model.queue(QUEUES[queue]).push_back(expect);
                    }
                    Op::Reference { queue, blob, lifetime } => {
                        let Some(&id) = blobs.get(blob) else { continue };
                        if let Some(b) = st.reference_blob(id, now) {
                            prop_assert!(!deleted.contains(&id), "a deleted blob cannot be referenced");
                            let expect = push_element(&mut st, &names[queue], Some(b), lifetime, now, &mut grave);
                            model.queue(QUEUES[queue]).push_back(expect);
                        }
                    }
                    Op::Pop { queue, with_data, lease_ms } => {
                        let q = model.queue(QUEUES[queue]);
                        while q.front().is_some_and(|e| e.deadline.has_passed(now)) {
                            q.pop_front();
                        }
                        let expected = q.pop_front();
                        let got = st.take_head(&names[queue], now, &mut grave);
                        prop_assert_eq!(got.as_ref().map(|e| e.id), expected.as_ref().map(|e| e.id), "FIFO order, expired skipped");
                        let (Some(element), Some(mut expected)) = (got, expected) else { continue };
                        let mode = PopMode { with_data, lease_ms };
                        let (taken, _) = st.finish_pop(&names[queue], element, mode, now, &mut grave);
                        let gone = expected.blob.is_some_and(|b| deleted.contains(&b));
                        prop_assert_eq!(matches!(taken, Taken::Gone), gone, "410 exactly when the blob was deleted");
                        if let Taken::Element { lease: Some(lease), .. } = taken {
                            expected.deliveries += 1;
                            prop_assert_eq!(lease.deliveries, expected.deliveries);
                            receipts.push((queue, lease.receipt));
                            model.leases.insert(lease.receipt, ModelLease {
                                queue: QUEUES[queue].to_owned(),
                                element: expected,
                                deadline: lease.deadline,
                            });
                        }
                    }
                    Op::Ack { lease } | Op::Release { lease } if lease >= receipts.len() => {}
                    Op::Ack { lease } => {
                        let (queue, receipt) = receipts[lease];
                        let running = model.leases.get(&receipt).is_some_and(|l| !l.deadline.has_passed(now));
                        let (ok, _) = st.ack(&names[queue], receipt, now, &mut grave);
                        prop_assert_eq!(ok, running, "ack succeeds exactly on a running lease");
                        if running {
                            model.leases.remove(&receipt);
                        } else {
                            model.end_lease(receipt, now);
                        }
                    }
                    Op::Release { lease } => {
                        let (queue, receipt) = receipts[lease];
                        let running = model.leases.get(&receipt).is_some_and(|l| !l.deadline.has_passed(now));
                        let (ok, _) = st.release(&names[queue], receipt, now, &mut grave);
                        prop_assert_eq!(ok, running, "release succeeds exactly on a running lease");
                        model.end_lease(receipt, now);
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
                            model.sweep(now);
                        }
                    }
                }
                drop(grave);
                check_invariants(&st, now);
                for (name, q) in &model.queues {
                    let real: Vec<ElementId> = st.queues.get(name.as_str())
                        .map(|rq| rq.ready().filter(|e| !e.deadline.has_passed(now)).map(|e| e.id).collect())
                        .unwrap_or_default();
                    let live: Vec<ElementId> = q.iter().filter(|e| !e.deadline.has_passed(now)).map(|e| e.id).collect();
                    prop_assert_eq!(real, live, "queue {} holds the model's live elements in order", name);
                }
            }
        }
    }

    #[test]
    fn a_data_pop_releases_its_blob_into_the_grave_without_allocating() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let now = Millis(1000);
        let meta = Metadata::shared(None, vec![], 64).unwrap();
        let blob = Blob::new(
            BlobContent::Memory(Bytes::from_static(b"x")),
            1,
            meta,
            st.totals.clone(),
        );
        let _ = st.insert_blob(blob.clone(), 1, now.plus_secs(5));
        let mut grave = Graveyard::default();
        push_element(&mut st, &q, Some(blob), 5, now, &mut grave);
        let mode = PopMode {
            with_data: true,
            lease_ms: None,
        };
        let mut grave = Graveyard::default();
        let (taken, _) = st.pop_head(&q, mode, now, &mut grave);
        assert!(matches!(taken, Some(Taken::Element { .. })));
        assert_eq!(
            grave.blobs.len(),
            1,
            "the table's reference, dropped after the lock"
        );
        assert!(!grave.blobs.spilled(), "held inline, no allocation");
        assert_eq!(st.blobs.len(), 0);
    }

    #[test]
    fn a_waiter_that_left_never_receives_and_the_element_is_queued() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let now = Millis(1000);
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.add_waiter(&q, super::super::queue::Waiter { id: 1, tx }, now);
        drop(rx); // the consumer's connection closed
        let mut grave = Graveyard::default();
        let expect = push_element(&mut st, &q, None, 5, now, &mut grave);
        assert_eq!(
            st.take_head(&q, now, &mut grave).map(|e| e.id),
            Some(expect.id)
        );
        assert_eq!(st.totals.snapshot().waiting, 0);
    }

    #[test]
    fn elements_of_one_lifetime_share_one_index_entry_and_expire_in_batches() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let mut grave = Graveyard::default();
        for i in 0..1000u64 {
            push_element(&mut st, &q, None, 10, Millis(i), &mut grave);
        }
        assert_eq!(st.expiry.len(), 1, "one chain entry for the whole queue");
        // A shorter lifetime cannot join the chain: it gets an entry of its own.
        let short = push_element(&mut st, &q, None, 1, Millis(1000), &mut grave);
        assert_eq!(st.expiry.len(), 2);
        check_invariants(&st, Millis(1000));
        assert_eq!(
            st.expire_due(Millis(2000), 100, &mut grave),
            1,
            "only the short one is due"
        );
        assert!(st.queues[&q].ready().all(|e| e.id != short.id));
        // Half of the chain is due at 10.5 s, handled in bounded batches.
        let mut rounds = 0;
        while st.expire_due(Millis(10_500), 100, &mut grave) > 0 {
            let _ = st.reschedule();
            rounds += 1;
            check_invariants(&st, Millis(10_500));
        }
        assert!(rounds >= 5, "batches of at most 100: {rounds}");
        assert_eq!(st.queues[&q].counts().elements, 499);
        assert_eq!(st.queues[&q].counts().expired, 502);
    }

    #[test]
    fn holes_left_by_expiry_are_closed_up_and_the_index_follows() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let mut grave = Graveyard::default();
        // A long-lived head keeps the holes behind it from reaching the front.
        let mut kept = vec![push_element(&mut st, &q, None, 100, Millis(0), &mut grave).id];
        for i in 0..300 {
            let lifetime = if i % 3 == 0 { 50 } else { 1 };
            let e = push_element(&mut st, &q, None, lifetime, Millis(0), &mut grave);
            if lifetime == 50 {
                kept.push(e.id);
            }
        }
        while st.expire_due(Millis(2000), 64, &mut grave) > 0 {}
        let queue = &st.queues[&q];
        assert!(
            queue.ready.len() < 200,
            "compacted: {} slots for {} elements",
            queue.ready.len(),
            kept.len()
        );
        check_invariants(&st, Millis(2000));
        // Every moved element's expiry entry points at it: at 50 s all but the head expire.
        while st.expire_due(Millis(50_000), 64, &mut grave) > 0 {}
        check_invariants(&st, Millis(50_000));
        assert_eq!(st.queues[&q].counts().elements, 1);
        assert_eq!(
            st.take_head(&q, Millis(50_000), &mut grave).map(|e| e.id),
            Some(kept[0])
        );
    }

    #[test]
    fn an_expired_head_is_skipped_before_the_sweeper_runs() {
        let mut st = state();
        let q = Name::parse("q").unwrap();
        let mut grave = Graveyard::default();
        push_element(&mut st, &q, None, 1, Millis(0), &mut grave);
        let live = push_element(&mut st, &q, None, 10, Millis(0), &mut grave);
        // At 1 s the first has just expired; no sweep has run.
        assert_eq!(
            st.take_head(&q, Millis(1000), &mut grave).map(|e| e.id),
            Some(live.id)
        );
        assert_eq!(st.queues[&q].counts().expired, 1);
    }

    #[test]
    fn a_lease_that_runs_out_max_deliveries_times_dead_letters_the_element() {
        let mut st = state();
        let q = Name::parse("jobs").unwrap();
        let mut grave = Graveyard::default();
        let pushed = push_element(&mut st, &q, None, 3600, Millis(0), &mut grave);
        let mut now = Millis(0);
        for round in 1..=MAX_DELIVERIES {
            let element = st.take_head(&q, now, &mut grave).expect("back at the head");
            let mode = PopMode {
                with_data: true,
                lease_ms: Some(1000),
            };
            let (taken, _) = st.finish_pop(&q, element, mode, now, &mut grave);
            let Taken::Element {
                lease: Some(lease), ..
            } = taken
            else {
                panic!("leased")
            };
            assert_eq!(lease.deliveries, round);
            assert_eq!(st.queues[&q].counts().leased, 1);
            now = Millis(now.0 + 1000);
            st.expire_due(now, 100, &mut grave);
        }
        assert!(
            st.take_head(&q, now, &mut grave).is_none(),
            "no longer in its queue"
        );
        let dead = Name::parse("jobs.dead").unwrap();
        let element = st.take_head(&dead, now, &mut grave).expect("dead-lettered");
        assert_eq!(
            (element.id, element.deliveries),
            (pushed.id, MAX_DELIVERIES)
        );
    }
}
