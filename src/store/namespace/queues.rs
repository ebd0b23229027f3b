//! Queue operations on a namespace: elements in (to a waiting consumer or
//! the ready list), elements out (the pop, counted here and only here),
//! waiters, idle queues and the shutdown purge.

use super::expiry::chain_to_index;
use super::{queue_in, Arrival, Delivery, ExpiryKey, Graveyard, NsState, PopMode};
use crate::backend::name::Name;
use crate::store::clock::Millis;
use crate::store::element::Element;
use crate::store::queue::{End, Waiter};

impl NsState {
    /// Puts an element into `queue`: straight to a waiting consumer if there
    /// is one, else into the ready list.
    pub fn enqueue(
        &mut self,
        queue: &Name,
        element: Element,
        arrival: Arrival,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        let is_new = matches!(arrival, Arrival::Push | Arrival::DeadLetter);
        if is_new || arrival == Arrival::Undo {
            self.log.put(queue, &element);
        }
        let totals = &*self.totals;
        let q = queue_in(&mut self.queues, queue, now);
        q.last_active = now;
        if is_new {
            q.count_push();
        }
        if arrival == Arrival::Push {
            totals.pushed();
        }
        if element.deadline.has_passed(now) {
            return self.expire(queue, element, now, grave);
        }
        let element = match q.hand_to_waiter(element, totals) {
            Ok(()) => return,
            Err(element) => element,
        };
        let end = if matches!(arrival, Arrival::Return | Arrival::Undo) {
            End::Front
        } else {
            End::Back
        };
        let deadline = element.deadline;
        let (seq, indexed) = q.insert(element, end);
        totals.element_queued();
        if indexed {
            self.elements_held += 1;
            return self.index(deadline, ExpiryKey::Element(queue.clone(), seq));
        }
        // From the queue already found rather than by name again.
        let chain = chain_to_index(q);
        self.elements_held += 1;
        if let Some(head) = chain {
            self.index(head, ExpiryKey::Chain(queue.clone()));
        }
    }

    /// Removes the first live element of `queue`, expiring any dead ones
    /// found in front of it. The pop is counted by [`NsState::finish_pop`].
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
            self.elements_held -= 1;
            if element.indexed {
                self.expiry
                    .remove(&(element.deadline, ExpiryKey::Element(queue.clone(), seq)));
            }
            if element.deadline.has_passed(now) {
                self.expire(queue, element, now, grave);
                continue;
            }
            return Some(element);
        }
    }

    /// Pops the head of `queue`, if it has a live one: `take_head` then
    /// `finish_pop`.
    pub fn pop_head(
        &mut self,
        queue: &Name,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Delivery> {
        let element = self.take_head(queue, now, grave)?;
        Some(self.finish_pop(queue, element, mode, now, grave))
    }

    /// Completes a pop of `element` taken from `queue` (by `take_head`, or
    /// handed to a waiter): counts it, in the queue's and the store's
    /// figures, and settles its blob (freed if this was the last reference
    /// to an unexposed blob, exposed if the pop is header-only). Under a
    /// lease the element instead moves, with its blob reference, into the
    /// queue's leased map and the consumer gets a view of it.
    pub fn finish_pop(
        &mut self,
        queue: &Name,
        element: Element,
        mode: PopMode,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Delivery {
        self.queue_mut(queue, now).count_pop();
        self.totals.popped();
        if element.blob.as_ref().is_some_and(|b| b.is_deleted()) {
            self.log.take(&element);
            grave.elements.push(element);
            return Delivery::BlobGone;
        }
        let with_data = mode.with_data;
        if let Some(lease_ms) = mode.lease_ms {
            return self.lease_out(queue, element, with_data, lease_ms, now);
        }
        self.log.take(&element);
        if let Some(blob) = &element.blob {
            self.release_blob(blob, !with_data, now, grave);
        }
        Delivery::Element {
            element,
            with_data,
            lease: None,
        }
    }

    /// Registers a waiting consumer on `queue`, creating the queue if needed.
    pub fn add_waiter(&mut self, queue: &Name, waiter: Waiter, now: Millis) {
        let q = queue_in(&mut self.queues, queue, now);
        q.last_active = now;
        q.add_waiter(waiter);
        self.totals.waiter_added();
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
        self.queues.is_empty() && self.blobs.is_empty() && self.held_outside == 0
    }

    /// Removes every ready element of `queue`, as if each were popped and
    /// acknowledged but not counted as a pop; leased elements stay. How
    /// many were removed (expired ones found on the way are expired, not
    /// counted).
    pub fn purge_queue(&mut self, queue: &Name, now: Millis, grave: &mut Graveyard) -> u64 {
        let mut purged = 0;
        while let Some(element) = self.take_head(queue, now, grave) {
            self.discard(element, now, grave);
            purged += 1;
        }
        purged
    }

    /// An element out of its queue for good: logged, its blob reference
    /// released, dropped after unlocking.
    pub(super) fn discard(&mut self, element: Element, now: Millis, grave: &mut Graveyard) {
        self.log.take(&element);
        if let Some(blob) = &element.blob {
            self.release_blob(blob, false, now, grave);
        }
        grave.elements.push(element);
    }

    /// Empties the namespace for shutdown and marks it removed.
    pub fn purge(&mut self, grave: &mut Graveyard) {
        for q in self.queues.values_mut() {
            let (ready, leased, waiters) = q.drain();
            for _ in 0..ready.len() {
                self.totals.element_unqueued();
            }
            for _ in 0..leased.len() {
                self.totals.lease_removed();
            }
            for _ in 0..waiters {
                self.totals.waiter_removed();
            }
            self.elements_held -= (ready.len() + leased.len()) as u64;
            grave.elements.extend(ready);
            grave.elements.extend(leased);
        }
        self.queues.clear();
        grave.blobs.extend(self.blobs.drain().map(|e| e.blob));
        self.blob_bytes = 0;
        self.expiry.clear();
        self.removed = true;
    }
}
