//! Taking a change back when the log could not record it (a full disk).
//! The request answers `507`, so the change must not stay: a push's element
//! leaves its queue, a pop's or acknowledgement's element comes back. Each
//! undo is itself logged, after the records it undoes, so that when the log
//! is written again replay ends in the state the clients were told.

use std::sync::Arc;

use super::{Arrival, Graveyard, NsState};
use crate::backend::ids::{ElementId, Receipt};
use crate::backend::name::Name;
use crate::store::blob::Blob;
use crate::store::clock::Millis;
use crate::store::element::Element;

impl NsState {
    /// Takes back the push of element `id` to `queue`: out of the ready list
    /// or the leased map, its blob reference released, the push uncounted.
    /// False if it is no longer there (a consumer has it: it was delivered,
    /// at least once, as a queue may).
    pub fn withdraw_push(
        &mut self,
        queue: &Name,
        id: ElementId,
        now: Millis,
        grave: &mut Graveyard,
    ) -> bool {
        let Some(element) = self.take_by_id(queue, id) else {
            return false;
        };
        if let Some(q) = self.queues.get_mut(queue) {
            q.uncount_push();
        }
        self.totals.push_withdrawn();
        self.log.take(&element);
        if let Some(blob) = &element.blob {
            self.release_blob(blob, false, now, grave);
        }
        grave.elements.push(element);
        true
    }

    /// Element `id` of `queue`, ready or leased, taken out.
    fn take_by_id(&mut self, queue: &Name, id: ElementId) -> Option<Element> {
        let q = self.queues.get_mut(queue)?;
        if let Some(seq) = q.find(id) {
            let element = q.remove(seq)?;
            if element.indexed {
                let key = super::ExpiryKey::Element(queue.clone(), seq);
                self.expiry.remove(&(element.deadline, key));
            }
            self.compact_queue(queue);
            self.totals.element_unqueued();
            self.elements_held -= 1;
            return Some(element);
        }
        let receipt = q
            .leased
            .iter()
            .find(|(_, lease)| lease.element.id == id)
            .map(|(receipt, _)| *receipt)?;
        self.remove_lease(queue, receipt)
    }

    /// Gives back `element`, consumed by a plain pop (`popped`) or an
    /// acknowledgement: at the head of `queue` again, with its blob
    /// reference, logged as put again after its `Take`.
    pub fn give_back(
        &mut self,
        queue: &Name,
        element: Element,
        popped: bool,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        if element.blob.as_ref().is_some_and(|b| b.is_deleted()) {
            // Deleted meanwhile: it would only answer `410`.
            grave.elements.push(element);
            return;
        }
        if let Some(blob) = &element.blob {
            self.rereference_blob(blob, element.deadline);
        }
        if popped {
            self.uncount_pop(queue);
        }
        self.enqueue(queue, element, Arrival::Undo, now, grave);
    }

    /// Takes back a leased pop: the lease ends without counting a delivery
    /// and the element is at the head again. Nothing to log: leases are not.
    pub fn give_back_lease(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        let Some(mut element) = self.remove_lease(queue, receipt) else {
            return;
        };
        element.deliveries = element.deliveries.saturating_sub(1);
        self.uncount_pop(queue);
        self.enqueue(queue, element, Arrival::Return, now, grave);
    }

    fn uncount_pop(&mut self, queue: &Name) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.uncount_pop();
        }
        self.totals.pop_withdrawn();
    }

    /// An element given back takes its blob reference again; a blob the
    /// pop released for good is recorded again.
    fn rereference_blob(&mut self, blob: &Arc<Blob>, deadline: Millis) {
        match self.blobs.get_mut(blob.id()) {
            Some(entry) => entry.add_ref(),
            None => self.insert_blob(blob.clone(), 1, deadline),
        }
    }
}
