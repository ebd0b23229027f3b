//! A stored body found damaged as it is read back (see `file_body`). Its
//! element is not served, and not lost silently either: it moves to its
//! queue's dead-letter queue without the damaged bytes, the reason in its
//! metadata (`blobq-damage=size` or `checksum`); the damage is logged and
//! counted (`blobq_damaged_blobs_total`), and the blob file or segment of
//! the data directory is kept in `DIR/damaged/` for the operator to inspect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;

use super::blob::{Blob, BlobBody};
use super::clock::Millis;
use super::element::Element;
use super::file_body::{Damage, DamageHook};
use super::journal::Commit;
use super::namespace::Arrival;
use super::Store;
use crate::backend::ids::{ElementId, Receipt};
use crate::backend::meta::{CustomPair, Metadata, SharedMeta};
use crate::backend::name::Name;
use crate::backend::{BackendError, Payload};

/// The custom metadata key an element moved for damage carries.
pub const DAMAGE_KEY: &str = "blobq-damage";

/// What is needed to move a popped element whose body is damaged.
pub(super) struct DamagedElement {
    pub ns: Name,
    pub queue: Name,
    pub id: ElementId,
    pub meta: SharedMeta,
    pub deadline: Millis,
    pub deliveries: u32,
    /// The lease it was popped under: ended, as an acknowledgement would.
    pub lease: Option<Receipt>,
    /// Held until the damage is handled, so that its file is still there
    /// to be kept.
    pub blob: Arc<Blob>,
}

impl Store {
    /// The bytes of a blob file of the data directory, checked: its size
    /// now, before the answer starts, its checksum as it streams. A wrong
    /// size fails the pop, the element moved already.
    pub(super) async fn checked_payload(
        &self,
        body: BlobBody,
        size: u64,
        damaged: DamagedElement,
    ) -> Result<Payload, BackendError> {
        if let Err(damage) = body.check_size(size).await {
            self.blob_damaged(damaged, damage);
            // The move is logged before the failure is told; should that
            // fail, it is written with the next records.
            let _ = self.durable(Commit::Accepted).await;
            return Err(damaged_data());
        }
        let payload = body.into_checked_payload(size, Some(self.damage_hook(damaged)));
        Ok(self.logged_before_failing(payload))
    }

    /// `payload`, whose stream, should it fail, first waits until the log
    /// holds what the failure changed: a checksum mismatch is found as the
    /// last chunk is read, and the hook moves the element to its
    /// dead-letter queue then. In `always` mode the client must not see
    /// the failure before that move is synced, as it does not for a size
    /// mismatch, or a crash just after would lose an element it was told
    /// was not delivered. The store is held weakly, as by the hook.
    fn logged_before_failing(&self, payload: Payload) -> Payload {
        let Payload::Stream { len, chunks } = payload else {
            return payload;
        };
        if self.shared.journal.is_none() {
            return Payload::Stream { len, chunks };
        }
        let store = Arc::downgrade(&self.shared);
        let chunks = chunks.then(move |chunk| {
            let store = store.clone();
            async move {
                if chunk.is_err() {
                    if let Some(shared) = store.upgrade() {
                        // A log that cannot be written is reported by
                        // the store itself; the stream fails either way.
                        let _ = Store { shared }.durable(Commit::Accepted).await;
                    }
                }
                chunk
            }
        });
        Payload::Stream {
            len,
            chunks: Box::pin(chunks),
        }
    }

    /// A hook for the stream of `damaged`'s body, run if the stream finds
    /// the file damaged. It holds the store weakly: a response still being
    /// read must not keep a closed store (and its directory lock) alive.
    pub(super) fn damage_hook(&self, damaged: DamagedElement) -> DamageHook {
        let store = Arc::downgrade(&self.shared);
        Box::new(move |damage| match store.upgrade() {
            Some(shared) => Store { shared }.blob_damaged(damaged, damage),
            None => tracing::error!(
                element = %damaged.id,
                damage = damage.reason(),
                "a stored body was found damaged after the store closed"
            ),
        })
    }

