//! [`ExpiryIndex`]: a namespace's pending deadlines, earliest first.
//!
//! Most namespaces have one deadline pending (the chain of their one
//! queue) or none, while an ordered set allocates a whole tree node for
//! its first entry, several times what the namespace's own element costs.
//! So a single entry is held inline and the set is made only for a second
//! one; it is given up again when one entry is left.

use std::collections::BTreeSet;

use super::ExpiryKey;
use crate::store::clock::Millis;

/// A deadline and what it is for.
pub(crate) type Deadline = (Millis, ExpiryKey);

/// An ordered set of deadlines that holds one without allocating.
#[derive(Debug, Default)]
pub(crate) enum ExpiryIndex {
    #[default]
    Empty,
    One(Deadline),
    Many(BTreeSet<Deadline>),
}

impl ExpiryIndex {
    /// Adds `entry`; false if it was there already.
    pub fn insert(&mut self, entry: Deadline) -> bool {
        match self {
            ExpiryIndex::Empty => *self = ExpiryIndex::One(entry),
            ExpiryIndex::One(first) if *first == entry => return false,
            ExpiryIndex::One(_) => {
                let ExpiryIndex::One(first) = std::mem::take(self) else {
                    unreachable!("matched One above")
                };
                *self = ExpiryIndex::Many(BTreeSet::from([first, entry]));
            }
            ExpiryIndex::Many(set) => return set.insert(entry),
        }
        true
    }

    /// Removes `entry`; false if it was not there.
    pub fn remove(&mut self, entry: &Deadline) -> bool {
        let removed = match self {
            ExpiryIndex::Empty => false,
            ExpiryIndex::One(first) => {
                let found = first == entry;
                if found {
                    *self = ExpiryIndex::Empty;
                }
                found
            }
            ExpiryIndex::Many(set) => set.remove(entry),
        };
        self.shrink();
        removed
    }

    pub fn first(&self) -> Option<&Deadline> {
        match self {
            ExpiryIndex::Empty => None,
            ExpiryIndex::One(first) => Some(first),
            ExpiryIndex::Many(set) => set.first(),
        }
    }

    pub fn pop_first(&mut self) -> Option<Deadline> {
        let first = match std::mem::take(self) {
            ExpiryIndex::Empty => None,
            ExpiryIndex::One(first) => Some(first),
            ExpiryIndex::Many(mut set) => {
                let first = set.pop_first();
                *self = ExpiryIndex::Many(set);
                first
            }
        };
        self.shrink();
        first
    }

    pub fn clear(&mut self) {
        *self = ExpiryIndex::Empty;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            ExpiryIndex::Empty => 0,
            ExpiryIndex::One(_) => 1,
            ExpiryIndex::Many(set) => set.len(),
        }
    }

    #[cfg(test)]
    pub fn contains(&self, entry: &Deadline) -> bool {
        self.iter().any(|e| e == entry)
    }

    /// Every entry, earliest first.
    #[cfg(test)]
    pub fn iter(&self) -> Box<dyn Iterator<Item = &Deadline> + '_> {
        match self {
            ExpiryIndex::Empty => Box::new(std::iter::empty()),
            ExpiryIndex::One(first) => Box::new(std::iter::once(first)),
            ExpiryIndex::Many(set) => Box::new(set.iter()),
        }
    }

    /// Gives the set's memory back once it holds one entry or none.
    fn shrink(&mut self) {
        if let ExpiryIndex::Many(set) = self {
            if set.len() <= 1 {
                *self = match set.pop_first() {
                    Some(first) => ExpiryIndex::One(first),
                    None => ExpiryIndex::Empty,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::name::Name;

    fn chain(at: u64, q: &str) -> Deadline {
        (Millis(at), ExpiryKey::Chain(Name::parse(q).unwrap()))
    }

    #[test]
    fn entries_come_out_earliest_first_however_many_there_are() {
        let mut index = ExpiryIndex::default();
        assert!(index.first().is_none() && index.pop_first().is_none());
        assert!(index.insert(chain(30, "c")));
        assert!(!index.insert(chain(30, "c")), "already there");
        assert!(matches!(index, ExpiryIndex::One(_)));
        assert!(index.insert(chain(10, "a")));
        assert!(index.insert(chain(20, "b")));
        assert!(!index.insert(chain(20, "b")));
        assert_eq!(index.len(), 3);
        assert_eq!(index.first(), Some(&chain(10, "a")));
        assert!(index.contains(&chain(20, "b")) && !index.contains(&chain(20, "a")));
        assert!(!index.remove(&chain(20, "a")));
        assert!(index.remove(&chain(20, "b")));
        assert_eq!(index.pop_first(), Some(chain(10, "a")));
        assert!(matches!(index, ExpiryIndex::One(_)), "back inline at one");
        assert_eq!(index.pop_first(), Some(chain(30, "c")));
        assert!(matches!(index, ExpiryIndex::Empty));
        index.insert(chain(5, "a"));
        index.insert(chain(6, "a"));
        assert_eq!(index.pop_first(), Some(chain(5, "a")));
        assert_eq!(index.iter().collect::<Vec<_>>(), [&chain(6, "a")]);
        index.clear();
        assert_eq!(index.len(), 0);
    }
}
