//! A namespace's blobs by id.
//!
//! Every data push adds an entry and nearly every data pop removes one, and
//! a queue may hold millions, so the table is kept lean: a bucket holds only
//! the entry, and finds its key through the blob (`Blob::id`), instead of
//! a second copy of the 16-byte id beside it. The hash is a multiply of the
//! id's two halves rather than SipHash: ids are random UUIDs the server made
//! (clients only ever look them up, never choose one that is inserted), so
//! there is nothing for a client to collide on purpose.

use std::sync::Arc;

use hashbrown::HashTable;

use super::blob::Blob;
use super::clock::Millis;
use super::ids::BlobId;

/// What the namespace keeps about one blob.
#[derive(Debug)]
pub(crate) struct BlobEntry {
    pub blob: Arc<Blob>,
    /// Queued elements that reference the blob.
    pub refs: u32,
    /// Stored through `/tbs` or handed out by a header-only pop: the blob then
    /// lives until its own deadline even with no element referencing it.
    pub exposed: bool,
    /// End of the blob's own lifetime.
    pub deadline: Millis,
}

impl BlobEntry {
    pub fn is_readable(&self, now: Millis) -> bool {
        !self.deadline.has_passed(now)
    }

    pub fn is_garbage(&self, now: Millis) -> bool {
        self.refs == 0 && (!self.exposed || self.deadline.has_passed(now))
    }
}

#[derive(Debug, Default)]
pub(crate) struct BlobTable {
    table: HashTable<BlobEntry>,
}

fn hash(id: BlobId) -> u64 {
    let n = id.to_u128();
    ((n >> 64) as u64 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn entry_hash(entry: &BlobEntry) -> u64 {
    hash(entry.blob.id())
}

impl BlobTable {
    pub fn get(&self, id: BlobId) -> Option<&BlobEntry> {
        self.table.find(hash(id), |e| e.blob.id() == id)
    }

    pub fn get_mut(&mut self, id: BlobId) -> Option<&mut BlobEntry> {
        self.table.find_mut(hash(id), |e| e.blob.id() == id)
    }

    /// Adds `entry`, replacing any entry of the same blob id.
    pub fn insert(&mut self, entry: BlobEntry) {
        let id = entry.blob.id();
        match self
            .table
            .entry(hash(id), |e| e.blob.id() == id, entry_hash)
        {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
    }

    /// Drops one element's reference to blob `id` and, when nothing keeps
    /// the blob any more, takes its entry out: one probe of the table for
    /// what every data pop does. `None` when there is no such blob.
    pub fn release(&mut self, id: BlobId, now: Millis) -> Option<Option<BlobEntry>> {
        let mut found = self
            .table
            .find_entry(hash(id), |e| e.blob.id() == id)
            .ok()?;
        let entry = found.get_mut();
        entry.refs = entry.refs.saturating_sub(1);
        if !entry.is_garbage(now) {
            return Some(None);
        }
        Some(Some(found.remove().0))
    }

    pub fn remove(&mut self, id: BlobId) -> Option<BlobEntry> {
        self.table
            .find_entry(hash(id), |e| e.blob.id() == id)
            .ok()
            .map(|o| o.remove().0)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &BlobEntry> {
        self.table.iter()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = BlobEntry> + '_ {
        self.table.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blob::BlobContent;
    use crate::store::meta::Metadata;
    use crate::store::stats::Totals;

    fn entry(refs: u32) -> BlobEntry {
        let content = BlobContent::Memory(bytes::Bytes::from_static(b"x"));
        let blob = Blob::new(content, 1, Metadata::plain(), Arc::new(Totals::default()));
        BlobEntry {
            blob,
            refs,
            exposed: false,
            deadline: Millis(1000),
        }
    }

    #[test]
    fn entries_are_found_replaced_and_removed_by_their_blobs_id() {
        let mut table = BlobTable::default();
        let entries: Vec<BlobEntry> = (0..1000).map(entry).collect();
        let ids: Vec<BlobId> = entries.iter().map(|e| e.blob.id()).collect();
        for e in entries {
            table.insert(e);
        }
        assert_eq!(table.len(), 1000);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.get(*id).map(|e| e.refs), Some(i as u32));
        }
        assert!(table.get(BlobId::random()).is_none());
        // Same blob again: replaced, not added.
        let again = BlobEntry {
            refs: 77,
            ..entry(0)
        };
        let again_id = again.blob.id();
        table.insert(again);
        let blob = table.get(again_id).map(|e| e.blob.clone()).unwrap();
        table.insert(BlobEntry {
            blob,
            refs: 78,
            exposed: true,
            deadline: Millis(5),
        });
        assert_eq!(table.len(), 1001);
        assert_eq!(table.get(again_id).map(|e| e.refs), Some(78));
        table.get_mut(ids[3]).unwrap().refs = 9;
        assert_eq!(table.remove(ids[3]).map(|e| e.refs), Some(9));
        assert!(table.get(ids[3]).is_none() && table.remove(ids[3]).is_none());
        assert_eq!(table.drain().count(), 1000);
        assert!(table.is_empty());
    }

    #[test]
    fn release_takes_a_blob_out_only_when_nothing_keeps_it() {
        let mut table = BlobTable::default();
        let shared = entry(2);
        let exposed = BlobEntry {
            exposed: true,
            ..entry(1)
        };
        let (shared_id, exposed_id) = (shared.blob.id(), exposed.blob.id());
        table.insert(shared);
        table.insert(exposed);
        let now = Millis(10);
        assert!(table.release(BlobId::random(), now).is_none());
        // Two elements share the blob: the first release leaves it.
        assert!(matches!(table.release(shared_id, now), Some(None)));
        assert_eq!(table.get(shared_id).map(|e| e.refs), Some(1));
        let gone = table.release(shared_id, now).unwrap().unwrap();
        assert_eq!(gone.blob.id(), shared_id);
        assert!(table.get(shared_id).is_none());
        // An exposed blob outlives its last element until its own deadline.
        assert!(matches!(table.release(exposed_id, now), Some(None)));
        assert_eq!(table.get(exposed_id).map(|e| e.refs), Some(0));
        table.get_mut(exposed_id).unwrap().refs = 1;
        assert!(matches!(
            table.release(exposed_id, Millis(1000)),
            Some(Some(_))
        ));
        assert!(table.is_empty());
    }
}
