//! A hash map that grows without stopping its caller for a whole rehash.
//!
//! A hash map grows by moving every entry into a table twice the size, all
//! during the one insert that found it full. Under a namespace's lock, with
//! a million entries, that insert stops every request to the namespace for
//! as long as the move takes. Like Redis's dict, this map instead replaces
//! a full table past [`IncrementalMap::with_threshold`]'s size by an empty
//! one twice as large, and each later change moves [`MOVE_STEP`] buckets of
//! the old table over; until the old table is empty, lookups try both.
//! Below the threshold a table grows the usual way: rehashing a few
//! thousand entries is quick.
//!
//! It relies only on hashbrown's public `HashTable` API (bucket indices,
//! capacity), not on how the table lays out its memory.

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

/// Below this many entries, by default, a full table grows all at once.
pub const GROW_AT_ONCE_BELOW: usize = 4096;

/// Buckets of the old table moved on each change while a resize is under
/// way. A change adds at most one entry and the new table has room for
/// twice the entries the old one held, while the old one has at most twice
/// as many buckets as entries: the move is over long before the new table
/// fills (and would have to grow all at once).
pub const MOVE_STEP: usize = 16;

/// A map from `K` to `V` that grows a few buckets per change.
#[derive(Debug)]
pub struct IncrementalMap<K, V, S = DefaultHashBuilder> {
    /// Where new entries go.
    table: HashTable<(K, V)>,
    /// The table being emptied into `table`; empty, without an allocation,
    /// when no resize is under way.
    old: HashTable<(K, V)>,
    /// The next bucket of `old` to move.
    cursor: usize,
    hasher: S,
    /// Tables smaller than this grow all at once.
    threshold: usize,
}

impl<K, V> Default for IncrementalMap<K, V> {
    fn default() -> Self {
        IncrementalMap::with_threshold(GROW_AT_ONCE_BELOW)
    }
}

impl<K, V> IncrementalMap<K, V> {
    /// A map whose table grows all at once until it holds `threshold`
    /// entries, and incrementally from then on.
    pub fn with_threshold(threshold: usize) -> Self {
        IncrementalMap {
            table: HashTable::new(),
            old: HashTable::new(),
            cursor: 0,
            hasher: DefaultHashBuilder::default(),
            threshold,
        }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> IncrementalMap<K, V, S> {
    pub fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a resize is under way (some entries still in the old table).
    pub fn is_resizing(&self) -> bool {
        !self.old.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        let found = match self.table.find(hash, |(k, _)| k == key) {
            None if self.is_resizing() => self.old.find(hash, |(k, _)| k == key),
            found => found,
        };
        found.map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = self.hasher.hash_one(key);
        if let Some((_, v)) = self.table.find_mut(hash, |(k, _)| k == key) {
            return Some(v);
        }
        self.old.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// Adds `value` under `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.step();
        let hash = self.hasher.hash_one(&key);
        let mut replaced = None;
        if self.is_resizing() {
            if let Ok(found) = self.old.find_entry(hash, |(k, _)| *k == key) {
                replaced = Some(found.remove().0 .1);
            }
        }
        if let Some((_, v)) = self.table.find_mut(hash, |(k, _)| *k == key) {
            return Some(std::mem::replace(v, value));
        }
        self.make_room();
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, (key, value), |(k, _)| hasher.hash_one(k));
        replaced
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.step();
        let hash = self.hasher.hash_one(key);
        if let Ok(found) = self.table.find_entry(hash, |(k, _)| k == key) {
            return Some(found.remove().0 .1);
        }
        let found = self.old.find_entry(hash, |(k, _)| k == key).ok()?;
        Some(found.remove().0 .1)
    }

    /// Every entry, in no particular order (what invariant checks and the
    /// search for marked blobs read).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table
            .iter()
            .chain(self.old.iter())
            .map(|(k, v)| (k, v))
    }

