//! A namespace's blobs by id, with how many queued elements reference each.
//!
//! Every data push adds an entry and nearly every data pop removes one, and
//! a namespace may hold millions, so the table is an [`IncrementalMap`]: a
//! resize never stops the namespace for a whole rehash.

use std::sync::Arc;

use super::blob::Blob;
use super::clock::Millis;
use super::incremental_map::IncrementalMap;
use crate::backend::ids::BlobId;

/// What the namespace keeps about one blob.
#[derive(Debug)]
pub(crate) struct BlobEntry {
    pub blob: Arc<Blob>,
    /// End of the blob's own lifetime.
    pub deadline: Millis,
    /// Elements (ready or leased) that reference the blob.
    refs: u32,
    /// Stored through `/tbs` or handed out by a header-only pop: the blob
    /// then lives until its own deadline even with no element referencing it.
    exposed: bool,
}

impl BlobEntry {
    pub fn new(blob: Arc<Blob>, refs: u32, exposed: bool, deadline: Millis) -> BlobEntry {
        BlobEntry {
            blob,
            deadline,
            refs,
            exposed,
        }
    }

    #[cfg(test)]
    pub fn refs(&self) -> u32 {
        self.refs
    }

    pub fn add_ref(&mut self) {
        self.refs = self.refs.saturating_add(1);
    }

    pub fn drop_ref(&mut self) {
        self.refs = self.refs.saturating_sub(1);
    }

    pub fn exposed(&self) -> bool {
        self.exposed
    }

    pub fn expose(&mut self) {
        self.exposed = true;
    }

    pub fn is_readable(&self, now: Millis) -> bool {
        !self.deadline.has_passed(now)
    }

    /// Nothing keeps the blob any more: no element references it, and it
    /// was never exposed or its own lifetime is over.
    pub fn is_garbage(&self, now: Millis) -> bool {
        self.refs == 0 && (!self.exposed || self.deadline.has_passed(now))
    }
}

/// The blobs of a namespace, resized a few buckets at a time.
#[derive(Debug, Default)]
pub(crate) struct BlobTable {
    entries: IncrementalMap<BlobId, BlobEntry>,
}

impl BlobTable {
    pub fn get(&self, id: BlobId) -> Option<&BlobEntry> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: BlobId) -> Option<&mut BlobEntry> {
        self.entries.get_mut(&id)
    }

    /// Adds `entry`, replacing any entry of the same blob id.
    pub fn insert(&mut self, entry: BlobEntry) {
        self.entries.insert(entry.blob.id(), entry);
    }

    /// Drops one element's reference to `blob` and, when nothing keeps the
    /// blob any more, takes its entry out: what every data pop does.
    /// `None` when there is no such blob; `Some(None)` when it stays.
    pub fn release(&mut self, blob: &Blob, now: Millis) -> Option<Option<BlobEntry>> {
        let id = blob.id();
        let entry = self.entries.get_mut(&id)?;
        entry.drop_ref();
        if !entry.is_garbage(now) {
            return Some(None);
        }
        Some(self.entries.remove(&id))
    }

    pub fn remove(&mut self, id: BlobId) -> Option<BlobEntry> {
        self.entries.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BlobEntry> {
        self.entries.iter().map(|(_, e)| e)
    }

    pub fn drain(&mut self) -> impl Iterator<Item = BlobEntry> + '_ {
        self.entries.drain().map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::meta::Metadata;
    use crate::store::blob::BlobContent;
    use crate::store::stats::Totals;

    fn entry(refs: u32) -> BlobEntry {
        let content = BlobContent::Memory(bytes::Bytes::from_static(b"x"));
        let blob = Blob::new(content, 1, Metadata::plain(), Arc::new(Totals::default()));
        BlobEntry::new(blob, refs, false, Millis(1000))
    }

    fn blob_of(table: &BlobTable, id: BlobId) -> Arc<Blob> {
        table.get(id).map(|e| e.blob.clone()).unwrap()
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
            assert_eq!(table.get(*id).map(|e| e.refs()), Some(i as u32));
        }
        assert!(table.get(BlobId::random()).is_none());
        // Same blob again: replaced, not added.
        let blob = blob_of(&table, ids[0]);
        table.insert(BlobEntry::new(blob, 78, true, Millis(5)));
        assert_eq!(table.len(), 1000);
        assert_eq!(table.get(ids[0]).map(|e| e.refs()), Some(78));
        table.get_mut(ids[3]).unwrap().add_ref();
        assert_eq!(table.remove(ids[3]).map(|e| e.refs()), Some(4));
        assert!(table.get(ids[3]).is_none() && table.remove(ids[3]).is_none());
        assert_eq!(table.drain().count(), 999);
        assert!(table.is_empty());
    }

    #[test]
    fn release_takes_a_blob_out_only_when_nothing_keeps_it() {
        let mut table = BlobTable::default();
        let shared = entry(2);
        let mut exposed = entry(1);
        exposed.expose();
        let (shared_id, exposed_id) = (shared.blob.id(), exposed.blob.id());
        table.insert(shared);
        table.insert(exposed);
        let now = Millis(10);
        assert!(table.release(&entry(1).blob, now).is_none());
        let (shared, exposed) = (blob_of(&table, shared_id), blob_of(&table, exposed_id));
        // Two elements share the blob: the first release leaves it.
        assert!(matches!(table.release(&shared, now), Some(None)));
        assert_eq!(table.get(shared_id).map(|e| e.refs()), Some(1));
        let gone = table.release(&shared, now).unwrap().unwrap();
        assert_eq!(gone.blob.id(), shared_id);
        assert!(table.get(shared_id).is_none());
        // An exposed blob outlives its last element until its own deadline.
        assert!(matches!(table.release(&exposed, now), Some(None)));
        assert_eq!(table.get(exposed_id).map(|e| e.refs()), Some(0));
        table.get_mut(exposed_id).unwrap().add_ref();
        assert!(matches!(
            table.release(&exposed, Millis(1000)),
            Some(Some(_))
        ));
        assert!(table.is_empty());
    }

    #[test]
    fn references_never_wrap_below_zero() {
        let mut e = entry(0);
        e.drop_ref();
        assert_eq!((e.refs(), e.exposed()), (0, false));
        e.add_ref();
        e.expose();
        assert_eq!((e.refs(), e.exposed()), (1, true));
    }
}
