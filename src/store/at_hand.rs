//! The namespaces each thread used last, kept at hand.
//!
//! Finding a namespace in the shared map takes the shard's read lock and
//! clones the namespace's `Arc`, then drops both: four atomic writes, to
//! lines that every request on every worker writes, so they bounce between
//! the cores on every request. A thread instead keeps the few namespaces it
//! used last in a list of its own, and borrows them from there.
//!
//! An entry may go stale: a namespace leaves the map only after it is
//! marked `removed` under its lock, and whoever then locks it looks the
//! name up afresh (`Store::run_locked`), calling [`forget`] first.

use std::cell::RefCell;
use std::sync::Arc;

use super::namespace::Namespace;
use crate::backend::name::Name;

/// Namespaces a thread keeps at hand; the one used longest ago goes first.
const AT_HAND: usize = 8;

struct Kept {
    /// `Store::id` of the store the namespace is of.
    store: u64,
    namespace: Arc<Namespace>,
}

thread_local! {
    static KEPT: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on namespace `ns` of store `store`, with `arg`, if this thread
/// has it at hand; gives `arg` back otherwise.
pub(super) fn with<A, R>(
    store: u64,
    ns: &Name,
    arg: A,
    f: impl FnOnce(&Namespace, A) -> R,
) -> Result<R, A> {
    KEPT.with(|kept| {
        // `f` never comes back here; if it ever did, it would take the
        // shared map's path rather than fail.
        let Ok(kept) = kept.try_borrow() else {
            return Err(arg);
        };
        match kept
            .iter()
            .find(|k| k.store == store && k.namespace.name == *ns)
        {
            Some(k) => Ok(f(&k.namespace, arg)),
            None => Err(arg),
        }
    })
}

/// Keeps `namespace` of store `store` at hand. Called only when [`with`]
/// did not find it (or it was let go of with [`forget`]), so it is not
/// there already.
pub(super) fn keep(store: u64, namespace: Arc<Namespace>) {
    KEPT.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return;
        };
        if kept.len() == AT_HAND {
            kept.remove(0);
        }
        kept.push(Kept { store, namespace });
    });
}

/// Lets go of namespace `ns` of store `store`: it was found removed.
pub(super) fn forget(store: u64, ns: &Name) {
    KEPT.with(|kept| {
        if let Ok(mut kept) = kept.try_borrow_mut() {
            kept.retain(|k| !(k.store == store && k.namespace.name == *ns));
        }
    });
}

#[cfg(test)]
pub(super) fn held(store: u64) -> usize {
    KEPT.with_borrow(|kept| kept.iter().filter(|k| k.store == store).count())
}
