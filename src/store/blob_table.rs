//! A namespace's blobs by id.
//!
//! Every data push adds an entry and nearly every data pop removes one, and
//! a queue may hold millions, so the table is kept lean: a bucket holds the
//! blob and 32 bits of its id (its `key`), not a copy of the whole 16-byte
//! id. The key alone gives the hash, so moving an entry to a bigger table
//! never reads the blob (a cache miss for every entry moved: it was most of
//! a push's cost in the table while it grew), and a probe compares keys
//! before it reads a blob's id. The hash is a multiply rather than SipHash:
//! ids are random UUIDs the server made (clients only ever look them up,
//! never choose one that is inserted), so there is nothing for a client to
//! collide on purpose.

use std::sync::Arc;

use hashbrown::hash_table::{Entry, OccupiedEntry};
use hashbrown::HashTable;

use super::blob::{prefetch_address, Blob};
use super::clock::Millis;
use crate::backend::ids::BlobId;

/// What the namespace keeps about one blob: 24 bytes.
#[derive(Debug)]
pub(crate) struct BlobEntry {
    pub blob: Arc<Blob>,
    /// End of the blob's own lifetime.
    pub deadline: Millis,
    /// Queued elements that reference the blob (the low 31 bits), and
    /// [`EXPOSED`].
    refs_exposed: u32,
    /// [`key`] of the blob's id.
    key: u32,
}

/// Bytes of an entry in the table's buckets.
const ENTRY: usize = size_of::<BlobEntry>();

/// Stored through `/tbs` or handed out by a header-only pop: the blob then
/// lives until its own deadline even with no element referencing it.
const EXPOSED: u32 = 1 << 31;

impl BlobEntry {
    pub fn new(blob: Arc<Blob>, refs: u32, exposed: bool, deadline: Millis) -> BlobEntry {
        let mut entry = BlobEntry {
            key: key(blob.id()),
            blob,
            deadline,
            refs_exposed: 0,
        };
        entry.set_refs(refs);
        if exposed {
            entry.expose();
        }
        entry
    }

    /// Queued elements that reference the blob.
    pub fn refs(&self) -> u32 {
        self.refs_exposed & !EXPOSED
    }

    /// `refs` saturates at 2^31 - 1, far beyond any queue's length.
    pub fn set_refs(&mut self, refs: u32) {
        self.refs_exposed = (self.refs_exposed & EXPOSED) | refs.min(!EXPOSED);
    }

    pub fn add_ref(&mut self) {
        self.set_refs(self.refs().saturating_add(1));
    }

    pub fn drop_ref(&mut self) {
        self.set_refs(self.refs().saturating_sub(1));
    }

    pub fn exposed(&self) -> bool {
        self.refs_exposed & EXPOSED != 0
    }

    pub fn expose(&mut self) {
        self.refs_exposed |= EXPOSED;
    }

    pub fn is_readable(&self, now: Millis) -> bool {
        !self.deadline.has_passed(now)
    }

    pub fn is_garbage(&self, now: Millis) -> bool {
        self.refs() == 0 && (!self.exposed() || self.deadline.has_passed(now))
    }

    fn hash(&self) -> u64 {
        hash_key(self.key)
    }
}

/// Below this many entries a full table grows the usual way, all at once:
/// rehashing a few thousand entries takes well under a millisecond.
const GROW_AT_ONCE_BELOW: usize = 4096;

/// Buckets of the old table moved to the new one on each change while a
/// resize is under way. A change adds at most one entry and the new table has
/// room for twice the entries the old one held, so the move is over long
/// before the new table fills.
const MOVE_STEP: usize = 16;

/// New entries wait in a short list and go into the table this many at a
/// time. A table of hundreds of thousands of entries is far larger than the
/// CPU's caches, so placing an entry with a random id misses the cache on
/// its control bytes and its bucket, and an insert alone waits for both
/// (a quarter of a microsecond per push, about 3 % of the server's time
/// under a push load). Inserted one after the other, a batch's entries miss
/// independently and the CPU overlaps the misses; and a blob popped before
/// its batch went in never touches the table at all.
const FRESH_BATCH: usize = 32;

