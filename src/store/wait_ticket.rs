//! A blocked consumer's place among a queue's waiters.

use tokio::sync::oneshot;

use super::clock::Millis;
use super::element::Element;
use super::namespace::Arrival;
use super::Store;
use crate::backend::name::Name;

/// A consumer's place among a queue's waiters. A push hands its element
/// straight to the oldest waiter through the ticket's channel.
///
/// Dropping the ticket (timeout, the client went away and its future was
/// dropped, shutdown) removes the waiter and, if an element was handed
/// over in the meantime, puts it back at the head of the queue so it goes
/// to the next consumer instead of to a connection that is gone.
pub(super) struct WaitTicket {
    store: Store,
    ns: Name,
    queue: Name,
    /// The waiter's number among the store's waiters.
    id: u64,
    rx: oneshot::Receiver<Element>,
}

impl WaitTicket {
    pub fn new(
        store: &Store,
        ns: &Name,
        queue: &Name,
        id: u64,
        rx: oneshot::Receiver<Element>,
    ) -> WaitTicket {
        WaitTicket {
            store: store.clone(),
            ns: ns.clone(),
            queue: queue.clone(),
            id,
            rx,
        }
    }

    /// The element a push handed over; `None` if the store let go of the
    /// waiter without one (it was purged).
    pub async fn receive(&mut self) -> Option<Element> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.rx.close();
        let orphan = self.rx.try_recv().ok();
        let now = Millis::now();
        let (queue, id) = (&self.queue, self.id);
        match orphan {
            // Only the waiter to forget, if still listed: a namespace that
            // is gone (purged at shutdown) is not made again for that.
            None => {
                self.store
                    .change_existing(&self.ns, |st, _| st.remove_waiter(queue, id, now));
            }
            Some(element) => self.store.change(&self.ns, |st, grave| {
                st.remove_waiter(queue, id, now);
                st.enqueue(queue, element, Arrival::Return, now, grave);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::backend::name::Name;
    use crate::backend::{Backend, IncomingBody, Payload, PopOptions, PushOptions};
    use crate::store::clock::Millis;
    use crate::store::namespace::PopMode;
    use crate::store::pop::FirstTry;
    use crate::store::test_store;

    #[tokio::test]
    async fn an_element_handed_to_a_waiter_that_vanished_goes_back_to_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = test_store(dir.path());
        let (ns, q) = (Name::parse("ns").unwrap(), Name::parse("q").unwrap());
        let mode = PopMode {
            with_data: true,
            lease_ms: None,
        };
        let Ok(FirstTry::Wait(ticket)) =
            s.first_try(&ns, &q, mode, Duration::from_secs(5), Millis::now())
        else {
            panic!("empty queue: the pop must wait")
        };
        let push = |body: &'static [u8]| {
            let opts = PushOptions {
                lifetime: 60,
                ..PushOptions::default()
            };
            s.push(&ns, &q, IncomingBody::from_bytes(body), opts)
        };
        let first = push(b"first").await.unwrap();
        push(b"second").await.unwrap();
        let counts = s.queue_stats(&ns, &q).unwrap().counts;
        assert_eq!(counts.elements, 1, "first went to the waiter");
        drop(ticket); // the consumer disconnected before reading it
        let counts = s.queue_stats(&ns, &q).unwrap().counts;
        assert_eq!((counts.elements, counts.waiting), (2, 0));
        let opts = PopOptions {
            with_data: true,
            ..PopOptions::default()
        };
        let p = s.pop(&ns, &q, opts).await.unwrap().unwrap();
        assert_eq!(p.id, first.id, "handed back at the head, before 'second'");
        assert!(matches!(p.body, Some(Payload::Bytes(b)) if &b[..] == b"first"));
    }
}
