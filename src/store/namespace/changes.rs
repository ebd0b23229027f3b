//! The log records a namespace's changes produce, in durable mode.
//!
//! Every change that must survive a restart calls one method here, under
//! the namespace's lock, so the log's order is the order the changes
//! happened. Without a journal (memory mode) each call does nothing. Leases
//! are not logged: after a restart a leased element is ready again.

use std::sync::Arc;

use crate::backend::meta::Metadata;
use crate::backend::name::Name;
use crate::store::blob::{Blob, BlobContent};
use crate::store::clock::Millis;
use crate::store::element::Element;
use crate::store::journal::record::{BlobData, MetaRecord, Record};
use crate::store::journal::Journal;

/// One namespace's side of the log.
pub(super) struct ChangeLog {
    ns: Name,
    /// Where changes are recorded, in durable mode.
    journal: Option<Arc<Journal>>,
}

impl ChangeLog {
    pub fn new(ns: Name, journal: Option<Arc<Journal>>) -> ChangeLog {
        ChangeLog { ns, journal }
    }

    /// `element` entered `queue`: a push, or a move to a dead-letter queue.
    pub fn put(&self, queue: &Name, element: &Element) {
        if let Some(journal) = &self.journal {
            journal.append(&Record::Put {
                ns: self.ns.as_str(),
                queue: queue.as_str(),
                id: element.id.to_u128(),
                blob: element.blob.as_ref().map(|b| b.id().to_u128()),
                meta: meta_record(&element.meta),
                deadline: element.deadline.0,
                deliveries: element.deliveries,
            });
        }
    }

    /// `element` left its queue for good (popped, acknowledged, expired,
    /// or moved to a dead-letter queue, which logs its `put` after this).
    pub fn take(&self, element: &Element) {
        if let Some(journal) = &self.journal {
            journal.append(&Record::Take {
                ns: self.ns.as_str(),
                id: element.id.to_u128(),
            });
        }
    }

    /// A new blob was stored. A blob in a file of the data directory is
    /// kept from now on: the log names it.
    pub fn blob_stored(&self, blob: &Blob, deadline: Millis, exposed: bool) {
        let Some(journal) = &self.journal else { return };
        let data = match blob.content() {
            BlobContent::Memory(bytes) => BlobData::Inline(bytes),
            // Durable mode only makes stored files; a spill file cannot be
            // named relative to the data directory, so it is recorded by its
            // name too and would be found missing at replay.
            BlobContent::File(file) => BlobData::File(
                file.path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default(),
            ),
        };
        journal.append(&Record::Blob {
            ns: self.ns.as_str(),
            id: blob.id().to_u128(),
            size: blob.size(),
            meta: meta_record(blob.meta()),
            deadline: deadline.0,
            exposed,
            data,
        });
        if let Some(file) = blob.content().stored_file() {
            file.keep();
            journal.file_added();
        }
    }

    /// A header-only delivery handed the blob's id to a client.
    pub fn blob_exposed(&self, blob: &Blob) {
        if let Some(journal) = &self.journal {
            journal.append(&Record::Expose {
                ns: self.ns.as_str(),
                id: blob.id().to_u128(),
            });
        }
    }

    /// The blob left the namespace's table. Its file, if the data directory
    /// has one, is removed once nothing reads it and the record is durable.
    pub fn blob_gone(&self, blob: &Blob) {
        let Some(journal) = &self.journal else { return };
        journal.append(&Record::BlobGone {
            ns: self.ns.as_str(),
            id: blob.id().to_u128(),
        });
        if let Some(file) = blob.content().stored_file() {
            file.remove_when_dropped(journal.clone());
        }
    }
}

fn meta_record(meta: &Metadata) -> MetaRecord<'_> {
    MetaRecord {
        content_type: &meta.content_type,
        custom: meta.custom.iter().map(|p| (&*p.key, &*p.value)).collect(),
    }
}
