//! The store's side of a change the log could not record (a full disk):
//! the request answers `507`, so its change is taken back under the
//! namespace's lock (see `namespace/withdraw.rs`). A push's element leaves
//! its queue; a pop's or an acknowledgement's element comes back, so none
//! is lost.

use super::clock::Millis;
use super::element::Element;
use super::journal::Commit;
use super::namespace::Delivery;
use super::Store;
use crate::backend::ids::{BlobId, ElementId};
use crate::backend::name::Name;

impl Store {
    /// Takes back the push of element `id` to `queue`.
    pub(super) async fn withdraw_push(&self, ns: &Name, queue: &Name, id: ElementId) {
        let now = Millis::now();
        let found = self.change_existing(ns, |st, grave| st.withdraw_push(queue, id, now, grave));
        if found != Some(true) {
            tracing::debug!(namespace = %ns, queue = %queue, element = %id, "a push answered 507 was already delivered");
        }
        self.settle().await;
    }

    /// Takes back blob `id`, stored through `/tbs`.
    pub(super) async fn withdraw_blob(&self, ns: &Name, id: BlobId) {
        let removed = self.change_existing(ns, |st, _| st.remove_blob(id, Millis::now()));
        if let Some(blob) = removed.flatten() {
            blob.delete();
        }
        self.settle().await;
    }

    /// Gives back what a pop of `queue` delivered.
    pub(super) async fn give_back_pop(&self, ns: &Name, queue: &Name, delivery: Delivery) {
        let now = Millis::now();
        match delivery {
            Delivery::Element {
                lease: Some(lease), ..
            } => self.change(ns, |st, grave| {
                st.give_back_lease(queue, lease.receipt, now, grave)
            }),
            Delivery::Element { element, .. } => self.change(ns, |st, grave| {
                st.give_back(queue, element, true, now, grave)
            }),
            // Its blob was deleted: the element answers `410` either way.
            Delivery::BlobGone => return,
        }
        self.settle().await;
    }

    /// Gives back an element whose acknowledgement the log did not record.
    pub(super) async fn give_back_ack(&self, ns: &Name, queue: &Name, element: Element) {
        let now = Millis::now();
        self.change(ns, |st, grave| {
            st.give_back(queue, element, false, now, grave)
        });
        self.settle().await;
    }

