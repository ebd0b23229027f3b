//! The sweeper: one task that removes expired elements and blobs and drops
//! idle queues.
//!
//! It sleeps until the earliest registered deadline (or the next idle check)
//! and is woken early only when a push registers an earlier deadline, as the
//! purge task of mini-redis does. Each pass touches only what is due.

use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::clock::Millis;
use super::handle::Shared;
use super::namespace::Graveyard;

/// Deadlines handled per lock hold, so a million elements expiring at once
/// never keep a namespace locked for more than a moment.
const EXPIRY_BATCH: usize = 256;

/// After a full batch the sweeper rests this many times as long as the batch
/// took, so a mass expiry uses at most a fifth of one core and the requests
/// keep the rest. Expired elements are never served meanwhile (pops skip
/// them); only their memory is given back a little later.
const REST_FACTOR: u32 = 4;

pub(super) async fn run(shared: Weak<Shared>, wake: Arc<Notify>, closing: CancellationToken) {
    let mut next_idle_check = Millis::now();
    loop {
        let sleep_for = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let now = Millis::now();
            expire_due(&shared, now).await;
            if next_idle_check.has_passed(now) {
                drop_idle(&shared, now);
                next_idle_check = Millis(now.0 + idle_check_period(&shared).as_millis() as u64);
            }
            let next_deadline = shared
                .wakeups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .first()
                .map(|(at, _)| *at);
            let next = next_deadline.map_or(next_idle_check, |d| d.min(next_idle_check));
            next.remaining(Millis::now())
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep_for) => {}
            () = closing.cancelled() => return,
        }
    }
}

fn idle_check_period(shared: &Shared) -> Duration {
    (shared.queue_idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Handles every registered wake-up that is due.
async fn expire_due(shared: &Shared, now: Millis) {
    loop {
        let due = {
            let mut wakeups = shared
                .wakeups
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match wakeups.first() {
                Some((at, _)) if at.has_passed(now) => wakeups.pop_first(),
                _ => None,
            }
        };
        let Some((at, ns)) = due else { return };
        let Some(namespace) = shared.namespaces.get(&ns).map(|n| n.clone()) else {
            continue;
        };
        loop {
            let started = std::time::Instant::now();
            let mut grave = Graveyard::default();
            let (more, next) = {
                let mut st = namespace.lock();
                // A wake-up that no longer matches was superseded by an earlier one.
                if st.removed || st.scheduled != Some(at) {
                    break;
                }
                let more = st.expire_due(now, EXPIRY_BATCH, &mut grave) == EXPIRY_BATCH;
                (more, if more { Some(at) } else { st.reschedule() })
            };
            drop(grave);
            if more {
                tokio::time::sleep(started.elapsed() * REST_FACTOR).await;
                continue;
            }
            if let Some(next) = next {
                shared
                    .wakeups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((next, ns.clone()));
            }
            break;
        }
    }
}

/// Drops empty queues idle for longer than the configured timeout, and
/// namespaces left with nothing.
pub(super) fn drop_idle(shared: &Shared, now: Millis) {
    let idle_since = Millis(
        now.0
            .saturating_sub(shared.queue_idle_timeout.as_millis() as u64),
    );
    let namespaces: Vec<_> = shared
        .namespaces
        .iter()
        .map(|e| e.value().clone())
        .collect();
    for namespace in namespaces {
        let mut st = namespace.lock();
        if st.drop_idle_queues(idle_since) && !st.removed {
            st.removed = true;
            shared
                .namespaces
                .remove_if(&namespace.name, |_, n| Arc::ptr_eq(n, &namespace));
            tracing::debug!(namespace = %namespace.name, "dropped idle namespace");
        }
    }
}
