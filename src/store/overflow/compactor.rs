//! The overflow compactor: a task woken when a sealed segment becomes
//! mostly dead, which copies that segment's live bodies forward into the
//! current segment and moves each body there. The old file goes once its
//! last body has moved and its last reader finished.
//!
//! It takes no namespace lock: a body is found through its segment, not its
//! queue. Its copies join the writer's queue like any append (pushes wait on
//! it only as on each other), and a pop reading a body that is being moved
//! reads the old place, held by `Arc`.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::segment::Segment;
use super::Overflow;

/// How long the compactor rests after a failure (a full disk, most often)
/// before it tries again, so that pops freeing bytes do not make it retry,
/// and waste room in the current segment, at their pace.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(super) async fn run(overflow: Weak<Overflow>, wake: Arc<Notify>, closing: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = closing.cancelled() => return,
        }
        let Some(strong) = overflow.upgrade() else {
            return;
        };
        // Stopped at shutdown: a body copied but not yet moved stays where
        // it is, its copy unused.
        let compacted = tokio::select! {
            done = strong.compact_candidates() => done,
            () = closing.cancelled() => return,
        };
        drop(strong);
        match compacted {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("overflow segments can be compacted again");
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not compact overflow segments; they stay as they are until it can");
                }
                failing = true;
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    () = closing.cancelled() => return,
                }
                // Try again even if no pop wakes it.
                wake.notify_one();
            }
        }
    }
}

impl Overflow {
    /// Compacts every segment worth it, stopping at the first failure (a
    /// full disk, most often: every body not yet moved stays where it is).
    pub(super) async fn compact_candidates(&self) -> io::Result<()> {
        for segment in self.compaction_candidates() {
            self.compact(&segment).await?;
        }
        Ok(())
    }

    /// Moves every live body of `segment` into the current segment.
    pub(super) async fn compact(&self, segment: &Arc<Segment>) -> io::Result<()> {
        for body in segment.placed_bodies() {
            // Dropped since: nothing to move. Held from here on, so it
            // cannot be dropped half-way through its move.
            let Some(body) = body.upgrade() else { continue };
            let from = body.place();
            if !Arc::ptr_eq(&from.segment, segment) {
                continue; // moved already
            }
            // Read ahead like a pop: the bodies are in offset order.
            let bytes = self.read(from.clone(), body.size()).await?;
            let to = self.write(bytes).await?;
            body.move_to(&from, to);
        }
        Ok(())
    }
}
