//! Leases: an element popped under a lease stays in its queue's leased map,
//! invisible to other consumers, until it is acknowledged (gone), released
//! or runs out (back at the head of its queue, or to the dead-letter queue
//! once delivered too often), or its lease is extended.

use super::{Arrival, Delivery, ExpiryKey, Graveyard, LeaseInfo, NsState};
use crate::backend::ids::Receipt;
use crate::backend::name::Name;
use crate::store::clock::Millis;
use crate::store::element::Element;
use crate::store::queue::Lease;

impl NsState {
    /// Hands `element`, just popped from `queue`, out under a lease of
    /// `lease_ms`: it moves into the queue's leased map with its blob
    /// reference, and the consumer gets a view of it.
    pub(super) fn lease_out(
        &mut self,
        queue: &Name,
        mut element: Element,
        with_data: bool,
        lease_ms: u64,
        now: Millis,
    ) -> Delivery {
        element.deliveries += 1;
        if let (Some(blob), false) = (&element.blob, with_data) {
            self.expose_blob(blob.id());
        }
        let lease = LeaseInfo {
            receipt: Receipt::random(),
            deliveries: element.deliveries,
            deadline: Millis(now.0.saturating_add(lease_ms)),
        };
        let view = element.clone();
        self.hold_leased(queue, lease.receipt, element, lease.deadline, now);
        Delivery::Element {
            element: view,
            with_data,
            lease: Some(lease),
        }
    }

    /// Puts `element` in `queue`'s leased map under `receipt` until `deadline`.
    fn hold_leased(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        element: Element,
        deadline: Millis,
        now: Millis,
    ) {
        self.queue_mut(queue, now)
            .leased
            .insert(receipt, Lease { element, deadline });
        self.totals.lease_added();
        self.elements_held += 1;
        self.index(deadline, ExpiryKey::Lease(queue.clone(), receipt));
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
    ) -> Option<Element> {
        let lease = self.queues.get(queue)?.leased.get(&receipt)?;
        if lease.deadline.has_passed(now) {
            self.end_lease(queue, receipt, now, grave);
            return None;
        }
        self.remove_lease(queue, receipt)
    }

    pub(super) fn remove_lease(&mut self, queue: &Name, receipt: Receipt) -> Option<Element> {
        let lease = self.queues.get_mut(queue)?.leased.remove(&receipt)?;
        self.totals.lease_removed();
        self.elements_held -= 1;
        self.expiry
            .remove(&(lease.deadline, ExpiryKey::Lease(queue.clone(), receipt)));
        Some(lease.element)
    }

    /// Acknowledges a lease: the element is gone for good. Returns a view
    /// of it (to give back should the log not record the acknowledgement),
    /// or `None` if the lease is unknown or has run out.
    pub fn ack(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> Option<Element> {
        let element = self.take_lease(queue, receipt, now, grave)?;
        let view = element.clone();
        self.discard(element, now, grave);
        Some(view)
    }

    /// Hands a leased element back at once, as if its lease had run out.
    pub fn release(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) -> bool {
        let Some(element) = self.take_lease(queue, receipt, now, grave) else {
            return false;
        };
        self.return_leased(queue, element, now, grave);
        true
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
    ) -> Option<Millis> {
        let element = self.take_lease(queue, receipt, now, grave)?;
        let deadline = Millis(now.0.saturating_add(lease_ms));
        self.hold_leased(queue, receipt, element, deadline, now);
        Some(deadline)
    }

    /// Ends a lease that ran out: the element goes back to the head of its
    /// queue, or to the dead-letter queue once delivered too often.
    pub(super) fn end_lease(
        &mut self,
        queue: &Name,
        receipt: Receipt,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        if let Some(element) = self.remove_lease(queue, receipt) {
            self.return_leased(queue, element, now, grave);
        }
    }

    fn return_leased(
        &mut self,
        queue: &Name,
        element: Element,
        now: Millis,
        grave: &mut Graveyard,
    ) {
        if element.deliveries >= self.max_deliveries {
            if let Some(dead) = queue.dead_letter() {
                tracing::debug!(queue = %queue, element = %element.id, deliveries = element.deliveries, "dead-lettered");
                // Logged as the dead queue's `Put` alone, which replay reads
                // as a move: a `Take` first would lose the element to a crash
                // between the two records.
                return self.enqueue(&dead, element, Arrival::DeadLetter, now, grave);
            }
        }
        self.enqueue(queue, element, Arrival::Return, now, grave);
    }
}