    /// Takes every entry out.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.cursor = 0;
        self.table.drain().chain(self.old.drain())
    }

    /// Starts a resize when the next new entry would make the table grow
    /// (or, full of deleted markers, rehash in place) all at once.
    fn make_room(&mut self) {
        let len = self.table.len();
        if len < self.threshold || len < self.table.capacity() || self.is_resizing() {
            return;
        }
        let bigger = HashTable::with_capacity(len * 2);
        self.old = std::mem::replace(&mut self.table, bigger);
        self.cursor = 0;
    }

    /// Moves the next [`MOVE_STEP`] buckets of the old table, if a resize
    /// is under way, and frees the old table once it is empty.
    fn step(&mut self) {
        if !self.is_resizing() {
            if self.old.capacity() != 0 {
                self.old = HashTable::new();
            }
            return;
        }
        let end = (self.cursor + MOVE_STEP).min(self.old.num_buckets());
        let hasher = &self.hasher;
        for index in self.cursor..end {
            if let Ok(found) = self.old.get_bucket_entry(index) {
                let (entry, _) = found.remove();
                let hash = hasher.hash_one(&entry.0);
                self.table
                    .insert_unique(hash, entry, |(k, _)| hasher.hash_one(k));
            }
        }
        self.cursor = end;
        if self.old.is_empty() {
            self.old = HashTable::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: usize = 64;

    #[test]
    fn entries_are_found_replaced_and_removed_by_key() {
        let mut map = IncrementalMap::with_threshold(SMALL);
        for i in 0..1000u32 {
            assert_eq!(map.insert(i, i * 10), None);
        }
        assert_eq!(map.len(), 1000);
        assert!((0..1000).all(|i| map.get(&i) == Some(&(i * 10))));
        assert_eq!(map.get(&5000), None);
        assert_eq!(map.insert(7, 77), Some(70), "replaced, not added");
        assert_eq!(map.len(), 1000);
        *map.get_mut(&8).unwrap() += 1;
        assert_eq!(map.get(&8), Some(&81));
        assert_eq!(map.remove(&8), Some(81));
        assert_eq!(map.get(&8), None);
        assert_eq!(map.remove(&8), None);
        assert_eq!(map.iter().count(), 999);
        assert_eq!(map.drain().count(), 999);
        assert!(map.is_empty());
    }

    #[test]
    fn a_full_table_moves_to_a_bigger_one_a_few_buckets_per_change() {
        let mut map = IncrementalMap::with_threshold(SMALL);
        let (mut resizes, mut old_before) = (0, 0);
        for i in 0..20_000u32 {
            let capacity = map.table.capacity();
            map.insert(i, i);
            let old = map.old.len();
            if old > old_before {
                // A resize began with this insert: only it went into the new table.
                resizes += 1;
                assert_eq!(map.table.len(), 1, "{} moved at once", map.table.len());
                assert!(old >= SMALL);
            } else {
                assert!(old_before - old <= MOVE_STEP, "{} moved", old_before - old);
                if old_before > 0 {
                    assert_eq!(map.table.capacity(), capacity, "never grown at once");
                }
            }
            if old == 0 {
                assert_eq!(map.old.capacity(), 0, "the old table is freed");
            }
            old_before = old;
            assert_eq!(map.len(), i as usize + 1);
        }
        assert!(resizes >= 3, "{resizes} resizes");
    }

    #[test]
    fn entries_still_in_the_old_table_are_found_changed_replaced_and_removed() {
        let mut map = IncrementalMap::with_threshold(SMALL);
        let mut next = 0u32;
        while !map.is_resizing() {
            map.insert(next, next);
            next += 1;
        }
        let in_old = |m: &IncrementalMap<u32, u32>, k: u32| {
            m.old.find(m.hasher.hash_one(k), |(x, _)| *x == k).is_some()
        };
        let old: Vec<u32> = (0..next).filter(|k| in_old(&map, *k)).collect();
        assert!(old.len() > 3 * MOVE_STEP, "{} in the old table", old.len());
        // The keys at the end of the old table's buckets move last.
        let (a, b, c) = (old[old.len() - 1], old[old.len() - 2], old[old.len() - 3]);
        assert_eq!(map.get(&a), Some(&a));
        *map.get_mut(&a).unwrap() += 100;
        assert_eq!(map.get(&a), Some(&(a + 100)));
        let len = map.len();
        assert_eq!(map.insert(b, 7), Some(b), "replaced where it was");
        assert_eq!(map.len(), len);
        assert_eq!(map.get(&b), Some(&7));
        assert_eq!(map.remove(&c), Some(c));
        assert_eq!(map.get(&c), None);
        // Changes carry the resize through; everything else is still there.
        while map.is_resizing() {
            map.insert(next, next);
            next += 1;
        }
        assert_eq!(map.get(&a), Some(&(a + 100)));
        assert_eq!(map.get(&b), Some(&7));
        assert!((0..next)
            .filter(|k| ![a, b, c].contains(k))
            .all(|k| map.get(&k) == Some(&k)));
        assert_eq!(map.len(), next as usize - 1);
    }

    #[test]
    fn removals_alone_finish_a_resize_and_leave_nothing_behind() {
        let mut map = IncrementalMap::with_threshold(SMALL);
        let mut next = 0u32;
        while !map.is_resizing() {
            map.insert(next, next);
            next += 1;
        }
        for k in 0..next {
            assert_eq!(map.remove(&k), Some(k));
        }
        assert!(map.is_empty() && map.iter().next().is_none());
        map.remove(&0);
        assert!(!map.is_resizing() && map.old.capacity() == 0);
    }
}
