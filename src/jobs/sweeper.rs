//! The task that acts on passed deadlines: a pending job whose lifetime
//! passed fails `EXPIRED`, a lease that ran out sends its job back (or
//! `ABANDONED`), a finished job past its retention goes with its blobs.
//!
//! It sleeps until the earliest wake-up any queue registered, woken early
//! when an earlier one arrives, and handles at most `BATCH` deadlines of a
//! queue per lock: the cost follows what is due, never a scan of all jobs.

use std::time::Duration;

use super::queue::Effects;
use super::{locked, Jobs};
use crate::store::clock::Millis;

/// Deadlines handled under one lock of a queue, so that a burst of expiries
/// never holds up the queue's requests for long.
const BATCH: usize = 256;

/// How long the sweeper sleeps when nothing is scheduled.
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

pub(super) async fn run(jobs: Jobs) {
    let shared = jobs.shared.clone();
    loop {
        let next = locked(&shared.wakeups).first().map(|(at, _, _)| *at);
        let sleep = next.map_or(IDLE_SLEEP, |at| at.remaining(Millis::now()));
        tokio::select! {
            () = shared.closing.cancelled() => return,
            () = shared.sweeper_wake.notified() => continue,
            () = tokio::time::sleep(sleep) => {}
        }
        let now = Millis::now();
        let due: Vec<_> = {
            let mut wakeups = locked(&shared.wakeups);
            let mut due = Vec::new();
            while wakeups.first().is_some_and(|(at, _, _)| *at <= now) {
                due.extend(wakeups.pop_first());
            }
            due
        };
        for (at, ns, name) in due {
            let Some(q) = jobs.queue(&ns, &name) else {
                continue;
            };
            let swept = jobs.change_queue(&q, |st, now, fx: &mut Effects| {
                // A wake-up replaced by an earlier one is stale.
                if st.scheduled != Some(at) {
                    return;
                }
                for _ in 0..BATCH {
                    let Some(seq) = st.next_due(now) else {
                        break;
                    };
                    st.deadline_passed(seq, now, fx);
                }
                st.wakeup = st.reschedule();
            });
            if let Some(((), leftovers)) = swept {
                jobs.clean_up(&ns, leftovers).await;
            }
            tokio::task::yield_now().await;
        }
    }
}