/// The blobs of a namespace, resized a few buckets at a time.
///
/// A hash table that grows all at once rehashes every entry while the caller
/// holds the namespace's lock: at a million entries that stopped every
/// request to the namespace for about 100 ms. Like Redis's dict, a full
/// table is instead replaced by an empty one twice the size, and each later
/// change moves [`MOVE_STEP`] buckets of the old table over. Until the old
/// table is empty, lookups try both.
#[derive(Debug, Default)]
pub(crate) struct BlobTable {
    table: HashTable<BlobEntry>,
    /// The table being emptied into `table`; empty, with no allocation,
    /// when no resize is under way.
    old: HashTable<BlobEntry>,
    /// The next bucket of `old` to move.
    cursor: usize,
    /// Buckets of `table` that the last resize step moved an entry into,
    /// whose blobs still record their slot in `old`. A moved blob is long
    /// out of the caches, and writing its slot at once waited for it (a
    /// third of a microsecond of a push while a large table grew): the step
    /// only prefetches it, and the next change, when it has arrived,
    /// writes the slot. Until then a pop of such a blob searches for it, as
    /// for any stale slot.
    unnoted: Vec<usize>,
    /// Entries of blobs made since the last batch went into `table`, fewer
    /// than [`FRESH_BATCH`]; searched first by every lookup.
    fresh: Vec<BlobEntry>,
    /// A bit for each fresh entry's key ([`fresh_bit`]), so that most
    /// lookups of a blob that is not fresh (the pops of a long queue) skip
    /// the search. Bits of entries taken out stay until the batch goes in.
    fresh_keys: u128,
    /// The address of `table`'s control bytes, which is also where its
    /// buckets end (hashbrown's layout: bucket `i` is the `i + 1`-th entry
    /// below it), as the last release through a slot found it. Only
    /// [`BlobTable::prefetch_entry`] uses it, as a hint: after the table
    /// moved it points at nothing in particular until the next release,
    /// which costs a wasted prefetch, never a wrong read.
    ctrl_at: usize,
}

/// 32 of the id's random bits (v4 UUIDs have 122).
fn key(id: BlobId) -> u32 {
    let n = id.to_u128();
    (n as u32) ^ ((n >> 64) as u32)
}

/// Records in an entry's blob the bucket the entry was just placed in.
fn note_slot(placed: &OccupiedEntry<'_, BlobEntry>) {
    placed.get().blob.set_slot(placed.bucket_index());
}

/// The bit of `fresh_keys` for an entry with `key`.
fn fresh_bit(key: u32) -> u128 {
    1 << (key & 127)
}