    /// Tries to write the undo's records at once (while the disk is still
    /// full this fails, and they wait for the next write): the sooner they
    /// follow the records they undo, the smaller the window in which a
    /// crash would replay a change without its undo.
    async fn settle(&self) {
        let _ = self.durable(Commit::Accepted).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::backend::{
        Backend, BackendError, IncomingBody, PopOptions, PushOptions, StoragePlace,
    };
    use crate::store::{FsyncMode, Store};

    use super::*;

    fn durable(dir: &std::path::Path, fsync: FsyncMode) -> Store {
        Store::new(crate::store::tests_durable_config(dir, fsync)).unwrap()
    }

    fn names() -> (Name, Name) {
        (Name::parse("ns").unwrap(), Name::parse("q").unwrap())
    }

    async fn push(s: &Store, body: &[u8]) -> Result<ElementId, BackendError> {
        let (ns, q) = names();
        let opts = PushOptions {
            lifetime: 600,
            ..PushOptions::default()
        };
        let body = IncomingBody::from_bytes(body.to_vec());
        Backend::push(s, &ns, &q, body, opts).await.map(|p| p.id)
    }

    async fn pop(s: &Store, lease: Option<Duration>) -> Result<Option<ElementId>, BackendError> {
        let (ns, q) = names();
        let opts = PopOptions {
            with_data: false,
            lease,
            wait: Duration::ZERO,
        };
        Ok(Backend::pop(s, &ns, &q, opts).await?.map(|p| p.id))
    }

    fn counts(s: &Store) -> (u64, u64, u64) {
        let (ns, q) = names();
        let c = s.queue_stats(&ns, &q).unwrap().counts;
        (c.elements, c.pushed, c.popped)
    }

    fn is_507(r: Result<impl std::fmt::Debug, BackendError>) -> bool {
        matches!(r, Err(BackendError::Unwritable(f)) if f.place == StoragePlace::Data && f.full)
    }

    #[tokio::test]
    async fn a_push_the_log_cannot_record_is_taken_back_and_never_replayed() {
        for fsync in [FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never] {
            let dir = tempfile::tempdir().unwrap();
            let s = durable(dir.path(), fsync);
            let a = push(&s, b"a").await.unwrap();
            // Small and large (a body file in the data directory).
            for body in [&b"b"[..], &[7u8; 100]] {
                s.journal().unwrap().fail_writes(1);
                assert!(is_507(push(&s, body).await), "{fsync:?}");
                assert_eq!(counts(&s), (1, 1, 0), "{fsync:?}: nothing left behind");
            }
            let c = push(&s, b"c").await.unwrap();
            s.purge();
            drop(s);
            let s = durable(dir.path(), fsync);
            assert_eq!(pop(&s, None).await.unwrap(), Some(a), "{fsync:?}");
            assert_eq!(pop(&s, None).await.unwrap(), Some(c), "{fsync:?}");
            assert_eq!(pop(&s, None).await.unwrap(), None, "{fsync:?}");
            let blobs = std::fs::read_dir(dir.path().join("data/blobs")).unwrap();
            assert_eq!(
                blobs.count(),
                0,
                "{fsync:?}: the withdrawn body's file is gone"
            );
            s.purge();
        }
    }

    #[tokio::test]
    async fn while_the_log_cannot_be_written_requests_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = durable(dir.path(), FsyncMode::Always);
        let a = push(&s, b"a").await.unwrap();
        s.journal().unwrap().fail_writes(u64::MAX);
        for _ in 0..3 {
            assert!(is_507(push(&s, b"b").await));
            assert!(is_507(pop(&s, None).await), "always mode logs a pop");
        }
        assert_eq!(counts(&s), (1, 1, 0));
        assert!(s
            .write_fault()
            .is_some_and(|f| f.place == StoragePlace::Data));
        s.journal().unwrap().fail_writes(0);
        assert_eq!(pop(&s, None).await.unwrap(), Some(a));
        assert!(s.write_fault().is_none(), "healthy again, no restart");
        s.purge();
    }

    #[tokio::test]
    async fn a_pop_or_ack_the_log_cannot_record_gives_the_element_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = durable(dir.path(), FsyncMode::Always);
        let (ns, q) = names();
        let a = push(&s, &[1u8; 100]).await.unwrap();
        let b = push(&s, b"b").await.unwrap();
        s.journal().unwrap().fail_writes(1);
        assert!(is_507(pop(&s, None).await));
        assert_eq!(counts(&s), (2, 2, 0), "still queued, the pop uncounted");
        // A leased data pop logs nothing: it needs no write.
        let leased = PopOptions {
            with_data: true,
            lease: Some(Duration::from_secs(60)),
            wait: Duration::ZERO,
        };
        s.journal().unwrap().fail_writes(1);
        let popped = Backend::pop(&s, &ns, &q, leased).await.unwrap().unwrap();
        assert_eq!(popped.id, a, "given back at the head");
        let receipt = popped.lease.unwrap().receipt.to_string();
        assert!(is_507(Backend::ack(&s, &ns, &q, &receipt).await));
        assert_eq!(counts(&s).0, 2, "the acknowledged element is back");
        assert_eq!(pop(&s, None).await.unwrap(), Some(a));
        assert_eq!(pop(&s, None).await.unwrap(), Some(b));
        s.purge();
        drop(s);
        let s = durable(dir.path(), FsyncMode::Always);
        assert_eq!(pop(&s, None).await.unwrap(), None, "both pops were logged");
        s.purge();
    }
}