    /// Logs and counts the damage, keeps the file, and moves the element to
    /// its dead-letter queue.
    pub(super) fn blob_damaged(&self, d: DamagedElement, damage: Damage) {
        let (file, kept) = self.count_and_keep(&d.blob);
        let dead = d.queue.dead_letter();
        tracing::error!(
            namespace = %d.ns,
            queue = %d.queue,
            element = %d.id,
            blob = %d.blob.id(),
            damage = damage.reason(),
            file = ?file,
            copy = ?kept,
            dead_letter_queue = ?dead.as_ref().map(Name::as_str),
            "a stored body is damaged; its element is not served and moves to the dead-letter queue without it"
        );
        let Some(dead) = dead else { return };
        let now = Millis::now();
        self.change(&d.ns, |st, grave| {
            if let Some(receipt) = d.lease {
                if st.ack(&d.queue, receipt, now, grave).is_none() {
                    // Its lease ended meanwhile: back in its queue, it is
                    // found damaged again when next popped.
                    return;
                }
            }
            let element = Element {
                id: d.id,
                blob: None,
                meta: with_reason(&d.meta, damage),
                deadline: d.deadline,
                deliveries: d.deliveries,
                indexed: false,
            };
            st.enqueue(&dead, element, Arrival::DeadLetter, now, grave);
        });
    }
}

impl Store {
    /// The bytes of blob `blob` of `ns`, read by its id (`GET
    /// /tbs/{ns}/blobs/{id}`), checked as a popped element's are: a wrong
    /// size fails the read before the answer starts, a wrong checksum cuts
    /// the stream. There is no element to move: the blob stays as it is
    /// (see [`Store::stored_blob_damaged`]).
    pub(super) async fn checked_blob_read(
        &self,
        ns: &Name,
        blob: Arc<Blob>,
        body: BlobBody,
    ) -> Result<Payload, BackendError> {
        let size = blob.size();
        if !blob.content().is_checked() {
            return Ok(body.into_payload(size));
        }
        if let Err(damage) = body.check_size(size).await {
            self.stored_blob_damaged(ns, &blob, damage);
            return Err(damaged_data());
        }
        let store = Arc::downgrade(&self.shared);
        let ns = ns.clone();
        let hook: DamageHook = Box::new(move |damage| match store.upgrade() {
            Some(shared) => Store { shared }.stored_blob_damaged(&ns, &blob, damage),
            None => tracing::error!(
                blob = %blob.id(),
                damage = damage.reason(),
                "a stored blob was found damaged after the store closed"
            ),
        });
        Ok(body.into_checked_payload(size, Some(hook)))
    }

    /// Logs and counts the damage of a blob read by its id, and keeps its
    /// file. The blob itself stays stored: elements referencing it are
    /// each moved to their dead-letter queue when popped, and its owner
    /// deletes it (or the operator restores its file) when told.
    fn stored_blob_damaged(&self, ns: &Name, blob: &Blob, damage: Damage) {
        let (file, kept) = self.count_and_keep(blob);
        tracing::error!(
            namespace = %ns,
            blob = %blob.id(),
            damage = damage.reason(),
            file = ?file,
            copy = ?kept,
            "a stored blob is damaged; its read failed, and the blob stays stored unless the read deleted it"
        );
    }

    /// Counts a damaged blob file and keeps a copy of it: its path and
    /// the copy's.
    fn count_and_keep(&self, blob: &Blob) -> (Option<PathBuf>, Option<PathBuf>) {
        self.shared.totals.blob_damaged();
        let file = blob.content().damaged_file();
        let kept = file.as_deref().and_then(keep_copy);
        (file, kept)
    }
}

/// What a read that found its bytes damaged before the answer started
/// fails with (a `500`).
fn damaged_data() -> BackendError {
    BackendError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the stored data is damaged",
    ))
}

/// `meta` with the damage's reason added.
fn with_reason(meta: &Metadata, damage: Damage) -> SharedMeta {
    let reason = CustomPair {
        key: DAMAGE_KEY.into(),
        value: damage.reason().into(),
    };
    SharedMeta::new(Metadata {
        content_type: meta.content_type.clone(),
        custom: meta.custom.iter().cloned().chain([reason]).collect(),
    })
}

/// A second name for a damaged blob file in `DIR/damaged/`, so that it
/// outlives its blob. Best effort: `None` if it cannot be made.
fn keep_copy(file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?.parent()?.join("damaged");
    let copy = dir.join(file.file_name()?);
    let made = std::fs::create_dir_all(&dir).and_then(|()| std::fs::hard_link(file, &copy));
    match made {
        Ok(()) => Some(copy),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Some(copy),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "could not keep a copy of a damaged blob file");
            None
        }
    }
}
