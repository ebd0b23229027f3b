//! Leases: a delivery left unacknowledged, kept alive by the node that
//! granted it. JetStream hands a delivery out again once `--nats-ack-wait`
//! passes without word from its consumer; a lease of any length is made of
//! that by a keeper task that sends `+WPI` (work in progress) well within
//! each wait, and at the lease's end hands the element back (`-NAK`) or,
//! after `--max-deliveries`, moves it to `{queue}.dead`. If the node dies,
//! its leases' elements come back within one ack wait.
//!
//! The receipt is random but for its first 32 bits, this node's tag: a
//! node asked to settle a lease it does not hold forwards the request to
//! the node that does (forward.rs).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::watch;
use tokio::time::Instant;

use super::forward::{extension, Settle};
use super::queues::nats_error;
use super::Inner;
use crate::backend::ids::Receipt;
use crate::backend::name::Name;
use crate::backend::BackendError;

/// This node's leases.
pub struct Leases {
    /// This node's tag, the first 32 bits of its receipts.
    tag: u32,
    held: Mutex<HashMap<Receipt, Held>>,
    /// How often a keeper renews its delivery: a third of the ack wait, so
    /// that one late renewal still arrives in time.
    beat: Duration,
}

/// One lease: whoever takes it out of the table settles it.
struct Held {
    ns: Name,
    queue: Name,
    msg: Message,
    /// The lease's end; dropping the sender stops the keeper.
    deadline: watch::Sender<Instant>,
}

impl Leases {
    pub fn new(ack_wait: Duration) -> Leases {
        Leases {
            tag: uuid::Uuid::new_v4().as_u128() as u32,
            held: Mutex::new(HashMap::new()),
            beat: ack_wait / 3,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Receipt, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Grants a lease of `lease` on `msg` and starts its keeper.
    pub fn grant(
        &self,
        inner: &Arc<Inner>,
        ns: &Name,
        queue: &Name,
        msg: Message,
        lease: Duration,
    ) -> Receipt {
        let random = uuid::Uuid::new_v4().as_u128() & ((1 << 96) - 1);
        let tagged = uuid::Uuid::from_u128((u128::from(self.tag) << 96) | random);
        let receipt = Receipt::from_str(&tagged.hyphenated().to_string())
            .unwrap_or_else(|_| Receipt::random());
        let (deadline, watched) = watch::channel(Instant::now() + lease);
        self.table().insert(
            receipt,
            Held {
                ns: ns.clone(),
                queue: queue.clone(),
                msg: msg.clone(),
                deadline,
            },
        );
        tokio::spawn(inner.clone().keep(receipt, msg, watched));
        receipt
    }

    /// Takes lease `receipt` of `queue` out of the table, if it is there.
    fn take(&self, ns: &Name, queue: &Name, receipt: &str) -> Option<Held> {
        let receipt = Receipt::from_str(receipt).ok()?;
        let mut table = self.table();
        let held = table.get(&receipt)?;
        if held.ns != *ns || held.queue != *queue {
            return None;
        }
        table.remove(&receipt)
    }

    /// Stops every keeper: the elements come back after the ack wait.
    pub fn abandon(&self) {
        self.table().clear();
    }

    pub fn tag(&self) -> u32 {
        self.tag
    }

    pub fn count(&self) -> u64 {
        self.table().len() as u64
    }
}

fn lease_not_found(ns: &Name, queue: &Name, receipt: &str) -> BackendError {
    BackendError::LeaseNotFound {
        namespace: ns.clone(),
        queue: queue.clone(),
        receipt: receipt.to_owned(),
    }
}

impl Inner {
    /// Keeps lease `receipt` alive until its deadline, then ends it; stops
    /// when the lease is settled (its deadline's sender dropped).
    async fn keep(
        self: Arc<Self>,
        receipt: Receipt,
        msg: Message,
        mut deadline: watch::Receiver<Instant>,
    ) {
        let beat = self.leases.beat;
        let mut next_beat = Instant::now() + beat;
        loop {
            let due = *deadline.borrow_and_update();
            tokio::select! {
                () = tokio::time::sleep_until(due.min(next_beat)) => {}
                changed = deadline.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            }
            let now = Instant::now();
            if now >= *deadline.borrow() {
                let held = self.leases.table().remove(&receipt);
                if let Some(held) = held {
                    self.lease_ran_out(held).await;
                }
                return;
            }
            if now >= next_beat {
                let _ = msg.ack_with(AckKind::Progress).await;
                next_beat = now + beat;
            }
        }
    }

    /// A lease ended unsettled: the element goes back to the head of its
    /// queue, or to its dead-letter queue after its last delivery.
    async fn lease_ran_out(&self, held: Held) {
        let deliveries = held.msg.info().map_or(0, |i| i.delivered.max(0) as u64);
        if deliveries >= u64::from(self.max_deliveries) {
            self.dead_letter(&held.ns, &held.queue, held.msg).await;
        } else if let Err(e) = held.msg.double_ack_with(AckKind::Nak(None)).await {
            tracing::debug!(error = %e, "could not hand back an element whose lease ran out; it returns after the ack wait");
        }
    }

    /// Settles lease `receipt` of this node's table.
    pub(super) async fn settle_here(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        settle: Settle,
    ) -> Result<u64, BackendError> {
        if let Some(lease) = extension(settle) {
            return self.extend_here(ns, queue, receipt, lease).await;
        }
        let held = self
            .leases
            .take(ns, queue, receipt)
            .ok_or_else(|| lease_not_found(ns, queue, receipt))?;
        let deliveries = held.msg.info().map_or(0, |i| i.delivered.max(0) as u64);
        if matches!(settle, Settle::Release) && deliveries >= u64::from(self.max_deliveries) {
            // Released on its last delivery: moved now, as when its lease runs out.
            self.dead_letter(ns, queue, held.msg).await;
            return Ok(0);
        }
        let (kind, what) = match settle {
            Settle::Ack => (
                AckKind::Ack,
                "the acknowledgement (the element may be delivered again)",
            ),
            _ => (
                AckKind::Nak(None),
                "the release (the element comes back after the ack wait)",
            ),
        };
        let acked = matches!(kind, AckKind::Ack);
        held.msg
            .double_ack_with(kind)
            .await
            .map_err(|e| nats_error(what, e))?;
        if acked {
            self.element_gone(ns, held.msg.headers.as_ref()).await;
        }
        Ok(0)
    }

    async fn extend_here(
        &self,
        ns: &Name,
        queue: &Name,
        receipt: &str,
        lease: Duration,
    ) -> Result<u64, BackendError> {
        let msg = {
            let receipt_key = Receipt::from_str(receipt).ok();
            let table = self.leases.table();
            let held = receipt_key
                .and_then(|r| table.get(&r))
                .filter(|h| h.ns == *ns && h.queue == *queue)
                .ok_or_else(|| lease_not_found(ns, queue, receipt))?;
            held.deadline.send_replace(Instant::now() + lease);
            held.msg.clone()
        };
        msg.ack_with(AckKind::Progress)
            .await
            .map_err(|e| nats_error("the extension", e))?;
        Ok(lease.as_secs().max(1))
    }
}
