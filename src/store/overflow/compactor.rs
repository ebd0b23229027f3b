//! The overflow compactor: a task woken when a sealed segment becomes
//! mostly dead, which copies that segment's live bodies forward into the
//! current segment and moves each body there. The old file goes once its
//! last body has moved and its last reader finished.
//!
//! It copies under no namespace lock: a body is found through its segment,
//! not its queue. Its copies join the writer's queue like any append
//! (pushes wait on it only as on each other), and a pop reading a body that
//! is being moved reads the old place, held by `Arc`.
//!
//! In durable mode a record names each body's place, so a body moves only
//! through the store's [`MoveLog`]: the copies are checked against their
//! CRC32C (a damaged body stays where it is), synced, and only then is
//! each move made and logged, under its namespace's lock like any change
//! of the records (see `store::segment_body`). The old file is removed
//! through the log, once the records of the moves are durable.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::body::{OverflowBody, Place};
use super::segment::Segment;
use super::{MoveLog, Overflow};

/// How long the compactor rests after a failure (a full disk, most often)
/// before it tries again, so that pops freeing bytes do not make it retry,
/// and waste room in the current segment, at their pace. Also how long it
/// waits before looking again at a body whose push was not yet logged.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a compaction went, when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compacted {
    /// Every body that could move did.
    Done,
    /// Some bodies were left for later: their push was still being logged.
    SomeLeft,
}

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
            done = strong.compact_below(strong.config.compact_percent) => done,
            () = closing.cancelled() => return,
        };
        drop(strong);
        let again = match compacted {
            Ok(left) => {
                if failing {
                    failing = false;
                    tracing::info!("overflow segments can be compacted again");
                }
                left == Compacted::SomeLeft
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not compact overflow segments; they stay as they are until it can");
                }
                failing = true;
                true
            }
        };
        if again {
            tokio::select! {
                () = tokio::time::sleep(RETRY_AFTER) => {}
                () = closing.cancelled() => return,
            }
            // Try again even if no pop wakes it.
            wake.notify_one();
        }
    }
}

impl Overflow {
    /// Compacts every sealed segment whose live bytes are below `percent`
    /// of its size, stopping at the first failure (a full disk, most often:
    /// every body not yet moved stays where it is).
    pub(crate) async fn compact_below(&self, percent: u8) -> io::Result<Compacted> {
        let _one_at_a_time = self.compacting.lock().await;
        let log = self.move_log.get();
        if self.durable && log.is_none() {
            return Ok(Compacted::Done);
        }
        let mut outcome = Compacted::Done;
        for segment in self.compaction_candidates(percent) {
            let left = match log {
                Some(log) => self.compact_logged(&segment, log.as_ref()).await?,
                None => self.compact(&segment).await.map(|()| Compacted::Done)?,
            };
            if left == Compacted::SomeLeft {
                outcome = left;
            }
        }
        Ok(outcome)
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
            let target = to.segment.clone();
            if !body.move_to(&from, to) {
                // Its copy is unused: a current segment holding nothing
                // else goes now, not at the next rollover.
                self.retire_if_empty(&target);
            }
        }
        Ok(())
    }

    /// Durable mode: copies every body of `segment` the log names, checked
    /// against its CRC32C, syncs the copies, then moves each through `log`.
    async fn compact_logged(
        &self,
        segment: &Arc<Segment>,
        log: &dyn MoveLog,
    ) -> io::Result<Compacted> {
        let mut copied = Vec::new();
        let copying = self.copy_logged(segment, &mut copied).await;
        let targets = targets_of(&copied);
        let done = match copying {
            Ok(outcome) => sync(&targets).await.map(|()| outcome),
            Err(e) => Err(e),
        };
        // On a failure nothing moves: every copy is left unused.
        if done.is_ok() {
            for (body, from, to) in copied {
                // Dropped since the copy: its copy is left unused.
                if let Some(body) = body.upgrade() {
                    log.commit_move(&body, &from, to);
                }
            }
        }
        // A current segment holding only unused copies goes now.
        for target in &targets {
            self.retire_if_empty(target);
        }
        done
    }

    /// Copies every intact body of `segment` the log names to the end of
    /// the current segment, into `copied` (the body, its place, its copy's).
    async fn copy_logged(
        &self,
        segment: &Arc<Segment>,
        copied: &mut Vec<(Weak<OverflowBody>, Place, Place)>,
    ) -> io::Result<Compacted> {
        let mut outcome = Compacted::Done;
        for body in segment.placed_bodies() {
            let Some(body) = body.upgrade() else { continue };
            let from = body.place();
            if !Arc::ptr_eq(&from.segment, segment) {
                continue;
            }
            let Some(name) = body.log_name() else {
                // Its push is still on its way to the log.
                outcome = Compacted::SomeLeft;
                continue;
            };
            // Gone from the log (a reader still holds it), or damaged.
            if !name.is_logged() || name.is_damaged() {
                continue;
            }
            let bytes = match self.read(from.clone(), body.size()).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                Err(e) => return Err(e),
            };
            let Some(bytes) = bytes.filter(|b| crc32c::crc32c(b) == name.crc32c) else {
                if name.mark_damaged() {
                    tracing::error!(
                        namespace = %name.ns,
                        blob = %name.blob,
                        segment = %segment.path().display(),
                        offset = from.offset,
                        "a body in an overflow segment is damaged; compaction leaves it where it is, and the pop that reads it moves its element to the dead-letter queue"
                    );
                }
                continue;
            };
            let to = self.write(bytes).await?;
            copied.push((Arc::downgrade(&body), from, to));
        }
        Ok(outcome)
    }
}

/// The segments the copies were written to, each once.
fn targets_of(copied: &[(Weak<OverflowBody>, Place, Place)]) -> Vec<Arc<Segment>> {
    let mut targets: Vec<Arc<Segment>> = Vec::new();
    for (_, _, to) in copied {
        if !targets.iter().any(|t| Arc::ptr_eq(t, &to.segment)) {
            targets.push(to.segment.clone());
        }
    }
    targets
}

/// Syncs `targets` off the runtime's threads: a record naming a copy is
/// never durable before the copy.
async fn sync(targets: &[Arc<Segment>]) -> io::Result<()> {
    for target in targets {
        let target = target.clone();
        let synced = tokio::task::spawn_blocking(move || target.sync_data()).await;
        synced.map_err(io::Error::other)??;
    }
    Ok(())
}
