//! The log records a namespace's changes produce, in durable mode.
//!
//! Every change that must survive a restart calls one method here, under
//! the namespace's lock, so the log's order is the order the changes
//! happened. Without a journal (memory mode) each call does nothing. Leases
//! are not logged: after a restart a leased element is ready again.
//!
//! The records of one change are staged (in a buffer each thread lends)
//! and handed to the journal in one piece when the lock is released ([`super::Locked`]), so a change is
//! never split between two writes, nor between two segments. Split, a
//! push's `Blob` would end one segment and its `Put` begin the next, and
//! compacting the first alone would drop the blob as unreferenced.

use std::cell::Cell;
use std::sync::Arc;

use crate::backend::meta::Metadata;
use crate::backend::name::Name;
use crate::store::blob::Blob;
use crate::store::clock::Millis;
use crate::store::element::Element;
use crate::store::journal::record::{change_body, encode, MetaRecord, Record};
use crate::store::journal::Journal;

/// A staging buffer grown past this many bytes (by a large inline body) is
/// freed after its change rather than kept for the thread's next one.
const STAGED_CAPACITY_KEPT: usize = 4096;

/// One namespace's side of the log.
pub(super) struct ChangeLog {
    ns: Name,
    /// Where changes are recorded, in durable mode.
    journal: Option<Arc<Journal>>,
    staged: Staged,
}

thread_local! {
    /// A staging buffer between changes. A change is staged and committed
    /// under one lock on one thread, with no `.await` between, so each
    /// thread needs one buffer, not each namespace: a namespace that kept
    /// its own would hold it for as long as it lives.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The current change's records, encoded, and how many there are.
#[derive(Default)]
struct Staged {
    /// Empty, without an allocation, between changes.
    buf: Vec<u8>,
    records: u64,
}

impl Staged {
    fn add(&mut self, record: &Record<'_>) {
        if self.buf.capacity() == 0 {
            self.buf = SPARE.take();
        }
        encode(record, &mut self.buf);
        self.records += 1;
    }

    /// Empties the buffer and hands it back to the thread's spare.
    fn reset(&mut self) {
        self.records = 0;
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() <= STAGED_CAPACITY_KEPT {
            buf.clear();
            SPARE.set(buf);
        }
    }
}

impl ChangeLog {
    pub fn new(ns: Name, journal: Option<Arc<Journal>>) -> ChangeLog {
        ChangeLog {
            ns,
            journal,
            staged: Staged::default(),
        }
    }

    /// Hands the change's records to the journal, all together. Called as
    /// the namespace's lock is released.
    pub fn commit(&mut self) {
        if self.staged.records == 0 {
            return;
        }
        if let Some(journal) = &self.journal {
            if self.staged.records == 1 {
                journal.append_encoded(&self.staged.buf, 1);
            } else {
                // Several records: one frame, so a torn write cannot leave
                // the first few (a push's blob without its element, part of
                // a batch).
                let body = change_body(&self.staged.buf);
                let mut framed = Vec::with_capacity(body.len() + 16);
                encode(&Record::Change(&body), &mut framed);
                journal.append_encoded(&framed, 1);
            }
        }
        self.staged.reset();
    }

    /// `element` entered `queue`: a push, or a move to a dead-letter queue
    /// (a `Put` alone, which replay reads as a move).
    pub fn put(&mut self, queue: &Name, element: &Element) {
        if self.journal.is_none() {
            return;
        }
        self.staged.add(&Record::Put {
            ns: self.ns.as_str(),
            queue: queue.as_str(),
            id: element.id.to_u128(),
            blob: element.blob.as_ref().map(|b| b.id().to_u128()),
            meta: meta_record(&element.meta),
            deadline: element.deadline.0,
            deliveries: element.deliveries,
        });
    }

    /// `element` left its queue for good (popped, acknowledged or expired).
    pub fn take(&mut self, element: &Element) {
        if self.journal.is_none() {
            return;
        }
        self.staged.add(&Record::Take {
            ns: self.ns.as_str(),
            id: element.id.to_u128(),
        });
    }

    /// A new blob was stored. A blob in a file of the data directory is
    /// kept from now on: the log names it. A blob in a segment has the
    /// segment synced with the log.
    pub fn blob_stored(&mut self, blob: &Blob, deadline: Millis, exposed: bool) {
        let Some(journal) = &self.journal else { return };
        let data = blob.content().log_data();
        self.staged.add(&Record::Blob {
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
            journal.file_added(file.path());
        }
        if let Some(body) = blob.content().segment() {
            body.logged_as(&self.ns, blob.id());
            let segment: Arc<dyn crate::store::journal::SyncedWithLog> = body.segment();
            journal.sync_with_log(&segment);
        }
    }

    /// A header-only delivery handed the blob's id to a client.
    pub fn blob_exposed(&mut self, blob: &Blob) {
        if self.journal.is_none() {
            return;
        }
        self.staged.add(&Record::Expose {
            ns: self.ns.as_str(),
            id: blob.id().to_u128(),
        });
    }

    /// The blob left the namespace's table. Its file, if the data directory
    /// has one, is removed once nothing reads it and the record is durable:
    /// the blob is dropped after the lock is released, when the record has
    /// been handed to the journal.
    pub fn blob_gone(&mut self, blob: &Blob) {
        let Some(journal) = &self.journal else { return };
        self.staged.add(&Record::BlobGone {
            ns: self.ns.as_str(),
            id: blob.id().to_u128(),
        });
        if let Some(file) = blob.content().stored_file() {
            file.remove_when_dropped(journal.clone());
        }
        if let Some(body) = blob.content().segment() {
            body.set_logged(false);
        }
    }
}

fn meta_record(meta: &Metadata) -> MetaRecord<'_> {
    MetaRecord {
        content_type: &meta.content_type,
        custom: meta.custom.iter().map(|p| (&*p.key, &*p.value)).collect(),
    }
}
