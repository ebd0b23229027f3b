//! The pop: take the head of a queue or wait for one to arrive, then turn
//! the element into what the consumer receives.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use super::blob::Blob;
use super::clock::Millis;
use super::damage::DamagedElement;
use super::element::Element;
use super::journal::Commit;
use super::namespace::{Delivery, PopMode};
use super::queue::Waiter;
use super::wait_ticket::WaitTicket;
use super::Store;
use crate::backend::name::Name;
use crate::backend::{BackendError, LeaseGrant, Payload, Popped};

/// How the first, locked part of a pop ended.
pub(super) enum FirstTry {
    /// The queue had a live head.
    Delivered(Delivery),
    /// The queue was empty, and the pop does not wait.
    Empty,
    /// The queue was empty; the consumer now waits with this ticket.
    Wait(WaitTicket),
}

impl Store {
    /// Pops the head of `queue`, waiting up to `wait` for one to arrive.
    /// `Ok(None)` when nothing came in time.
    pub async fn pop_waiting(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
    ) -> Result<Option<Popped>, BackendError> {
        if mode.lease_ms.is_some() && queue.dead_letter().is_none() {
            return Err(BackendError::NoDeadLetterQueue(queue.clone()));
        }
        let now = Millis::now();
        let mut ticket = match self.first_try(ns, queue, mode, wait, now)? {
            FirstTry::Delivered(delivery) => {
                return self.deliver(ns, queue, delivery, now).await.map(Some)
            }
            FirstTry::Empty => return Ok(None),
            FirstTry::Wait(ticket) => ticket,
        };
        let element = tokio::select! {
            received = ticket.receive() => match received {
                Some(element) => element,
                // The sender is dropped only when the store is purged.
                None => return Err(BackendError::ShuttingDown),
            },
            () = tokio::time::sleep(wait) => return Ok(None),
            () = self.shared.closing.cancelled() => return Err(BackendError::ShuttingDown),
        };
        let now = Millis::now();
        let delivery = self.change(ns, |st, grave| {
            st.finish_pop(queue, element, mode, now, grave)
        });
        self.deliver(ns, queue, delivery, now).await.map(Some)
    }

    /// The locked part of a pop: takes the head if there is one, else
    /// registers a waiter (when `wait` is not zero).
    pub(super) fn first_try(
        &self,
        ns: &Name,
        queue: &Name,
        mode: PopMode,
        wait: Duration,
        now: Millis,
    ) -> Result<FirstTry, BackendError> {
        if wait.is_zero() {
            // A pop that will not wait creates no namespace.
            let delivered =
                self.change_existing(ns, |st, grave| st.pop_head(queue, mode, now, grave));
            return Ok(delivered
                .flatten()
                .map_or(FirstTry::Empty, FirstTry::Delivered));
        }
        // A wait registers a waiter on the queue, which a new name makes.
        self.change_new(ns, Some(queue), |st, grave| {
            if let Some(delivery) = st.pop_head(queue, mode, now, grave) {
                return Ok(FirstTry::Delivered(delivery));
            }
            if self.shared.closing.is_cancelled() {
                return Err(BackendError::ShuttingDown);
            }
            let (tx, rx) = oneshot::channel();
            let id = self.shared.next_waiter.fetch_add(1, Ordering::Relaxed);
            st.add_waiter(queue, Waiter { id, tx }, now);
            Ok(FirstTry::Wait(WaitTicket::new(self, ns, queue, id, rx)))
        })
    }

    /// Turns an element delivered at `now` into what the client receives,
    /// opening its data, once the pop is durable. A pop the log could not
    /// record gives the element back to `queue`.
    async fn deliver(
        &self,
        ns: &Name,
        queue: &Name,
        delivery: Delivery,
        now: Millis,
    ) -> Result<Popped, BackendError> {
        if let Err(e) = self.durable(Commit::Consumed).await {
            self.give_back_pop(ns, queue, delivery).await;
            return Err(e);
        }
        let (element, with_data, lease) = match delivery {
            Delivery::Element {
                element,
                with_data,
                lease,
            } => (element, with_data, lease),
            Delivery::BlobGone => return Err(BackendError::BlobGone),
        };
        let (blob_id, size) = (element.blob.as_ref().map(|b| b.id()), element.size());
        let Element {
            id,
            blob,
            meta,
            deadline,
            deliveries,
            ..
        } = element;
        let body = match (blob, with_data) {
            (Some(blob), true) => match Blob::take_memory(blob) {
                Ok(bytes) => Some(Payload::Bytes(bytes)),
                Err(blob) => match blob.open().await {
                    Ok(body) if !blob.content().is_checked() => Some(body.into_payload(size)),
                    Ok(body) => {
                        let damaged = DamagedElement {
                            ns: ns.clone(),
                            queue: queue.clone(),
                            id,
                            meta: meta.clone(),
                            deadline,
                            deliveries,
                            lease: lease.as_ref().map(|l| l.receipt),
                            blob,
                        };
                        Some(self.checked_payload(body, size, damaged).await?)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(BackendError::BlobGone)
                    }
                    Err(e) => return Err(BackendError::Io(e)),
                },
            },
            _ => None,
        };
        Ok(Popped {
            id,
            meta,
            blob_id,
            size,
            seconds_left: deadline.seconds_left(now),
            body,
            lease: lease.map(|l| LeaseGrant {
                receipt: l.receipt,
                deliveries: l.deliveries,
                seconds_left: l.deadline.seconds_left(now),
            }),
        })
    }
}
