//! A namespace: its queues, its blob table and its expiry index, all behind
//! one lock, and the changes an operation makes to them.
//!
//! One `std::sync::Mutex` per namespace, as mini-redis does for its whole
//! database: every operation is a few map updates with no `.await` and no file
//! I/O inside, so a blocking mutex held briefly beats an async one. Anything
//! that could be slow to drop (a spill file) is moved into a [`Graveyard`]
//! and dropped by the caller after unlocking.
//!
//! [`NsState`]'s operations are split by what they own: [`queues`] (push,
//! pop, waiters), [`leases`] (ack, release, extend, running out, dead
//! letters), [`blobs`] (the blob table and its references), [`quota`],
//! [`expiry`] (the deadline index the sweeper works from) and [`stats`].
//! [`changes`] turns each change into the record durable mode logs.

mod batch;
mod blobs;
mod changes;
mod expiry;
mod expiry_index;
mod leases;
mod queues;
mod quota;
mod stats;
mod withdraw;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashMap;
use smallvec::SmallVec;

use super::blob::Blob;
use super::blob_table::BlobTable;
use super::clock::Millis;
use super::element::Element;
use super::journal::Journal;
use super::queue::Queue;
use super::stats::Totals;
use crate::backend::ids::{BlobId, Receipt};
use crate::backend::name::Name;
pub(crate) use batch::{Prepared, Refusal, Taken};
pub(crate) use blobs::element_meta;
use changes::ChangeLog;
use expiry_index::ExpiryIndex;
pub use quota::{Quota, QuotaExceeded};

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
                log: ChangeLog::new(name, journal),
                queues: HashMap::new(),
                blobs: BlobTable::default(),
                expiry: ExpiryIndex::default(),
                scheduled: None,
                earlier_wakeup: None,
                removed: false,
                totals,
                max_deliveries,
                elements_held: 0,
                held_outside: 0,
                blob_bytes: 0,
                quota,
            }),
        }
    }

    /// Locks the state. A panic while locked cannot leave the maps half
    /// updated in a way that matters more than refusing service would, so a
    /// poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> Locked<'_> {
        Locked(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A namespace's state, locked. Releasing it hands the records the change
/// logged to the journal in one piece (see [`changes`]), before another
/// change of the namespace can log its own.
pub(crate) struct Locked<'a>(MutexGuard<'a, NsState>);

impl std::ops::Deref for Locked<'_> {
    type Target = NsState;
    fn deref(&self) -> &NsState {
        &self.0
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut NsState {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.log.commit();
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
    /// Taken back at the head after the log could not record its pop or
    /// acknowledgement: its `Take` will be written, so it is logged as a
    /// `Put` again (replay then has it at its queue's tail).
    Undo,
}

/// A lease on an element that was just delivered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseInfo {
    pub receipt: Receipt,
    pub deliveries: u32,
    pub deadline: Millis,
}

/// Elements and blobs removed under the lock, dropped after it: dropping
/// the last reference to a spilled blob unlinks its file, which is I/O no
/// lock should wait for.
#[derive(Default)]
pub(crate) struct Graveyard {
    elements: Vec<Element>,
    /// Room for one inline: nearly every data pop releases one blob, and
    /// needs no allocation for it.
    blobs: SmallVec<[Arc<Blob>; 1]>,
}

/// What a pop hands to its consumer once an element was taken.
pub(crate) enum Delivery {
    /// The element to answer with: consumed by a plain pop, or a view of it
    /// when it stays in the queue's leased map.
    Element {
        element: Element,
        with_data: bool,
        lease: Option<LeaseInfo>,
    },
    /// The element's blob was deleted; the element is consumed.
    BlobGone,
}

/// What a pop asks for.
#[derive(Clone, Copy, Debug)]
pub struct PopMode {
    /// Return the bytes (else only the headers: a header-only pop).
    pub with_data: bool,
    /// Lease length in milliseconds; `None` for a plain pop.
    pub lease_ms: Option<u64>,
}

/// Everything a namespace holds, changed only under its lock.
pub(crate) struct NsState {
    /// The records durable mode logs for each change.
    log: ChangeLog,
    /// By name; hashbrown's foldhash rather than SipHash, as for the
    /// namespaces. Boxed: a table's smallest allocation has room for four
    /// entries, and most namespaces have one queue.
    queues: HashMap<Name, Box<Queue>>,
    blobs: BlobTable,
    /// Every pending deadline of the namespace, earliest first, so the sweeper
    /// touches only what is due.
    expiry: ExpiryIndex,
    /// The wake-up registered with the store's sweeper for this namespace.
    pub scheduled: Option<Millis>,
    /// A wake-up earlier than `scheduled` was, set by a change under the
    /// lock; the store hands it to the sweeper once the lock is released
    /// (see [`NsState::take_earlier_wakeup`]).
    earlier_wakeup: Option<Millis>,
    /// Set when the namespace was dropped from the store; an operation that
    /// finds it set looks the namespace up again.
    pub removed: bool,
    totals: Arc<Totals>,
    /// Deliveries under lease after which an element is dead-lettered.
    max_deliveries: u32,
    /// Elements the namespace holds (ready or leased, and `held_outside`),
    /// for the quota.
    elements_held: u64,
    /// Elements held for others outside the queues (jobs' inputs, see
    /// `Backend::hold_elements`); while any are, the namespace is kept.
    held_outside: u64,
    /// Bytes of the blobs in `blobs`, each counted once, for the quota.
    blob_bytes: u64,
    quota: Quota,
}

/// Queue `name` of `queues`, created if it does not exist yet: one probe
/// of the map. Apart from `NsState::queue_mut` so that a caller can hold it
/// beside the state's other fields.
fn queue_in<'q>(
    queues: &'q mut HashMap<Name, Box<Queue>>,
    name: &Name,
    now: Millis,
) -> &'q mut Queue {
    queues
        .entry_ref(name)
        .or_insert_with(|| Box::new(Queue::new(now)))
}

impl NsState {
    fn queue_mut(&mut self, name: &Name, now: Millis) -> &mut Queue {
        queue_in(&mut self.queues, name, now)
    }

    /// The wake-up the changes since the last call need the sweeper to
    /// know about, if they added a deadline earlier than it was due for.
    pub fn take_earlier_wakeup(&mut self) -> Option<Millis> {
        self.earlier_wakeup.take()
    }
}