/// Fibonacci hashing: the low bits (the bucket) and the top 7 (hashbrown's
/// tag) both depend on every bit of the key.
fn hash_key(key: u32) -> u64 {
    u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The hash of blob `id`'s entry.
fn hash(id: BlobId) -> u64 {
    hash_key(key(id))
}

fn is(id: BlobId) -> impl Fn(&BlobEntry) -> bool {
    let k = key(id);
    move |e| e.key == k && e.blob.id() == id
}

impl BlobTable {
    pub fn get(&self, id: BlobId) -> Option<&BlobEntry> {
        if let Some(i) = self.fresh_position(id) {
            return self.fresh.get(i);
        }
        let h = hash(id);
        match self.table.find(h, is(id)) {
            None if !self.old.is_empty() => self.old.find(h, is(id)),
            found => found,
        }
    }

    pub fn get_mut(&mut self, id: BlobId) -> Option<&mut BlobEntry> {
        if let Some(i) = self.fresh_position(id) {
            return self.fresh.get_mut(i);
        }
        self.occupied(id).map(OccupiedEntry::into_mut)
    }

    /// Adds `entry`, replacing any entry of the same blob id.
    pub fn insert(&mut self, entry: BlobEntry) {
        let id = entry.blob.id();
        if let Some(i) = self.fresh_position(id) {
            self.fresh[i] = entry;
            return;
        }
        self.step();
        let h = entry.hash();
        if !self.old.is_empty() {
            if let Ok(found) = self.old.find_entry(h, is(id)) {
                found.remove();
            }
        }
        self.make_room();
        let placed = match self.table.entry(h, is(id), BlobEntry::hash) {
            Entry::Occupied(mut o) => {
                *o.get_mut() = entry;
                o
            }
            Entry::Vacant(v) => v.insert(entry),
        };
        note_slot(&placed);
    }

    /// Adds the entry of a blob just made, whose random id no entry can
    /// have (two v4 UUIDs are equal with odds of 2^-122): what every data
    /// push does, without searching for an entry to replace. It joins the
    /// fresh entries, which go into the table a batch at a time.
    pub fn insert_new(&mut self, entry: BlobEntry) {
        debug_assert!(
            self.get(entry.blob.id()).is_none(),
            "a new blob's id is new"
        );
        if self.fresh.capacity() == 0 {
            self.fresh.reserve_exact(FRESH_BATCH);
        }
        self.fresh_keys |= fresh_bit(entry.key);
        self.fresh.push(entry);
        if self.fresh.len() == FRESH_BATCH {
            self.put_fresh_in();
        }
    }

    /// Moves the fresh entries into the table, one resize step for each as
    /// if it were inserted alone.
    fn put_fresh_in(&mut self) {
        self.fresh_keys = 0;
        while let Some(entry) = self.fresh.pop() {
            self.step();
            self.make_room();
            self.place(entry);
        }
    }

    /// Puts a fresh entry (its blob in neither table) into `table`, and
    /// records where in its blob, which was made moments ago and is still
    /// in the cache. Moved entries are placed by `step`.
    fn place(&mut self, entry: BlobEntry) {
        note_slot(
            &self
                .table
                .insert_unique(entry.hash(), entry, BlobEntry::hash),
        );
    }

    /// The bucket of `table` that `blob`'s recorded slot leads to, if that
    /// bucket holds this very blob.
    fn at_slot(&self, blob: &Blob) -> Option<usize> {
        let slot = blob.slot();
        let entry = self.table.get_bucket(slot)?;
        std::ptr::eq(Arc::as_ptr(&entry.blob), blob).then_some(slot)
    }

    /// Where blob `id`'s entry is among the fresh ones.
    fn fresh_position(&self, id: BlobId) -> Option<usize> {
        if self.fresh_keys & fresh_bit(key(id)) == 0 {
            return None;
        }
        self.fresh.iter().position(is(id))
    }

    /// Drops one element's reference to `blob` and, when nothing keeps the
    /// blob any more, takes its entry out: what every data pop does. The
    /// slot recorded in the blob leads straight to its entry, whose control
    /// byte and bucket the CPU then fetches at once, where a search must
    /// read the control bytes to learn which bucket to read (two cache
    /// misses one after the other, in a table larger than the caches). A
    /// blob whose slot is out of date (a table below [`GROW_AT_ONCE_BELOW`]
    /// entries grew, or a resize has yet to move it) is searched for.
    /// `None` when there is no such blob.
    pub fn release(&mut self, blob: &Blob, now: Millis) -> Option<Option<BlobEntry>> {
        let id = blob.id();
        if let Some(i) = self.fresh_position(id) {
            let entry = &mut self.fresh[i];
            entry.drop_ref();
            return Some(entry.is_garbage(now).then(|| self.fresh.swap_remove(i)));
        }
        self.step();
        let mut found = match self.at_slot(blob) {
            Some(slot) => {
                let found = self.table.get_bucket_entry(slot).ok()?;
                self.ctrl_at = std::ptr::from_ref(found.get()).addr() + (slot + 1) * ENTRY;
                found
            }
            None => self.occupied(id)?,
        };
        let entry = found.get_mut();
        entry.drop_ref();
        if !entry.is_garbage(now) {
            return Some(None);
        }
        Some(Some(found.remove().0))
    }

    /// The addresses of the control byte and the bucket that `blob`'s
    /// recorded slot leads to, if the slot is in the table.
    fn slot_addresses(&self, blob: &Blob) -> Option<(usize, usize)> {
        let slot = blob.slot();
        (slot < self.table.num_buckets() && self.ctrl_at != 0).then(|| {
            (
                self.ctrl_at.wrapping_add(slot),
                self.ctrl_at.wrapping_sub((slot + 1) * ENTRY),
            )
        })
    }

    /// Asks the CPU for the control byte and bucket of `blob`'s entry, so
    /// that its release a request later finds both at hand. In a table
    /// larger than the caches the bucket was a cache and TLB miss that a
    /// pop of a long queue waited for (about 0.35 µs); the prefetch still
    /// waits for the page walk, about half of it.
    pub fn prefetch_entry(&self, blob: &Blob) {
        if let Some((ctrl, bucket)) = self.slot_addresses(blob) {
            prefetch_address(std::ptr::without_provenance(ctrl));
            prefetch_address(std::ptr::without_provenance(bucket));
        }
    }

    pub fn remove(&mut self, id: BlobId) -> Option<BlobEntry> {
        if let Some(i) = self.fresh_position(id) {
            return Some(self.fresh.swap_remove(i));
        }
        self.step();
        self.occupied(id).map(|o| o.remove().0)
    }

    pub fn len(&self) -> usize {
        self.fresh.len() + self.table.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = &BlobEntry> {
        self.fresh
            .iter()
            .chain(self.table.iter())
            .chain(self.old.iter())
    }

    pub fn drain(&mut self) -> impl Iterator<Item = BlobEntry> + '_ {
        self.cursor = 0;
        self.unnoted.clear();
        self.fresh_keys = 0;
        let fresh = self.fresh.drain(..);
        fresh.chain(self.table.drain()).chain(self.old.drain())
    }

    /// The entry of blob `id`, in whichever table holds it.
    fn occupied(&mut self, id: BlobId) -> Option<OccupiedEntry<'_, BlobEntry>> {
        let h = hash(id);
        match self.table.find_entry(h, is(id)) {
            Ok(found) => Some(found),
            Err(_) if self.old.is_empty() => None,
            Err(_) => self.old.find_entry(h, is(id)).ok(),
        }
    }

    /// Starts a resize when the next new entry would make the table grow
    /// (or, full of deleted markers, rehash in place) all at once.
    fn make_room(&mut self) {
        let len = self.table.len();
        if len < GROW_AT_ONCE_BELOW || len < self.table.capacity() || !self.old.is_empty() {
            return;
        }
        self.note_moved();
        let bigger = HashTable::with_capacity(len * 2);
        self.old = std::mem::replace(&mut self.table, bigger);
        self.cursor = 0;
    }

    /// Moves the next [`MOVE_STEP`] buckets of the old table, if a resize is
    /// under way, and frees the old table once it is empty. The blobs the
    /// step before moved learn their new slots first.
    fn step(&mut self) {
        self.note_moved();
        if self.old.is_empty() {
            if self.old.allocation_size() != 0 {
                self.old = HashTable::new();
            }
            return;
        }
        let end = (self.cursor + MOVE_STEP).min(self.old.num_buckets());
        for index in self.cursor..end {
            if let Ok(found) = self.old.get_bucket_entry(index) {
                let entry = found.remove().0;
                entry.blob.prefetch_slot();
                let placed = self
                    .table
                    .insert_unique(entry.hash(), entry, BlobEntry::hash);
                self.unnoted.push(placed.bucket_index());
            }
        }
        self.cursor = end;
        if self.old.is_empty() {
            self.old = HashTable::new();
        }
    }

    /// Records in each blob the last step moved its slot in `table`. The
    /// buckets may have changed since, and each gets the slot of the entry
    /// it holds now, which is true whatever happened in between.
    fn note_moved(&mut self) {
        for index in self.unnoted.drain(..) {
            if let Some(entry) = self.table.get_bucket(index) {
                entry.blob.set_slot(index);
            }
        }
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
        let mut again = entry(0);
        again.set_refs(77);
        let again_id = again.blob.id();
        table.insert(again);
        let blob = table.get(again_id).map(|e| e.blob.clone()).unwrap();
        table.insert(BlobEntry::new(blob, 78, true, Millis(5)));
        assert_eq!(table.len(), 1001);
        assert_eq!(table.get(again_id).map(|e| e.refs()), Some(78));
        table.get_mut(ids[3]).unwrap().set_refs(9);
        assert_eq!(table.remove(ids[3]).map(|e| e.refs()), Some(9));
        assert!(table.get(ids[3]).is_none() && table.remove(ids[3]).is_none());
        assert_eq!(table.drain().count(), 1000);
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_moves_to_a_bigger_one_a_few_buckets_per_change() {
        let mut table = BlobTable::default();
        let mut ids = Vec::new();
        let mut resizes = 0;
        let mut old_before = 0;
        for i in 0..40_000u32 {
            let e = entry(i);
            ids.push(e.blob.id());
            table.insert(e);
            let old = table.old.len();
            if old > old_before {
                // A resize began with this insert: nothing was rehashed yet.
                resizes += 1;
                assert!(
                    table.table.len() <= 1,
                    "{} moved at once",
                    table.table.len()
                );
                assert!(old >= GROW_AT_ONCE_BELOW);
            } else {
                assert!(old_before - old <= MOVE_STEP, "{} moved", old_before - old);
            }
            if old == 0 {
                assert_eq!(table.old.allocation_size(), 0, "the old table is freed");
            }
            old_before = old;
            assert_eq!(table.len(), ids.len());
        }
        assert!(resizes >= 3, "{resizes} resizes");
        // Start one more resize, then use entries in both tables.
        let mut i = 40_000u32;
        while table.old.is_empty() {
            let e = entry(i);
            ids.push(e.blob.id());
            table.insert(e);
            i += 1;
        }
        let in_old = |t: &BlobTable, id| t.old.find(hash(id), is(id)).is_some();
        let old_id = *ids.iter().find(|&&id| in_old(&table, id)).unwrap();
        assert!(table.get(old_id).is_some());
        let old_entry = table.get_mut(old_id).unwrap();
        old_entry.set_refs(old_entry.refs() + 100);
        // Replacing an entry still in the old table leaves one entry for it.
        let blob = table.get(old_id).unwrap().blob.clone();
        let len = table.len();
        table.insert(BlobEntry::new(blob, 7, false, Millis(1000)));
        assert_eq!(table.len(), len);
        assert_eq!(table.get(old_id).map(|e| e.refs()), Some(7));
        let other = *ids.iter().rev().find(|&&id| in_old(&table, id)).unwrap();
        assert!(table.remove(other).is_some());
        assert!(table.get(other).is_none());
        let third = *ids.iter().find(|&&id| in_old(&table, id)).unwrap();
        let refs = table.get(third).unwrap().refs();
        table.get_mut(third).unwrap().set_refs(1);
        let third_blob = table.get(third).unwrap().blob.clone();
        assert!(matches!(
            table.release(&third_blob, Millis(10)),
            Some(Some(_))
        ));
        assert!(refs > 0 && table.get(third).is_none());
        // Every other entry is still there, found in whichever table holds it.
        let gone = [other, third];
        for id in ids.iter().filter(|id| !gone.contains(id)) {
            assert!(table.get(*id).is_some());
        }
        assert_eq!(table.iter().count(), ids.len() - 2);
        assert_eq!(table.drain().count(), ids.len() - 2);
        assert!(table.is_empty());
    }

    fn blob_of(table: &BlobTable, id: BlobId) -> Arc<Blob> {
        table.get(id).map(|e| e.blob.clone()).unwrap()
    }

    fn entry_with_id(id: BlobId) -> BlobEntry {
        let content = BlobContent::Memory(bytes::Bytes::from_static(b"x"));
        let blob = Blob::with_id(
            id,
            content,
            1,
            Metadata::plain(),
            Arc::new(Totals::default()),
        );
        BlobEntry::new(blob, 1, false, Millis(1000))
    }

    #[test]
    fn an_entry_is_as_small_as_a_blob_pointer_a_deadline_and_two_words() {
        assert_eq!(std::mem::size_of::<BlobEntry>(), 24);
    }

    #[test]
    fn refs_and_exposed_share_a_word_without_touching_each_other() {
        let mut e = entry(5);
        e.expose();
        assert_eq!((e.refs(), e.exposed()), (5, true));
        e.drop_ref();
        e.add_ref();
        e.add_ref();
        assert_eq!((e.refs(), e.exposed()), (6, true));
        e.set_refs(u32::MAX);
        assert_eq!((e.refs(), e.exposed()), (u32::MAX >> 1, true));
        let mut plain = entry(0);
        plain.drop_ref();
        assert_eq!((plain.refs(), plain.exposed()), (0, false));
    }

    #[test]
    fn new_entries_are_found_across_resizes_and_ids_sharing_a_key_stay_apart() {
        let mut table = BlobTable::default();
        let mut ids = Vec::new();
        for i in 0..3 * GROW_AT_ONCE_BELOW as u32 {
            let e = entry(i);
            ids.push(e.blob.id());
            table.insert_new(e);
        }
        assert!(ids
            .iter()
            .enumerate()
            .all(|(i, id)| table.get(*id).map(|e| e.refs()) == Some(i as u32)));
        // Two ids whose 32-bit keys are equal: one hash, two entries.
        let a = BlobId::from_u128(0xabcd_0000_0000_0001_0000_0000_0000_0000);
        let b = BlobId::from_u128(0x0000_0000_0000_0000_ffff_0000_0000_0001);
        assert_eq!(key(a), key(b));
        table.insert_new(entry_with_id(a));
        table.insert_new(entry_with_id(b));
        assert_eq!(table.get(a).map(|e| e.blob.id()), Some(a));
        assert_eq!(table.remove(b).map(|e| e.blob.id()), Some(b));
        assert!(table.get(b).is_none() && table.get(a).is_some());
        assert_eq!(table.len(), ids.len() + 1);
    }

    #[test]
    fn new_entries_wait_for_a_full_batch_and_are_found_changed_and_taken_while_they_wait() {
        let mut table = BlobTable::default();
        let mut ids = Vec::new();
        for refs in 0..FRESH_BATCH as u32 - 1 {
            let e = entry(refs.max(1));
            ids.push(e.blob.id());
            table.insert_new(e);
        }
        assert_eq!((table.fresh.len(), table.table.len()), (FRESH_BATCH - 1, 0));
        assert_eq!(table.len(), FRESH_BATCH - 1);
        assert_eq!(table.iter().count(), FRESH_BATCH - 1);
        assert_eq!(table.get(ids[5]).map(|e| e.refs()), Some(5));
        table.get_mut(ids[5]).unwrap().set_refs(50);
        assert_eq!(table.get(ids[5]).map(|e| e.refs()), Some(50));
        // Replacing a waiting entry leaves one entry for its blob.
        let blob = table.get(ids[6]).unwrap().blob.clone();
        table.insert(BlobEntry::new(blob, 60, true, Millis(5)));
        assert_eq!(table.get(ids[6]).map(|e| e.refs()), Some(60));
        assert_eq!(table.len(), FRESH_BATCH - 1);
        // Popped before its batch went in: out, and never in the table.
        let now = Millis(10);
        let (first, second) = (blob_of(&table, ids[1]), blob_of(&table, ids[2]));
        assert!(matches!(table.release(&first, now), Some(Some(_))));
        assert!(matches!(table.release(&second, now), Some(None)));
        assert_eq!(table.get(ids[2]).map(|e| e.refs()), Some(1));
        assert!(table.get(ids[1]).is_none() && table.release(&first, now).is_none());
        assert_eq!(table.remove(ids[3]).map(|e| e.refs()), Some(3));
        assert!(table.get(ids[3]).is_none());
        let gone = [ids[1], ids[3]];
        // Filling the batch puts every waiting entry into the table.
        while table.table.is_empty() {
            let e = entry(1);
            ids.push(e.blob.id());
            table.insert_new(e);
        }
        assert!(table.fresh.is_empty());
        assert_eq!(table.table.len(), ids.len() - gone.len());
        for id in ids.iter().filter(|id| !gone.contains(id)) {
            assert!(table.get(*id).is_some());
        }
        assert_eq!(table.get(ids[5]).map(|e| e.refs()), Some(50));
        let waiting = entry(1);
        let waiting_id = waiting.blob.id();
        table.insert_new(waiting);
        assert_eq!(table.drain().count(), ids.len() - gone.len() + 1);
        assert!(table.is_empty() && table.get(waiting_id).is_none());
    }

    #[test]
    fn a_blob_records_its_slot_and_release_checks_it_before_trusting_it() {
        let mut table = BlobTable::default();
        let mut blobs = Vec::new();
        // Enough for the table to be replaced several times, a few buckets
        // per change: every entry moved has its slot recorded again.
        for _ in 0..6 * GROW_AT_ONCE_BELOW {
            let e = entry(1);
            blobs.push(e.blob.clone());
            table.insert_new(e);
        }
        let in_table =
            |t: &BlobTable, b: &Arc<Blob>| t.table.find(hash(b.id()), is(b.id())).is_some();
        // The last step's moves are written by the next change.
        assert!(table.remove(BlobId::random()).is_none());
        let placed: Vec<_> = blobs.iter().filter(|b| in_table(&table, b)).collect();
        assert!(
            placed.len() > 4 * GROW_AT_ONCE_BELOW,
            "{} placed",
            placed.len()
        );
        for b in &placed {
            let at_slot = table.table.get_bucket(b.slot()).map(|e| e.blob.id());
            assert_eq!(at_slot, Some(b.id()), "a stale slot");
        }
        let now = Millis(10);
        let (a, b, c) = (placed[0].clone(), placed[1].clone(), placed[2].clone());
        // A slot that leads to another blob's entry, or to none: searched.
        a.set_slot(b.slot());
        c.set_slot(usize::MAX);
        assert_eq!(
            table.release(&a, now).unwrap().map(|e| e.blob.id()),
            Some(a.id())
        );
        assert_eq!(
            table.release(&c, now).unwrap().map(|e| e.blob.id()),
            Some(c.id())
        );
        assert!(table.get(a.id()).is_none() && table.get(c.id()).is_none());
        assert!(table.get(b.id()).is_some());
        assert_eq!(
            table.release(&b, now).unwrap().map(|e| e.blob.id()),
            Some(b.id())
        );
        assert_eq!(table.len(), blobs.len() - 3);
    }

    #[test]
    fn the_prefetch_of_an_entry_asks_for_its_own_control_byte_and_bucket() {
        let mut table = BlobTable::default();
        let blobs: Vec<Arc<Blob>> = (0..4 * FRESH_BATCH)
            .map(|_| {
                let e = entry(1);
                let blob = e.blob.clone();
                table.insert_new(e);
                blob
            })
            .collect();
        // No release through a slot yet: nothing to compute from.
        assert_eq!(table.slot_addresses(&blobs[1]), None);
        // A small table grows all at once, leaving slots behind: make every
        // blob's slot true.
        let ctrl_bytes = table.table.num_buckets();
        for slot in 0..ctrl_bytes {
            if let Some(entry) = table.table.get_bucket(slot) {
                entry.blob.set_slot(slot);
            }
        }
        assert!(table.release(&blobs[0], Millis(10)).unwrap().is_some());
        assert_eq!(table.table.num_buckets(), ctrl_bytes);
        for blob in &blobs[1..] {
            let entry = table.table.get_bucket(blob.slot()).unwrap();
            assert!(Arc::ptr_eq(&entry.blob, blob));
            // hashbrown's layout, which the prefetch assumes: the buckets
            // end where the control bytes begin, one byte per bucket.
            let (ctrl, bucket) = table.slot_addresses(blob).unwrap();
            assert_eq!(bucket, std::ptr::from_ref(entry).addr());
            assert_eq!(ctrl - blob.slot(), table.ctrl_at);
        }
        // A slot beyond the table (a blob not placed yet) asks for nothing.
        blobs[1].set_slot(ctrl_bytes);
        assert_eq!(table.slot_addresses(&blobs[1]), None);
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
        table.get_mut(exposed_id).unwrap().set_refs(1);
        assert!(matches!(
            table.release(&exposed, Millis(1000)),
            Some(Some(_))
        ));
        assert!(table.is_empty());
    }
}
