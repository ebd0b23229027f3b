//! The namespace's deadline index and the expiry the sweeper runs from it.
//!
//! Every pending deadline (an element's, a queue's deadline chain, an
//! exposed blob's, a lease's) has an entry in one ordered set, so the
//! sweeper touches only what is due, as mini-redis purges its keys.

use super::{ExpiryKey, Graveyard, NsState};
use crate::backend::name::Name;
use crate::store::clock::Millis;
use crate::store::element::Element;
use crate::store::queue::Queue;

/// The deadline the expiry index needs an entry at for `q`'s chain, if its
/// entry is missing or later than the chain's first deadline; records it as
/// the chain's entry.
pub(super) fn chain_to_index(q: &mut Queue) -> Option<Millis> {
    let head = q.chain_deadline()?;
    if q.chain_key.is_some_and(|k| k <= head) {
        return None;
    }
    q.chain_key = Some(head);
    Some(head)
}

impl NsState {
    /// Adds a deadline to the index. If the sweeper must now wake earlier
    /// for this namespace, notes it for [`NsState::take_earlier_wakeup`].
    pub(super) fn index(&mut self, deadline: Millis, key: ExpiryKey) {
        self.expiry.insert((deadline, key));
        if self.scheduled.is_none_or(|s| deadline < s) {
            self.scheduled = Some(deadline);
            self.earlier_wakeup = Some(deadline);
        }
    }

    /// Makes sure the index has an entry for `queue`'s chain no later than
    /// the chain's first deadline.
    pub(super) fn index_chain(&mut self, queue: &Name) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if let Some(head) = chain_to_index(q) {
            self.index(head, ExpiryKey::Chain(queue.clone()));
        }
    }

    /// Counts `element` as expired, logs that it is gone and releases its blob.
    pub(super) fn expire(
        &mut self,
        queue: &Name,
        element: Element,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.count_expiry();
        }
        self.totals.expired();
        self.log.take(&element);
        if let Some(blob) = &element.blob {
            self.release_blob(blob, false, now, grave);
        }
        grave.elements.push(element);
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
                    self.elements_held -= 1;
                    self.expire(&queue, element, now, grave);
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
                        self.elements_held -= 1;
                        self.expire(&queue, element, now, grave);
                    }
                    // Re-registered at the new first deadline; the sweeper
                    // reschedules from the index after this batch.
                    self.index_chain(&queue);
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
                    self.end_lease(&queue, receipt, now, grave);
                }
            }
        }
        handled
    }

    /// Closes up the holes expiries left in `queue` once they outnumber its
    /// elements, moving the expiry entries of the elements that moved.
    pub(super) fn compact_queue(&mut self, queue: &Name) {
        let Some(moved) = self.queues.get_mut(queue).and_then(|q| q.compact()) else {
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

    /// The earliest pending deadline, which becomes the new wake-up: the
    /// sweeper's own bookkeeping after a batch, so any earlier wake-up a
    /// change noted is settled by it.
    #[must_use]
    pub fn reschedule(&mut self) -> Option<Millis> {
        self.scheduled = self.expiry.first().map(|(d, _)| *d);
        self.earlier_wakeup = None;
        self.scheduled
    }
}
